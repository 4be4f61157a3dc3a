"""DQVL for FDC tables: one keep/drop decision per file with the reasons and metrics.

Hard fails are problems that would silently corrupt training (time order, gaps, no
usable channel, every channel constant, too many ragged rows or unusable channels, too
few rows); warnings are worth an engineer's look but do not drop the file.  All checks
are vectorised, over blocks of channels of the ``(T, C)`` array (every statistic is per
channel), so their temporaries stay small next to a large file.

One channel is judged on its own too: more NaN/inf than ``max_channel_missing_ratio``
makes it unusable (``bad_channels``).  Training leaves such a channel out of every file;
scoring cannot (the model's channels are fixed), so there it is a warning naming the
channel and its missing values read as the channel centre.  Either way a file with more
unusable channels than ``max_bad_channel_fraction`` is dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from core.config import FdcDqvlConfig
from sensor_data.dqvl_report import DqvlReport
from sensor_data.fdc import FdcTable, time_column_hint
from sensor_data.files import CsvRows
from sensor_data.timestamps import measure_timing, median_period_s

STREAM = "patchtst"
MAD_TO_STD = 1.4826  # robust std of a normal distribution from its median absolute deviation
SHOWN_LINES = 5  # ragged CSV lines named in a report
# Values per channel block of the value checks: bounds each temporary (a mask, the first
# differences, their deviations, a median's partitioned copy) to about 32 MB.
BLOCK_CELLS = 1 << 23


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


def _column_blocks(shape: tuple[int, int]) -> Iterator[slice]:
    """Slices of about ``BLOCK_CELLS`` values' worth of channels, a multiple of 8 each.

    Why: over the whole array the checks' temporaries came to about four times the
    file's values; per block of channels they are small and the statistics are the same.
    Multiples of 8 because then numpy's float64 column sums (mean, std) came out bitwise
    equal to the whole array's in our checks; other widths differ at ~1e-15.
    """
    n_rows, n_channels = shape
    width = min(n_channels, max(8, BLOCK_CELLS // max(n_rows, 1) // 8 * 8))
    for start in range(0, n_channels, width):
        yield slice(start, start + width)


def _step_jumps(values: np.ndarray, sigma: float) -> tuple[int, int]:
    """(first differences larger than ``sigma`` robust stds of their channel, finite ones).

    ``values`` holds NaN (never inf) for missing values.
    The robust std is 1.4826 * MAD of the channel's differences; where the MAD is zero
    (a quantised channel that is mostly flat) the plain std of the differences is used,
    so a rarely moving setpoint is not flagged on every move.
    """
    diffs = np.diff(values, axis=0)  # NaN where either neighbour is missing
    n_valid = int(np.isfinite(diffs).sum())
    if n_valid == 0:
        return 0, 0
    complete = n_valid == diffs.size
    centre = _nan_median_cols(diffs, complete)
    deviation = diffs - centre
    np.abs(deviation, out=deviation)
    scale = MAD_TO_STD * _nan_median_cols(deviation, complete)
    del deviation
    flat = ~(scale > 0)
    if flat.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = np.where(flat, np.nanstd(diffs, axis=0), scale)
    with np.errstate(invalid="ignore"):
        jumps = np.abs(diffs) > sigma * scale  # False for NaN and for constant channels
        jumps &= scale > 0
    return int(jumps.sum()), n_valid


def _missing_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN/inf values and inf values per channel."""
    missing = np.empty(values.shape[1], dtype=np.int64)
    infs = np.empty(values.shape[1], dtype=np.int64)
    for cols in _column_blocks(values.shape):
        block = values[:, cols]
        missing[cols] = block.shape[0] - np.isfinite(block).sum(axis=0)
        infs[cols] = np.isinf(block).sum(axis=0)
    return missing, infs


