"""PatchTST-SSL on multivariate FDC process data: masked patch reconstruction per channel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from pydantic import model_validator
from torch import nn

from core.config import (
    FdcDataConfig,
    FdcDqvlConfig,
    LoggingConfig,
    PatchTSTModelConfig,
    StreamConfig,
)
from core.errors import CheckpointError, DataError
from core.paths import display_path, resolve_path
from streams.base import (
    Breakdown,
    LiveInput,
    Recording,
    ScoringData,
    TrainingSetup,
    file_globs,
    pick_model_args,
    section_args,
)

NAME = "patchtst"


class PatchTSTConfig(StreamConfig):
    stream: Literal["patchtst"] = NAME
    data: FdcDataConfig = FdcDataConfig()
    dqvl: FdcDqvlConfig = FdcDqvlConfig()
    model: PatchTSTModelConfig = PatchTSTModelConfig()
    logging: LoggingConfig = LoggingConfig(
        log_dir="runs/patchtst_ssl", checkpoint_path="checkpoints/patchtst_ssl.pt"
    )

    @model_validator(mode="after")
    def _patch_fits(self) -> PatchTSTConfig:
        if self.data.seq_len % self.model.patch_len:
            raise ValueError(
                f"data.seq_len ({self.data.seq_len}) must be a multiple of "
                f"model.patch_len ({self.model.patch_len})"
            )
        return self


def model_channels(model_meta: dict[str, Any]) -> list[str]:
    """Channel names the model was trained on (``model_meta["channels"]``)."""
    channels = model_meta.get("channels")
    if not isinstance(channels, list) or not channels:
        raise CheckpointError("model metadata lacks the channel list")
    return [str(c) for c in channels]


def load_scaler(cfg: PatchTSTConfig, model_meta: dict[str, Any]):
    """The training scaler at ``data.scaler_path``, checked against the model's channels."""
    from sensor_data.scaler import ChannelScaler

    path = resolve_path(cfg.data.scaler_path)
    scaler = ChannelScaler.load(path)
    expected = model_channels(model_meta)
    scaler.check_channels(expected, display_path(path))
    if list(scaler.channels) != expected:
        raise DataError(f"{display_path(path)}: channel order differs from the checkpoint")
    return scaler


class PatchTSTTask:
    name = NAME
    title = "FDC"
    config_class = PatchTSTConfig
    part_kind = "channel"
    part_plural = "channels"
    # Raw errors: on Tennessee Eastman, dividing by the normal profile over-weights slow,
    # smooth channels whose tiny error drifts between normal runs (false alarms).
    default_error_profile = "raw"
    default_config = "configs/patchtst_ssl.yaml"
    local_config = "configs/patchtst_ssl_local.yaml"
    cli_flag = "patch"
    data_folder = "fdc"
    file_suffixes = (".csv", ".parquet")
    legacy_model_args = MappingProxyType({"model.decoder_mlp": True, "model.decoder_kv_proj": True})

    def model_args(self, cfg: PatchTSTConfig) -> dict[str, Any]:
        return pick_model_args(cfg, ("model", "data.seq_len"))

    def build_model(self, model_args: dict[str, Any], model_meta: dict[str, Any]) -> nn.Module:
        from models.patchtst_ssl import PatchTSTSSL

        return PatchTSTSSL(seq_len=model_args["data.seq_len"], **section_args(model_args, "model"))

    def training_globs(self, cfg) -> list[str]:
        return file_globs(cfg.data)

    def prepare_training(
        self, cfg: PatchTSTConfig, device: torch.device, run_id: str
    ) -> TrainingSetup:
        from sensor_data.fdc_prep import prepare_fdc_training

        prep = prepare_fdc_training(cfg, run_id)
        meta = {"n_channels": len(prep.scaler.channels), "channels": list(prep.scaler.channels)}
        model = self.build_model(self.model_args(cfg), meta)
        return TrainingSetup(model, prep.train, prep.val, meta)

    def prepare_scoring(
        self,
        cfg: PatchTSTConfig,
        model_meta: dict[str, Any],
        sources: Sequence[Any],
        device: torch.device,
    ) -> ScoringData:
        from sensor_data.fdc_prep import prepare_fdc_scoring

        scaler = load_scaler(cfg, model_meta)
        window = cfg.data.seq_len
        paths = [Path(p) for p in sources]
        dataset, reports = prepare_fdc_scoring(paths, scaler, cfg, window, cfg.data.stride)
        # Every file DQVL kept is decided, even one too short for a window.
        return ScoringData.from_windows(dataset, reports, window, kept=list(dataset.files))

    def score_layout(self, cfg: PatchTSTConfig) -> None:
        return None

    def breakdown(self, errors: torch.Tensor, layout: Any = None) -> Breakdown:
        return Breakdown(parts=errors)  # (B, C): one error per channel

    def part_names(self, model_meta: dict[str, Any]) -> list[str]:
        return [str(c) for c in model_meta.get("channels", [])]

    def synthetic_scoring_input(
        self, cfg: PatchTSTConfig, model_meta: dict[str, Any], n_windows: int, folder: Path
    ) -> list[Path]:
        """A normal synthetic file in the model's channels and the scaler's units, so it
        goes through the same DQVL / scaler path as real files."""
        import pandas as pd

        from core.io import atomic_write_text
        from sensor_data.synthetic_fdc import make_fdc_frame

        scaler = load_scaler(cfg, model_meta)
        n_rows = cfg.data.seq_len + (n_windows - 1) * cfg.data.stride
        frame = make_fdc_frame(n_rows, len(scaler.channels), seed=cfg.seed)
        values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
        z = (values - values.mean(axis=0)) / values.std(axis=0).clip(min=1e-9)
        out = pd.DataFrame(z * scaler.scale + scaler.center, columns=scaler.channels)
        out.insert(0, "timestamp", frame["timestamp"])
        return [atomic_write_text(folder / "synthetic_fdc.csv", out.to_csv(index=False))]

    def extra_artifacts(self, cfg: PatchTSTConfig) -> list[tuple[str, str]]:
        return [(cfg.data.scaler_path, "scaler")]

    def live_input(
        self, cfg: PatchTSTConfig, model_meta: dict[str, Any], device: torch.device
    ) -> LiveInput:
        from sensor_data.fdc_prep import fdc_recording
        from sensor_data.windows import scoring_stride

        scaler = load_scaler(cfg, model_meta)
        window, n = cfg.data.seq_len, len(scaler.channels)

        def prepare(windows: np.ndarray) -> torch.Tensor:
            flat = scaler.transform(np.ascontiguousarray(windows, np.float32).reshape(-1, n))
            return torch.from_numpy(flat.reshape(windows.shape))

        return LiveInput(
            columns=list(scaler.channels),
            window=window,
            stride=lambda period: scoring_stride(window, cfg.data.stride,
                                                 cfg.scoring.stride_sec, period),
            period_s=1 / cfg.data.fs if cfg.data.fs else None,
            covering_last=True,
            prepare=prepare,
            read_recording=lambda path: Recording(*fdc_recording(path, scaler, cfg)),
            steady=frozenset(scaler.floored),
        )


TASK = PatchTSTTask()
