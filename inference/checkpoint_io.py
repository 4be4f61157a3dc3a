"""Safe checkpoint loading for scoring: one clear line for every way a checkpoint can be wrong.

A checkpoint is self-describing (engine.checkpoint): it embeds the effective training
config and the model metadata, so the model is rebuilt from the checkpoint alone.  A
config given on the command line only supplies data paths and data-quality settings; if
it disagrees with the checkpoint on anything that defines the model or its input
representation, scoring would silently compare apples with pears, so that is an error.

A checkpoint may also be a model registry URI, ``models:/<unit>-<stream>@champion`` (or
``models:/<name>/<version>``): :func:`resolve_checkpoint` downloads the registered version
once into ``artifacts/registry/`` and checks its sha256, and the artifacts registered with
it (the FDC scaler) replace the config's, so batch and live scoring of a registry URI use
the files the model was promoted with.  Thresholds are per checkpoint sha256, so the
downloaded copy matches the thresholds calibrated for the promoted file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
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
from engine.tracking import download_version
from streams.base import StreamTask, model_args_differences, trained_model_args

REQUIRED_KEYS = ("stream", "model", "config", "model_meta")
REGISTRY_SCHEME = "models:/"
REGISTRY_CACHE = "artifacts/registry"


@dataclass(frozen=True)
class Resolved:
    """A checkpoint on local disk, and for a registry URI what was registered with it."""

    path: Path
    pinned: dict[str, str] = field(default_factory=dict)  # config key -> repo-relative file
    registry: dict[str, Any] | None = None  # uri, name, version, run_id


def is_registry_uri(path: str | Path) -> bool:
    return str(path).startswith(REGISTRY_SCHEME)


def resolve_checkpoint(path: str | Path) -> Resolved:
    """A local path as is; a ``models:/`` URI downloaded (once) and verified."""
    if not is_registry_uri(path):
        return Resolved(resolve_path(path))
    got = download_version(str(path), resolve_path(REGISTRY_CACHE))
    return Resolved(got.checkpoint, {k: display_path(v) for k, v in got.files.items()},
                    {"uri": str(path), "name": got.name, "version": got.version,
                     "run_id": got.run_id})


@dataclass
class Trained:
    """A model ready for scoring plus everything known about where it came from."""

    model: nn.Module
    cfg: StreamConfig
    model_meta: dict[str, Any]
    model_args: dict[str, Any]  # the keys that define the model, as trained
    ckpt_info: dict[str, Any]  # path (repo-relative), sha256, created, epoch, run_id, ...
    device: torch.device
    pinned: dict[str, str] = field(default_factory=dict)  # registered files by config key

    @property
    def stream(self) -> str:
        return self.cfg.stream

    @property
    def task(self) -> StreamTask:
        return streams.get(self.cfg.stream)


def check_config_matches(trained: Trained, cfg: StreamConfig, config_source: str) -> None:
    """CheckpointError when ``cfg`` (from ``config_source``) disagrees on the model.

    For a model loaded by registry URI it also points ``cfg`` at the files registered with
    it (``trained.pinned``, e.g. ``data.scaler_path``): every scoring caller checks its
    config here before scoring, and a registered model must not score with the scaler of
    whatever was trained locally since."""
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
    for key, value in trained.pinned.items():
        _set_key(cfg, key, value)


def _set_key(cfg: Any, dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        cfg = getattr(cfg, part)
    setattr(cfg, last, value)  # validated on assignment


def _with_pinned(config: dict[str, Any], pinned: dict[str, str]) -> dict[str, Any]:
    """The embedded config with the registered files in place of the trained ones."""
    out = copy.deepcopy(config)
    for dotted, value in pinned.items():
        *parents, last = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def load_trained(
    path: str | Path, expected_stream: str | None = None, device: str | torch.device = "cpu"
) -> Trained:
    """Load a checkpoint (weights_only), rebuild its model in eval mode on ``device``.
    ``path``: repository-relative, or a ``models:/`` registry URI."""
    where = resolve_checkpoint(path)
    resolved = where.path
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
        cfg = streams.config_from_dict(_with_pinned(ckpt["config"], where.pinned), stream=stream,
                                       source=f"{shown} (embedded config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    task = streams.get(stream)
    meta = dict(ckpt["model_meta"])
    model_args = trained_model_args(task, ckpt, lambda: cfg)
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
        "tracking": ckpt.get("tracking"),  # the MLflow run it was trained in (or None)
        "registry": where.registry,
    }
    return Trained(model=model, cfg=cfg, model_meta=meta, model_args=dict(model_args),
                   ckpt_info=info, device=device, pinned=where.pinned)
