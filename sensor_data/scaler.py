"""Per-channel normalisation fitted on training rows only and saved for scoring.

``robust`` uses median / IQR (outliers and faults in the data barely move it), ``zscore``
mean / std.  Real plant tags are often near-constant with rare moves: their IQR is ~0 and
scaling by it gave |z| of 1e4, which wrecked training.  So the scale is floored per
channel: a statistic counts only when it exceeds both ``MIN_REL_SCALE * (|center| + 1)``
(numerically zero) and ``MIN_SPREAD_SHARE`` of the channel's 1-99 % quantile range (~0
next to its real spread; a quantile range because one wild value inflates the std of a
heavy-tailed tag whose IQR is right).  Otherwise the next statistic is taken.  Robust:
IQR, 2 * MAD, 1.349 * std (each an IQR for normal data); zscore: std; then the range,
and for a channel constant to float precision ``EPSILON_REL * (|center| + 1)``.  Channels
that needed a fallback are listed in ``floored``.  Scaled values are bounded at ``clip``
(|z|, ``data.scale_clip``) and the training values beyond it counted per channel in
``clipped``.  ``transform`` is the only place a missing value is filled: after scaling,
NaN/inf become 0.0, i.e. the channel centre, and only for files DQVL kept.  ``excluded``
names the columns training left out (labels, ids, unusable channels), so scoring ignores
them instead of calling them extra.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.io import atomic_write_json
from core.paths import display_path

SCHEMA_VERSION = "1.1"  # 1.1 adds clip_z, floored, clipped_train_values, excluded_columns
METHODS = ("robust", "zscore")
MIN_REL_SCALE = 1e-6
MIN_SPREAD_SHARE = 0.01
EPSILON_REL = 1e-3
IQR_PER_STD = 1.349  # IQR of a normal distribution in stds
IQR_PER_MAD = 2.0  # IQR of a normal distribution in median absolute deviations
TRANSFORM_CELLS = 1 << 20  # values scaled per row block (bounds the NaN/inf mask)


def channel_order(
    expected: Sequence[str],
    actual: Sequence[str],
    source: str,
    ignore: Collection[str] = (),
) -> list[int]:
    """Indices into ``actual`` that give ``expected``'s order; DataError if the sets differ.

    Extra columns named in ``ignore`` (left out on purpose) are not a difference.
    """
    considered = [c for c in actual if c in expected or c not in ignore]
    missing = [c for c in expected if c not in actual]
    extra = [c for c in considered if c not in expected]
    if missing or extra or len(considered) != len(expected):
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


def _candidates(
    data: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Centre, the 1-99 % quantile range (the spread that counts) and the scale statistics
    in fallback order; NaN for an all-NaN channel."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels
        q01, q25, median, q75, q99 = np.nanquantile(data, [0.01, 0.25, 0.5, 0.75, 0.99], axis=0)
        std = np.nanstd(data, axis=0)
        spread = {"range": np.nanmax(data, axis=0) - np.nanmin(data, axis=0)}
        if method == "zscore":
            return np.nanmean(data, axis=0), q99 - q01, {"std": std, **spread}
        mad = np.nanmedian(np.abs(data - median), axis=0)
    stats = {"iqr": q75 - q25, "mad": IQR_PER_MAD * mad, "std": IQR_PER_STD * std, **spread}
    return median, q99 - q01, stats


def _floored(
    center: np.ndarray, wide: np.ndarray, stats: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel the first statistic that is not ~0, and its name ("epsilon" if none)."""
    tiny = MIN_REL_SCALE * (np.abs(center) + 1.0)
    floor = np.fmax(tiny, MIN_SPREAD_SHARE * wide)  # fmax: a NaN range leaves tiny
    scale = EPSILON_REL * (np.abs(center) + 1.0)
    used = np.full(center.shape, "epsilon", dtype=object)
    for name, values in reversed(stats.items()):  # the earliest usable statistic wins
        ok = np.isfinite(values) & (values > floor)
        scale = np.where(ok, values, scale)
        used[ok] = name
    return scale, used


