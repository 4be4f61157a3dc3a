"""FDC reader: one CSV or Parquet file of multivariate process data, loaded as-is.

Why as-is: sorting, filling, resampling or clipping here would hide exactly the problems
DQVL has to report (shuffled or duplicated stamps, gaps, NaN, inf).  The only conversion
is to one float32 ``(T, C)`` array, allocated once for the file's row count and filled
chunk by chunk, column by column, so a large file is never held in several full copies.
Every expected problem with a file raises :class:`core.errors.DataError` with the file
name and the problem, never a traceback.

Real plant exports carry columns that are not sensors, and feeding them to the model
leaks labels or teaches it a row counter.  So, unless ``channels`` lists the channels,
these are left out and named in ``FdcTable.excluded`` with the reason: names matching
``exclude_columns`` (labels, ids), integer columns that only count up (row indices, with
``exclude_counters``), unnamed columns without any value (a trailing delimiter) and text
columns.  An unnamed column holding dates (pandas' ``Unnamed: 0``, an empty header, a
Parquet index) is the timestamp column when no column is named timestamp/time; when
none is found, ``time_like`` names a column that looks like time for the message.

CSV rows are read against the header's fields, so a trailing delimiter or a ragged row
never shifts the columns; such rows are counted (``csv_rows``) for DQVL to judge, as are
values beyond float32 (``overflow``) and historian status text such as ``Bad`` or
``I/O Timeout`` in numeric columns (``status_strings``), which become NaN.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import override_arg
from core.errors import ConfigError, DataError
from core.paths import display_path
from sensor_data.files import CsvRows, csv_rows, sniff_utf8_text
from sensor_data.timestamps import find_timestamp_col, parse_timestamps

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
_CHUNK_CELLS = 2_000_000  # values converted per chunk: bounds the float64 staging memory
_MOVE_CELLS = 1 << 18  # values moved per block when columns are selected in place
# What pandas raises for text it cannot parse as CSV (garbage, bad quoting, bad bytes).
_CSV_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError)
FLOAT32_MAX = float(np.finfo(np.float32).max)
SAMPLE_ROWS = 200  # rows looked at to decide which column holds time
TIME_SHARE = 0.9  # share of a sample that must parse as dates for a column to hold time
_KEPT_STATUS = 20  # distinct status strings counted per column (the most common ones)
# Names pandas, pyarrow or historians give a column without a header (an index, mostly).
_UNNAMED = re.compile(r"^\s*$|^Unnamed: \d+$|^__index_level_\d+__$|^index$|^level_0$")
_TIME_NAME = re.compile(r"time|date|stamp|zeit|datum", re.IGNORECASE)

EXCLUDED_BY_NAME = "name matches data.exclude_columns (a label, id or index)"
EXCLUDED_COUNTER = "whole numbers that only count up (a row index or id; data.exclude_counters)"
EXCLUDED_EMPTY = "no name and no value (a trailing delimiter)"
EXCLUDED_TEXT = "no numeric value (text)"


@dataclass
class FdcTable:
    """One FDC file: values ``(T, C)`` float32 with NaN/inf exactly as read."""

    file_id: str
    values: np.ndarray
    channels: list[str]
    timestamps: np.ndarray | None  # datetime64[ns], NaT where a stamp did not parse
    timestamp_col: str | None
    non_numeric_columns: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # column -> why it is no channel
    time_like: str | None = None  # with no timestamp column: a column that looks like time
    csv_rows: CsvRows | None = None  # CSV only: rows whose field count differs
    overflow: dict[str, int] = field(default_factory=dict)  # channel -> values beyond float32
    # channel -> {"count": n, "top": {text: n}}: status text read as NaN
    status_strings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class ColumnRules:
    """The ``data.*`` keys that pick the timestamp and the channel columns."""

    timestamp_col: str | None = None
    channels: list[str] | None = None
    channel_regex: str | None = None
    exclude_columns: str | None = None
    exclude_counters: bool = False


def _compile(pattern: str, key: str, flags: int = 0) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression ({exc})") from None


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
        pattern = _compile(channel_regex, "data.channel_regex")
        return [c for c in candidates if pattern.search(c)]
    return candidates


def name_exclusions(candidates: Sequence[str], pattern: str | None) -> dict[str, str]:
    """Candidates whose name matches ``pattern`` (case-insensitive), with the reason."""
    if not pattern:
        return {}
    regex = _compile(pattern, "data.exclude_columns", re.IGNORECASE)
    return {c: EXCLUDED_BY_NAME for c in candidates if regex.search(c.strip())}


# --------------------------------------------------------------------------- time column
def holds_dates(column: pd.Series) -> bool:
    """Whether a sample of a column is date/time stamps: datetimes or date text, not numbers."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    present = column.dropna()
    if present.empty or pd.to_numeric(present, errors="coerce").notna().mean() > 0.5:
        return False
    return float((~np.isnat(parse_timestamps(present))).mean()) >= TIME_SHARE


