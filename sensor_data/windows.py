"""Split by time inside each file, then window: no window crosses a file or the split.

All functions work on row indices of one file, so a window can never span two files.
"""

from __future__ import annotations

import numpy as np


def split_index(n_rows: int, val_fraction: float) -> int:
    """First validation row: train is ``[0, split)``, validation ``[split, n_rows)``."""
    return n_rows - int(round(n_rows * val_fraction))


def window_starts(start: int, stop: int, window: int, stride: int) -> np.ndarray:
    """Starts of every full window lying inside ``[start, stop)``."""
    last = stop - window
    if last < start:
        return np.empty(0, dtype=np.int64)
    return np.arange(start, last + 1, stride, dtype=np.int64)


def train_val_starts(
    n_rows: int, window: int, stride: int, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Window starts for the train part and the validation part of one file."""
    split = split_index(n_rows, val_fraction)
    return window_starts(0, split, window, stride), window_starts(split, n_rows, window, stride)


def scoring_stride(
    window: int, default: int, stride_sec: float | None, period_sec: float | None
) -> int:
    """Rows between scored windows: ``stride_sec`` at the file's sample period, capped at a
    quarter window (each row stays in >= 4 windows); ``default`` when either is unknown."""
    if stride_sec is None or period_sec is None or not period_sec > 0:
        return default
    return int(max(1, min(window // 4, round(stride_sec / period_sec))))
