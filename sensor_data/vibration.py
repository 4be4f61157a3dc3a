"""Vibration reader: CSV / Parquet / NPY files into one ``(T, 3)`` float32 table.

The reader loads data as-is (no sorting, filling, resampling or clipping): judging the
data is DQVL's job, so a missing axis or broken timestamps are *recorded*, not raised.
Only a file that cannot be read at all raises :class:`DataError` (one line: file and
problem), which the caller turns into a ``read_error`` DQVL report.

Two parse faults are recorded rather than passed on as numbers: a CSV row whose field
count differs from the header (its values cannot be placed in columns, so the whole row
becomes NaN) and a value beyond the float32 range (NaN, not a silent inf).

Memory: CSV/Parquet are read once with only the axis and timestamp columns, axes parsed
straight to float32; NPY is memory-mapped and cast to float32 once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError
from core.paths import display_path
from sensor_data.files import csv_rows, sniff_utf8_text
from sensor_data.timestamps import find_timestamp_col, measure_fs, parse_timestamps

AXES: tuple[str, str, str] = ("x", "y", "z")
SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".npy")
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_PROTO = b"\x80"  # first byte of a pickle (protocol 2 or later)
# A step longer than this many median steps is a gap, not jitter or stamp rounding.


@dataclass(frozen=True)
class RowIssue:
    """Rows (or one axis' samples) the reader set to NaN instead of trusting them."""

    count: int
    first_row: int  # 0-based data row
    detail: str = ""


@dataclass
class VibTable:
    """One vibration file: values in x, y, z order plus what is known about sampling."""

    file_id: str
    values: np.ndarray  # (T, 3) float32, NaN where missing (a whole column for a missing axis)
    timestamps: np.ndarray | None = None  # datetime64[ns], NaT where a stamp did not parse
    observed_fs: float | None = None  # whole-span rate (Timing.fs), None if not measurable
    missing_axes: list[str] = field(default_factory=list)
    source_columns: dict[str, str] = field(default_factory=dict)  # axis/"timestamp" -> column
    ragged: RowIssue | None = None  # CSV rows with the wrong number of fields (now NaN)
    overflow: dict[str, RowIssue] = field(default_factory=dict)  # axis -> beyond float32


def _find_overflow(
    values: np.ndarray, raw_axis: Callable[[int], np.ndarray]
) -> dict[str, RowIssue]:
    """Per axis, samples that became inf only by the cast to float32; they are set to NaN.

    ``raw_axis(i)`` is axis ``i`` at its stored precision, the only place where a finite
    value is told apart from an ``inf`` written in the file; it is fetched only for an axis
    that holds an inf.
    """
    found = {}
    for i, axis in enumerate(AXES):
        if not np.isinf(values[:, i]).any():
            continue
        rows = np.flatnonzero(np.isinf(values[:, i]) & np.isfinite(raw_axis(i)))
        if rows.size:
            values[rows, i] = np.nan
            found[axis] = RowIssue(int(rows.size), int(rows[0]))
    return found


def read_vibration(
    path: Path,
    axes: dict[str, str] | None = None,
    timestamp_col: str | None = None,
    file_id: str | None = None,
) -> VibTable:
    """Read one vibration file (``.csv``, ``.parquet`` or ``.npy``) as a :class:`VibTable`.

    ``file_id`` defaults to the file name (see ``sensor_data.files.file_ids``).
    """
    path = Path(path)
    shown = display_path(path)
    file_id = path.name if file_id is None else file_id
    if not path.is_file():
        raise DataError(f"{shown}: file not found")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{shown}: unsupported file type '{path.suffix}' (expected {', '.join(SUFFIXES)})"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{shown}: empty file")
    if suffix == ".npy":
        return _read_npy(path, shown, file_id)
    return _read_columns(path, shown, suffix, axes or {}, timestamp_col, file_id)