def _seconds_by_name(name: str, column: pd.Series) -> bool:
    """Numbers under a time-like name: epoch or elapsed seconds, perhaps."""
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    return numeric and bool(_TIME_NAME.search(name)) and bool(column.notna().any())


def time_column_hint(name: str) -> str:
    """How to name ``name`` as the timestamp column, quoted for YAML and the shell."""
    setting = override_arg("data.timestamp_col", name)
    return f"column {name!r} looks like time: use it with {setting}"


def _find_time(
    columns: Sequence[str], sample: pd.DataFrame, configured: str | None, source: str
) -> tuple[str | None, str | None]:
    """(timestamp column, a column that looks like time when none was found)."""
    found = find_timestamp_col(columns, configured)
    if found is None and configured is None:
        found = next((c for c in columns if _UNNAMED.match(c) and holds_dates(sample[c])), None)
    if found is not None:
        return found, None
    time_like = next((c for c in columns if holds_dates(sample[c])), None) or next(
        (c for c in columns if _seconds_by_name(c, sample[c])), None
    )
    if configured is not None:
        hint = f"; {time_column_hint(time_like)}" if time_like else ""
        raise DataError(f"{source}: configured data.timestamp_col {configured!r} not found{hint}")
    return None, time_like


# --------------------------------------------------------------------------- building
@dataclass
class _Plan:
    """What to read from a file: the timestamp column, the channel candidates and why the
    other columns are left out."""

    timestamp_col: str | None
    time_like: str | None
    wanted: list[str]
    excluded: dict[str, str]
    auto: bool  # channels not listed: structural exclusions (counters, empty) apply
    counters: bool

    @property
    def usecols(self) -> list[str]:
        return ([self.timestamp_col] if self.timestamp_col else []) + self.wanted


def _plan(columns: list[str], sample: pd.DataFrame, rules: ColumnRules, source: str) -> _Plan:
    ts_col, time_like = _find_time(columns, sample, rules.timestamp_col, source)
    candidates = select_channels(columns, ts_col, rules.channels, rules.channel_regex, source)
    auto = rules.channels is None
    excluded = name_exclusions(candidates, rules.exclude_columns) if auto else {}
    wanted = [c for c in candidates if c not in excluded]
    return _Plan(ts_col, time_like, wanted, excluded, auto, auto and rules.exclude_counters)


