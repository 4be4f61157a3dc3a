"""Alarm events from window scores: a level is raised only when it persists, and an event
clears only after the score has stayed low for a while (hysteresis).

Alarm-management practice (ISA-18.2, EEMUA 191) asks for few, meaningful alarms: one
window over a threshold is noise, not an alarm.  Here an event opens when ``raise_k`` of
the last ``raise_n`` windows exceed ``warn``; it becomes an ``anomaly`` event when
``raise_k`` of the last ``raise_n`` exceed ``anomaly``; it clears after ``clear_windows``
consecutive windows at or below ``clear`` (a level below ``warn``).  Pure functions on
one file's scores in time order; batch decisions, the benchmark and live scoring share them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.config import AlarmRule

LEVELS = ("normal", "warn", "anomaly")


@dataclass(frozen=True)
class EventSpan:
    """One alarm event as window indices of its file (inclusive)."""

    level: str  # the highest level the persistence rule confirmed during the event
    start: int  # first window over warn among those that raised the event
    raised: int  # window at which the persistence rule was met: when an operator is told
    end: int  # last window over the clear level before the event cleared
    open: bool  # still active at the file's last window


def window_levels(scores: np.ndarray, warn: float, anomaly: float) -> np.ndarray:
    """``normal`` / ``warn`` / ``anomaly`` per score (strictly above a threshold)."""
    s = np.asarray(scores)
    idx = (s > warn).astype(int) + (s > anomaly).astype(int)
    return np.asarray(LEVELS, dtype=object)[idx]


@dataclass
class _Open:
    """The event being tracked: where it started, when it was raised, how it stands."""

    start: int
    raised: int
    level: str
    last_high: int
    quiet: int = 0


@dataclass(frozen=True)
class Transition:
    """What one window changed: an event ``raised``, ``escalated`` to anomaly, ``cleared``."""

    kind: str
    span: EventSpan


class AlarmTracker:
    """The persistence / hysteresis rule one window at a time.

    Batch decisions feed a whole file (:func:`find_events`) and the live scorer feeds
    windows as they are scored, through the same code, so both raise the same events.
    ``state()`` / ``from_state()`` carry it over a restart as plain data.
    """

    def __init__(self, warn: float, anomaly: float, clear: float, rule: AlarmRule) -> None:
        self.warn, self.anomaly, self.clear, self.rule = warn, anomaly, clear, rule
        self.index = 0  # the next window
        self.recent: deque[tuple[bool, bool]] = deque(maxlen=rule.raise_n)  # (>warn, >anomaly)
        self.event: _Open | None = None

    def _span(self, e: _Open, open_: bool = True) -> EventSpan:
        return EventSpan(e.level, e.start, e.raised, e.last_high, open=open_)

    def step(self, score: float) -> list[Transition]:
        """Take the next window's score; the transitions it caused (usually none)."""
        i, s, rule = self.index, float(score), self.rule
        self.index += 1
        self.recent.append((s > self.warn, s > self.anomaly))
        out: list[Transition] = []
        e = self.event
        if e is None:
            if sum(w for w, _ in self.recent) < rule.raise_k:
                return out
            first = next(j for j, (w, _) in enumerate(self.recent) if w)
            e = self.event = _Open(start=i - len(self.recent) + 1 + first, raised=i,
                                   level="warn", last_high=i)
            out.append(Transition("raised", self._span(e)))
        if e.level == "warn" and sum(a for _, a in self.recent) >= rule.raise_k:
            e.level = "anomaly"
            if out:  # raised straight at anomaly
                out[-1] = Transition("raised", self._span(e))
            else:
                out.append(Transition("escalated", self._span(e)))
        if s > self.clear or not math.isfinite(s):
            e.last_high, e.quiet = i, 0
        else:
            e.quiet += 1
        if e.quiet >= rule.clear_windows:
            out.append(Transition("cleared", self._span(e, open_=False)))
            self.event = None
        return out

    def open_span(self) -> EventSpan | None:
        return None if self.event is None else self._span(self.event)

    def state(self) -> dict[str, Any]:
        return {"index": self.index, "recent": [list(r) for r in self.recent],
                "event": None if self.event is None else asdict(self.event)}

    @classmethod
    def from_state(cls, state: dict[str, Any], warn: float, anomaly: float, clear: float,
                   rule: AlarmRule) -> AlarmTracker:
        t = cls(warn, anomaly, clear, rule)
        t.index = int(state["index"])
        t.recent.extend((bool(w), bool(a)) for w, a in state["recent"])
        t.event = None if state["event"] is None else _Open(**state["event"])
        return t


def find_events(
    scores: np.ndarray, warn: float, anomaly: float, clear: float, rule: AlarmRule
) -> list[EventSpan]:
    """Alarm events of one file's window scores (time order); see the module docstring."""
    tracker = AlarmTracker(warn, anomaly, clear, rule)
    events: list[EventSpan] = []
    for s in np.asarray(scores, dtype=np.float64).tolist():
        events += [t.span for t in tracker.step(s) if t.kind == "cleared"]
    still = tracker.open_span()
    return events + ([still] if still is not None else [])


def file_decision(events: list[EventSpan]) -> str:
    """A file (or an overlap of two streams) takes the highest level of its events."""
    return max((e.level for e in events), key=LEVELS.index, default="normal")
