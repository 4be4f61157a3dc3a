"""FDC data path for training and scoring: files -> DQVL -> split -> scaler -> windows.

The order is what prevents leakage: each kept file is split by time first (train rows,
then validation rows), the scaler is fitted on the train rows of all kept files only, and
windows are cut inside one file and one side of its split.  A file that fails to read or
fails DQVL is dropped with a report; the other files go on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from core.errors import DataError
from core.paths import display_path, resolve_path
from sensor_data.dqvl_fdc import STREAM, check_fdc, read_error_report
from sensor_data.dqvl_report import DqvlReport, skipped_report, write_reports
from sensor_data.fdc import SUPPORTED_SUFFIXES, FdcTable, read_fdc, table_from_frame
from sensor_data.files import list_data_files
from sensor_data.scaler import ChannelScaler, channel_order
from sensor_data.synthetic_fdc import make_fdc_frame
from sensor_data.timestamps import NAT
from sensor_data.windows import split_index, train_val_starts, window_starts

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


def _file_ids(paths: Sequence[Path]) -> list[str]:
    """File names, or repository-relative paths when two files share a name."""
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [display_path(p) for p in paths]


def _selection(cfg: PatchTSTConfig) -> dict[str, Any]:
    """Reader keyword arguments that pick the timestamp and channel columns."""
    return {
        "timestamp_col": cfg.data.timestamp_col,
        "channels": cfg.data.channels,
        "channel_regex": cfg.data.channel_regex,
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
        for p, fid in zip(paths, _file_ids(paths), strict=True)
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
        report = check_fdc(table, cfg.dqvl, window)
    else:
        report = skipped_report(table.file_id, STREAM)
        report.metrics.update(n_rows=table.n_rows, n_channels=len(table.channels))
        if not table.channels:
            _drop(report, "no_numeric_channel", "no numeric channel column found")
    return (table if report.usable else None), report


def _align_channels(
    table: FdcTable, report: DqvlReport, expected: list[str] | None
) -> FdcTable | None:
    """Reorder the table to ``expected``; drop it (``channel_mismatch``) if the set differs."""
    if expected is None:
        return table
    try:
        order = channel_order(expected, table.channels, table.file_id)
    except DataError as exc:
        _drop(report, "channel_mismatch", str(exc))
        return None
    if order != list(range(len(order))):
        table.values = np.ascontiguousarray(table.values[:, order])
        table.channels = list(expected)
    return table


def _progress(items: list, progress: bool, desc: str) -> Iterator:
    return iter(tqdm(items, desc=desc, unit="file", disable=not progress, file=sys.stderr))


def _log_drop(report: DqvlReport, progress: bool) -> None:
    if progress and not report.usable:
        tqdm.write(f"DQVL drop {report.file_id}: {report.reason()}", file=sys.stderr)


# --------------------------------------------------------------------------- training
def prepare_fdc_training(cfg: PatchTSTConfig, run_id: str, progress: bool = True) -> FdcPrepared:
    """Everything the trainer needs: train/val windows, the saved scaler and DQVL reports."""
    data = cfg.data
    reports: list[DqvlReport] = []
    tables: list[FdcTable] = []
    channels: list[str] | None = None
    for file_id, load in _progress(_sources(cfg), progress, "FDC files"):
        table, report = _load_checked(file_id, load, cfg, data.seq_len)
        if table is not None:
            table = _align_channels(table, report, channels)
        if table is not None:
            channels = channels or table.channels
            tables.append(table)
        reports.append(report)
        _log_drop(report, progress)
    summary = write_reports(reports, resolve_path(cfg.dqvl.report_dir), run_id)
    if not tables:
        raise DataError(
            f"all {len(reports)} files were dropped by DQVL; see {display_path(summary)}"
        )
    assert channels is not None

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
    )
    scaler.save(resolve_path(data.scaler_path))
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


def prepare_fdc_scoring(
    paths: list[Path],
    scaler: ChannelScaler,
    cfg: PatchTSTConfig,
    window: int,
    stride: int,
    progress: bool = False,
) -> tuple[FdcWindows, list[DqvlReport]]:
    """Windows over whole scoring files, normalised with the training scaler.

    Windows start every ``stride`` rows, plus a last one that ends at the file's last row.

    With a single file a channel-set mismatch raises DataError; in a batch the file is
    dropped with a ``channel_mismatch`` report.  Reports are returned, not written.
    """
    paths = [Path(p) for p in paths]
    reports: list[DqvlReport] = []
    arrays: list[np.ndarray] = []
    files: list[str] = []
    stamps: list[np.ndarray | None] = []
    index = []
    for fid, load in _progress(_file_loaders(paths, cfg), progress, "FDC scoring files"):
        table, report = _load_checked(fid, load, cfg, window)
        reports.append(report)
        if table is not None and len(paths) == 1:
            scaler.check_channels(table.channels, display_path(paths[0]))  # raises
        if table is not None:
            table = _align_channels(table, report, scaler.channels)
        if table is None:
            _log_drop(report, progress)
            continue
        starts = _covering_starts(table.n_rows, window, stride)
        index.append(np.column_stack([np.full_like(starts, len(arrays)), starts]))
        arrays.append(scaler.transform(table.values))
        files.append(fid)
        stamps.append(table.timestamps)
    index_arr = np.concatenate(index) if index else np.empty((0, 2), dtype=np.int64)
    windows = FdcWindows(arrays, files, index_arr, window, list(scaler.channels), stamps)
    return windows, reports
