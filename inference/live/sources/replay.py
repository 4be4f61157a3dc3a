"""Replay of a recorded file at N x real time: the demo, rehearsals, the equality tests.

The file is read once with the batch readers (through the stream's ``read_recording``),
so a replay hands the scorer exactly the rows batch scoring sees.  Rows go out in blocks;
at ``speed`` > 0 a row goes out once ``(stamp - first stamp) / speed`` seconds of wall
time have passed (rows without stamps: the configured sample period).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.paths import display_path, resolve_path
from inference.live.config import ReplaySourceConfig
from inference.live.rows import LiveRow, SourceItem
from streams.base import Recording


class ReplaySource:
    kind = "replay"

    def __init__(self, cfg: ReplaySourceConfig, read_recording: Callable[[Path], Recording],
                 period_s: float | None) -> None:
        self.cfg, self.read_recording, self.period_s = cfg, read_recording, period_s
        self.path = resolve_path(cfg.path)
        self.finished = False
        self.rec: Recording | None = None
        self.next_row = 0
        self._t0 = 0.0
        self._row0 = 0

    def open(self, columns: list[str], resume: dict[str, Any] | None) -> None:
        self.rec = self.read_recording(self.path)
        self.next_row = int((resume or {}).get("row", 0))
        self._t0, self._row0 = time.monotonic(), self.next_row
        self.finished = self.next_row >= len(self.rec.values)

    def _offset_s(self, row: int) -> float:
        """Seconds of recording from the first replayed row to ``row``."""
        assert self.rec is not None
        stamps = self.rec.stamps
        if stamps is not None and not np.isnat(stamps[row]) and not np.isnat(stamps[self._row0]):
            return float((stamps[row] - stamps[self._row0]) / np.timedelta64(1, "s"))
        return (row - self._row0) * (self.period_s or 1.0)

    def _due(self, timeout_s: float) -> int:
        """The end of the rows due now (waiting up to ``timeout_s`` for the next one)."""
        assert self.rec is not None
        n = len(self.rec.values)
        stop = min(n, self.next_row + self.cfg.rows_per_read)
        if self.cfg.speed == 0:
            return stop
        wait = self._offset_s(self.next_row) / self.cfg.speed - (time.monotonic() - self._t0)
        if wait > 0:
            time.sleep(min(wait, timeout_s))
        elapsed = (time.monotonic() - self._t0) * self.cfg.speed
        end = self.next_row
        while end < stop and self._offset_s(end) <= elapsed:
            end += 1
        return end

    def read(self, timeout_s: float) -> list[SourceItem]:
        if self.rec is None or self.finished:
            time.sleep(min(timeout_s, 0.05))
            return []
        lo, hi = self.next_row, self._due(timeout_s)
        if hi <= lo:
            return []
        self.next_row = hi
        self.finished = hi >= len(self.rec.values)
        stamps = None if self.rec.stamps is None else self.rec.stamps[lo:hi]
        return [LiveRow(stamps, self.rec.values[lo:hi], {"row": hi})]

    def describe(self) -> str:
        speed = "as fast as possible" if self.cfg.speed == 0 else f"{self.cfg.speed:g}x real time"
        return f"{display_path(self.path)} ({speed})"

    def close(self) -> None:
        self.finished = True  # the recording stays readable (the demo reports on it)
