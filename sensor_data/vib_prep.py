"""Vibration files -> DQVL -> (resample) -> split -> windows -> cached CWT image datasets.

Order per file (PRODUCT.md 4.3): read, DQVL, deterministic resampling to ``data.fs`` when
enabled and needed, split by time (train first, validation after), window inside each
part only, so no window crosses a file or the split.  Files are named by
``sensor_data.files.file_ids`` (the FDC rule), so two ``x.csv`` in different folders
never share windows, decisions or a DQVL report.  Scalograms are computed once per
window (cached on disk by ``dsp.scalogram_cache``) and held as one array; training
epochs only index it.

Missing samples: DQVL lets through at most ``dqvl.max_nan_ratio`` NaN/inf samples.  In
each window every axis has its mean (over finite samples) subtracted and the remaining
NaN/inf samples are set to 0, i.e. to the window mean, which adds no spurious energy to
the scalogram.  When a file is resampled its non-finite samples are first set to the axis
median, because a polyphase filter would smear one NaN over its whole filter length.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.signal import resample_poly
from torch.utils.data import Dataset

from core.errors import DataError
from core.paths import display_path, resolve_path
from dsp.cwt import CwtSpec, frequencies
from dsp.scalogram_cache import compute_scalograms
from sensor_data.dqvl_report import (
    DqvlReport,
    drop_reasons,
    log_drop,
    skipped_report,
    write_reports,
)
from sensor_data.dqvl_vib import (
    STREAM,
    axis_stats,
    check_vibration,
    dead_file_reason,
    needs_resample,
    read_error_report,
)
from sensor_data.files import file_ids, list_data_files
from sensor_data.synthetic_vib import make_vibration
from sensor_data.timestamps import NAT, sample_times
from sensor_data.vibration import SUFFIXES, VibTable, read_vibration
from sensor_data.windows import scoring_stride, split_index, window_starts

Source = Path | VibTable

if TYPE_CHECKING:  # the config class lives with its stream, a layer above
    from streams.swinmae import SwinMAEConfig

_MAX_RESAMPLE_DENOMINATOR = 1000  # keeps polyphase filters short; ratio error < 1e-6 typical


class ScalogramDataset(Dataset):
    """Precomputed ``(N, 3, H, W)`` scalograms; item ``i`` is a float32 tensor ``(3, H, W)``.

    ``file_ids[i]`` and ``starts[i]`` (first sample, at the configured fs) say where
    window ``i`` comes from and ``start_times[i]``/``end_times[i]`` (datetime64[ns], NaT
    without usable stamps) when it was recorded, for per-window scores and decisions.
    """

    def __init__(
        self,
        images: np.ndarray,
        file_ids: list[str],
        starts: np.ndarray,
        start_times: np.ndarray | None = None,
        end_times: np.ndarray | None = None,
    ) -> None:
        unknown = np.full(len(starts), NAT)
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.file_ids = list(file_ids)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.start_times = unknown if start_times is None else start_times.astype(NAT.dtype)
        self.end_times = unknown if end_times is None else end_times.astype(NAT.dtype)
        lengths = {len(self.images), len(self.file_ids), len(self.starts)}
        if len(lengths | {len(self.start_times), len(self.end_times)}) != 1:
            raise ValueError("images, file_ids, starts and times must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.images[index].copy())  # callers may edit it in place


@dataclass
class VibPrepared:
    train: ScalogramDataset
    val: ScalogramDataset
    reports: list[DqvlReport]
    summary_path: Path
    files: list[str]  # ids of the files that contributed windows
    spec: CwtSpec

    @property
    def spec_frequencies(self) -> np.ndarray:
        """CWT analysis frequencies (Hz, row 0 = freq_max), stored in checkpoint metadata."""
        return frequencies(self.spec)


# --------------------------------------------------------------------------- sources
def list_vibration_files(patterns: str | list[str]) -> list[Path]:
    return list_data_files(patterns, SUFFIXES, "vibration")


def named_sources(sources: Iterable[Source]) -> list[tuple[str, Source]]:
    """(file id, source) pairs: paths by ``file_ids``, tables keep their own id."""
    sources = list(sources)
    paths = [Path(s) for s in sources if not isinstance(s, VibTable)]
    ids = iter(file_ids(paths))
    return [(s.file_id if isinstance(s, VibTable) else next(ids), s) for s in sources]


def synthetic_tables(cfg: SwinMAEConfig) -> list[VibTable]:
    """Normal synthetic machines from ``data.synthetic`` (ids ``synthetic_000``...)."""
    syn = cfg.data.synthetic
    return [
        VibTable(f"synthetic_{i:03d}", make_vibration(syn.duration_sec, cfg.data.fs, syn.seed + i))
        for i in range(syn.n_files)
    ]


# --------------------------------------------------------------------------- per file
def window_geometry(cfg: SwinMAEConfig) -> tuple[int, int]:
    """Window length and stride in samples at the configured fs."""
    win = int(round(cfg.data.win_sec * cfg.data.fs))
    stride = max(1, int(round(cfg.data.win_stride_sec * cfg.data.fs)))
    return win, stride


def _fill_nonfinite(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    if finite.all():
        return values
    medians = [
        np.median(col[ok]) if ok.any() else 0.0 for col, ok in zip(values.T, finite.T, strict=True)
    ]
    return np.where(finite, values, np.asarray(medians, dtype=values.dtype))


def to_configured_fs(table: VibTable, cfg: SwinMAEConfig) -> np.ndarray:
    """The table's values at ``data.fs``: polyphase resampling when enabled and needed."""
    if not needs_resample(
        table.observed_fs, cfg.data.fs, cfg.dqvl.fs_tolerance, cfg.data.resample.enabled
    ):
        return table.values
    ratio = Fraction(cfg.data.fs / table.observed_fs).limit_denominator(_MAX_RESAMPLE_DENOMINATOR)
    out = resample_poly(_fill_nonfinite(table.values), ratio.numerator, ratio.denominator, axis=0)
    return out.astype(np.float32)


