"""Memory of the FDC path on large files: no step holds the values twice, results unchanged.

Peaks are numpy allocations traced by tracemalloc (Arrow's own buffers are not traced);
the whole-process figure on a 1 GB file is ``benchmarks.bench_large_file``.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import sensor_data.dqvl_fdc as dqvl_fdc
from core.config import FdcDqvlConfig
from sensor_data.fdc import FdcTable, read_fdc, select_columns
from sensor_data.scaler import ChannelScaler

WINDOW = 16


def _traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the largest traced allocation total above the start, in bytes."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def _values(n_rows: int, n_channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    walk = rng.normal(size=(n_rows, n_channels)).astype(np.float32).cumsum(axis=0)
    return walk * rng.uniform(0.1, 10, n_channels).astype(np.float32)


def _messy(n_rows: int, n_channels: int) -> np.ndarray:
    """NaN, inf, a stuck and a quantised channel, one without values."""
    values = _values(n_rows, n_channels, seed=1)
    rng = np.random.default_rng(2)
    values[rng.random(values.shape) < 0.01] = np.nan
    values[rng.random(values.shape) < 0.001] = np.inf
    values[:, 0] = 5.0
    values[:, 1] = np.round(values[:, 1] / 20) * 20
    values[:, 2] = np.nan
    return values


def _table(values: np.ndarray) -> FdcTable:
    return FdcTable("f", values, [f"c{i}" for i in range(values.shape[1])], None, None)


@pytest.mark.parametrize("columns", [[0, 2, 5], [5, 4, 3, 2, 1, 0], [1, 2, 3, 4, 5], [3]])
def test_select_columns_in_place_equals_fancy_indexing(columns: list[int]) -> None:
    values = _values(3001, 6)
    expected = values[:, columns]
    got = select_columns(values.copy(), np.asarray(columns))
    np.testing.assert_array_equal(got, expected)
    assert got.flags.c_contiguous


def test_select_columns_reuses_the_buffer() -> None:
    values = _values(200_000, 20)
    expected = values[:, 1:].copy()
    got, peak = _traced_peak(lambda: select_columns(values, np.arange(1, 20)))
    np.testing.assert_array_equal(got, expected)
    assert np.shares_memory(got, values)
    assert peak < 0.25 * values.nbytes  # one block moved at a time


def test_parquet_read_allocates_the_values_once(tmp_path: Path) -> None:
    rows, channels = 400_000, 12
    frame = pd.DataFrame(_values(rows, channels).astype(np.float64),
                         columns=[f"c{i}" for i in range(channels)])
    frame["label"] = np.arange(rows) % 3  # excluded by name: columns dropped in place
    frame.insert(0, "timestamp", pd.date_range("2024-01-01", periods=rows, freq="s"))
    path = tmp_path / "big.parquet"
    frame.to_parquet(path, index=False)
    table, peak = _traced_peak(lambda: read_fdc(path, exclude_columns="label"))
    expected = frame[[f"c{i}" for i in range(channels)]].to_numpy(np.float32)
    np.testing.assert_array_equal(table.values, expected)
    assert list(table.excluded) == ["label"] and len(table.channels) == channels
    # values + stamps + one chunk's staging; concatenating blocks needed twice the values
    assert peak < 1.6 * table.values.nbytes + table.timestamps.nbytes


def test_dqvl_by_channel_blocks_equals_whole_array(monkeypatch: pytest.MonkeyPatch) -> None:
    values = _messy(20_000, 37)
    rules = FdcDqvlConfig()
    whole = dqvl_fdc.check_fdc(_table(values), rules, WINDOW).to_dict()
    monkeypatch.setattr(dqvl_fdc, "BLOCK_CELLS", 8 * len(values))  # blocks of 8 channels
    blocks = dqvl_fdc.check_fdc(_table(values), rules, WINDOW).to_dict()
    assert blocks == whole
    assert whole["metrics"]["stuck_channels"] and whole["metrics"]["bad_channels"]


@pytest.mark.parametrize("messy", [False, True])
def test_dqvl_temporaries_stay_small(monkeypatch: pytest.MonkeyPatch, messy: bool) -> None:
    values = _messy(100_000, 64) if messy else _values(100_000, 64)
    monkeypatch.setattr(dqvl_fdc, "BLOCK_CELLS", 8 * len(values))
    _, peak = _traced_peak(lambda: dqvl_fdc.check_fdc(_table(values), FdcDqvlConfig(), WINDOW))
    assert peak < 0.75 * values.nbytes  # over the whole array: about 4x


def test_transform_in_place_equals_the_copy() -> None:
    values = _messy(500_000, 9)
    scaler = ChannelScaler.fit([np.nan_to_num(values[:20_000], posinf=0.0)], "robust",
                               [f"c{i}" for i in range(9)], clip=5.0)
    expected = scaler.transform(values)
    assert not np.shares_memory(expected, values)
    got, peak = _traced_peak(lambda: scaler.transform(values, in_place=True))
    np.testing.assert_array_equal(got, expected)
    assert got is values
    assert peak < 0.2 * values.nbytes  # a row block's masks; the copy is the values again
    as_float64 = values.astype(np.float64)
    assert scaler.transform(as_float64, in_place=True) is not as_float64
