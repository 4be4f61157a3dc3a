"""Per-channel normalisation fitted on training rows only and saved for scoring.

``robust`` uses median / IQR (outliers and faults in the data barely move it), ``zscore``
mean / std.  A scale at or below ``MIN_REL_SCALE * (|center| + 1)`` would blow values up
(a constant or almost constant channel), so the robust scaler falls back to the std and,
when that is tiny too, the scale becomes 1: such a channel maps to about 0 instead of
to huge numbers.  ``transform`` is the only place a missing value is filled: after
scaling, NaN/inf become 0.0, i.e. the channel centre, and only for files DQVL kept.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.io import atomic_write_json
from core.paths import display_path

SCHEMA_VERSION = "1.0"
METHODS = ("robust", "zscore")
MIN_REL_SCALE = 1e-6


def channel_order(expected: Sequence[str], actual: Sequence[str], source: str) -> list[int]:
    """Indices into ``actual`` that give ``expected``'s order; DataError if the sets differ."""
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    if missing or extra or len(actual) != len(expected):
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"extra {', '.join(extra)}")
        if not parts:
            parts.append("duplicated channel names")
        raise DataError(
            f"{source}: channel set differs from the {len(expected)} expected channels "
            f"({'; '.join(parts)})"
        )
    position = {name: i for i, name in enumerate(actual)}
    return [position[name] for name in expected]


def _floor(center: np.ndarray) -> np.ndarray:
    """Smallest usable scale: below it a channel counts as constant."""
    return MIN_REL_SCALE * (np.abs(center) + 1.0)


@dataclass
class ChannelScaler:
    method: str
    center: np.ndarray
    scale: np.ndarray
    channels: list[str]

    @classmethod
    def fit(
        cls, arrays: Sequence[np.ndarray], method: str, channels: Sequence[str]
    ) -> ChannelScaler:
        """Fit on the given ``(T_i, C)`` train arrays, ignoring NaN/inf."""
        if method not in METHODS:
            raise ValueError(f"unknown normalisation {method!r}; use one of {METHODS}")
        data = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
        if data.ndim != 2 or data.shape[1] != len(channels):
            raise ValueError(f"expected (T, {len(channels)}) arrays, got {data.shape}")
        data[~np.isfinite(data)] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels
            std = np.nanstd(data, axis=0)
            if method == "robust":
                q25, center, q75 = np.nanquantile(data, [0.25, 0.5, 0.75], axis=0)
                scale = q75 - q25
                scale = np.where(scale > _floor(center), scale, std)
            else:
                center, scale = np.nanmean(data, axis=0), std
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > _floor(center)), scale, 1.0)
        return cls(method, center, scale, list(channels))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float32 copy; NaN/inf become 0.0 (the centre)."""
        if values.ndim != 2 or values.shape[1] != len(self.channels):
            raise ValueError(f"expected (T, {len(self.channels)}) values, got {values.shape}")
        out = values.astype(np.float32, copy=True)
        with np.errstate(over="ignore", invalid="ignore"):
            out -= self.center.astype(np.float32)
            out /= self.scale.astype(np.float32)
        out[~np.isfinite(out)] = 0.0
        return out

    def check_channels(self, channels: Sequence[str], source: str) -> list[int]:
        """Column order that maps a scoring file's channels onto the training order."""
        return channel_order(self.channels, channels, source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "channel_names": list(self.channels),
            "center": [float(v) for v in self.center],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "scaler") -> ChannelScaler:
        """Validate and build; any inconsistency is a DataError naming ``source``."""
        if not isinstance(data, dict):
            raise DataError(f"{source}: scaler JSON must be an object")
        missing = [k for k in ("method", "channel_names", "center", "scale") if k not in data]
        if missing:
            raise DataError(f"{source}: scaler JSON lacks {', '.join(missing)}")
        method, names = data["method"], data["channel_names"]
        if method not in METHODS:
            raise DataError(f"{source}: unknown scaler method {method!r}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{source}: channel_names must be a list of strings")
        try:
            center = np.asarray(data["center"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{source}: center/scale must be lists of numbers") from None
        if center.shape != (len(names),) or scale.shape != (len(names),):
            raise DataError(
                f"{source}: center/scale lengths do not match {len(names)} channel names"
            )
        if not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise DataError(f"{source}: center must be finite and scale finite and > 0")
        return cls(method, center, scale, names)

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> ChannelScaler:
        shown = display_path(path)
        if not Path(path).is_file():
            raise DataError(f"{shown}: scaler file not found (train the model first)")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DataError(f"{shown}: scaler file is not valid JSON") from None
        return cls.from_dict(data, shown)