def center_windows(windows: np.ndarray) -> np.ndarray:
    """``(N, win, 3)`` windows, each axis mean-removed with NaN/inf set to 0 (see module doc)."""
    finite = np.isfinite(windows)
    safe = np.where(finite, windows, 0)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    mean = safe.sum(axis=1, keepdims=True, dtype=np.float64) / count
    return np.where(finite, safe - mean.astype(np.float32), 0).astype(np.float32)


def extract_windows(values: np.ndarray, starts: np.ndarray, win: int) -> np.ndarray:
    """The ``win``-sample windows at ``starts``, centred (:func:`center_windows`)."""
    return center_windows(values[starts[:, None] + np.arange(win)])


def window_images(windows: np.ndarray, cfg: SwinMAEConfig, device: torch.device) -> torch.Tensor:
    """Scalograms of raw ``(B, win, 3)`` windows, for rows scored as they arrive (no cache:
    each window is seen once)."""
    spec = CwtSpec.from_config(cfg)
    return torch.from_numpy(compute_scalograms(center_windows(windows), spec, device))


def vibration_recording(path: Path, cfg: SwinMAEConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """A vibration file at the configured fs with the sample times batch scoring gives its
    windows (first stamp + offset / fs), for replay."""
    table = read_vibration(path, cfg.data.axes, cfg.data.timestamp_col)
    values = to_configured_fs(table, cfg)
    if table.timestamps is None or np.isnat(table.timestamps[0]):
        return values, None
    return values, sample_times(table.timestamps[0], np.arange(len(values)), cfg.data.fs)


@dataclass
class _Usable:
    """A kept file at the configured fs; the raw table is not held, it may be large."""

    file_id: str
    values: np.ndarray
    first_stamp: np.datetime64  # NaT without usable timestamps


def _unchecked_report(table: VibTable) -> DqvlReport:
    """``skipped`` with DQVL disabled, but a dead file (no signal at all) is still dropped."""
    rep = skipped_report(table.file_id, STREAM)
    dead = dead_file_reason(axis_stats(table.values))
    if dead is not None:
        rep.skipped_reason = None
        rep.fail("dead_file", dead)
    return rep


def _load_checked(
    file_id: str, source: Source, cfg: SwinMAEConfig
) -> tuple[_Usable | None, DqvlReport]:
    """The file at the configured fs (None when it is dropped) and its DQVL report."""
    if isinstance(source, VibTable):
        table = source
    else:
        try:
            table = read_vibration(source, cfg.data.axes, cfg.data.timestamp_col, file_id)
        except DataError as exc:
            return None, read_error_report(file_id, str(exc))
    if cfg.dqvl.enabled:
        win, _ = window_geometry(cfg)
        rep = check_vibration(table, cfg.dqvl, cfg.data.fs, win, cfg.data.resample.enabled)
    else:
        rep = _unchecked_report(table)
    if not rep.usable:
        return None, rep
    first = NAT if table.timestamps is None else table.timestamps[0]
    return _Usable(table.file_id, to_configured_fs(table, cfg), first), rep


def _images(
    windows: np.ndarray, spec: CwtSpec, cfg: SwinMAEConfig, device: torch.device, progress: bool
) -> np.ndarray:
    if len(windows) == 0:
        return np.zeros((0, 3, cfg.image.size, cfg.image.size), dtype=np.float32)
    cache_dir = resolve_path(cfg.cwt.cache_dir)
    return compute_scalograms(windows, spec, device, cache_dir=cache_dir, progress=progress)


class _Collector:
    """Accumulates per-file images and window origins (file, start sample, times).

    Times are the file's first stamp plus sample offsets at the configured fs, which
    stays right after resampling; without a usable first stamp they are NaT.
    """

    def __init__(self, win: int, fs: float) -> None:
        self.win, self.fs = win, fs
        self.images: list[np.ndarray] = []
        self.file_ids: list[str] = []
        self.starts: list[np.ndarray] = []
        self.start_times: list[np.ndarray] = []
        self.end_times: list[np.ndarray] = []

    def add(self, images: np.ndarray, source: _Usable, starts: np.ndarray) -> None:
        first = source.first_stamp
        self.images.append(images)
        self.file_ids.extend([source.file_id] * len(starts))
        self.starts.append(starts)
        self.start_times.append(sample_times(first, starts, self.fs))
        self.end_times.append(sample_times(first, starts + self.win - 1, self.fs))

    def dataset(self, size: int) -> ScalogramDataset:
        if not self.images:
            empty = np.zeros((0, 3, size, size), dtype=np.float32)
            return ScalogramDataset(empty, [], np.zeros(0, dtype=np.int64))
        return ScalogramDataset(
            np.concatenate(self.images),
            self.file_ids,
            np.concatenate(self.starts),
            np.concatenate(self.start_times),
            np.concatenate(self.end_times),
        )


def _no_validation_warning(cfg: SwinMAEConfig, lengths: Sequence[int], win: int) -> str:
    """What to change when no kept file's validation part holds one window."""
    longest = max(lengths)
    needed = math.ceil(win / longest * 100) / 100
    return (
        f"warning: no vibration validation window: the last {cfg.data.val_fraction:.0%} "
        f"(data.val_fraction) of every kept file is shorter than one window of {win} "
        f"samples (data.win_sec={cfg.data.win_sec}), so val_loss will be nan and the best "
        f"checkpoint follows the training loss; set data.val_fraction to at least "
        f"{needed:.2f} (longest kept file: {longest} samples) or use longer files"
    )


# --------------------------------------------------------------------------- entry points
def prepare_vibration_training(
    cfg: SwinMAEConfig, run_id: str, device: torch.device, progress: bool = True
) -> VibPrepared:
    """Train/validation scalogram datasets from ``cfg.data`` plus the DQVL reports."""
    sources: Iterable[Source]
    if cfg.data.source == "files":
        sources = list_vibration_files(cfg.data.path)
    else:
        sources = synthetic_tables(cfg)
    spec = CwtSpec.from_config(cfg)
    win, stride = window_geometry(cfg)
    reports: list[DqvlReport] = []
    kept: list[str] = []
    lengths: list[int] = []
    train, val = _Collector(win, cfg.data.fs), _Collector(win, cfg.data.fs)
    for file_id, source in named_sources(sources):
        usable, rep = _load_checked(file_id, source, cfg)
        reports.append(rep)
        log_drop(rep, progress)
        if usable is None:
            continue
        values = usable.values
        n = len(values)
        lengths.append(n)
        split = split_index(n, cfg.data.val_fraction)
        tr = window_starts(0, split, win, stride)
        va = window_starts(split, n, win, stride)
        images = _images(
            extract_windows(values, np.concatenate([tr, va]), win), spec, cfg, device, progress
        )
        train.add(images[: len(tr)], usable, tr)
        val.add(images[len(tr) :], usable, va)
        if len(tr) + len(va):
            kept.append(usable.file_id)
    summary = write_reports(reports, resolve_path(cfg.dqvl.report_dir), run_id)
    if not any(r.usable for r in reports):
        raise DataError(
            f"every vibration file was dropped by DQVL: {drop_reasons(reports)}; "
            f"see {display_path(summary)}"
        )
    train_ds = train.dataset(cfg.image.size)
    if len(train_ds) == 0:
        raise DataError(
            f"no training window of {win} samples in the kept vibration files "
            f"(data.win_sec={cfg.data.win_sec}); see {display_path(summary)}"
        )
    val_ds = val.dataset(cfg.image.size)
    if len(val_ds) == 0:
        print(_no_validation_warning(cfg, lengths, win), file=sys.stderr)
    return VibPrepared(train_ds, val_ds, reports, summary, kept, spec)


def prepare_vibration_scoring(
    paths: Iterable[Source],
    cfg: SwinMAEConfig,
    device: torch.device,
    progress: bool = False,
) -> tuple[ScalogramDataset, list[DqvlReport]]:
    """Windows over each whole file (no split) for scoring; reports are not written here.

    A dropped file (unreadable, or a DQVL hard fail such as ``clipping``) gives no window;
    its report carries the reason, which scoring lists among the dropped files.
    """
    spec = CwtSpec.from_config(cfg)
    win, stride = window_geometry(cfg)
    stride = scoring_stride(win, stride, cfg.scoring.stride_sec, 1 / cfg.data.fs)
    reports: list[DqvlReport] = []
    out = _Collector(win, cfg.data.fs)
    for file_id, source in named_sources(paths):
        usable, rep = _load_checked(file_id, source, cfg)
        reports.append(rep)
        log_drop(rep, progress)
        if usable is None:
            continue
        values = usable.values
        starts = window_starts(0, len(values), win, stride)
        out.add(
            _images(extract_windows(values, starts, win), spec, cfg, device, progress),
            usable,
            starts,
        )
    return out.dataset(cfg.image.size), reports