# --------------------------------------------------------------------------- NPY
def _read_npy(path: Path, shown: str, file_id: str) -> VibTable:
    with path.open("rb") as fh:
        magic = fh.read(len(_NPY_MAGIC))
    if magic.startswith(_PICKLE_PROTO):
        raise DataError(f"{shown}: pickled or object arrays are not accepted")
    if magic != _NPY_MAGIC:
        raise DataError(f"{shown}: not a valid NPY file (no NPY header)")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{shown}: pickled or object arrays are not accepted") from None
        raise DataError(f"{shown}: not a valid NPY file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{shown}: not a valid NPY file ({exc.__class__.__name__})") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{shown}: expected a single NPY array, got {type(arr).__name__}")
    if arr.dtype.names is not None or arr.dtype.kind not in "iuf":
        raise DataError(
            f"{shown}: expected a real numeric array (int or float), got dtype {arr.dtype}"
        )
    if arr.ndim != 2 or arr.shape[1] != len(AXES):
        raise DataError(f"{shown}: expected shape (T, 3) for x, y, z, got {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{shown}: empty array, shape {arr.shape}")
    with np.errstate(over="ignore"):  # overflow is recorded below, not warned about
        values = np.array(arr, dtype=np.float32)  # one copy out of the memory map
    return VibTable(
        file_id,
        values,
        source_columns={a: f"column {i}" for i, a in enumerate(AXES)},
        overflow=_find_overflow(values, lambda i: np.asarray(arr[:, i])),
    )


