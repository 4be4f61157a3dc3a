"""Safe checkpoint loading for scoring: one clear line for every way a checkpoint can be wrong.

A checkpoint is self-describing (engine.checkpoint): it embeds the effective training
config and the model metadata, so the model is rebuilt from the checkpoint alone.  A
config given on the command line only supplies data paths and data-quality settings; if
it disagrees with the checkpoint on anything that defines the model or its input
representation, scoring would silently compare apples with pears, so that is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.config import (
    PatchTSTConfig,
    StreamConfig,
    config_from_dict,
    effective_config,
)
from core.errors import CheckpointError, ConfigError, DataError
from core.paths import display_path, resolve_path
from engine.builders import build_model
from engine.checkpoint import load_checkpoint
from sensor_data.scaler import ChannelScaler

REQUIRED_KEYS = ("stream", "model", "config", "model_meta")
# Dotted config keys that define the model or what it sees; cwt.cache_dir is only a cache.
MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "patchtst": ("model", "data.seq_len"),
    "swinmae": ("model", "image", "cwt", "data.fs", "data.win_sec"),
}
IGNORED_KEYS = {"cwt.cache_dir"}


@dataclass
class Trained:
    """A model ready for scoring plus everything known about where it came from."""

    model: nn.Module
    cfg: StreamConfig
    model_meta: dict[str, Any]
    ckpt_info: dict[str, Any]  # path (repo-relative), sha256, created, epoch, run_id, ...
    device: torch.device

    @property
    def stream(self) -> str:
        return self.cfg.stream


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def config_differences(stored: dict[str, Any], given: dict[str, Any], stream: str) -> list[str]:
    """``key: checkpoint=X, config=Y`` for every model-defining key that differs."""
    diffs = []
    for key in MODEL_KEYS[stream]:
        a = _flatten(_lookup(stored, key), key)
        b = _flatten(_lookup(given, key), key)
        for sub in sorted(set(a) | set(b)):
            if sub not in IGNORED_KEYS and a.get(sub) != b.get(sub):
                diffs.append(f"{sub}: checkpoint={a.get(sub)!r}, config={b.get(sub)!r}")
    return diffs


def check_config_matches(trained: Trained, cfg: StreamConfig, config_source: str) -> None:
    """CheckpointError when ``cfg`` (from ``config_source``) disagrees on the model."""
    shown = trained.ckpt_info["path"]
    if cfg.stream != trained.stream:
        raise CheckpointError(
            f"{shown}: checkpoint is for stream {trained.stream!r} but {config_source} is a "
            f"{cfg.stream!r} config"
        )
    diffs = config_differences(effective_config(trained.cfg), effective_config(cfg), cfg.stream)
    if diffs:
        more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise CheckpointError(
            f"{shown}: config {config_source} does not match the checkpoint: "
            f"{'; '.join(diffs[:3])}{more}"
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
        cfg = config_from_dict(ckpt["config"], stream=stream, source=f"{shown} (embedded config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    meta = dict(ckpt["model_meta"])
    model = build_model(cfg, meta)
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
    return Trained(model=model, cfg=cfg, model_meta=meta, ckpt_info=info, device=device)


def checkpoint_channels(trained: Trained) -> list[str]:
    """Channel names the FDC model was trained on (model_meta["channels"])."""
    channels = trained.model_meta.get("channels")
    if not isinstance(channels, list) or not channels:
        raise CheckpointError(f"{trained.ckpt_info['path']}: model_meta lacks the channel list")
    return [str(c) for c in channels]


def load_fdc_scaler(trained: Trained, cfg: PatchTSTConfig) -> ChannelScaler:
    """The scaler at ``cfg.data.scaler_path``, checked against the checkpoint's channels."""
    path = resolve_path(cfg.data.scaler_path)
    scaler = ChannelScaler.load(path)
    expected = checkpoint_channels(trained)
    try:
        scaler.check_channels(expected, display_path(path))
    except DataError as exc:
        raise DataError(f"{exc} [checkpoint {trained.ckpt_info['path']}]") from None
    if list(scaler.channels) != expected:
        raise DataError(
            f"{display_path(path)}: channel order differs from checkpoint "
            f"{trained.ckpt_info['path']}"
        )
    return scaler
