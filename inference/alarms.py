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

from dataclasses import dataclass

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


def _recent_counts(over: np.ndarray, n: int) -> np.ndarray:
    """How many of the last ``n`` windows (this one included) are ``True``."""
    c = np.concatenate([[0], np.cumsum(over, dtype=np.int64)])
    idx = np.arange(1, len(over) + 1)
    return c[idx] - c[np.maximum(idx - n, 0)]


def find_events(
    scores: np.ndarray, warn: float, anomaly: float, clear: float, rule: AlarmRule
) -> list[EventSpan]:
    """Alarm events of one file's window scores (time order); see the module docstring."""
    s = np.asarray(scores, dtype=np.float64)
    over_w = s > warn
    n_warn = _recent_counts(over_w, rule.raise_n)
    n_anom = _recent_counts(s > anomaly, rule.raise_n)
    events: list[EventSpan] = []
    i, n = 0, len(s)
    while i < n:
        if n_warn[i] < rule.raise_k:
            i += 1
            continue
        lo = max(0, i - rule.raise_n + 1)
        start = lo + int(np.argmax(over_w[lo: i + 1]))
        raised, level, last_high, quiet = i, "warn", i, 0
        j = i
        while j < n and quiet < rule.clear_windows:
            if n_anom[j] >= rule.raise_k:
                level = "anomaly"
            if s[j] > clear or not np.isfinite(s[j]):
                last_high, quiet = j, 0
            else:
                quiet += 1
            j += 1
        closed = quiet >= rule.clear_windows
        events.append(EventSpan(level, start, raised, last_high, open=not closed))
        i = j
    return events


def file_decision(events: list[EventSpan]) -> str:
    """A file (or an overlap of two streams) takes the highest level of its events."""
    return max((e.level for e in events), key=LEVELS.index, default="normal")
