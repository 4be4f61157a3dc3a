"""The one timestamp finder and parser: its rules, and that both readers go through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensor_data import fdc, timestamps, vibration
from sensor_data.fdc import read_fdc
from sensor_data.timestamps import (
    find_timestamp_col,
    parse_timestamps,
    sample_times,
    timestamps_seconds,
)
from sensor_data.vibration import read_vibration

NAT = np.datetime64("NaT", "ns")
EPOCH_1700M = np.datetime64("2023-11-14T22:13:20", "ns")  # 1_700_000_000 s after 1970


def _ns(*stamps: str) -> np.ndarray:
    return np.array(stamps, dtype="datetime64[ns]")


@pytest.mark.parametrize(
    ("columns", "configured", "expected"),
    [
        (["a", "Time", "b"], None, "Time"),
        (["time", " TIMESTAMP "], None, " TIMESTAMP "),  # timestamp wins over time
        (["a", "b"], None, None),
        (["ts", "time"], "ts", "ts"),
        (["TS", "time"], "ts", "TS"),  # configured: exact first, then any case
        (["time"], "ts", None),  # a configured name never falls back to time
    ],
)
def test_timestamp_column_rules(
    columns: list[str], configured: str | None, expected: str | None
) -> None:
    assert find_timestamp_col(columns, configured) == expected


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pd.Series([0.0, 0.5, np.nan]), _ns("1970-01-01T00:00:00", "1970-01-01T00:00:00.5", "NaT")),
        (
            pd.Series(["1.5", "2.5"], dtype=object),
            _ns("1970-01-01T00:00:01.5", "1970-01-01T00:00:02.5"),
        ),
        (
            pd.Series(["2024-05-01T12:00:00+02:00", "2024-05-01 10:00:01", "not a time"]),
            _ns("2024-05-01T10:00:00", "2024-05-01T10:00:01", "NaT"),
        ),
        (pd.Series(pd.to_datetime(["2024-05-01T10:00:00Z"])), _ns("2024-05-01T10:00:00")),
        (pd.Series([1.0, 1e11, np.inf]), _ns("1970-01-01T00:00:01", "NaT", "NaT")),
        (pd.Series(["3000-01-01", "2024-01-01"]), _ns("NaT", "2024-01-01")),  # no wrap-around
        (pd.Series([True, False]), _ns("NaT", "NaT")),
    ],
    ids=[
        "seconds",
        "numeric-text",
        "iso-tz-garbage",
        "datetime",
        "out-of-range",
        "year-3000",
        "bool",
    ],
)
def test_parse_gives_naive_utc_nanoseconds_and_nat(column: pd.Series, expected: np.ndarray) -> None:
    parsed = parse_timestamps(column)
    assert parsed.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(parsed, expected)


def test_seconds_and_sample_times_derive_from_the_parsed_stamps() -> None:
    stamps = _ns("NaT", "2024-01-01T00:00:00", "2024-01-01T00:00:00.25")
    np.testing.assert_array_equal(timestamps_seconds(stamps), [np.nan, 0.0, 0.25])
    first = np.datetime64("2024-01-01T00:00:00", "ns")
    np.testing.assert_array_equal(
        sample_times(first, np.array([0, 3, 2000]), 2000.0),
        _ns("2024-01-01T00:00:00", "2024-01-01T00:00:00.0015", "2024-01-01T00:00:01"),
    )
    assert np.isnat(sample_times(NAT, np.array([0, 1]), 2000.0)).all()


def _write_both(tmp_path: Path, stamps: list[object]) -> tuple[np.ndarray, np.ndarray]:
    """The same stamp column through the FDC reader and the vibration reader."""
    n = len(stamps)
    fdc_path, vib_path = tmp_path / "fdc.csv", tmp_path / "vib.csv"
    pd.DataFrame({"timestamp": stamps, "a": np.arange(n, dtype=float)}).to_csv(
        fdc_path, index=False
    )
    axes = {axis: np.zeros(n) for axis in "xyz"}
    pd.DataFrame({**axes, "timestamp": stamps}).to_csv(vib_path, index=False)
    fdc_stamps, vib_stamps = read_fdc(fdc_path).timestamps, read_vibration(vib_path).timestamps
    assert fdc_stamps is not None and vib_stamps is not None
    return fdc_stamps, vib_stamps


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (
            ["2024-05-01T10:00:00", "2024-05-01T10:00:00.5+00:00", "garbage"],
            _ns("2024-05-01T10:00:00", "2024-05-01T10:00:00.5", "NaT"),
        ),
        ([1_700_000_000.0, 1_700_000_000.5, np.nan], np.array([0, 500, "NaT"], "m8[ms]")),
    ],
    ids=["iso", "epoch-seconds"],
)
def test_both_readers_parse_the_same_stamps_identically(
    tmp_path: Path, stamps: list[object], expected: np.ndarray
) -> None:
    assert fdc.parse_timestamps is vibration.parse_timestamps is timestamps.parse_timestamps
    assert fdc.find_timestamp_col is vibration.find_timestamp_col
    fdc_stamps, vib_stamps = _write_both(tmp_path, stamps)
    if expected.dtype.kind == "m":  # offsets from the epoch stamp
        expected = EPOCH_1700M + expected
    np.testing.assert_array_equal(fdc_stamps, expected)
    np.testing.assert_array_equal(vib_stamps, expected)
