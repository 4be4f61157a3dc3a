"""One stream watched live: rows in, windows scored, alarm and data-quality events out.

The scorer is the batch decision path cut into steps.  Windows start every ``stride`` rows
from the first row, as in a file; each is prepared and scored by the stream's code
(:meth:`StreamTask.live_input`, :func:`inference.scoring.score_batch`), and the scores go
through :class:`inference.alarms.AlarmTracker`, the rule batch decisions use, so a
replayed file raises the events its batch decision lists.  When a finite source ends,
the window that ends at the last row is scored too, as batch scoring does.

Restarts: the source position, the rows of the current window, the alarm and guard state
and the counters are saved atomically (:mod:`inference.live.sinks`) at most every
``state_every_s`` and after every event; a restart resumes from there.  Lines written
after the last save are produced again, identically, and not written twice: every
events line carries a sequence number and every score line its window index.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import streams
from core.config import AlarmRule, DecisionConfig
from core.errors import DataError
from core.io import atomic_write_json
from core.layout import DecisionLayout
from core.paths import display_path, resolve_path
from inference.alarms import AlarmTracker, EventSpan, Transition, window_levels
from inference.calibration import load_thresholds, stale_reason, threshold_profile
from inference.checkpoint_io import Trained, check_config_matches, load_trained
from inference.decisions import EventRecord, FileWindows, event_records, num6, top_parts
from inference.live.config import LiveConfig, LiveStreamConfig
from inference.live.guards import DqEvent, Guards, stamp_text
from inference.live.rows import LiveRow, LiveSource, SourceItem, SourceNotice
from inference.live.sinks import JsonlLog, load_state, save_state
from inference.scoring import BasisFn, contributor_names, parts_key, score_batch
from streams.base import LiveInput

STATE_VERSION = 1
STATUS_VERSION = "1.0"
NAT = np.datetime64("NaT", "ns")


def wall_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class ScoringModel:
    """What scores a stream's windows: the checkpoint, thresholds and the stream's view."""

    stream: str
    trained: Trained
    cfg: Any
    thresholds: dict[str, Any]
    live: LiveInput
    names: list[str]
    top_k: int
    rule: AlarmRule  # the decision config's, which the thresholds were calibrated with
    basis: BasisFn | None = None  # another model pass (ONNX Runtime), None: PyTorch
    layout: Any = None  # the stream's score layout (frequency bands), made once
    profile: np.ndarray | None = None  # the normal error profile of relative scores

    @classmethod
    def load(cls, stream: str, dcfg: DecisionConfig, device: Any, backend: str = "torch"
             ) -> ScoringModel:
        """The checkpoint, config and thresholds the batch decisions use; refuses
        thresholds that are missing or stale (run the test pipeline to calibrate)."""
        if stream not in dcfg.streams:
            raise DataError(f"[{stream}] the decision config names no such stream "
                            f"(it has {', '.join(dcfg.streams)})")
        entry = dcfg.streams[stream]
        cfg = streams.load_config(entry.config, entry.overrides, stream=stream)
        trained = load_trained(entry.checkpoint, expected_stream=stream, device=device)
        check_config_matches(trained, cfg, entry.config)
        path = DecisionLayout.from_config(dcfg).thresholds(stream)
        thr = load_thresholds(path, stream)
        why = stale_reason(thr, trained, cfg, None, dcfg.thresholds, dcfg.alarm)
        if why:
            raise DataError(f"[{stream}] {display_path(path)}: {why}; calibrate first "
                            "(python -m pipelines.run_local_test_pipeline)")
        names = contributor_names(trained)
        basis = None
        if backend != "torch":
            from inference.onnx_scoring import scoring_backend

            basis = scoring_backend(trained, backend)
        return cls(stream, trained, cfg, thr, trained.task.live_input(cfg, trained.model_meta,
                                                                      device),
                   names, len(names) if len(names) <= 3 else dcfg.top_contributors, dcfg.alarm,
                   basis, trained.task.score_layout(cfg), threshold_profile(thr))

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                  list[str]]:
        """Scores, per-part errors, band errors (or None) and band labels of raw windows."""
        task = self.trained.task
        scores, aux = score_batch(self.live.prepare(windows), self.trained, self.cfg.scoring,
                                  self.layout, self.profile, self.basis)
        return scores, aux[parts_key(task)], aux.get("band_errors"), \
            list(aux.get("band_labels", []))


@dataclass
class WindowLog:
    """Scored windows an event record may still need: from the open event's start, or the
    last ``raise_n`` windows (where a new event can start)."""

    base: int = 0  # index of the first kept window
    scores: list[float] = field(default_factory=list)
    parts: list[np.ndarray] = field(default_factory=list)
    bands: list[np.ndarray] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # first row of each window
    begin: list[np.datetime64] = field(default_factory=list)
    end: list[np.datetime64] = field(default_factory=list)

    def add(self, score: float, parts: np.ndarray, bands: np.ndarray | None, start: int,
            begin: np.datetime64, end: np.datetime64) -> None:
        self.scores.append(score)
        self.parts.append(parts)
        if bands is not None:
            self.bands.append(bands)
        self.starts.append(start)
        self.begin.append(begin)
        self.end.append(end)

    def keep_from(self, index: int) -> None:
        cut = max(0, index - self.base)
        if cut:
            for name in ("scores", "parts", "bands", "starts", "begin", "end"):
                items = getattr(self, name)
                del items[:cut]
            self.base += cut

    def record(self, span: EventSpan, event_id: int, model: ScoringModel, window: int,
               band_labels: list[str]) -> EventRecord:
        """The event as batch decisions would write it (``event_records`` on these windows)."""
        b = self.base
        local = EventSpan(span.level, span.start - b, span.raised - b, span.end - b, span.open)
        begin, end = np.array(self.begin, "datetime64[ns]"), np.array(self.end, "datetime64[ns]")
        times = None if np.isnat(end).any() or np.isnat(begin).any() else (begin, end)
        where = FileWindows(np.asarray(self.starts, dtype=np.int64), window, times)
        bands = np.stack(self.bands) if self.bands else None
        (rec,) = event_records([local], np.asarray(self.scores), np.stack(self.parts),
                               model.names, model.top_k, where, bands, band_labels)
        return rec.model_copy(update={
            "id": event_id, "start_window": rec.start_window + b,
            "raised_window": rec.raised_window + b, "end_window": rec.end_window + b,
            "peak_window": rec.peak_window + b})

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.scores)
        return {
            "log_scores": np.asarray(self.scores, dtype=np.float64),
            "log_parts": np.stack(self.parts) if n else np.zeros((0, 0), np.float32),
            "log_bands": np.stack(self.bands) if self.bands else np.zeros((0, 0), np.float32),
            "log_starts": np.asarray(self.starts, dtype=np.int64),
            "log_begin": np.asarray(self.begin, dtype="datetime64[ns]").astype(np.int64),
            "log_end": np.asarray(self.end, dtype="datetime64[ns]").astype(np.int64),
        }

    @classmethod
    def from_arrays(cls, base: int, a: dict[str, np.ndarray]) -> WindowLog:
        return cls(base, a["log_scores"].tolist(), list(a["log_parts"]), list(a["log_bands"]),
                   a["log_starts"].tolist(), list(a["log_begin"].astype("datetime64[ns]")),
                   list(a["log_end"].astype("datetime64[ns]")))


class LiveScorer:
    """Scores one stream's source; :meth:`run` until stopped or the source is finished."""

    def __init__(self, stream: str, model: ScoringModel, source: LiveSource,
                 scfg: LiveStreamConfig, live: LiveConfig, publisher: Any = None,
                 state_every_s: float = 1.0) -> None:
        self.stream, self.model, self.source, self.live_cfg = stream, model, source, live
        self.inp = model.live
        self.publisher = publisher
        self.state_every_s = state_every_s
        self.out = resolve_path(live.output_dir) / stream
        rotate = int(live.rotate_mib * (1 << 20))
        self.scores_log = JsonlLog(self.out / "scores.jsonl", rotate, live.keep_rotated)
        self.events_log = JsonlLog(self.out / "events.jsonl", rotate, live.keep_rotated,
                                   sync=True)
        thr = model.thresholds
        self.warn, self.anomaly, self.clear = (float(thr[k]) for k in ("warn", "anomaly", "clear"))
        self.rule = model.rule
        self.tracker = AlarmTracker(self.warn, self.anomaly, self.clear, self.rule)
        self.guards = Guards(self.inp.columns, scfg.guards, self.inp.period_s, self.inp.steady)
        self.log = WindowLog()
        n_cols = len(self.inp.columns)
        self.rows = np.zeros((0, n_cols), np.float32)  # buffered rows, the first is row0
        self.stamps = np.zeros(0, "datetime64[ns]")
        self.row0 = 0
        self.n_rows = 0
        self.next_window = 0
        self.last_start = -1
        self.stride: int | None = None
        self.period_s: float | None = None
        self.last_stamp: np.datetime64 | None = None
        self.position: dict[str, Any] | None = None
        self.seq = 0  # event transitions so far (process and data quality)
        self.event_id = 0
        self.band_labels: list[str] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=live.recent_scores)
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=50)
        self.connected = False
        self.state = "waiting"
        self._saved_at = 0.0
        self._status_at = 0.0
        self._dirty = False
        last_event = self.events_log.last()
        last_score = self.scores_log.last()
        self.written_seq = int(last_event["seq"]) if last_event else 0
        self.written_window = int(last_score["window"]) if last_score else -1
        self._resume()

    # ------------------------------------------------------------------ restart state
    @property
    def state_path(self) -> Path:
        return self.out / "state.npz"

    def _identity(self) -> dict[str, Any]:
        return {"checkpoint_sha256": self.model.trained.ckpt_info["sha256"],
                "thresholds": [self.clear, self.warn, self.anomaly],
                "columns": self.inp.columns, "window": self.inp.window}

    def _resume(self) -> None:
        loaded = load_state(self.state_path)
        if loaded is None:
            return
        h, a = loaded
        if h.get("version") != STATE_VERSION or h.get("identity") != self._identity():
            print(f"[{self.stream}] {display_path(self.state_path)} belongs to another model, "
                  "thresholds or stream set-up: starting from the first row")
            return
        self.row0, self.n_rows, self.next_window = h["row0"], h["n_rows"], h["next_window"]
        self.last_start, self.stride, self.period_s = h["last_start"], h["stride"], h["period_s"]
        self.last_stamp = None if h["last_stamp"] is None else np.datetime64(h["last_stamp"],
                                                                             "ns")
        self.position, self.seq, self.event_id = h["position"], h["seq"], h["event_id"]
        self.band_labels = h["band_labels"]
        self.recent.extend(h["recent"])
        self.recent_events.extend(h["recent_events"])
        self.rows, self.stamps = a["rows"], a["stamps"].astype("datetime64[ns]")
        self.tracker = AlarmTracker.from_state(h["tracker"], self.warn, self.anomaly, self.clear,
                                               self.rule)
        self.guards.load_state(h["guards"])
        self.log = WindowLog.from_arrays(h["log_base"], a)
        print(f"[{self.stream}] resuming after row {self.n_rows} (window {self.next_window}, "
              f"{self.seq} event transitions so far)")

    def save(self) -> None:
        header = {
            "version": STATE_VERSION, "identity": self._identity(), "row0": self.row0,
            "n_rows": self.n_rows, "next_window": self.next_window, "last_start": self.last_start,
            "stride": self.stride, "period_s": self.period_s,
            "last_stamp": None if self.last_stamp is None else int(
                self.last_stamp.astype("datetime64[ns]").astype(np.int64)),
            "position": self.position, "seq": self.seq, "event_id": self.event_id,
            "band_labels": self.band_labels, "recent": list(self.recent),
            "recent_events": list(self.recent_events), "tracker": self.tracker.state(),
            "guards": self.guards.state(), "log_base": self.log.base, "saved": wall_now(),
        }
        arrays = {"rows": self.rows, "stamps": self.stamps.astype(np.int64), **self.log.arrays()}
        save_state(self.state_path, header, arrays)
        self._saved_at = time.monotonic()
        self._dirty = False

    # ------------------------------------------------------------------ events
    def _emit(self, kind: str, transition: str, event: dict[str, Any]) -> None:
        self.seq += 1
        line = {"kind": kind, "transition": transition, "stream": self.stream, "seq": self.seq,
                "written": wall_now(), "event": event}
        self.recent_events.append(line)
        if self.seq <= self.written_seq:
            return  # written before a restart: produced again, not written twice
        self.events_log.append([line])
        self.written_seq = self.seq
        if self.publisher is not None:
            self.publisher.publish(line)
        print(f"[{self.stream}] {_describe(kind, transition, event)}", flush=True)
        self._dirty = True

    def _dq(self, transitions: list[tuple[str, DqEvent]]) -> None:
        for transition, event in transitions:
            self._emit("data_quality", transition, vars(event).copy())

    def _process_events(self, transitions: list[Transition]) -> None:
        for t in transitions:
            if t.kind == "raised":
                self.event_id += 1
            rec = self.log.record(t.span, self.event_id, self.model, self.inp.window,
                                  self.band_labels)
            self._emit("process", t.kind, rec.model_dump(exclude_none=True))

    # ------------------------------------------------------------------ rows
    def handle(self, items: list[SourceItem]) -> None:
        """Take what the source gave: blocks of rows and notices, in order."""
        block: list[LiveRow] = []
        for item in items:
            if isinstance(item, LiveRow):
                block.append(item)
                continue
            self._rows(block)
            block = []
            self._notice(item)
        self._rows(block)

    def _notice(self, notice: SourceNotice) -> None:
        if notice.kind == "source_up":
            self.connected = True
        elif notice.kind == "source_down":
            self.connected = False
        at = stamp_text(notice.stamp or self.last_stamp, self.n_rows)
        self._dq(self.guards.notice(notice, at))

    def _rows(self, block: list[LiveRow]) -> None:
        if not block:
            return
        self.connected = True
        values = np.vstack([np.atleast_2d(np.asarray(r.values, np.float32)) for r in block])
        stamps = _block_stamps(block)
        if stamps is not None:
            keep = self._in_order(stamps)
            values, stamps = values[keep], stamps[keep]
            if not len(values):
                self.position = block[-1].position or self.position
                return
        first = self.n_rows
        self._dq(self.guards.rows(stamps, values, first))
        self._dq(self.guards.clean_rows("bad_payload", len(values), stamp_text(
            None if stamps is None else stamps[-1], first + len(values) - 1)))
        self._append(values, stamps)
        self.position = block[-1].position or self.position
        self._score_ready()

    def _in_order(self, stamps: np.ndarray) -> np.ndarray:
        """Rows stamped after every earlier row; others are dropped (a data-quality event)."""
        keep = np.ones(len(stamps), bool)
        last = self.last_stamp
        for i, s in enumerate(stamps):  # usually one comparison per row, in order
            if np.isnat(s) or (last is not None and s <= last):
                keep[i] = False
                self._dq(self.guards.out_of_order(s, last if last is not None else s,
                                                  self.n_rows))
            else:
                last = s
        self.last_stamp = last
        n_ok = int(keep.sum())
        if n_ok:
            self._dq(self.guards.clean_rows("out_of_order", n_ok, stamp_text(last, self.n_rows)))
        return keep

    def _append(self, values: np.ndarray, stamps: np.ndarray | None) -> None:
        n = len(values)
        self.rows = np.concatenate([self.rows, values])
        self.stamps = np.concatenate([self.stamps, stamps if stamps is not None
                                      else np.full(n, NAT)])
        self.n_rows += n
        self._dirty = True

    def _window_start(self, k: int) -> int:
        return k * self.stride

    def _decide_stride(self) -> None:
        """Rows between windows once the first window is in, from its sample period (the
        median step of its stamps), else the configured one, as batch scoring measures."""
        first = self.stamps[: self.inp.window]
        measured = None
        if not np.isnat(first).any() and len(first) > 1:
            steps = np.diff(first) / np.timedelta64(1, "s")
            measured = float(np.median(steps)) if len(steps) else None
        self.period_s = measured if measured and measured > 0 else self.inp.period_s
        self.stride = self.inp.stride(self.period_s)
        if self.guards.period_s is None:
            self.guards.period_s = self.period_s

    def _score_ready(self, final: bool = False) -> None:
        w = self.inp.window
        if self.stride is None:
            if self.n_rows < w:
                return
            self._decide_stride()
        starts = []
        while self._window_start(self.next_window + len(starts)) + w <= self.n_rows:
            starts.append(self._window_start(self.next_window + len(starts)))
        grid_last = starts[-1] if starts else self.last_start
        if final and self.inp.covering_last and 0 <= grid_last < self.n_rows - w:
            starts.append(self.n_rows - w)  # as batch scoring ends a file
        for lo in range(0, len(starts), self.live_cfg.batch_windows):
            self._score(starts[lo: lo + self.live_cfg.batch_windows])
        keep = min(self._window_start(self.next_window), self.n_rows - w)
        if keep > self.row0:
            cut = keep - self.row0
            self.rows, self.stamps, self.row0 = self.rows[cut:], self.stamps[cut:], keep

    def _score(self, starts: list[int]) -> None:
        if not starts:
            return
        w = self.inp.window
        offsets = np.asarray(starts) - self.row0
        windows = self.rows[offsets[:, None] + np.arange(w)]
        scores, parts, bands, labels = self.model.score(windows)
        self.band_labels = labels or self.band_labels
        levels = window_levels(scores, self.warn, self.anomaly)
        lines = []
        for j, start in enumerate(starts):
            index = self.next_window
            self.next_window += 1
            self.last_start = start
            begin, end = self.stamps[offsets[j]], self.stamps[offsets[j] + w - 1]
            self.log.add(float(scores[j]), parts[j], None if bands is None else bands[j],
                         start, begin, end)
            end_text = stamp_text(None if np.isnat(end) else end, start + w - 1)
            line = {"window": index, "start": stamp_text(None if np.isnat(begin) else begin,
                                                         start),
                    "end": end_text, "score": num6(scores[j]), "level": str(levels[j]),
                    "top": top_parts(self.model.names, parts[j], min(5, self.model.top_k))}
            if index > self.written_window:
                lines.append(line)
                self.written_window = index
            self.recent.append({k: line[k] for k in ("window", "end", "score", "level")})
            self._process_events(self.tracker.step(float(scores[j])))
            self._dq(self.guards.window_period(
                None if np.isnat(self.stamps[offsets[j]: offsets[j] + w]).any()
                else self.stamps[offsets[j]: offsets[j] + w], end_text))
            span = self.tracker.open_span()
            self.log.keep_from(span.start if span else self.next_window - self.rule.raise_n)
        self.scores_log.append(lines)

    # ------------------------------------------------------------------ status and loop
    def status(self) -> dict[str, Any]:
        span = self.tracker.open_span()
        open_events = []
        if span is not None:
            open_events.append(self.log.record(span, self.event_id, self.model,
                                               self.inp.window, self.band_labels)
                               .model_dump(exclude_none=True))
        last = self.recent[-1] if self.recent else None
        return {
            "schema_version": STATUS_VERSION, "stream": self.stream,
            "title": self.model.trained.task.title,
            "part_kind": self.model.trained.task.part_kind, "updated": wall_now(),
            "state": self.state,
            "source": {"kind": self.source.kind, "detail": self.source.describe(),
                       "connected": self.connected},
            "checkpoint": self.model.trained.ckpt_info.get("path"),
            "thresholds": {"clear": self.clear, "warn": self.warn, "anomaly": self.anomaly},
            "rows": self.n_rows, "windows": self.next_window,
            "level": span.level if span is not None else "normal",
            "last": last, "recent": list(self.recent), "open_events": open_events,
            "open_dq": [vars(e).copy() for e in self.guards.open_events()],
            "recent_events": list(self.recent_events),
        }

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._status_at >= self.live_cfg.status_every_s:
            atomic_write_json(self.out / "status.json", self.status())
            self._status_at = now

    def step(self, timeout_s: float = 0.5) -> bool:
        """One read from the source and what follows; False once a finite source is done."""
        items = self.source.read(timeout_s)
        seq = self.seq
        self.handle(items)
        if self.state == "waiting" and self.n_rows:
            self.state = "running"
        done = self.source.finished and not items
        if done:
            self._score_ready(final=True)
            self.state = "finished"
        if self._dirty and (self.seq != seq or done or
                            time.monotonic() - self._saved_at >= self.state_every_s):
            self.save()
        self.write_status(force=done or self.seq != seq)
        return not done

    def run(self, stop: Any, timeout_s: float = 0.5) -> None:
        """Score until ``stop`` (a threading.Event) is set or a finite source ends."""
        self.source.open(self.inp.columns, self.position)
        try:
            while not stop.is_set() and self.step(timeout_s):
                pass
        finally:
            if self.state != "finished":
                self.state = "stopped"
            if self._dirty:
                self.save()
            self.write_status(force=True)
            self.source.close()


# --------------------------------------------------------------------------- helpers
def _describe(kind: str, transition: str, event: dict[str, Any]) -> str:
    """One console line per event transition."""
    if kind == "data_quality":
        detail = f": {event['detail']}" if transition == "raised" else ""
        return f"data-quality {event['id']} {event['check']} {transition}{detail}"
    at = event["raised_at"] if transition == "raised" else event["end"]
    top = ", ".join(list(event["contributors"])[:3])
    return f"event {event['id']} {event['level']} {transition} at {at} (top: {top})"


def _block_stamps(block: list[LiveRow]) -> np.ndarray | None:
    """Stamps of a block of rows (a row may hold several), None when none has stamps."""
    parts = []
    for r in block:
        n = 1 if np.ndim(r.values) == 1 else len(r.values)
        if r.stamp is None:
            parts.append(np.full(n, NAT))
        else:
            parts.append(np.atleast_1d(np.asarray(r.stamp, dtype="datetime64[ns]")))
    stamps = np.concatenate(parts)
    return None if np.isnat(stamps).all() else stamps

