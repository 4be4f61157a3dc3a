"""What a live source hands the scorer: rows in the stream's column order, and notices.

Every source (replay, a growing CSV, OPC UA, MQTT) is a small adapter behind
:class:`LiveSource`.  It delivers :class:`LiveRow` items, one per time stamp, whose
``values`` follow the column order the scorer asked for (NaN where a value is missing or
unusable), and :class:`SourceNotice` items for what the scorer should know but cannot
see in the values: a payload that did not parse, a connection lost or regained.  The
scorer turns notices into data-quality events; a source never raises for bad input.

Tag-based sources (an OPC UA node or an MQTT topic per channel) get one value at a time;
:class:`RowAssembler` groups them into rows by their time stamp.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

NOTICE_KINDS = ("bad_payload", "source_down", "source_up")


@dataclass
class LiveRow:
    """One row, or a block of rows from a file source: stamps and values.

    ``stamp`` is datetime64[ns] (an ``(n,)`` array for a block) or None when the source
    has no time; ``values`` is ``(C,)`` (a block: ``(n, C)``) float32 in the scorer's
    column order, NaN where missing."""

    stamp: np.datetime64 | np.ndarray | None
    values: np.ndarray
    # where the source is after this row, to resume from (JSON-serialisable), e.g.
    # {"row": 1200} for a replay or {"file": "a.csv", "offset": 4096} for a tail
    position: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceNotice:
    """Something the values cannot show; becomes a data-quality event."""

    kind: str  # one of NOTICE_KINDS
    detail: str  # one line for an operator, naming the tag / file / broker
    channels: list[str] = field(default_factory=list)
    stamp: np.datetime64 | None = None


SourceItem = LiveRow | SourceNotice


class LiveSource(Protocol):
    """A source of rows; ``read`` never raises for bad input or a lost connection."""

    kind: str  # "replay", "csv_tail", "opcua", "mqtt"
    finished: bool  # True once a finite source (a replay) has nothing more to give

    def open(self, columns: list[str], resume: dict[str, Any] | None) -> None:
        """Start delivering rows for ``columns`` (in that order), after ``resume`` when
        given (the ``position`` of the last row the scorer used)."""
        ...

    def read(self, timeout_s: float) -> list[SourceItem]:
        """What arrived, in order; ``[]`` after ``timeout_s`` without anything."""
        ...

    def describe(self) -> str:
        """One line: what it reads (endpoint, topic, file) for the status and the log."""
        ...

    def close(self) -> None:
        ...


def as_float(value: Any) -> float | None:
    """A numeric value as float (bools and numeric strings too); None when it is not one."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def to_stamp(value: Any) -> np.datetime64 | None:
    """A time stamp as datetime64[ns] (ISO text, a datetime, or epoch seconds); None when
    it does not parse.  Time-zone-aware stamps are taken in UTC, like the file readers."""
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return None
            return np.datetime64(int(round(value * 1e9)), "ns")
        import pandas as pd

        stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            return None
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return np.datetime64(stamp.value, "ns")
    except (ValueError, TypeError, OverflowError):
        return None


class RowAssembler:
    """Groups per-tag values into rows by time stamp.

    A row is complete when every column has sent a value for its stamp (a non-numeric
    one counts, as NaN) or is marked absent (:meth:`mark_absent`: a node that does not
    exist); it is given out with every earlier incomplete row, oldest first, NaN where a
    value is missing (the scorer's guards raise the data-quality event).  :meth:`flush`
    gives out rows older than ``settle_s`` of wall-clock time, so a tag that stopped
    updating does not hold the others back.  A value for a stamp already given out is
    late: it is dropped with a ``bad_payload`` notice.
    """

    def __init__(self, columns: list[str], settle_s: float = 2.0) -> None:
        self.columns = list(columns)
        self.index = {c: i for i, c in enumerate(self.columns)}
        self.settle_s = settle_s
        self._pending: dict[np.datetime64, tuple[np.ndarray, np.ndarray, float]] = {}
        self._last_out: np.datetime64 | None = None
        self._absent = np.zeros(len(self.columns), dtype=bool)

    def mark_absent(self, column: str, absent: bool = True) -> None:
        """A column that will send nothing (True) or sends again (False)."""
        if column in self.index:
            self._absent[self.index[column]] = absent

    def add(self, column: str, stamp: np.datetime64, value: float | None,
            position: dict[str, Any] | None = None) -> list[SourceItem]:
        """Record one value (None: not numeric, kept as NaN); return what became ready."""
        if column not in self.index:
            return []
        if self._last_out is not None and stamp <= self._last_out:
            return [SourceNotice("bad_payload", f"{column}: value for {stamp} arrived after "
                                 "that row was scored (late or out of order); dropped",
                                 [column], stamp)]
        row, seen, _ = self._pending.setdefault(
            stamp, (np.full(len(self.columns), np.nan, dtype=np.float32),
                    np.zeros(len(self.columns), dtype=bool), time.monotonic()))
        row[self.index[column]] = np.nan if value is None else value
        seen[self.index[column]] = True
        return self._emit_through(stamp, position or {}) if (seen | self._absent).all() else []

    def flush(self, position: dict[str, Any] | None = None) -> list[SourceItem]:
        """Give out rows that waited longer than ``settle_s`` (their gaps as NaN)."""
        now = time.monotonic()
        stale = [s for s, (*_, t0) in self._pending.items() if now - t0 >= self.settle_s]
        return self._emit_through(max(stale), position or {}) if stale else []

    def _emit_through(self, stamp: np.datetime64, position: dict[str, Any]) -> list[SourceItem]:
        out: list[SourceItem] = []
        for s in sorted(k for k in self._pending if k <= stamp):
            row = self._pending.pop(s)[0]
            out.append(LiveRow(s, row, dict(position)))
            self._last_out = s
        return out
