"""FDC reader: one CSV or Parquet file of multivariate process data, loaded as-is.

Why as-is: sorting, filling, resampling or clipping here would hide exactly the problems
DQVL has to report (shuffled or duplicated stamps, gaps, NaN, inf).  The only conversion
is to one float32 ``(T, C)`` array, filled column by column so a large file is never held
in several full copies.  Every expected problem with a file raises
:class:`core.errors.DataError` with the file name and the problem, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import ConfigError, DataError
from core.paths import display_path
from sensor_data.files import sniff_utf8_text
from sensor_data.timestamps import find_timestamp_col, parse_timestamps

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
_CHUNK_CELLS = 2_000_000  # values converted per chunk: bounds the float64 staging memory
# What pandas raises for text it cannot parse as CSV (garbage, ragged rows, bad bytes).
_CSV_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError)


@dataclass
class FdcTable:
    """One FDC file: values ``(T, C)`` float32 with NaN/inf exactly as read."""

    file_id: str
    values: np.ndarray
    channels: list[str]
    timestamps: np.ndarray | None  # datetime64[ns], NaT where a stamp did not parse
    timestamp_col: str | None
    non_numeric_columns: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])


def select_channels(
    columns: Sequence[str],
    timestamp_col: str | None,
    channels: list[str] | None,
    channel_regex: str | None,
    source: str,
) -> list[str]:
    """Channel candidates: the configured list, the regex matches, or every other column."""
    candidates = [c for c in columns if c != timestamp_col]
    if channels is not None:
        missing = [c for c in channels if c not in candidates]
        if missing:
            raise DataError(f"{source}: configured channels not found: {', '.join(missing)}")
        return list(channels)
    if channel_regex is not None:
        try:
            pattern = re.compile(channel_regex)
        except re.error as exc:
            raise ConfigError(f"data.channel_regex: invalid regular expression ({exc})") from None
        return [c for c in candidates if pattern.search(c)]
    return candidates


class _TableBuilder:
    """Accumulates frame chunks into float32 blocks, so a large file is converted piecewise.

    A column is non-numeric when no value in the whole file converts to a number while
    some value is non-empty; that is only known after the last chunk.
    """

    def __init__(self, timestamp_col: str | None, wanted: list[str]) -> None:
        self.timestamp_col = timestamp_col
        self.wanted = wanted
        self.blocks: list[np.ndarray] = []
        self.stamps: list[np.ndarray] = []
        self.has_number = np.zeros(len(wanted), dtype=bool)
        self.has_value = np.zeros(len(wanted), dtype=bool)

    def add(self, chunk: pd.DataFrame) -> None:
        block = np.empty((len(chunk), len(self.wanted)), dtype=np.float32)
        for j, name in enumerate(self.wanted):
            column = chunk[name]
            if not pd.api.types.is_numeric_dtype(column):
                self.has_value[j] |= bool(column.notna().any())
                column = pd.to_numeric(column, errors="coerce")
            numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
            self.has_number[j] |= not np.isnan(numbers).all()
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, kept for DQVL
                block[:, j] = numbers
        self.blocks.append(block)
        if self.timestamp_col is not None:
            self.stamps.append(parse_timestamps(chunk[self.timestamp_col]))

    def build(self, file_id: str) -> FdcTable:
        text = self.has_value & ~self.has_number
        keep = np.flatnonzero(~text)
        blocks = [b[:, keep] for b in self.blocks] if text.any() else self.blocks
        values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
        self.blocks = []
        stamps = None
        if self.timestamp_col is not None:
            stamps = self.stamps[0] if len(self.stamps) == 1 else np.concatenate(self.stamps)
        return FdcTable(
            file_id=file_id,
            values=values,
            channels=[self.wanted[j] for j in keep],
            timestamps=stamps,
            timestamp_col=self.timestamp_col,
            non_numeric_columns=[c for c, t in zip(self.wanted, text, strict=True) if t],
        )


def _table_from_chunks(
    columns: list[str],
    chunks: Iterable[pd.DataFrame],
    file_id: str,
    timestamp_col: str | None,
    channels: list[str] | None,
    channel_regex: str | None,
    source: str,
) -> FdcTable:
    ts_col = find_timestamp_col(columns, timestamp_col)
    builder = _TableBuilder(
        ts_col, select_channels(columns, ts_col, channels, channel_regex, source)
    )
    for chunk in chunks:
        builder.add(chunk.set_axis([str(c) for c in chunk.columns], axis=1))
    if not builder.blocks:
        builder.add(pd.DataFrame(columns=columns))
    return builder.build(file_id)


def table_from_frame(
    frame: pd.DataFrame,
    file_id: str,
    timestamp_col: str | None = None,
    channels: list[str] | None = None,
    channel_regex: str | None = None,
) -> FdcTable:
    """Build an :class:`FdcTable` from an in-memory frame (synthetic and demo data)."""
    columns = [str(c) for c in frame.columns]
    return _table_from_chunks(
        columns, [frame], file_id, timestamp_col, channels, channel_regex, file_id
    )


def _csv_error(shown: str, exc: Exception) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{shown}: not UTF-8 text (wrong encoding or binary data)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{shown}: cannot parse as CSV ({first})")


def _usecols(
    columns: list[str],
    timestamp_col: str | None,
    channels: list[str] | None,
    channel_regex: str | None,
    shown: str,
) -> list[str] | None:
    """Columns to load when the config selects a subset (None: load them all)."""
    if channels is None and channel_regex is None:
        return None
    ts_col = find_timestamp_col(columns, timestamp_col)
    wanted = select_channels(columns, ts_col, channels, channel_regex, shown)
    return ([ts_col] if ts_col else []) + wanted


def _chunk_rows(n_columns: int) -> int:
    return max(1024, _CHUNK_CELLS // max(1, n_columns))


def _csv_header(path: Path, shown: str) -> list[str]:
    sniff_utf8_text(path, shown)
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0, encoding="utf-8").columns]
    except _CSV_ERRORS as exc:
        raise _csv_error(shown, exc) from None


def _csv_chunks(
    path: Path, shown: str, usecols: list[str] | None, rows: int
) -> Iterator[pd.DataFrame]:
    try:
        yield from pd.read_csv(path, usecols=usecols, encoding="utf-8", chunksize=rows)
    except _CSV_ERRORS as exc:
        raise _csv_error(shown, exc) from None


def _parquet_error(shown: str, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{shown}: not a readable Parquet file ({first})")


def _parquet_header(path: Path, shown: str) -> list[str]:
    try:
        return [str(c) for c in pq.read_schema(path).names]
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _parquet_error(shown, exc) from None


def _parquet_chunks(
    path: Path, shown: str, usecols: list[str] | None, rows: int
) -> Iterator[pd.DataFrame]:
    try:
        with pq.ParquetFile(path) as source:
            for batch in source.iter_batches(batch_size=rows, columns=usecols):
                yield batch.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _parquet_error(shown, exc) from None


def read_fdc(
    path: Path,
    timestamp_col: str | None = None,
    channels: list[str] | None = None,
    channel_regex: str | None = None,
    file_id: str | None = None,
) -> FdcTable:
    """Read one FDC file as-is; ``file_id`` defaults to the file name."""
    path = Path(path)
    shown = display_path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{shown}: unsupported file type '{suffix or path.name}' "
            f"(expected {', '.join(SUPPORTED_SUFFIXES)})"
        )
    if not path.is_file():
        raise DataError(f"{shown}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{shown}: empty file (0 bytes)")
    fid = file_id or path.name
    csv = suffix in CSV_SUFFIXES
    header = _csv_header(path, shown) if csv else _parquet_header(path, shown)
    if not header:
        raise DataError(f"{shown}: no columns")
    usecols = _usecols(header, timestamp_col, channels, channel_regex, shown)
    read_chunks = _csv_chunks if csv else _parquet_chunks
    chunks = read_chunks(path, shown, usecols, _chunk_rows(len(usecols or header)))
    table = _table_from_chunks(
        usecols or header, chunks, fid, timestamp_col, channels, channel_regex, shown
    )
    if table.n_rows == 0:
        raise DataError(f"{shown}: header only, no data rows")
    return table