@dataclass
class ChannelScaler:
    method: str
    center: np.ndarray
    scale: np.ndarray
    channels: list[str]
    clip: float | None = None  # |scaled value| bound; None: unbounded (scalers before 1.1)
    floored: dict[str, str] = field(default_factory=dict)  # channel -> statistic used
    clipped: dict[str, int] = field(default_factory=dict)  # channel -> train values clipped
    excluded: dict[str, str] = field(default_factory=dict)  # column -> why training left it out

    @classmethod
    def fit(
        cls,
        arrays: Sequence[np.ndarray],
        method: str,
        channels: Sequence[str],
        clip: float | None = None,
    ) -> ChannelScaler:
        """Fit on the given ``(T_i, C)`` train arrays, ignoring NaN/inf."""
        if method not in METHODS:
            raise ValueError(f"unknown normalisation {method!r}; use one of {METHODS}")
        data = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
        if data.ndim != 2 or data.shape[1] != len(channels):
            raise ValueError(f"expected (T, {len(channels)}) arrays, got {data.shape}")
        data[~np.isfinite(data)] = np.nan
        center, wide, stats = _candidates(data, method)
        center = np.where(np.isfinite(center), center, 0.0)
        scale, used = _floored(center, wide, stats)
        primary = next(iter(stats))
        floored = {c: str(u) for c, u in zip(channels, used, strict=True) if u != primary}
        clipped: dict[str, int] = {}
        if clip is not None:
            with np.errstate(invalid="ignore"):
                beyond = (np.abs(data - center) > clip * scale).sum(axis=0)
            clipped = {c: int(n) for c, n in zip(channels, beyond, strict=True) if n}
        bound = None if clip is None else float(clip)
        return cls(method, center, scale, list(channels), bound, floored, clipped)

    def transform(self, values: np.ndarray, *, in_place: bool = False) -> np.ndarray:
        """Scaled float32 values; NaN/inf become 0.0 (the centre), then |z| is bounded.

        A copy, unless ``in_place`` and ``values`` is a writeable C-contiguous float32
        array: then it is overwritten and returned (scoring has no use for the raw values,
        and a large file would be held twice).  Row blocks keep the masks small.
        """
        if values.ndim != 2 or values.shape[1] != len(self.channels):
            raise ValueError(f"expected (T, {len(self.channels)}) values, got {values.shape}")
        reuse = in_place and values.dtype == np.float32 and values.flags.c_contiguous
        out = values if reuse and values.flags.writeable else values.astype(np.float32)
        center, scale = self.center.astype(np.float32), self.scale.astype(np.float32)
        step = max(1, TRANSFORM_CELLS // max(1, out.shape[1]))
        for start in range(0, out.shape[0], step):
            block = out[start : start + step]
            with np.errstate(over="ignore", invalid="ignore"):
                block -= center
                block /= scale
            block[~np.isfinite(block)] = 0.0
            if self.clip is not None:
                np.clip(block, -self.clip, self.clip, out=block)
        return out

    def check_channels(self, channels: Sequence[str], source: str) -> list[int]:
        """Column order that maps a scoring file's channels onto the training order."""
        return channel_order(self.channels, channels, source, self.excluded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "channel_names": list(self.channels),
            "center": [float(v) for v in self.center],
            "scale": [float(v) for v in self.scale],
            "clip_z": self.clip,
            "floored": dict(self.floored),
            "clipped_train_values": dict(self.clipped),
            "excluded_columns": dict(self.excluded),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "scaler") -> ChannelScaler:
        """Validate and build; any inconsistency is a DataError naming ``source``.

        The 1.1 keys are optional, so a scaler saved before them still loads.
        """
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
        clip = data.get("clip_z")
        if clip is not None and not (isinstance(clip, int | float) and clip > 0):
            raise DataError(f"{source}: clip_z must be null or a number > 0")
        return cls(
            method,
            center,
            scale,
            names,
            None if clip is None else float(clip),
            _names_map(data, "floored", str, source),
            _names_map(data, "clipped_train_values", int, source),
            _names_map(data, "excluded_columns", str, source),
        )

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


def _names_map(data: dict[str, Any], key: str, kind: type, source: str) -> dict[str, Any]:
    """An optional ``{name: value}`` object of the scaler JSON ({} when absent)."""
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, kind) for v in value.values()):
        raise DataError(f"{source}: {key} must be an object of {kind.__name__} values")
    return dict(value)
