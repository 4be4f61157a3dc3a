"""DQVL for FDC tables: one keep/drop decision per file with the reasons and metrics.

Hard fails are problems that would silently corrupt training (time order, gaps, no
usable channel, too few rows); warnings are worth an engineer's look but do not drop the
file.  All checks are vectorised over the whole ``(T, C)`` array.
"""

from __future__ import annotations

import warnings

import numpy as np

from core.config import FdcDqvlConfig
from sensor_data.dqvl_report import DqvlReport
from sensor_data.fdc import FdcTable

STREAM = "patchtst"
MAD_TO_STD = 1.4826  # robust std of a normal distribution from its median absolute deviation


def read_error_report(file_id: str, message: str) -> DqvlReport:
    """A drop for a file the reader could not load at all."""
    report = DqvlReport(file_id, STREAM)
    report.fail("unreadable", message)
    return report


def _pct(ratio: float) -> str:
    return f"{100 * ratio:.2f}%"


def _nan_median_cols(a: np.ndarray, complete: bool) -> np.ndarray:
    """Per-column median ignoring NaN (NaN for a column with no finite value).

    ``complete`` (no NaN at all) takes numpy's much faster plain median.
    """
    if complete:
        return np.median(a, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nanmedian(a, axis=0)


def _column_mean_std(values: np.ndarray, complete: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per channel over finite values (NaN where a channel has none)."""
    if complete:
        return values.mean(axis=0, dtype=np.float64), values.std(axis=0, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nanmean(values, axis=0, dtype=np.float64), np.nanstd(
            values, axis=0, dtype=np.float64
        )


def _step_jump_ratio(values: np.ndarray, sigma: float) -> float:
    """Share of finite first differences larger than ``sigma`` robust stds of that channel.

    ``values`` holds NaN (never inf) for missing values.
    The robust std is 1.4826 * MAD of the channel's differences; where the MAD is zero
    (a quantised channel that is mostly flat) the plain std of the differences is used,
    so a rarely moving setpoint is not flagged on every move.
    """
    diffs = np.diff(values, axis=0)  # NaN where either neighbour is missing
    n_valid = int(np.isfinite(diffs).sum())
    if n_valid == 0:
        return 0.0
    complete = n_valid == diffs.size
    centre = _nan_median_cols(diffs, complete)
    scale = MAD_TO_STD * _nan_median_cols(np.abs(diffs - centre), complete)
    flat = ~(scale > 0)
    if flat.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = np.where(flat, np.nanstd(diffs, axis=0), scale)
    with np.errstate(invalid="ignore"):
        jumps = np.abs(diffs) > sigma * scale  # False for NaN and for constant channels
        jumps &= scale > 0
    return int(jumps.sum()) / n_valid


def _check_timestamps(
    report: DqvlReport, stamps: np.ndarray, n_rows: int, rules: FdcDqvlConfig
) -> None:
    nat = np.isnat(stamps)
    ns = stamps[~nat].view(np.int64)
    steps = np.diff(ns)
    counts = {
        "unparsable": int(nat.sum()),
        "non_monotonic": int((steps < 0).sum()),
        "duplicated": int(ns.size - np.unique(ns).size),
    }
    what = {
        "unparsable": "timestamps do not parse as dates/times",
        "non_monotonic": "timestamps go backwards",
        "duplicated": "timestamps are duplicates",
    }
    for key, n in counts.items():
        report.metrics[f"timestamp_{key}"] = n
        ratio = n / n_rows
        if ratio > rules.max_timestamp_issue_ratio:
            report.fail(
                f"timestamp_{key}",
                f"{n} of {n_rows} {what[key]} ({_pct(ratio)}; "
                f"limit {_pct(rules.max_timestamp_issue_ratio)})",
            )
    forward = steps[steps > 0]
    report.metrics["median_period_s"] = float(np.median(forward)) / 1e9 if forward.size else None


def _check_values(report: DqvlReport, table: FdcTable, rules: FdcDqvlConfig) -> None:
    values = table.values
    finite = np.isfinite(values)
    n_values = values.size
    n_missing = int(n_values - finite.sum())
    inf_count = int(np.isinf(values).sum())
    missing = n_missing / n_values
    report.metrics.update(missing_ratio=missing, inf_count=inf_count)
    detail = f"{n_missing} of {n_values} values are NaN/inf ({inf_count} inf)"
    if missing > rules.max_missing_ratio:
        report.fail(
            "missing_ratio", f"{detail}: {_pct(missing)} > limit {_pct(rules.max_missing_ratio)}"
        )
    elif missing > rules.warn_missing_ratio:
        report.warn(
            "missing_ratio", f"{detail}: {_pct(missing)} > {_pct(rules.warn_missing_ratio)}"
        )

    clean = values if n_missing == 0 else np.where(finite, values, np.nan)
    mean, std = _column_mean_std(clean, n_missing == 0)
    with np.errstate(invalid="ignore"):
        stuck_mask = std <= rules.stuck_rel_std * (np.abs(mean) + 1.0)  # False if all-NaN
    stuck = [c for c, s in zip(table.channels, stuck_mask, strict=True) if s]
    report.metrics["stuck_channels"] = stuck
    if stuck:
        report.warn(
            "stuck_channels",
            f"{len(stuck)} stuck/near-constant channel(s): {', '.join(stuck)}",
        )

    jump_ratio = _step_jump_ratio(clean, rules.step_jump_sigma)
    report.metrics["step_jump_ratio"] = jump_ratio
    if jump_ratio > rules.warn_step_jump_ratio:
        report.warn(
            "step_jumps",
            f"{_pct(jump_ratio)} of steps exceed {rules.step_jump_sigma:g} robust std "
            f"(> {_pct(rules.warn_step_jump_ratio)})",
        )


def check_fdc(table: FdcTable, rules: FdcDqvlConfig, window: int) -> DqvlReport:
    """Run every FDC rule on one table; ``window`` is the model's sequence length."""
    report = DqvlReport(table.file_id, STREAM)
    n_rows, n_channels = table.values.shape
    report.metrics.update(
        n_rows=int(n_rows),
        n_channels=int(n_channels),
        timestamp_col=table.timestamp_col,
        non_numeric_columns=list(table.non_numeric_columns),
    )
    if table.timestamps is None:
        if rules.require_timestamp:
            report.fail(
                "timestamp_missing",
                "no timestamp column (name it timestamp/time or set data.timestamp_col)",
            )
    else:
        _check_timestamps(report, table.timestamps, n_rows, rules)

    if n_channels == 0:
        report.fail("no_numeric_channel", "no numeric channel column found")
    else:
        _check_values(report, table, rules)

    if n_rows < window:
        report.fail("too_short", f"{n_rows} rows < one window of {window} rows")
    if table.non_numeric_columns:
        report.warn(
            "non_numeric_columns",
            f"excluded non-numeric column(s): {', '.join(table.non_numeric_columns)}",
        )
    return report
