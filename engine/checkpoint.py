"""Checkpoint contents and safe (weights_only) loading.

A checkpoint is self-describing: it embeds the effective config, the model metadata needed
to rebuild the model, package versions and every RNG state, so ``--resume`` continues
exactly and scoring needs nothing but the file.
"""

from __future__ import annotations

import platform
import random
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import CheckpointError
from core.paths import display_path

FORMAT = "ssl-anomaly-checkpoint/1"
_VERSIONED = ("torch", "timm", "numpy", "pandas", "PyWavelets", "pydantic")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def capture_rng() -> dict[str, Any]:
    """RNG states as tensors and plain Python values (loadable with weights_only)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def created_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``; any failure is a one-line CheckpointError."""
    shown = display_path(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{shown}: checkpoint not found")
    if Path(path).stat().st_size == 0:
        raise CheckpointError(f"{shown}: checkpoint is empty")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{shown}: not a readable checkpoint (truncated or not a torch file: {first[:160]})"
        ) from None
    except Exception as exc:  # unpickling refused: not a plain-weights file
        raise CheckpointError(
            f"{shown}: refused to load (not a weights-only checkpoint: {type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{shown}: not a checkpoint written by this project")
    return ckpt
