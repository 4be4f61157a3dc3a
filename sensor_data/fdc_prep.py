"""FDC data path for training and scoring: files -> DQVL -> split -> scaler -> windows.

The order is what prevents leakage: each kept file is split by time first (train rows,
then validation rows), the scaler is fitted on the train rows of all kept files only, and
windows are cut inside one file and one side of its split.  A file that fails to read or
fails DQVL is dropped with a report; the other files go on.

Training uses one channel set for every file: the first kept file's channels less every
column left out anywhere (a label, id or counter column, text, a channel unusable in some
kept file, one constant over all training rows), unless ``data.channels`` lists them.
Each report names its file's final channels and every excluded column with the reason;
the summary, the scaler JSON and the console say the same for the run.  Scoring keeps the
model's channels and ignores columns training excluded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from core.errors import DataError
from core.paths import display_path, resolve_path
from sensor_data.dqvl_fdc import (
    STREAM,
    check_fdc,
    dead_channels,
    read_error_report,
    table_metrics,
)
from sensor_data.dqvl_report import (
    DqvlReport,
    drop_reasons,
    log_drop,
    skipped_report,
    write_reports,
)
from sensor_data.fdc import (
    SUPPORTED_SUFFIXES,
    FdcTable,
    read_fdc,
    select_columns,
    table_from_frame,
)
from sensor_data.files import file_ids, list_data_files
from sensor_data.scaler import ChannelScaler, channel_order
from sensor_data.synthetic_fdc import make_fdc_frame
from sensor_data.timestamps import NAT, median_period_s
from sensor_data.windows import scoring_stride, split_index, train_val_starts, window_starts

if TYPE_CHECKING:  # the config class lives with its stream, a layer above
    from streams.patchtst import PatchTSTConfig


def _window_times(
    stamps: Sequence[np.ndarray | None], index: np.ndarray, seq_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stamps of each window's first and last row; NaT where its file has no stamps.

    ``stamps[k]`` are file ``k``'s row stamps (as parsed by the reader) and ``index`` rows
    are ``(file_idx, start)``, so the times line up with the windows by construction.
    """
    begin, end = np.full(len(index), NAT), np.full(len(index), NAT)
    by_file = np.argsort(index[:, 0], kind="stable")  # one pass, not one scan per file
    bounds = np.searchsorted(index[by_file, 0], np.arange(len(stamps) + 1))
    for k, file_stamps in enumerate(stamps):
        if file_stamps is None:
            continue
        rows = by_file[bounds[k] : bounds[k + 1]]
        begin[rows] = file_stamps[index[rows, 1]]
        end[rows] = file_stamps[index[rows, 1] + seq_len - 1]
    return begin, end


class FdcWindows(Dataset):
    """Windows over per-file normalised arrays; item ``i`` is ``(seq_len, C)`` float32.

    ``index`` rows are ``(file_idx, start)``; train and validation sets of one run share
    the same arrays (no copy), only their index differs.  ``stamps`` (one array or None
    per file) give ``start_times``/``end_times``, so no caller re-reads a file for them.
    """

    def __init__(
        self,
        arrays: list[np.ndarray],
        files: list[str],
        index: np.ndarray,
        seq_len: int,
        channels: list[str],
        stamps: Sequence[np.ndarray | None] = (),
    ) -> None:
        self.arrays = arrays
        self.files = files
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        self.seq_len = seq_len
        self.channels = channels
        self.start_times, self.end_times = _window_times(stamps, self.index, seq_len)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        file_idx, start = self.index[i]
        return torch.from_numpy(self.arrays[file_idx][start : start + self.seq_len])

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def file_idx(self) -> np.ndarray:
        return self.index[:, 0]

    @property
    def starts(self) -> np.ndarray:
        """First row of each window in its file (the window covers ``seq_len`` rows)."""
        return self.index[:, 1]

    @property
    def file_ids(self) -> np.ndarray:
        """File id of each window."""
        return np.asarray(self.files, dtype=object)[self.file_idx]


@dataclass
class FdcPrepared:
    train: FdcWindows
    val: FdcWindows
    scaler: ChannelScaler
    reports: list[DqvlReport]  # one per input file, kept or dropped
    summary_path: Path
    files: list[str]  # ids of the kept files, in the order of ``train.arrays``


# --------------------------------------------------------------------------- listing
def list_fdc_files(patterns: str | Sequence[str]) -> list[Path]:
    return list_data_files(patterns, SUPPORTED_SUFFIXES, "FDC")


