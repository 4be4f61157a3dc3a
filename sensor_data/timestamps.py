"""The one timestamp column finder and parser, shared by the FDC and vibration readers.

Both readers keep stamps as naive UTC ``datetime64[ns]`` with NaT where a value does not
parse, so DQVL can count bad stamps and windows can carry their start/end time without
anyone re-reading a file.  Numeric stamps are seconds (epoch or relative).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

TIMESTAMP_NAMES: tuple[str, ...] = ("timestamp", "time")  # searched in this order
NAT = np.datetime64("NaT", "ns")
# Limits of datetime64[ns]; pandas may return coarser units beyond them, which would wrap.
_NS_RANGE = np.array(["1677-09-22", "2262-04-11"], dtype="datetime64[ns]")


def _key(name: str) -> str:
    return name.strip().lower()


def find_timestamp_col(columns: Sequence[str], configured: str | None = None) -> str | None:
    """The timestamp column: the configured one, else the first named timestamp, then time.

    Names match exactly first, then ignoring case and surrounding spaces; None if absent
    (each reader decides whether that is an error).
    """
    wanted = [configured] if configured is not None else list(TIMESTAMP_NAMES)
    for name in wanted:
        if name in columns:
            return name
        match = next((c for c in columns if _key(c) == _key(name)), None)
        if match is not None:
            return match
    return None


def _nat(n: int) -> np.ndarray:
    return np.full(n, NAT)


def _as_ns(stamps: np.ndarray) -> np.ndarray:
    """Any datetime64 array as datetime64[ns]; NaT outside the ns range instead of wrapping."""
    lo, hi = _NS_RANGE.astype(stamps.dtype)
    inside = (stamps >= lo) & (stamps <= hi)
    return np.where(inside, stamps, np.datetime64("NaT")).astype("datetime64[ns]")


def _from_seconds(seconds: np.ndarray) -> np.ndarray:
    parsed = pd.to_datetime(seconds, unit="s", errors="coerce")
    return _as_ns(parsed.to_numpy())


def _from_dates(column: pd.Series) -> np.ndarray:
    """ISO 8601 first (fast, vectorised); pandas' format inference only if it parses more."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": NaT is fine
        parsed = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
        if parsed.notna().sum() < column.notna().sum():
            inferred = pd.to_datetime(column, errors="coerce", utc=True)
            if inferred.notna().sum() > parsed.notna().sum():
                parsed = inferred
    return _as_ns(parsed.dt.tz_localize(None).to_numpy())


def parse_timestamps(column: pd.Series) -> np.ndarray:
    """Stamps as naive UTC datetime64[ns]; NaT where a value does not parse.

    Numbers, or text that is all numbers, are seconds, which keeps the observed sampling
    period meaningful; time-zone aware stamps are converted to UTC.  Never raises: judging
    bad stamps is DQVL's job.
    """
    if pd.api.types.is_bool_dtype(column):
        return _nat(len(column))
    try:
        if pd.api.types.is_numeric_dtype(column):
            return _from_seconds(column.to_numpy(dtype=np.float64, na_value=np.nan))
        if not pd.api.types.is_datetime64_any_dtype(column):
            numbers = pd.to_numeric(column, errors="coerce")
            if numbers.notna().sum() == column.notna().sum():
                return _from_seconds(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        return _from_dates(column)
    except (ValueError, OverflowError, TypeError):  # e.g. objects pandas cannot convert
        return _nat(len(column))


def timestamps_seconds(stamps: np.ndarray) -> np.ndarray:
    """Float64 seconds since the first valid stamp (NaN for NaT), for rate measurement.

    Float stamps (tables built in code) are taken as seconds already.
    """
    if not np.issubdtype(stamps.dtype, np.datetime64):
        return stamps.astype(np.float64)
    ns = stamps.astype("datetime64[ns]")
    valid = ~np.isnat(ns)
    secs = np.full(ns.shape, np.nan)
    if valid.any():
        secs[valid] = (ns[valid] - ns[valid][0]).astype(np.int64) / 1e9
    return secs


def sample_times(first: np.datetime64, samples: np.ndarray, fs: float) -> np.ndarray:
    """Time of each sample index at rate ``fs``, counted from ``first`` (NaT stays NaT).

    Vibration windows are cut after resampling to the configured fs, so their times
    follow from the first stamp and the sample offset, not from the file's own stamps.
    """
    offsets = np.rint(np.asarray(samples, dtype=np.float64) * (1e9 / fs)).astype(np.int64)
    return np.datetime64(first, "ns") + offsets.astype("timedelta64[ns]")


GAP_FACTOR = 1.5


@dataclass(frozen=True)
class Timing:
    """Sampling measured from timestamps.

    ``fs`` is the whole-span rate: the regular steps (positive, at most ``GAP_FACTOR``
    median steps) over the time they cover, i.e. ``(n - 1) / duration`` for a file without
    gaps.  Stamps rounded to a coarse unit (64 Hz stamped in whole ms: steps of 15 and 16
    ms) keep it exact, while ``1 / median step`` reads 62.5 Hz; that one is reported too.
    ``gap_s`` is the recorded time no sample covers at ``fs`` (under half a step is
    rounding, reported as 0).
    """

    fs: float | None
    fs_median_step: float | None
    gap_s: float
    duration_s: float


def measure_timing(timestamps: np.ndarray | None) -> Timing | None:
    """Rates and gaps from the stamps; None without two valid stamps."""
    if timestamps is None or len(timestamps) < 2:
        return None
    secs = timestamps_seconds(timestamps)
    valid = np.flatnonzero(np.isfinite(secs))
    if valid.size < 2:
        return None
    duration = float(secs[valid[-1]] - secs[valid[0]])
    steps = np.diff(secs)
    steps = steps[np.isfinite(steps)]
    median = float(np.median(steps)) if steps.size else 0.0
    if median <= 0:  # no two neighbouring stamps, or they mostly do not increase
        return Timing(None, None, 0.0, duration)
    regular = steps[(steps > 0) & (steps <= GAP_FACTOR * median)]
    nominal = float(regular.mean())
    missed = duration - (valid[-1] - valid[0]) * nominal
    gap = missed if missed >= 0.5 * nominal else 0.0
    return Timing(1.0 / nominal, 1.0 / median, gap, duration)


def measure_fs(timestamps: np.ndarray | None) -> float | None:
    """Observed sampling rate over the whole span (:class:`Timing`); None if not measurable."""
    timing = measure_timing(timestamps)
    return None if timing is None else timing.fs


def median_period_s(stamps: np.ndarray | None) -> float | None:
    """Median forward step in seconds between parsed stamps (the FDC sample period); None
    without two increasing stamps."""
    if stamps is None:
        return None
    steps = np.diff(stamps[~np.isnat(stamps)].view(np.int64))
    forward = steps[steps > 0]
    return float(np.median(forward)) / 1e9 if forward.size else None