def _moments_and_jumps(
    values: np.ndarray, complete: bool, sigma: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and std per channel over finite values, and the step-jump ratio of the file.

    ``complete``: no NaN/inf in the file (the fast statistics apply to every channel).
    """
    mean, std = np.empty(values.shape[1]), np.empty(values.shape[1])
    jumps = steps = 0
    for cols in _column_blocks(values.shape):
        block = values[:, cols]
        clean = block if complete else np.where(np.isfinite(block), block, np.nan)
        mean[cols], std[cols] = _column_mean_std(clean, complete)
        block_jumps, block_steps = _step_jumps(clean, sigma)
        jumps, steps = jumps + block_jumps, steps + block_steps
    return mean, std, (jumps / steps if steps else 0.0)


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
    report.metrics["median_period_s"] = median_period_s(stamps)


def _check_rows(report: DqvlReport, rows: CsvRows, rules: FdcDqvlConfig) -> None:
    """CSV rows with another field count: read without shifting, but their values are
    suspect (missing fields are NaN, extra ones are ignored)."""
    lines = [int(i) + 2 for i in rows.ragged[:SHOWN_LINES]]  # file lines, header = line 1
    report.metrics.update(ragged_rows=int(rows.ragged.size), ragged_lines=lines)
    if not rows.ragged.size:
        return
    ratio = rows.ragged.size / max(rows.n_rows, 1)
    detail = (
        f"{rows.ragged.size} of {rows.n_rows} rows do not have the header's {rows.n_fields} "
        f"fields (first at line {', '.join(map(str, lines))}); missing fields read as NaN, "
        f"extra ones are ignored"
    )
    if ratio > rules.max_ragged_ratio:
        cap = _pct(rules.max_ragged_ratio)
        report.fail("ragged_rows", f"{detail} ({_pct(ratio)} > limit {cap})")
    else:
        report.warn("ragged_rows", detail)


def _check_channels(
    report: DqvlReport,
    channels: Sequence[str],
    missing: np.ndarray,
    infs: np.ndarray,
    rules: FdcDqvlConfig,
    n_rows: int,
) -> None:
    """Per channel NaN/inf share: a file-wide ratio hides one broken tag among 100."""
    limit = rules.max_channel_missing_ratio
    ratios = missing / max(n_rows, 1)
    bad = {
        c: f"{_pct(r)} NaN/inf ({int(i)} inf)"
        for c, r, i in zip(channels, ratios, infs, strict=True)
        if r > limit
    }
    report.metrics["bad_channels"] = bad
    if not bad:
        return
    listed = "; ".join(f"{c}: {why}" for c, why in bad.items())
    detail = f"{len(bad)} of {len(channels)} channel(s) over {_pct(limit)} NaN/inf: {listed}"
    share = len(bad) / len(channels)
    if share > rules.max_bad_channel_fraction:
        cap = _pct(rules.max_bad_channel_fraction)
        report.fail("bad_channels", f"{detail} ({_pct(share)} of the channels > limit {cap})")
    else:
        report.warn(
            "bad_channels",
            f"{detail} (training leaves them out; scoring reads their missing values as "
            f"the channel centre)",
        )


def _dead_message(n_constant: int, n_channels: int) -> str:
    if n_constant == n_channels:
        return f"all {n_channels} channels constant"
    return f"no channel varies: {n_constant} constant, {n_channels - n_constant} without values"


def _check_values(report: DqvlReport, table: FdcTable, rules: FdcDqvlConfig) -> None:
    values = table.values
    n_values = values.size
    missing_per, inf_per = _missing_counts(values)
    n_missing, inf_count = int(missing_per.sum()), int(inf_per.sum())
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
    _check_channels(report, table.channels, missing_per, inf_per, rules, table.n_rows)

    mean, std, jump_ratio = _moments_and_jumps(values, n_missing == 0, rules.step_jump_sigma)
    with np.errstate(invalid="ignore"):
        stuck_mask = std <= rules.stuck_rel_std * (np.abs(mean) + 1.0)  # False if all-NaN
    stuck = [c for c, s in zip(table.channels, stuck_mask, strict=True) if s]
    report.metrics["stuck_channels"] = stuck
    if stuck:
        report.warn(
            "stuck_channels",
            f"{len(stuck)} stuck/near-constant channel(s): {', '.join(stuck)}",
        )
    if stuck and len(stuck) == int((~np.isnan(std)).sum()):
        report.fail("dead_file", _dead_message(len(stuck), len(table.channels)))

    report.metrics["step_jump_ratio"] = jump_ratio
    if jump_ratio > rules.warn_step_jump_ratio:
        report.warn(
            "step_jumps",
            f"{_pct(jump_ratio)} of steps exceed {rules.step_jump_sigma:g} robust std "
            f"(> {_pct(rules.warn_step_jump_ratio)})",
        )


def _check_conversions(report: DqvlReport, table: FdcTable) -> None:
    """Values the reader could not keep: beyond float32 (inf) and status text (NaN)."""
    report.metrics["overflow_values"] = dict(table.overflow)
    report.metrics["status_strings"] = dict(table.status_strings)
    if table.overflow:
        listed = ", ".join(f"{c} ({n})" for c, n in table.overflow.items())
        report.warn(
            "float32_overflow",
            f"values beyond float32 (|x| > 3.4e38) read as inf in {len(table.overflow)} "
            f"channel(s): {listed}",
        )
    if table.status_strings:
        listed = "; ".join(
            f"{c}: {s['count']} ({', '.join(f'{t!r} x{n}' for t, n in s['top'].items())})"
            for c, s in table.status_strings.items()
        )
        report.warn(
            "status_strings",
            f"status text read as NaN in {len(table.status_strings)} channel(s): {listed}",
        )


def _missing_timestamp(table: FdcTable) -> str:
    message = "no timestamp column (name it timestamp/time or set data.timestamp_col)"
    return f"{message}; {time_column_hint(table.time_like)}" if table.time_like else message


def table_metrics(table: FdcTable) -> dict[str, Any]:
    """What every FDC report carries, checked or skipped: size and the column decisions."""
    return {
        "n_rows": table.n_rows,
        "n_channels": len(table.channels),
        "timestamp_col": table.timestamp_col,
        "non_numeric_columns": list(table.non_numeric_columns),
        "excluded_columns": dict(table.excluded),
    }


def _check_rate(report: DqvlReport, stamps: np.ndarray, fs: float | None,
                rules: FdcDqvlConfig) -> None:
    """The sampling rate over the whole span (and by median step), against ``data.fs``.

    FDC windows count rows, not seconds, so a rate off from the configured one is a
    warning (the windows span another time than the user thinks), not a drop.
    """
    timing = measure_timing(stamps)
    if timing is None or timing.fs is None:
        return
    report.metrics["observed_fs"] = round(timing.fs, 6)
    report.metrics["observed_fs_median_step"] = round(timing.fs_median_step, 6)
    if fs is not None and abs(timing.fs - fs) / fs > rules.fs_tolerance:
        report.warn("fs_mismatch", f"observed {timing.fs:.4g} Hz over the whole span vs "
                    f"data.fs {fs:g} Hz (tolerance {rules.fs_tolerance:.1%})")


def check_fdc(table: FdcTable, rules: FdcDqvlConfig, window: int,
              fs: float | None = None) -> DqvlReport:
    """Run every FDC rule on one table; ``window`` is the model's sequence length and
    ``fs`` the configured ``data.fs`` (None: not checked)."""
    report = DqvlReport(table.file_id, STREAM)
    n_rows, n_channels = table.values.shape
    report.metrics.update(table_metrics(table))
    if table.timestamps is None:
        if rules.require_timestamp:
            report.fail("timestamp_missing", _missing_timestamp(table))
    else:
        _check_timestamps(report, table.timestamps, n_rows, rules)
        _check_rate(report, table.timestamps, fs, rules)
    if table.csv_rows is not None:
        _check_rows(report, table.csv_rows, rules)

    if n_channels == 0:
        report.fail("no_numeric_channel", "no numeric channel column found")
    else:
        _check_values(report, table, rules)
    _check_conversions(report, table)

    if n_rows < window:
        report.fail("too_short", f"{n_rows} rows < one window of {window} rows")
    if table.non_numeric_columns:
        report.warn(
            "non_numeric_columns",
            f"excluded non-numeric column(s): {', '.join(table.non_numeric_columns)}",
        )
    return report


def dead_channels(
    arrays: Sequence[np.ndarray], channels: Sequence[str], rules: FdcDqvlConfig
) -> list[str]:
    """Channels constant over all ``arrays`` (the train rows of every kept file).

    Why: such a channel teaches the model nothing, and any move at scoring divides by an
    epsilon scale; one that is constant in some files only is fine (an idle valve).
    """
    lo = np.full(len(channels), np.inf)
    hi = np.full(len(channels), -np.inf)
    for a in arrays:
        finite = np.isfinite(a)
        lo = np.minimum(lo, np.min(a, axis=0, where=finite, initial=np.inf))
        hi = np.maximum(hi, np.max(a, axis=0, where=finite, initial=-np.inf))
    with np.errstate(invalid="ignore"):  # inf - inf: a channel without values is not "dead"
        flat = (hi - lo) <= rules.stuck_rel_std * (np.abs(lo) + 1.0)
    return [c for c, f in zip(channels, flat, strict=True) if f]