def _selection(cfg: PatchTSTConfig) -> dict[str, Any]:
    """Reader keyword arguments that pick the timestamp and channel columns."""
    return {
        "timestamp_col": cfg.data.timestamp_col,
        "channels": cfg.data.channels,
        "channel_regex": cfg.data.channel_regex,
        "exclude_columns": cfg.data.exclude_columns,
        "exclude_counters": cfg.data.exclude_counters,
    }


def _synthetic_table(cfg: PatchTSTConfig, i: int) -> FdcTable:
    syn = cfg.data.synthetic
    frame = make_fdc_frame(syn.n_rows, syn.n_channels, syn.seed + i)
    return table_from_frame(frame, f"synthetic_{i:03d}", **_selection(cfg))


def _file_loaders(
    paths: Sequence[Path], cfg: PatchTSTConfig
) -> list[tuple[str, Callable[[], FdcTable]]]:
    return [
        (fid, partial(read_fdc, p, file_id=fid, **_selection(cfg)))
        for p, fid in zip(paths, file_ids(paths), strict=True)
    ]


def _sources(cfg: PatchTSTConfig) -> list[tuple[str, Callable[[], FdcTable]]]:
    """(file id, loader) for each input; loaders run lazily, one file at a time."""
    if cfg.data.source == "synthetic":
        n = cfg.data.synthetic.n_files
        return [(f"synthetic_{i:03d}", partial(_synthetic_table, cfg, i)) for i in range(n)]
    return _file_loaders(list_fdc_files(cfg.data.path), cfg)


# --------------------------------------------------------------------------- checking
def _drop(report: DqvlReport, rule: str, message: str) -> None:
    """Hard-fail a file for a structural reason, even when DQVL itself is disabled."""
    report.skipped_reason = None
    report.fail(rule, message)


def _load_checked(
    file_id: str, load: Callable[[], FdcTable], cfg: PatchTSTConfig, window: int
) -> tuple[FdcTable | None, DqvlReport]:
    """Read and check one file; the table is None when the file is dropped."""
    try:
        table = load()
    except DataError as exc:
        return None, read_error_report(file_id, str(exc))
    if cfg.dqvl.enabled:
        report = check_fdc(table, cfg.dqvl, window, cfg.data.fs)
    else:
        report = skipped_report(table.file_id, STREAM)
        report.metrics.update(table_metrics(table))
        if not table.channels:
            _drop(report, "no_numeric_channel", "no numeric channel column found")
    return (table if report.usable else None), report


def _excluded_here(table: FdcTable, expected: Sequence[str]) -> str:
    """Why expected channels are not in this file's channels, when the reader left them out."""
    here = [f"{c} ({table.excluded[c]})" for c in expected if c in table.excluded]
    return f"; excluded in this file: {', '.join(here)}" if here else ""


def _align_channels(
    table: FdcTable, report: DqvlReport, expected: list[str], ignore: Mapping[str, str]
) -> FdcTable | None:
    """Select ``expected`` in that order; drop the file (``channel_mismatch``) when it lacks
    one or has another column that is not in ``ignore`` (column -> why it is left out)."""
    try:
        order = channel_order(expected, table.channels, table.file_id, ignore)
    except DataError as exc:
        _drop(report, "channel_mismatch", f"{exc}{_excluded_here(table, expected)}")
        return None
    left_out = {c: ignore[c] for c in table.channels if c not in expected}
    if order != list(range(len(table.channels))):
        table.values = select_columns(table.values, np.asarray(order))  # in place: no 2nd copy
    table.channels = list(expected)
    table.excluded.update(left_out)
    report.metrics.update(channels=list(expected), excluded_columns=dict(table.excluded))
    return table


def _progress(items: list, progress: bool, desc: str) -> Iterator:
    return iter(tqdm(items, desc=desc, unit="file", disable=not progress, file=sys.stderr))


def _listed(items: Mapping[str, Any], limit: int = 8) -> str:
    """``name (value), ...`` for the first ``limit`` items, then how many more."""
    shown = ", ".join(f"{k} ({v})" for k, v in list(items.items())[:limit])
    return shown + (f", +{len(items) - limit} more" if len(items) > limit else "")


def _log_channels(channels: list[str], excluded: Mapping[str, str], progress: bool) -> None:
    """One console line for the run's channel set, excluded columns grouped by reason."""
    if not (progress and excluded):
        return
    by_reason = sorted(excluded.items(), key=lambda item: item[1])
    groups = [
        f"{reason}: {', '.join(c for c, _ in group)}"
        for reason, group in groupby(by_reason, key=lambda item: item[1])
    ]
    tqdm.write(
        f"FDC channels: {len(channels)} used, {len(excluded)} column(s) excluded: "
        + "; ".join(groups),
        file=sys.stderr,
    )


