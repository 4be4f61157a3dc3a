"""Vibration DQVL: one keep/drop decision per file, with the measured reasons.

Hard fails make a file useless for training or scoring (missing axis, unknown sampling
rate, too many NaN/inf samples, ragged CSV rows or float32 overflows, a sampling rate we
may not silently change, timestamp gaps, too short for one window, unusable timestamps, a
dead axis, a saturated axis, a dead file).  Warnings describe data that is used but
deserves an engineer's look (some clipping, partly flat signal, unusual RMS level, a rate
the configured resampling will fix, a few ragged rows, overflows or short gaps).  Every
statistic is computed column-wise in one pass.

The sampling rate is measured over the whole span (``timestamps.Timing``); the median-step
rate is reported beside it, because rounded stamps bias only that one.
"""

from __future__ import annotations

import numpy as np

from core.config import VibDqvlConfig
from sensor_data.dqvl_report import DqvlReport
from sensor_data.timestamps import measure_timing, timestamps_seconds
from sensor_data.vibration import AXES, VibTable

STREAM = "swinmae"
# Backwards, duplicated or unparsable timestamp steps tolerated before the file is dropped
# (the same default as the FDC rule; there is no vibration config key for it yet).
MAX_TIMESTAMP_ISSUE_RATIO = 0.01


def read_error_report(file_id: str, message: str) -> DqvlReport:
    """A drop report for a file the reader could not read at all."""
    rep = DqvlReport(file_id, STREAM)
    rep.fail("read_error", message)
    return rep


def _num(value: float | None) -> float | None:
    """JSON-safe, readable number (NaN/inf become null)."""
    if value is None or not np.isfinite(value):
        return None
    return float(f"{float(value):.6g}")


