"""Swin-MAE-SSL on Morlet CWT scalograms of 3-axis vibration: masked image reconstruction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import model_validator
from torch import nn

from core.config import (
    CwtConfig,
    ImageConfig,
    LoggingConfig,
    StreamConfig,
    SwinMAEModelConfig,
    VibDataConfig,
    VibDqvlConfig,
)
from dsp.bands import BandLayout, row_groups
from dsp.cwt import CwtSpec
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

NAME = "swinmae"
AXES = ("x", "y", "z")


class SwinMAEConfig(StreamConfig):
    stream: Literal["swinmae"] = NAME
    data: VibDataConfig = VibDataConfig()
    dqvl: VibDqvlConfig = VibDqvlConfig()
    cwt: CwtConfig = CwtConfig()
    image: ImageConfig = ImageConfig()
    model: SwinMAEModelConfig = SwinMAEModelConfig()
    logging: LoggingConfig = LoggingConfig(
        log_dir="runs/swinmae_ssl", checkpoint_path="checkpoints/swinmae_ssl.pt"
    )

    @model_validator(mode="after")
    def _nyquist(self) -> SwinMAEConfig:
        if self.cwt.freq_max > self.data.fs / 2:
            raise ValueError(
                f"cwt.freq_max ({self.cwt.freq_max}) must be <= data.fs / 2 ({self.data.fs / 2})"
            )
        return self


class SwinMAETask:
    name = NAME
    title = "vibration"
    config_class = SwinMAEConfig
    part_kind = "axis"
    part_plural = "axes"
    # Scalograms are normalised per image, so a strong fault band shrinks the raw error
    # everywhere else; errors relative to the normal profile see that change of shape.
    default_error_profile = "relative"
    default_config = "configs/swinmae_ssl.yaml"
    local_config = "configs/swinmae_ssl_local.yaml"
    cli_flag = "swin"
    data_folder = "vib"
    file_suffixes = (".csv", ".parquet", ".npy")

    def model_args(self, cfg: SwinMAEConfig) -> dict[str, Any]:
        # cwt.cache_dir only says where scalograms are cached, not what they are.
        return pick_model_args(cfg, ("model", "image", "cwt", "data.fs", "data.win_sec"),
                               ignored=("cwt.cache_dir",))

    def build_model(self, model_args: dict[str, Any], model_meta: dict[str, Any]) -> nn.Module:
        from models.swin_mae import SwinMAE

        m = section_args(model_args, "model")
        return SwinMAE(img_size=model_args["image.size"], **m)

    def training_globs(self, cfg) -> list[str]:
        return file_globs(cfg.data)

    def prepare_training(
        self, cfg: SwinMAEConfig, device: torch.device, run_id: str
    ) -> TrainingSetup:
        from sensor_data.vib_prep import prepare_vibration_training

        prep = prepare_vibration_training(cfg, run_id, device)
        meta = {"image_size": cfg.image.size,
                "frequencies": [float(f) for f in prep.spec_frequencies]}
        model = self.build_model(self.model_args(cfg), meta)
        return TrainingSetup(model, prep.train, prep.val, meta)

    def prepare_scoring(
        self,
        cfg: SwinMAEConfig,
        model_meta: dict[str, Any],
        sources: Sequence[Any],
        device: torch.device,
    ) -> ScoringData:
        from sensor_data.vib_prep import prepare_vibration_scoring, window_geometry

        dataset, reports = prepare_vibration_scoring(list(sources), cfg, device)
        return ScoringData.from_windows(dataset, reports, window_geometry(cfg)[0])

    def score_layout(self, cfg: SwinMAEConfig) -> BandLayout:
        return BandLayout.from_spec(CwtSpec.from_config(cfg))

    def breakdown(self, errors: torch.Tensor, layout: BandLayout | None = None) -> Breakdown:
        """``errors (B, 3, H)``: per axis and image row, averaged over time."""
        layout = layout or row_groups(errors.shape[2])
        return Breakdown(
            parts=errors.mean(dim=2),  # (B, 3): each axis over its frequency rows
            extra={
                "band_errors": layout.band_errors(errors.mean(dim=1)).cpu().numpy(),
                "band_edges_hz": layout.edges_hz,
                "band_labels": layout.labels,
            },
        )

    def part_names(self, model_meta: dict[str, Any]) -> list[str]:
        return list(AXES)

    def synthetic_scoring_input(
        self, cfg: SwinMAEConfig, model_meta: dict[str, Any], n_windows: int, folder: Path
    ) -> list[Any]:
        from sensor_data.synthetic_vib import make_vibration
        from sensor_data.vibration import VibTable

        duration = cfg.data.win_sec + (n_windows - 1) * cfg.data.win_stride_sec
        values = make_vibration(duration, cfg.data.fs, seed=cfg.seed)
        return [VibTable("synthetic_vibration", values)]

    def extra_artifacts(self, cfg: SwinMAEConfig) -> list[tuple[str, str]]:
        return []

    def live_input(
        self, cfg: SwinMAEConfig, model_meta: dict[str, Any], device: torch.device
    ) -> LiveInput:
        from sensor_data.vib_prep import vibration_recording, window_geometry, window_images
        from sensor_data.windows import scoring_stride

        win, stride = window_geometry(cfg)
        step = scoring_stride(win, stride, cfg.scoring.stride_sec, 1 / cfg.data.fs)
        return LiveInput(
            columns=list(AXES),
            window=win,
            stride=lambda period: step,  # windows are cut at the configured fs
            period_s=1 / cfg.data.fs,
            covering_last=False,
            prepare=lambda windows: window_images(windows, cfg, device),
            read_recording=lambda path: Recording(*vibration_recording(path, cfg)),
            file_names=dict(cfg.data.axes or {}),
        )


TASK = SwinMAETask()