class _Rows:
    """One array filled chunk by chunk, allocated for the expected row count up front.

    Why: keeping every chunk and concatenating them at the end holds all values twice.
    The count comes from the file (Parquet metadata, the CSV row scan, a frame's length);
    should it be off, the array grows (too few rows) or is cut to the rows read.
    """

    def __init__(self, expected: int, tail: tuple[int, ...], dtype: Any) -> None:
        self.data = np.empty((max(0, expected), *tail), dtype=dtype)
        self.n = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` rows to fill in."""
        end = self.n + n
        if end > len(self.data):
            grown = np.empty((max(end, 2 * len(self.data)), *self.data.shape[1:]), self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        rows, self.n = self.data[self.n : end], end
        return rows

    def result(self) -> np.ndarray:
        """The rows filled in (a copy only when fewer rows came than expected)."""
        return self.data if self.n == len(self.data) else self.data[: self.n].copy()


def select_columns(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[:, columns]`` (a subset or a reordering), built inside ``values``' buffer.

    Why: a fancy-indexed copy would hold the file twice.  Rows are moved one block at a
    time; output row ``i`` lands at or before source row ``i`` and each block is copied
    before it is written, so no row is overwritten before it is read.  ``values`` is
    consumed.  A dropped share of the buffer stays allocated unless it is over a quarter
    (then the result is copied out).
    """
    columns = np.asarray(columns, dtype=np.int64)
    n_rows, n_keep = values.shape[0], columns.size
    if n_keep > values.shape[1]:  # more columns out than in: no room to do it in place
        return np.ascontiguousarray(values[:, columns])
    flat = values.reshape(-1)  # a view of a C-contiguous array (else a copy: still right)
    step = max(1, _MOVE_CELLS // max(1, values.shape[1]))
    for start in range(0, n_rows, step):
        block = values[start : start + step][:, columns]
        flat[start * n_keep : start * n_keep + block.size] = block.reshape(-1)
    kept = flat[: n_rows * n_keep].reshape(n_rows, n_keep)
    return kept.copy() if 4 * n_keep < 3 * values.shape[1] else kept


class _TableBuilder:
    """Converts frame chunks into one float32 array, so a large file is converted piecewise.

    A column is non-numeric when no value in the whole file converts to a number while
    some value is non-empty, and a counter when every value is a whole number above the
    one before; both are only known after the last chunk.
    """

    def __init__(self, plan: _Plan, expected_rows: int = 0) -> None:
        self.plan = plan
        n = len(plan.wanted)
        self.values = _Rows(expected_rows, (n,), np.float32)
        self.stamps = _Rows(expected_rows if plan.timestamp_col else 0, (), "datetime64[ns]")
        self.chunks = 0
        self.has_number = np.zeros(n, dtype=bool)
        self.has_value = np.zeros(n, dtype=bool)
        self.counting = np.full(n, plan.counters)
        self.last = np.full(n, -np.inf)
        self.overflow = np.zeros(n, dtype=np.int64)
        self.status_total = np.zeros(n, dtype=np.int64)
        self.status_top: list[Counter[str]] = [Counter() for _ in range(n)]

    def _count_status(self, j: int, text: pd.Series) -> None:
        """Non-empty text that is no number (historian status such as ``Bad``)."""
        text = text.astype(str).str.strip()
        text = text[text != ""]
        if text.empty:
            return
        self.status_total[j] += len(text)
        top = self.status_top[j]
        top.update(text.value_counts().to_dict())
        if len(top) > _KEPT_STATUS:
            self.status_top[j] = Counter(dict(top.most_common(_KEPT_STATUS)))

    def _track_counter(self, j: int, numbers: np.ndarray) -> None:
        if not self.counting[j] or numbers.size == 0:
            return
        whole = bool((np.isfinite(numbers) & (numbers == np.round(numbers))).all())
        self.counting[j] = whole and bool((np.diff(numbers, prepend=self.last[j]) > 0).all())
        self.last[j] = numbers[-1]

    def _numbers(self, j: int, column: pd.Series) -> np.ndarray:
        if not pd.api.types.is_numeric_dtype(column):
            present = column.notna()
            self.has_value[j] |= bool(present.any())
            converted = pd.to_numeric(column, errors="coerce")
            self._count_status(j, column[present & converted.isna()])
            column = converted
        numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        self.has_number[j] |= not np.isnan(numbers).all()
        with np.errstate(invalid="ignore"):  # finite in float64, inf in float32
            self.overflow[j] += int((np.isfinite(numbers) & (np.abs(numbers) > FLOAT32_MAX)).sum())
        self._track_counter(j, numbers)
        return numbers

    def add(self, chunk: pd.DataFrame) -> None:
        block = self.values.take(len(chunk))
        for j, name in enumerate(self.plan.wanted):
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, kept for DQVL
                block[:, j] = self._numbers(j, chunk[name])
        if self.plan.timestamp_col is not None:
            self.stamps.take(len(chunk))[:] = parse_timestamps(chunk[self.plan.timestamp_col])
        self.chunks += 1

    def _exclusions(self, n_rows: int) -> dict[str, str]:
        """Structural reasons a read column is no channel, by column."""
        names = self.plan.wanted
        text = self.has_value & ~self.has_number
        reasons = {c: EXCLUDED_TEXT for c, t in zip(names, text, strict=True) if t}
        if not self.plan.auto:
            return reasons
        empty = ~self.has_value & ~self.has_number
        reasons |= {
            c: EXCLUDED_EMPTY for c, e in zip(names, empty, strict=True) if e and _UNNAMED.match(c)
        }
        if n_rows >= 3:  # two increasing values are no evidence of a counter
            counters = self.counting & self.has_number
            reasons |= {c: EXCLUDED_COUNTER for c, k in zip(names, counters, strict=True) if k}
        return reasons

    def _status(self, keep: np.ndarray) -> dict[str, dict[str, Any]]:
        return {
            self.plan.wanted[j]: {
                "count": int(self.status_total[j]),
                "top": dict(self.status_top[j].most_common(3)),
            }
            for j in keep
            if self.status_total[j]
        }

    def build(self, file_id: str) -> FdcTable:
        values = self.values.result()
        reasons = self._exclusions(len(values))
        names = self.plan.wanted
        keep = np.array([j for j, c in enumerate(names) if c not in reasons], dtype=np.int64)
        if reasons:
            values = select_columns(values, keep)
        stamps = self.stamps.result() if self.plan.timestamp_col is not None else None
        return FdcTable(
            file_id=file_id,
            values=values,
            channels=[names[j] for j in keep],
            timestamps=stamps,
            timestamp_col=self.plan.timestamp_col,
            non_numeric_columns=[c for c, r in reasons.items() if r == EXCLUDED_TEXT],
            excluded=self.plan.excluded | reasons,
            time_like=self.plan.time_like,
            overflow={names[j]: int(self.overflow[j]) for j in keep if self.overflow[j]},
            status_strings=self._status(keep),
        )


def _table_from_chunks(
    plan: _Plan, chunks: Iterable[pd.DataFrame], file_id: str, expected_rows: int = 0
) -> FdcTable:
    """The table of all ``chunks``; ``expected_rows`` (the file's row count) sizes the
    values array once, see :class:`_Rows`."""
    builder = _TableBuilder(plan, expected_rows)
    for chunk in chunks:
        builder.add(chunk.set_axis([str(c) for c in chunk.columns], axis=1))
    if not builder.chunks:
        builder.add(pd.DataFrame(columns=plan.usecols))
    return builder.build(file_id)


def table_from_frame(
    frame: pd.DataFrame,
    file_id: str,
    timestamp_col: str | None = None,
    channels: list[str] | None = None,
    channel_regex: str | None = None,
    exclude_columns: str | None = None,
    exclude_counters: bool = False,
) -> FdcTable:
    """Build an :class:`FdcTable` from an in-memory frame (synthetic and demo data)."""
    rules = ColumnRules(timestamp_col, channels, channel_regex, exclude_columns, exclude_counters)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    plan = _plan(list(frame.columns), frame.head(SAMPLE_ROWS), rules, file_id)
    return _table_from_chunks(plan, [frame], file_id, len(frame))


# --------------------------------------------------------------------------- CSV
def _csv_error(shown: str, exc: Exception) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{shown}: not UTF-8 text (wrong encoding or binary data)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{shown}: cannot parse as CSV ({first})")


def _chunk_rows(n_columns: int) -> int:
    return max(1024, _CHUNK_CELLS // max(1, n_columns))


def _csv_header(path: Path, shown: str) -> list[str]:
    sniff_utf8_text(path, shown)
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0, encoding="utf-8").columns]
    except _CSV_ERRORS as exc:
        raise _csv_error(shown, exc) from None


@dataclass(frozen=True)
class _CsvLayout:
    """How to read a CSV so that no row can shift the columns.

    Why: pandas takes a row with a field too many as an index and shifts every column of
    the file (a trailing delimiter does that).  So the rows are read without pandas'
    header, under the header's names plus placeholders for one more field than the
    widest row has; pandas pads shorter rows with NaN.
    """

    names: list[str]
    skip: int  # raw lines up to and including the header

    @classmethod
    def of(cls, path: Path, header: list[str], rows: CsvRows) -> _CsvLayout:
        widest = int(rows.ragged_fields.max(initial=rows.n_fields))
        extra = [f"__extra_field_{i}" for i in range(max(0, widest + 1 - len(header)))]
        with path.open(encoding="utf-8", newline="") as text:  # blank lines may precede it
            skip = next((n for n, line in enumerate(text, start=1) if line.strip()), 0)
        return cls(header + extra, skip)


def _read_csv(path: Path, shown: str, layout: _CsvLayout, **kwargs: Any) -> Any:
    try:
        return pd.read_csv(
            path,
            header=None,
            skiprows=layout.skip,
            names=layout.names,
            encoding="utf-8",
            **kwargs,
        )
    except _CSV_ERRORS as exc:
        raise _csv_error(shown, exc) from None


def _csv_chunks(path: Path, shown: str, layout: _CsvLayout, rows: int) -> Iterator[pd.DataFrame]:
    try:
        with _read_csv(path, shown, layout, chunksize=rows) as reader:
            yield from reader
    except _CSV_ERRORS as exc:
        raise _csv_error(shown, exc) from None


# --------------------------------------------------------------------------- Parquet
def _parquet_error(shown: str, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{shown}: not a readable Parquet file ({first})")


def _parquet_header(path: Path, shown: str) -> tuple[list[str], int]:
    """Column names and row count, from the footer alone."""
    try:
        meta = pq.read_metadata(path)
        return [str(c) for c in meta.schema.to_arrow_schema().names], int(meta.num_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _parquet_error(shown, exc) from None


def _parquet_chunks(
    path: Path, shown: str, usecols: list[str] | None, rows: int
) -> Iterator[pd.DataFrame]:
    """Batches as frames; pandas metadata is ignored, so an index stays a column.

    ``pre_buffer=False``: pre-buffering kept every row group's raw bytes read so far, a
    second copy of the whole file by the last batch.  Arrow's allocator keeps freed pages
    for reuse; they are handed back at the end, so DQVL and scoring do not carry them.
    """
    try:
        with pq.ParquetFile(path, pre_buffer=False) as source:
            for batch in source.iter_batches(batch_size=rows, columns=usecols):
                yield batch.to_pandas(ignore_metadata=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _parquet_error(shown, exc) from None
    finally:
        pa.default_memory_pool().release_unused()


def _parquet_sample(path: Path, shown: str, header: list[str]) -> pd.DataFrame:
    return next(_parquet_chunks(path, shown, None, SAMPLE_ROWS), pd.DataFrame(columns=header))


# --------------------------------------------------------------------------- reading
def _read_csv_table(path: Path, shown: str, rules: ColumnRules, fid: str) -> FdcTable:
    header = _csv_header(path, shown)
    shape = csv_rows(path, shown)
    layout = _CsvLayout.of(path, header, shape)
    plan = _plan(header, _read_csv(path, shown, layout, nrows=SAMPLE_ROWS), rules, shown)
    rows = _chunk_rows(len(layout.names))
    chunks = _csv_chunks(path, shown, layout, rows)
    table = _table_from_chunks(plan, chunks, fid, shape.n_rows)
    table.csv_rows = shape
    return table


def _read_parquet_table(path: Path, shown: str, rules: ColumnRules, fid: str) -> FdcTable:
    header, n_rows = _parquet_header(path, shown)
    if not header:
        raise DataError(f"{shown}: no columns")
    plan = _plan(header, _parquet_sample(path, shown, header), rules, shown)
    chunks = _parquet_chunks(path, shown, plan.usecols, _chunk_rows(len(plan.usecols)))
    return _table_from_chunks(plan, chunks, fid, n_rows)


def read_fdc(
    path: Path,
    timestamp_col: str | None = None,
    channels: list[str] | None = None,
    channel_regex: str | None = None,
    file_id: str | None = None,
    exclude_columns: str | None = None,
    exclude_counters: bool = False,
) -> FdcTable:
    """Read one FDC file as-is; ``file_id`` defaults to the file name.

    The exclusion keys default to off here (a plain reader); the training and scoring
    paths pass the config's, whose defaults are on.
    """
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
    rules = ColumnRules(timestamp_col, channels, channel_regex, exclude_columns, exclude_counters)
    read = _read_csv_table if suffix in CSV_SUFFIXES else _read_parquet_table
    table = read(path, shown, rules, file_id or path.name)
    if table.n_rows == 0:
        raise DataError(f"{shown}: header only, no data rows")
    return table