def _log_scaler(scaler: ChannelScaler, progress: bool) -> None:
    if progress and scaler.floored:
        tqdm.write(
            f"FDC scaler: {len(scaler.floored)} channel(s) with ~0 spread, scale floored "
            f"(statistic used): {_listed(scaler.floored)}",
            file=sys.stderr,
        )
    if progress and scaler.clipped:
        tqdm.write(
            f"FDC scaler: training values clipped at |z| = {scaler.clip:g} in "
            f"{len(scaler.clipped)} channel(s) (count): {_listed(scaler.clipped)}",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------- training
def _quality_exclusions(
    tables: Sequence[FdcTable], reports: Sequence[DqvlReport], cfg: PatchTSTConfig
) -> dict[str, str]:
    """Channels unusable in some kept file or constant over all training rows.

    Left out of every file, so all files keep one channel set; ``data.channels`` is used
    as listed (its bad channels stay warnings).
    """
    if cfg.data.channels is not None or not cfg.dqvl.enabled or not tables:
        return {}
    limit = f"limit dqvl.max_channel_missing_ratio={cfg.dqvl.max_channel_missing_ratio:g}"
    out: dict[str, str] = {}
    for table, report in zip(tables, reports, strict=True):
        for channel, why in report.metrics.get("bad_channels", {}).items():
            if channel in table.channels:
                out.setdefault(channel, f"{why} in {table.file_id}, {limit}")
    train = [t.values[: split_index(t.n_rows, cfg.data.val_fraction)] for t in tables]
    for channel in dead_channels(train, tables[0].channels, cfg.dqvl):
        out.setdefault(channel, "constant over the training rows of every kept file")
    return out


def _training_channels(
    loaded: list[tuple[FdcTable, DqvlReport]], cfg: PatchTSTConfig
) -> tuple[list[FdcTable], list[str], dict[str, str]]:
    """Kept tables on one channel set, the set, and every excluded column with the reason."""
    if not loaded:
        return [], [], {}
    excluded: dict[str, str] = {}
    elsewhere: dict[str, str] = {}  # the reason as a file that kept the column reads it
    for table, _ in loaded:
        for column, why in table.excluded.items():
            if column not in excluded:
                excluded[column], elsewhere[column] = why, f"{why} in {table.file_id}"
    reference = [c for c in loaded[0][0].channels if c not in excluded]
    aligned = [
        (t, r) for t, r in loaded if _align_channels(t, r, reference, elsewhere) is not None
    ]
    tables, reports = [t for t, _ in aligned], [r for _, r in aligned]
    quality = _quality_exclusions(tables, reports, cfg)
    excluded |= quality
    elsewhere |= quality
    channels = [c for c in reference if c not in excluded]
    if not channels:
        for report in reports:
            _drop(report, "no_usable_channel", f"every channel was excluded: {_listed(excluded)}")
        return [], [], excluded
    for table, report in aligned:
        _align_channels(table, report, channels, elsewhere)
    return tables, channels, excluded


def prepare_fdc_training(cfg: PatchTSTConfig, run_id: str, progress: bool = True) -> FdcPrepared:
    """Everything the trainer needs: train/val windows, the saved scaler and DQVL reports."""
    data = cfg.data
    reports: list[DqvlReport] = []
    loaded: list[tuple[FdcTable, DqvlReport]] = []
    for file_id, load in _progress(_sources(cfg), progress, "FDC files"):
        table, report = _load_checked(file_id, load, cfg, data.seq_len)
        reports.append(report)
        if table is not None:
            loaded.append((table, report))
    tables, channels, excluded = _training_channels(loaded, cfg)
    for report in reports:
        log_drop(report, progress)
    run_wide = {"channels": channels, "excluded_columns": excluded}
    summary = write_reports(reports, resolve_path(cfg.dqvl.report_dir), run_id, run_wide)
    if not tables:
        raise DataError(
            f"all {len(reports)} files were dropped by DQVL: {drop_reasons(reports)}; "
            f"see {display_path(summary)}"
        )
    _log_channels(channels, excluded, progress)

    train_idx, val_idx = [], []
    for k, table in enumerate(tables):
        tr, va = train_val_starts(table.n_rows, data.seq_len, data.stride, data.val_fraction)
        train_idx.append(np.column_stack([np.full_like(tr, k), tr]))
        val_idx.append(np.column_stack([np.full_like(va, k), va]))
    train_index, val_index = np.concatenate(train_idx), np.concatenate(val_idx)
    if len(train_index) == 0:
        rows = ", ".join(f"{t.file_id}: {t.n_rows}" for t in tables)
        raise DataError(
            f"no training windows: the train part ({1 - data.val_fraction:.0%}) of every kept "
            f"file is shorter than data.seq_len={data.seq_len} rows ({rows})"
        )

    scaler = ChannelScaler.fit(
        [t.values[: split_index(t.n_rows, data.val_fraction)] for t in tables],
        data.normalization,
        channels,
        data.scale_clip,
    )
    scaler.excluded = excluded
    scaler.save(resolve_path(data.scaler_path))
    _log_scaler(scaler, progress)
    arrays = []
    for table in tables:  # normalise one file at a time and release its raw copy
        arrays.append(scaler.transform(table.values))
        table.values = arrays[-1]
    files = [t.file_id for t in tables]
    stamps = [t.timestamps for t in tables]
    return FdcPrepared(
        train=FdcWindows(arrays, files, train_index, data.seq_len, channels, stamps),
        val=FdcWindows(arrays, files, val_index, data.seq_len, channels, stamps),
        scaler=scaler,
        reports=reports,
        summary_path=summary,
        files=files,
    )


# --------------------------------------------------------------------------- scoring
def _covering_starts(n_rows: int, window: int, stride: int) -> np.ndarray:
    """Strided window starts plus one window ending at the last row, so no row goes unscored."""
    starts = window_starts(0, n_rows, window, stride)
    if starts.size and starts[-1] != n_rows - window:
        starts = np.append(starts, n_rows - window)
    return starts


def _period_s(table: FdcTable, report: DqvlReport, cfg: PatchTSTConfig) -> float | None:
    """Seconds per row: DQVL's measurement when it ran, else the stamps', else ``data.fs``;
    None (unused) when scoring has no time stride."""
    if cfg.scoring.stride_sec is None:
        return None
    period = report.metrics.get("median_period_s") or median_period_s(table.timestamps)
    return period or (1 / cfg.data.fs if cfg.data.fs else None)


def fdc_recording(
    path: Path, scaler: ChannelScaler, cfg: PatchTSTConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """One FDC file's raw values in the scaler's channel order and its stamps, for replay;
    DataError when a model channel is missing (columns training excluded are ignored)."""
    table = read_fdc(Path(path), **_selection(cfg))
    ignore = {c: f"excluded in training: {why}" for c, why in scaler.excluded.items()}
    order = channel_order(list(scaler.channels), table.channels, table.file_id, ignore)
    return select_columns(table.values, np.asarray(order)), table.timestamps


def prepare_fdc_scoring(
    paths: list[Path],
    scaler: ChannelScaler,
    cfg: PatchTSTConfig,
    window: int,
    stride: int,
    progress: bool = False,
) -> tuple[FdcWindows, list[DqvlReport]]:
    """Windows over whole scoring files, normalised with the training scaler.

    Windows start every ``stride`` rows (or every ``scoring.stride_sec`` at the file's median
    sample period, see :func:`sensor_data.windows.scoring_stride`), plus a last one that ends
    at the file's last row.

    With a single file a channel-set mismatch raises DataError; in a batch the file is
    dropped with a ``channel_mismatch`` report.  Columns training excluded are ignored; a
    model channel that is unusable here is a ``bad_channels`` warning (its missing values
    read as the channel centre), or a drop when too many are.  Reports are returned, not
    written.
    """
    paths = [Path(p) for p in paths]
    reports: list[DqvlReport] = []
    arrays: list[np.ndarray] = []
    files: list[str] = []
    stamps: list[np.ndarray | None] = []
    index = []
    ignore = {c: f"excluded in training: {why}" for c, why in scaler.excluded.items()}
    for fid, load in _progress(_file_loaders(paths, cfg), progress, "FDC scoring files"):
        table, report = _load_checked(fid, load, cfg, window)
        reports.append(report)
        if table is not None:
            table = _align_channels(table, report, list(scaler.channels), ignore)
            if table is None and len(paths) == 1:
                raise DataError(report.hard_fails[-1]["message"])
        if table is None:
            log_drop(report, progress)
            continue
        step = scoring_stride(window, stride, cfg.scoring.stride_sec, _period_s(table, report, cfg))
        report.metrics["scoring_stride_rows"] = step
        starts = _covering_starts(table.n_rows, window, step)
        index.append(np.column_stack([np.full_like(starts, len(arrays)), starts]))
        arrays.append(scaler.transform(table.values, in_place=True))  # raw values: gone
        files.append(fid)
        stamps.append(table.timestamps)
    index_arr = np.concatenate(index) if index else np.empty((0, 2), dtype=np.int64)
    windows = FdcWindows(arrays, files, index_arr, window, list(scaler.channels), stamps)
    return windows, reports
