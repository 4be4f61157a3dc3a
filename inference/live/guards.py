"""Per-row data-quality guards: the live counterpart of DQVL's file checks.

A file can be dropped; a live feed cannot, so each problem raises a *data-quality event*
(apart from process alarms) while scoring goes on: missing values read as the channel
centre, exactly like a batch file.  Checks run on blocks of rows at once; an event opens
at the first row its condition holds and clears after ``clear_rows`` clean rows (a
``source_down`` clears when the source is back).

- ``nan_burst``: ``nan_burst_rows`` rows in a row with a missing value in some channel.
- ``missing_channel``: a channel missing ``missing_rows`` rows in a row.
- ``stuck``: a channel exactly constant ``stuck_rows`` rows in a row (not one that was
  constant in training).
- ``gap``: a time step over ``gap_factor`` x the expected sample period.
- ``out_of_order``: a row stamped at or before the previous one (the row is dropped).
- ``fs_drift``: the median sample period over a window off the expected one by more than
  ``drift_tolerance``.
- ``bad_payload`` / ``source_down``: what the source reported (:mod:`inference.live.rows`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inference.live.config import GuardConfig
from inference.live.rows import SourceNotice

Stamp = str | int
ROW_CHECKS = ("nan_burst", "missing_channel", "stuck", "gap", "out_of_order")


@dataclass
class DqEvent:
    id: str
    check: str
    channels: list[str]
    detail: str
    start: Stamp
    end: Stamp | None = None
    open: bool = True


@dataclass
class _Check:
    event: DqEvent | None = None
    clean: int = 0  # clean rows since the condition last held


@dataclass
class _Runs:
    """Run lengths carried from one block to the next."""

    nan_any: int = 0
    missing: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)
    last: list[float] = field(default_factory=list)  # the previous row (for ``stuck``)


def stamp_text(stamp: np.datetime64 | None, row: int) -> Stamp:
    """An ISO time (ms) when the row has a stamp, else its row number."""
    if stamp is None or np.isnat(stamp):
        return int(row)
    return str(np.datetime_as_string(np.datetime64(stamp, "ns"), unit="ms"))


class _At:
    """Stamp text of row ``i`` of a block, made only for the rows an event needs."""

    def __init__(self, stamps: np.ndarray | None, first_row: int) -> None:
        self.stamps, self.first_row = stamps, first_row

    def __getitem__(self, i: int) -> Stamp:
        return stamp_text(None if self.stamps is None else self.stamps[i], self.first_row + i)


def _runs(flags: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each row (axis 0), continuing ``carry``."""
    n = flags.shape[0]
    rows = np.arange(n).reshape((n,) + (1,) * (flags.ndim - 1))
    last_false = np.maximum.accumulate(np.where(flags, -1, rows), axis=0)
    run = rows - last_false
    return np.where(last_false < 0, run + carry, run)


def _names(columns: list[str], limit: int = 6) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f" (+{len(columns) - limit} more)" if len(columns) > limit else "")