# --------------------------------------------------------------------------- CSV / Parquet
def _csv_header(path: Path, shown: str) -> list[str]:
    sniff_utf8_text(path, shown)
    try:
        header = pd.read_csv(path, nrows=0, index_col=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{shown}: not UTF-8 text (wrong encoding?)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: empty file (no header)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{shown}: malformed CSV ({exc})") from None
    return [str(c) for c in header.columns]


def _parquet_header(path: Path, shown: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{shown}: not a valid Parquet file ({exc.__class__.__name__})") from None


def _find_column(columns: list[str], wanted: str, shown: str) -> str | None:
    """Exact name first, then a unique case-insensitive match; ambiguity is an error."""
    if wanted in columns:
        return wanted
    matches = [c for c in columns if c.strip().lower() == wanted.strip().lower()]
    if len(matches) > 1:
        raise DataError(f"{shown}: ambiguous columns {matches} for '{wanted}'")
    return matches[0] if matches else None


def _select_columns(
    columns: list[str], shown: str, axes: dict[str, str], timestamp_col: str | None
) -> tuple[dict[str, str], str | None]:
    axis_cols = {}
    for axis in AXES:
        col = _find_column(columns, axes.get(axis, axis), shown)
        if col is not None:
            axis_cols[axis] = col
    ts_col = find_timestamp_col(columns, timestamp_col)
    if timestamp_col is not None and ts_col is None:
        raise DataError(
            f"{shown}: configured timestamp column '{timestamp_col}' not found "
            f"(columns: {', '.join(columns)})"
        )
    return axis_cols, ts_col


def _first_non_numeric(frame: pd.DataFrame, cols: list[str]) -> tuple[str, int, str] | None:
    for col in cols:
        raw = frame[col]
        bad = pd.to_numeric(raw, errors="coerce").isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            return col, row, str(raw.iloc[row])
    return None


def _read_frame(
    path: Path, shown: str, suffix: str, usecols: list[str], axis_cols: list[str]
) -> pd.DataFrame:
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path, columns=usecols)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{shown}: cannot read Parquet ({exc.__class__.__name__})") from None
    try:
        with np.errstate(over="ignore"):  # overflow is recorded by the caller
            return pd.read_csv(
                path,
                usecols=usecols,
                dtype=dict.fromkeys(axis_cols, np.float32),
                index_col=False,  # a trailing comma must never shift the columns
                encoding="utf-8-sig",
            )
    except UnicodeDecodeError:
        raise DataError(f"{shown}: not UTF-8 text (wrong encoding?)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{shown}: malformed CSV ({exc})") from None
    except ValueError:
        # Error path only: re-read as text to name the offending column and row.
        text = pd.read_csv(
            path, usecols=axis_cols, dtype=str, index_col=False, encoding="utf-8-sig"
        )
        found = _first_non_numeric(text, axis_cols)
        if found is None:
            raise
        col, row, value = found
        raise DataError(
            f"{shown}: column '{col}' is not numeric (value {value!r} in data row {row + 1})"
        ) from None


def _axis_values(frame: pd.DataFrame, shown: str, axis_cols: dict[str, str]) -> np.ndarray:
    values = np.full((len(frame), len(AXES)), np.nan, dtype=np.float32)
    for i, axis in enumerate(AXES):
        col = axis_cols.get(axis)
        if col is None:
            continue
        series = frame[col]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            found = _first_non_numeric(frame, [col])
            detail = f"value {found[2]!r} in data row {found[1] + 1}" if found else series.dtype
            raise DataError(f"{shown}: column '{col}' is not numeric ({detail})")
        with np.errstate(over="ignore"):  # overflow is recorded by the caller
            values[:, i] = series.to_numpy(dtype=np.float32, na_value=np.nan)
    return values


def _mark_ragged(path: Path, shown: str, values: np.ndarray) -> RowIssue | None:
    """Set CSV rows whose field count differs from the header to NaN (values unplaceable)."""
    rows = csv_rows(path, shown)
    if rows.n_rows != len(values):
        raise DataError(
            f"{shown}: {rows.n_rows} data lines but {len(values)} rows parsed "
            "(a line break inside quotes, or '\\r'-only line endings?)"
        )
    if rows.ragged.size == 0:
        return None
    values[rows.ragged] = np.nan
    detail = f"{rows.ragged_fields[0]} fields where the header has {rows.n_fields}"
    return RowIssue(int(rows.ragged.size), int(rows.ragged[0]), detail)


def _stored_axis(path: Path, suffix: str, frame: pd.DataFrame, col: str) -> np.ndarray:
    """One axis column at its stored precision: Parquet keeps it, CSV is parsed again."""
    if suffix == ".parquet":
        return frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
    text = pd.read_csv(
        path, usecols=[col], dtype={col: np.float64}, index_col=False, encoding="utf-8-sig"
    )
    return text[col].to_numpy()


def _read_columns(
    path: Path,
    shown: str,
    suffix: str,
    axes: dict[str, str],
    timestamp_col: str | None,
    file_id: str,
) -> VibTable:
    columns = _csv_header(path, shown) if suffix == ".csv" else _parquet_header(path, shown)
    axis_cols, ts_col = _select_columns(columns, shown, axes, timestamp_col)
    usecols = list(dict.fromkeys([*axis_cols.values(), *([ts_col] if ts_col else [])]))
    if not usecols:
        raise DataError(
            f"{shown}: no x/y/z axis or timestamp column (columns: {', '.join(columns)})"
        )
    frame = _read_frame(path, shown, suffix, usecols, list(axis_cols.values()))
    if frame.empty:
        raise DataError(f"{shown}: header only, no data rows")
    values = _axis_values(frame, shown, axis_cols)
    ragged = _mark_ragged(path, shown, values) if suffix == ".csv" else None
    overflow = _find_overflow(
        values, lambda i: _stored_axis(path, suffix, frame, axis_cols[AXES[i]])
    )
    timestamps = parse_timestamps(frame[ts_col]) if ts_col else None
    sources = dict(axis_cols)
    if ts_col:
        sources["timestamp"] = ts_col
    return VibTable(
        file_id=file_id,
        values=values,
        timestamps=timestamps,
        observed_fs=measure_fs(timestamps),
        missing_axes=[a for a in AXES if a not in axis_cols],
        source_columns=sources,
        ragged=ragged,
        overflow=overflow,
    )
