"""Safe checkpoint loading for scoring: one clear line for every way a checkpoint can be wrong.

A checkpoint is self-describing (engine.checkpoint): it embeds the effective training
config and the model metadata, so the model is rebuilt from the checkpoint alone.  A
config given on the command line only supplies data paths and data-quality settings; if
it disagrees with the checkpoint on anything that defines the model or its input
representation, scoring would silently compare apples with pears, so that is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import streams
from core.config import StreamConfig
from core.errors import CheckpointError, ConfigError
from core.io import file_sha256
from core.paths import display_path, resolve_path
from engine.checkpoint import load_checkpoint
from streams.base import StreamTask, model_args_differences

REQUIRED_KEYS = ("stream", "model", "config", "model_meta")


@dataclass
class Trained:
    """A model ready for scoring plus everything known about where it came from."""

    model: nn.Module
    cfg: StreamConfig
    model_meta: dict[str, Any]
    model_args: dict[str, Any]  # the keys that define the model, as trained
    ckpt_info: dict[str, Any]  # path (repo-relative), sha256, created, epoch, run_id, ...
    device: torch.device

    @property
    def stream(self) -> str:
        return self.cfg.stream

    @property
    def task(self) -> StreamTask:
        return streams.get(self.cfg.stream)


def check_config_matches(trained: Trained, cfg: StreamConfig, config_source: str) -> None:
    """CheckpointError when ``cfg`` (from ``config_source``) disagrees on the model."""
    shown = trained.ckpt_info["path"]
    if cfg.stream != trained.stream:
        raise CheckpointError(
            f"{shown}: checkpoint is for stream {trained.stream!r} but {config_source} is a "
            f"{cfg.stream!r} config"
        )
    diffs = model_args_differences(trained.model_args, trained.task.model_args(cfg))
    if diffs:
        raise CheckpointError(
            f"{shown}: config {config_source} does not match the checkpoint: {'; '.join(diffs)}"
        )


def load_trained(
    path: str | Path, expected_stream: str | None = None, device: str | torch.device = "cpu"
) -> Trained:
    """Load a checkpoint (weights_only), rebuild its model in eval mode on ``device``."""
    resolved = resolve_path(path)
    shown = display_path(resolved)
    device = torch.device(device)
    ckpt = load_checkpoint(resolved, map_location="cpu")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{shown}: checkpoint lacks {', '.join(missing)}")
    stream = ckpt["stream"]
    if expected_stream is not None and stream != expected_stream:
        raise CheckpointError(
            f"{shown}: checkpoint is for stream {stream!r}, expected {expected_stream!r}"
        )
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model_meta"], dict):
        raise CheckpointError(f"{shown}: checkpoint config/model_meta are not mappings")
    try:
        cfg = streams.config_from_dict(ckpt["config"], stream=stream,
                                       source=f"{shown} (embedded config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    task = streams.get(stream)
    meta = dict(ckpt["model_meta"])
    # Checkpoints from before model_args was stored: derive it from the embedded config.
    model_args = ckpt.get("model_args") or task.model_args(cfg)
    if not isinstance(model_args, dict):
        raise CheckpointError(f"{shown}: checkpoint model_args is not a mapping")
    try:
        model = task.build_model(model_args, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{shown}: cannot rebuild the model from model_args ({exc})"
        ) from None
    state = ckpt["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{shown}: 'model' is not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:200]
        raise CheckpointError(f"{shown}: weights do not fit the model ({detail})") from None
    model.to(device).eval()
    info = {
        "path": shown,
        "sha256": file_sha256(resolved),
        "created": ckpt.get("created"),
        "epoch": ckpt.get("epoch"),
        "run_id": ckpt.get("run_id"),
        "amp": ckpt.get("amp"),
        "versions": ckpt.get("versions"),
    }
    return Trained(model=model, cfg=cfg, model_meta=meta, model_args=dict(model_args),
                   ckpt_info=info, device=device)