def axis_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-axis non-finite ratio, mean-removed RMS, clip ratio, flat ratio and range.

    RMS is taken after removing each axis' mean (the usual overall vibration level; a DC
    offset such as gravity on one axis would otherwise dominate).  The clip ratio counts
    samples sitting exactly at the axis' min or max value: a saturated sensor leaves
    plateaus there, a healthy signal touches each extreme about once.  The flat ratio is
    the share of consecutive samples that do not change (1.0 for a dead axis).  The range
    is max - min of the finite samples (NaN for an axis without any).
    """
    finite = np.isfinite(values)
    n = values.shape[0]
    n_finite = finite.sum(axis=0)
    safe = np.where(finite, values, 0).astype(np.float32)
    denom = np.maximum(n_finite, 1)
    mean = safe.sum(axis=0, dtype=np.float64) / denom
    centred = np.where(finite, safe - mean.astype(np.float32), 0)
    rms = np.sqrt(np.square(centred).sum(axis=0, dtype=np.float64) / denom)
    vmax = np.where(finite, values, -np.inf).max(axis=0)
    vmin = np.where(finite, values, np.inf).min(axis=0)
    at_rail = finite & ((values == vmax) | (values == vmin))
    clip = np.where(vmax > vmin, at_rail.sum(axis=0) / denom, 0.0)
    pairs = finite[1:] & finite[:-1]
    still = (np.diff(safe, axis=0) == 0) & pairs
    flat = still.sum(axis=0) / np.maximum(pairs.sum(axis=0), 1)
    return {
        "nonfinite": 1.0 - n_finite / max(n, 1),
        "rms": np.where(n_finite > 0, rms, np.nan),
        "clip_ratio": clip,
        "flat_ratio": flat,
        "range": np.where(n_finite > 0, vmax - vmin, np.nan),
        "level": np.where(n_finite > 0, vmax, np.nan),
    }


def dead_file_reason(stats: dict[str, np.ndarray]) -> str | None:
    """Why a file carries no signal at all (every axis constant or empty), None if it does.

    Such a file (a dead logger, an unplugged sensor) is never usable, DQVL on or off.
    """
    if (stats["range"] > 0).any():
        return None
    levels = ", ".join(
        f"{a}={v:.6g}" if np.isfinite(v) else f"{a}=empty"
        for a, v in zip(AXES, stats["level"], strict=True)
    )
    return f"every axis is constant ({levels}): dead logger or disconnected sensor"


def _check_gaps(table: VibTable, rules: VibDqvlConfig, rep: DqvlReport) -> None:
    """Whole-span and median-step rates, and the recorded time that no sample covers."""
    timing = measure_timing(table.timestamps)
    if timing is None or timing.fs is None:
        return
    ratio = timing.gap_s / timing.duration_s if timing.duration_s > 0 else 0.0
    rep.metrics.update(
        {
            "observed_fs_median_step": _num(timing.fs_median_step),
            "gap_s": _num(timing.gap_s),
            "gap_ratio": _num(ratio),
        }
    )
    if timing.gap_s == 0:
        return
    msg = (
        f"{timing.gap_s:.4g} s of the {timing.duration_s:.4g} s recording ({ratio:.2%}) "
        f"have no samples"
    )
    if ratio > rules.max_gap_ratio:
        rep.fail(
            "gaps",
            f"{msg} (max {rules.max_gap_ratio:.2%}); windows across a gap would join "
            "separate stretches of signal",
        )
    else:
        rep.warn("gaps", msg)


def _check_timestamps(table: VibTable, rules: VibDqvlConfig, rep: DqvlReport) -> None:
    if table.timestamps is None:
        return
    _check_gaps(table, rules, rep)
    secs = timestamps_seconds(table.timestamps)
    steps = np.diff(secs)
    bad = (~np.isfinite(steps)) | (steps <= 0)
    ratio = float(bad.mean()) if steps.size else 0.0
    rep.metrics["timestamp_issue_ratio"] = _num(ratio)
    if table.observed_fs is None:
        rep.fail(
            "timestamps", "timestamps do not increase, so the sampling rate cannot be measured"
        )
    elif ratio > MAX_TIMESTAMP_ISSUE_RATIO:
        rep.fail(
            "timestamps",
            f"{ratio:.1%} of timestamp steps are backwards, duplicated or unparsable "
            f"(max {MAX_TIMESTAMP_ISSUE_RATIO:.1%})",
        )
    elif ratio > 0:
        rep.warn("timestamps", f"{ratio:.2%} of timestamp steps are backwards or duplicated")


def _check_fs(
    table: VibTable,
    rules: VibDqvlConfig,
    fs: float | None,
    resample_enabled: bool,
    rep: DqvlReport,
) -> None:
    observed = table.observed_fs
    if fs is None or observed is None:
        if fs is None and observed is None:
            rep.fail("missing_metadata", "no fs configured and no timestamps to measure it")
        return
    rel = abs(observed - fs) / fs
    rep.metrics["fs_rel_diff"] = _num(rel)
    if rel <= rules.fs_tolerance:
        return
    msg = (
        f"observed fs {observed:.6g} Hz differs from configured {fs:.6g} Hz by {rel:.1%} "
        f"(tolerance {rules.fs_tolerance:.1%})"
    )
    if resample_enabled:
        rep.warn("fs_mismatch", msg + "; it will be resampled to the configured fs")
    else:
        rep.fail("fs_mismatch", msg + " and data.resample.enabled is false")


def _check_axes(
    stats: dict[str, np.ndarray], present: list[int], rules: VibDqvlConfig, rep: DqvlReport
) -> None:
    for i in present:
        axis = AXES[i]
        clip, flat, rms = stats["clip_ratio"][i], stats["flat_ratio"][i], stats["rms"][i]
        clipped = f"axis {axis}: {clip:.2%} of samples sit at the min/max value"
        if clip > rules.max_clip_ratio:
            rep.fail(
                "clipping", f"{clipped} (max {rules.max_clip_ratio:.2%}): the sensor saturated"
            )
        elif clip > rules.warn_clip_ratio:
            rep.warn("clipping", f"{clipped} (saturation?)")
        if flat > rules.max_flat_ratio:
            rep.fail(
                "flat_line", f"axis {axis}: {flat:.1%} of samples do not change (dead sensor?)"
            )
        elif flat > rules.warn_flat_ratio:
            rep.warn("flat_line", f"axis {axis}: {flat:.1%} of samples do not change")
        low = rules.rms_min is not None and rms < rules.rms_min
        high = rules.rms_max is not None and rms > rules.rms_max
        if np.isfinite(rms) and (low or high):
            rep.warn(
                "rms_range",
                f"axis {axis}: RMS {rms:.4g} outside [{rules.rms_min}, {rules.rms_max}]",
            )


def _fault(rep: DqvlReport, rule: str, share: float, limit: float, message: str) -> None:
    """A parse fault: its samples are missing; a hard fail above its limit, else a warning."""
    if share > limit:
        rep.fail(rule, f"{message}; {share:.2%} of samples (max {limit:.2%})")
    else:
        rep.warn(rule, f"{message}; treated as missing samples")


def _check_parse_faults(
    table: VibTable, n_present: int, rules: VibDqvlConfig, rep: DqvlReport
) -> float:
    """Ragged CSV rows and float32 overflows (the reader set them to NaN), each by name.

    Returns the share of present samples they account for, so ``nan_ratio`` counts only
    the NaN/inf written in the file.
    """
    n = max(int(table.values.shape[0]), 1)
    ragged = table.ragged
    rep.metrics["ragged_rows"] = ragged.count if ragged else 0
    rep.metrics["overflow_values"] = {a: o.count for a, o in table.overflow.items()}
    share = 0.0
    if ragged is not None:
        share += ragged.count / n
        _fault(
            rep,
            "ragged_rows",
            ragged.count / n,
            rules.max_ragged_ratio,
            f"{ragged.count} rows do not match the header, first data row "
            f"{ragged.first_row + 1} ({ragged.detail})",
        )
    for axis, issue in table.overflow.items():
        share += issue.count / n / max(n_present, 1)
        _fault(
            rep,
            "overflow",
            issue.count / n,
            rules.max_nan_ratio,
            f"axis {axis}: {issue.count} values overflow float32 (beyond "
            f"±{np.finfo(np.float32).max:.3g}), first in data row {issue.first_row + 1}",
        )
    return share


def needs_resample(
    observed_fs: float | None, fs: float | None, tolerance: float, enabled: bool
) -> bool:
    """True when prep will resample: enabled, both rates known, beyond the tolerance."""
    if not enabled or fs is None or observed_fs is None:
        return False
    return abs(observed_fs - fs) / fs > tolerance


def check_vibration(
    table: VibTable,
    rules: VibDqvlConfig,
    fs: float | None,
    window_samples: int,
    resample_enabled: bool,
) -> DqvlReport:
    """Judge one vibration table; ``window_samples`` is one window at the configured fs."""
    rep = DqvlReport(table.file_id, STREAM)
    n = int(table.values.shape[0])
    for axis in table.missing_axes:
        rep.fail("missing_axis", f"no column for axis '{axis}' (expected '{axis}' or data.axes)")
    _check_timestamps(table, rules, rep)
    _check_fs(table, rules, fs, resample_enabled, rep)

    present = [i for i, a in enumerate(AXES) if a not in table.missing_axes]
    stats = axis_stats(table.values)
    faults = _check_parse_faults(table, len(present), rules, rep)
    nonfinite = float(stats["nonfinite"][present].mean()) if present else 1.0
    nan_ratio = max(nonfinite - faults, 0.0)  # NaN/inf as written, not the reader's NaNs
    if nan_ratio > rules.max_nan_ratio:
        rep.fail(
            "nan_ratio",
            f"{nan_ratio:.2%} of samples are NaN or infinite (max {rules.max_nan_ratio:.2%})",
        )
    dead = dead_file_reason(stats)
    if dead is not None:
        rep.fail("dead_file", dead)
    else:
        _check_axes(stats, present, rules, rep)

    n_after = n
    if needs_resample(table.observed_fs, fs, rules.fs_tolerance, resample_enabled):
        n_after = int(round(n * fs / table.observed_fs))
    if n_after < window_samples:
        rep.fail("too_short", f"{n_after} samples, fewer than one window ({window_samples})")

    real_fs = table.observed_fs or fs
    rep.metrics.update(
        {
            "n_samples": n,
            "n_samples_after_resample": n_after,
            "duration_s": _num(n / real_fs) if real_fs else None,
            "fs_config": _num(fs),
            "observed_fs": _num(table.observed_fs),
            "nan_ratio": _num(nan_ratio),
        }
    )
    for key in ("rms", "clip_ratio", "flat_ratio"):
        rep.metrics[key] = {AXES[i]: _num(stats[key][i]) for i in present}
    return rep