class Guards:
    """The data-quality state of one live stream; transitions are ``(kind, event)``."""

    def __init__(self, columns: list[str], rules: GuardConfig, period_s: float | None,
                 steady: frozenset[str] = frozenset()) -> None:
        self.columns, self.rules, self.period_s = list(columns), rules, period_s
        self.watch_stuck = np.array([c not in steady for c in self.columns])
        self.checks: dict[str, _Check] = {}
        self.runs = _Runs()
        self.seq = 0
        self.last_stamp: np.datetime64 | None = None

    # ------------------------------------------------------------------ transitions
    def _raise(self, check: str, channels: list[str], detail: str, at: Stamp
               ) -> list[tuple[str, DqEvent]]:
        state = self.checks.setdefault(check, _Check())
        state.clean = 0
        if state.event is not None:
            return []
        self.seq += 1
        state.event = DqEvent(f"dq-{self.seq}", check, channels, detail, at)
        return [("raised", state.event)]

    def _clear(self, check: str, at: Stamp) -> list[tuple[str, DqEvent]]:
        state = self.checks.get(check)
        if state is None or state.event is None:
            return []
        event, state.event, state.clean = state.event, None, 0
        event.end, event.open = at, False
        return [("cleared", event)]

    def _advance(self, check: str, cond: np.ndarray, at: _At,
                 describe: Any) -> list[tuple[str, DqEvent]]:
        """Walk one check over a block: raise where ``cond`` first holds, clear after
        ``clear_rows`` clean rows; ``describe(i)`` gives (channels, detail) at row i."""
        out: list[tuple[str, DqEvent]] = []
        state = self.checks.setdefault(check, _Check())
        i, n, need = 0, len(cond), self.rules.clear_rows
        while i < n:
            if state.event is None:
                hits = np.flatnonzero(cond[i:])
                if not hits.size:
                    break
                i += int(hits[0])
                out += self._raise(check, *describe(i), at[i])
                i += 1
                continue
            held = np.flatnonzero(cond[i:])
            stop = i + int(held[0]) if held.size else n  # clean rows run from i to stop
            if state.clean + (stop - i) >= need:
                i += need - state.clean
                out += self._clear(check, at[i - 1])
                continue
            state.clean = 0 if held.size else state.clean + (stop - i)
            i = stop + 1 if held.size else n
        return out

    # ------------------------------------------------------------------ rows
    def rows(self, stamps: np.ndarray | None, values: np.ndarray, first_row: int
             ) -> list[tuple[str, DqEvent]]:
        """Check a block of accepted rows ``(n, C)``; ``first_row`` numbers the first."""
        c = values.shape[1]
        at = _At(stamps, first_row)
        r, rules = self.runs, self.rules
        missing = ~np.isfinite(values)
        if len(r.missing) != c:
            r.missing, r.stuck, r.last = [0] * c, [0] * c, [np.nan] * c
        nan_run = _runs(missing.any(axis=1), np.asarray(r.nan_any))
        miss_run = _runs(missing, np.asarray(r.missing))
        prev = np.vstack([np.asarray(r.last, dtype=values.dtype)[None], values[:-1]])
        same_run = _runs((values == prev) & ~missing, np.asarray(r.stuck))
        stuck_run = same_run * self.watch_stuck

        def names_at(flags: np.ndarray) -> list[str]:
            return [self.columns[j] for j in np.flatnonzero(flags)]

        def over(run: np.ndarray, limit: int, what: str) -> Any:
            return lambda i: (names_at(run[i] >= limit), f"{_names(names_at(run[i] >= limit))} "
                                                         f"{what}")

        burst = f"{rules.nan_burst_rows}+ rows in a row with missing values"
        out = self._advance("nan_burst", nan_run >= rules.nan_burst_rows, at,
                            lambda i: (names_at(missing[i]),
                                       f"{burst} ({_names(names_at(missing[i]))})"))
        out += self._advance("missing_channel", (miss_run >= rules.missing_rows).any(axis=1), at,
                             over(miss_run, rules.missing_rows,
                                  f"missing for {rules.missing_rows}+ rows (read as the "
                                  "channel centre)"))
        repeats = max(1, rules.stuck_rows - 1)  # n equal rows are n - 1 repeats
        out += self._advance("stuck", (stuck_run >= repeats).any(axis=1), at,
                             over(stuck_run, repeats,
                                  f"unchanged for {rules.stuck_rows}+ rows (stuck sensor?)"))
        out += self._gaps(stamps, at)
        r.nan_any, r.missing, r.stuck = int(nan_run[-1]), miss_run[-1].tolist(), \
            same_run[-1].tolist()
        r.last = values[-1].astype(np.float64).tolist()
        return out

    def _gaps(self, stamps: np.ndarray | None, at: _At) -> list[tuple[str, DqEvent]]:
        if stamps is None or self.period_s is None or not len(stamps):
            return []
        prev = np.concatenate([[self.last_stamp if self.last_stamp is not None
                                else stamps[0]], stamps[:-1]])
        step = (stamps - prev) / np.timedelta64(1, "s")
        limit = self.rules.gap_factor * self.period_s
        self.last_stamp = stamps[-1]
        return self._advance("gap", step > limit, at, lambda i: (
            [], f"{step[i]:g} s between rows (expected {self.period_s:g} s; more than "
                f"{self.rules.gap_factor:g}x is a gap)"))

    def out_of_order(self, stamp: np.datetime64, last: np.datetime64, row: int
                     ) -> list[tuple[str, DqEvent]]:
        """A row stamped at or before the previous one: dropped, and said so once."""
        at = stamp_text(stamp, row)
        return self._raise("out_of_order", [], f"row stamped {at} is not after the previous "
                           f"row ({stamp_text(last, row)}); dropped", at)

    def clean_rows(self, check: str, n_rows: int, at: Stamp) -> list[tuple[str, DqEvent]]:
        """Good rows since the last out-of-order row or bad payload count toward clearing
        that event (those checks see problems one at a time, not in a block of rows)."""
        state = self.checks.get(check)
        if state is None or state.event is None:
            return []
        state.clean += n_rows
        return self._clear(check, at) if state.clean >= self.rules.clear_rows else []

    # ------------------------------------------------------------------ windows / notices
    def window_period(self, stamps: np.ndarray | None, at: Stamp) -> list[tuple[str, DqEvent]]:
        """``fs_drift`` from one window's stamps (once per scored window)."""
        if stamps is None or self.period_s is None or len(stamps) < 3:
            return []
        period = float(np.median(np.diff(stamps) / np.timedelta64(1, "s")))
        off = abs(period / self.period_s - 1)
        if off > self.rules.drift_tolerance:
            return self._raise("fs_drift", [], f"median period {period:g} s over a window, "
                               f"expected {self.period_s:g} s ({off:.0%} off)", at)
        return self._clear("fs_drift", at)

    def notice(self, notice: SourceNotice, at: Stamp) -> list[tuple[str, DqEvent]]:
        if notice.kind == "source_up":
            return self._clear("source_down", at)
        return self._raise(notice.kind, list(notice.channels), notice.detail, at)

    def open_events(self) -> list[DqEvent]:
        return [c.event for c in self.checks.values() if c.event is not None]

    # ------------------------------------------------------------------ restart
    def state(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "last_stamp": None if self.last_stamp is None else int(
                self.last_stamp.astype("datetime64[ns]").astype(np.int64)),
            "runs": asdict(self.runs),
            "checks": {k: {"clean": v.clean, "event": None if v.event is None else
                           asdict(v.event)} for k, v in self.checks.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.seq = int(state["seq"])
        last = state.get("last_stamp")
        self.last_stamp = None if last is None else np.datetime64(int(last), "ns")
        self.runs = _Runs(**state["runs"])
        self.checks = {k: _Check(DqEvent(**v["event"]) if v["event"] else None, int(v["clean"]))
                       for k, v in state["checks"].items()}
