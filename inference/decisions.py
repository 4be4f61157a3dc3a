"""Decisions on test files: window levels, alarm events, file decisions, fusion, outputs.

Per stream: load the checkpoint safely, check it against the stream config, calibrate
thresholds from held-out normal files when they are missing, stale (another checkpoint,
scoring setting, threshold policy or alarm rule) or a recalibration is asked for, then
score every window of every test file DQVL keeps.  A dropped file is listed with its reason.

Window levels become **alarm events** by the persistence / hysteresis rule of
:mod:`inference.alarms`; a file takes the highest level of its events (``normal`` when it
has none), so one noisy window never flags a file.  Fused decision: for every pair of
files of two streams whose time ranges overlap, the events of each stream over the
overlapping windows, and the more severe of the two (and which stream flagged it).
``labels.csv`` in a test folder is ground truth, never data (:mod:`inference.labels`): it
adds per-file truth and correctness (``normal`` must raise no event, a fault must be
decided ``anomaly``) and feeds the decision-quality gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

import streams
from core.config import AlarmRule, DecisionConfig, StreamEntry
from core.device import amp_settings, select_device
from core.errors import DataError
from core.io import atomic_write_json, atomic_write_text
from core.layout import DecisionLayout
from core.paths import display_path
from engine.archive import archive_note, move_into, run_archive
from engine.checkpoint import created_now
from inference.alarms import LEVELS, EventSpan, file_decision, find_events, window_levels
from inference.calibration import (
    calibrate,
    data_files,
    load_thresholds,
    stale_reason,
    threshold_profile,
)
from inference.checkpoint_io import Trained, check_config_matches, load_trained
from inference.decision_gate import decision_gate
from inference.labels import Truth
from inference.scoring import ScoredFiles, contributor_names, parts_key

SCHEMA_VERSION = "2.0"
Stamp = str | int  # ISO time when the file has timestamps, else a row / sample index


# --------------------------------------------------------------------------- typed results
class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Record):
    clear: float
    warn: float
    anomaly: float


class WindowResult(_Record):
    index: int
    start: Stamp
    end: Stamp
    score: float
    level: str
    contributions: dict[str, float]  # the largest parts (channels, axes) of the score
    bands: dict[str, float] | None = None  # vibration: error per frequency band


class EventRecord(_Record):
    """One alarm event; its times are window *end* times (when the data had shown it)."""

    id: int
    level: str
    start: Stamp
    raised_at: Stamp
    end: Stamp
    start_window: int
    raised_window: int
    end_window: int
    n_windows: int
    duration_s: float | None
    peak_score: float
    peak_window: int
    open: bool
    contributors: dict[str, float]  # mean part error over the event, largest first
    bands: dict[str, float] | None = None


class FileDecision(_Record):
    file_id: str
    dqvl_decision: str
    decision: str
    n_windows: int
    n_warn: int
    n_anomaly: int
    max_score: float | None
    n_events: int
    first_alarm: Stamp | None
    events: list[EventRecord]
    label: str | None = None
    difficulty: str | None = None
    correct: bool | None = None
    fault_start: Stamp | None = None
    windows: list[WindowResult]


@dataclass
class StreamDecisions:
    stream: str
    checkpoint: str
    checkpoint_sha256: str
    checkpoint_run_id: str | None
    thresholds: Thresholds
    alarm: AlarmRule
    effective: dict[str, Any]
    files: list[FileDecision]
    dropped: list[dict[str, str]]
    windows: pd.DataFrame  # one row per window, for <stream>_windows.csv
    events: pd.DataFrame  # one row per event, for <stream>_events.csv
    # file id -> (window start times, window end times) as datetime64[ns], for fusion
    times: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    file_scores: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers
def num6(x: float) -> float:
    """Six significant digits: keeps decisions.json readable and small."""
    return float(f"{float(x):.6g}")


def _iso(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="ms"))


def top_parts(names: list[str], values: np.ndarray, k: int) -> dict[str, float]:
    order = np.argsort(values)[::-1][:k]
    return {names[i]: num6(values[i]) for i in order}


def top_text(top: dict[str, float], k: int) -> str:
    return ";".join(f"{n}:{v:.4g}" for n, v in list(top.items())[:k])


def _file_times(scored: ScoredFiles, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Start/end times of one file's windows as the reader stamped them (None: unknown)."""
    if scored.start_times is None or scored.end_times is None or not len(sel):
        return None
    begin, end = scored.start_times[sel], scored.end_times[sel]
    if np.isnat(begin).any() or np.isnat(end).any():
        return None
    return begin, end


@dataclass(frozen=True)
class FileWindows:
    """Where one file's windows sit in time, to stamp windows, events and the onset."""

    starts: np.ndarray  # first row / sample of each window
    window: int
    times: tuple[np.ndarray, np.ndarray] | None

    def start(self, j: int) -> Stamp:
        return _iso(self.times[0][j]) if self.times else int(self.starts[j])

    def end(self, j: int) -> Stamp:
        return _iso(self.times[1][j]) if self.times else int(self.starts[j]) + self.window - 1

    def seconds(self, a: int, b: int) -> float | None:
        """Seconds from the end of window ``a`` to the end of window ``b``."""
        if not self.times:
            return None
        return float((self.times[1][b] - self.times[1][a]) / np.timedelta64(1, "s"))

    def row_stamp(self, row: int) -> Stamp:
        """The time of a row / sample (the fault onset), interpolated within its window."""
        if not self.times:
            return int(row)
        j = int(np.clip(np.searchsorted(self.starts, row, side="right") - 1, 0,
                        len(self.starts) - 1))
        per_row = (self.times[1][j] - self.times[0][j]) / max(self.window - 1, 1)
        return _iso(self.times[0][j] + per_row * (row - int(self.starts[j])))


def effective_settings(trained: Trained, scored: ScoredFiles) -> dict[str, Any]:
    """What actually ran (not what a config asks for): device, AMP, window, step, epochs."""
    amp = amp_settings(trained.device, trained.cfg.device.amp)
    why = "CPU" if trained.device.type != "cuda" else "config"
    steps = [np.diff(scored.starts[idx]) for idx in _file_index(scored).values()
             if len(idx) > 1]
    epoch = trained.ckpt_info.get("epoch")
    return {
        "device": trained.device.type,
        "amp": f"on ({str(amp.dtype).replace('torch.', '')})" if amp.enabled else f"off ({why})",
        "window": int(scored.window),
        "step": int(np.median(np.concatenate(steps))) if steps else None,
        "epochs_trained": None if epoch is None else int(epoch),
        "epochs_configured": int(trained.cfg.training.epochs),
    }


def _file_index(scored: ScoredFiles) -> dict[str, np.ndarray]:
    ids = np.asarray(scored.file_ids, dtype=object)
    return {fid: np.flatnonzero(ids == fid) for fid in scored.kept}


# --------------------------------------------------------------------------- events
def event_records(
    spans: list[EventSpan], scores: np.ndarray, parts: np.ndarray, names: list[str], k: int,
    where: FileWindows, bands: np.ndarray | None = None, band_labels: list[str] | None = None,
) -> list[EventRecord]:
    """Events of one file with their peak and the parts that contributed most over them."""
    out = []
    for n, span in enumerate(spans, start=1):
        rows = slice(span.start, span.end + 1)
        peak = span.start + int(np.argmax(scores[rows]))
        band_map = None
        if bands is not None and band_labels:
            mean_bands = bands[rows].mean(axis=0)
            band_map = top_parts(list(band_labels), mean_bands, len(band_labels))
        out.append(EventRecord(
            id=n, level=span.level, start=where.end(span.start),
            raised_at=where.end(span.raised), end=where.end(span.end),
            start_window=span.start, raised_window=span.raised, end_window=span.end,
            n_windows=span.end - span.start + 1, duration_s=where.seconds(span.start, span.end),
            peak_score=num6(scores[peak]), peak_window=peak, open=span.open,
            contributors=top_parts(names, parts[rows].mean(axis=0), k), bands=band_map))
    return out


def _correct(truth: Truth | None, decision: str) -> bool | None:
    if truth is None:
        return None
    return decision == "normal" if truth.label == "normal" else decision == "anomaly"


def decide_files(
    stream: str,
    trained: Any,
    scored: ScoredFiles,
    thresholds: Thresholds,
    dcfg: DecisionConfig,
    truths: dict[str, Truth] | None = None,
) -> StreamDecisions:
    """Window levels, events, per-file decisions and the window / event tables of a stream."""
    truths = truths or {}
    task = streams.get(stream)
    names = contributor_names(trained)
    parts = scored.aux[parts_key(task)]
    bands = scored.aux.get("band_errors")
    band_labels = list(scored.aux.get("band_labels", []))
    lv = window_levels(scored.scores, thresholds.warn, thresholds.anomaly)
    # Few parts (axes): show them all; many (channels): the top ones.
    k = len(names) if len(names) <= 3 else dcfg.top_contributors
    dqvl = {r.file_id: r.decision for r in scored.reports}
    info = trained.ckpt_info
    result = StreamDecisions(stream, info["path"], info["sha256"], info.get("run_id"),
                             thresholds, dcfg.alarm, effective_settings(trained, scored), [],
                             scored.dropped, pd.DataFrame(), pd.DataFrame())
    window_rows, event_rows = [], []
    for fid, sel in _file_index(scored).items():
        times = _file_times(scored, sel)
        if times is not None:
            result.times[fid] = times
        where = FileWindows(scored.starts[sel], scored.window, times)
        s, p = scored.scores[sel], parts[sel]
        b = bands[sel] if bands is not None else None
        file_lv = lv[sel]
        result.file_scores[fid] = s
        windows = []
        for j in range(len(sel)):
            top = top_parts(names, p[j], k)
            band_map = None if b is None else {lab: num6(v) for lab, v in
                                               zip(band_labels, b[j], strict=True)}
            row = {"file": fid, "window": j, "start": where.start(j), "end": where.end(j),
                   "score": float(s[j]), "level": str(file_lv[j]),
                   "top_contributors": top_text(top, dcfg.top_contributors)}
            if b is not None:
                row["top_band"] = band_labels[int(np.argmax(b[j]))]
            windows.append(WindowResult(index=j, start=row["start"], end=row["end"],
                                        score=num6(s[j]), level=row["level"],
                                        contributions=top, bands=band_map))
            window_rows.append(row)
        spans = find_events(s, thresholds.warn, thresholds.anomaly, thresholds.clear, dcfg.alarm)
        events = event_records(spans, s, p, names, k, where, b, band_labels)
        for e in events:
            event_rows.append({
                "file": fid, "event": e.id, "level": e.level, "start": e.start,
                "raised_at": e.raised_at, "end": e.end, "n_windows": e.n_windows,
                "duration_s": e.duration_s, "peak_score": e.peak_score, "open": e.open,
                "top_contributors": top_text(e.contributors, dcfg.top_contributors),
                "top_bands": top_text(e.bands, 3) if e.bands else ""})
        decision = file_decision(spans)
        truth = truths.get(Path(fid).name)
        result.files.append(FileDecision(
            file_id=fid, dqvl_decision=dqvl.get(fid, "keep"), decision=decision,
            n_windows=int(len(sel)), n_warn=int(np.sum(file_lv == "warn")),
            n_anomaly=int(np.sum(file_lv == "anomaly")),
            max_score=num6(s.max()) if len(sel) else None,
            n_events=len(events), first_alarm=events[0].raised_at if events else None,
            events=events,
            label=truth.label if truth else None,
            difficulty=truth.difficulty if truth else None,
            correct=_correct(truth, decision),
            fault_start=(where.row_stamp(truth.fault_start_row)
                         if truth and truth.fault_start_row is not None else None),
            windows=windows,
        ))
    result.windows = pd.DataFrame(window_rows)
    result.events = pd.DataFrame(event_rows, columns=[
        "file", "event", "level", "start", "raised_at", "end", "n_windows", "duration_s",
        "peak_score", "open", "top_contributors", "top_bands"])
    return result


# --------------------------------------------------------------------------- one stream
def current_thresholds(
    stream: str, entry: StreamEntry, dcfg: DecisionConfig, trained: Any, cfg: Any,
    recalibrate: bool,
) -> dict[str, Any]:
    """This checkpoint's thresholds, calibrating first when they are missing or stale."""
    thr_path = DecisionLayout.from_config(dcfg).thresholds(stream)
    reason = "--recalibrate" if recalibrate else None
    if reason is None and not thr_path.is_file():
        reason = "no thresholds yet"
    if reason is None:
        try:
            saved = load_thresholds(thr_path, stream)
        except DataError as exc:
            saved, reason = None, f"unusable thresholds file ({exc})"
        if saved is not None:
            reason = stale_reason(saved, trained, cfg, entry.calibration_path,
                                  dcfg.thresholds, dcfg.alarm)
    if reason:
        print(f"[{stream}] calibrating ({reason}) on {entry.calibration_path}")
        saved = calibrate(trained, cfg, entry.calibration_path, dcfg.thresholds, thr_path,
                          alarm=dcfg.alarm)
    print(threshold_line(stream, saved, display_path(thr_path)))
    return saved


def threshold_line(stream: str, thr: dict[str, Any], shown: str) -> str:
    """One line: the levels, what they rest on and the false-alarm rate they promise."""
    kind = "relative to the normal error profile" if threshold_profile(thr) is not None \
        else "raw error"
    levels = thr.get("levels", {})
    methods = "/".join(levels.get(k, {}).get("method", "?") for k in ("clear", "warn", "anomaly"))
    line = (f"[{stream}] thresholds clear={float(thr['clear']):.4g} warn={float(thr['warn']):.4g}"
            f" anomaly={float(thr['anomaly']):.4g} on {kind} ({methods}; {thr.get('n_windows')} "
            f"calibration windows = {thr.get('effective_windows')} effective; {shown})")
    fa = thr.get("expected_false_alarms") or {}
    anomaly = fa.get("anomaly") or {}
    if anomaly.get("estimate") is not None:
        lo, hi = anomaly["interval_95"]
        line += (f"\n[{stream}] held-out false alarms at anomaly: {anomaly['estimate']:.2%} of "
                 f"windows (95 % interval {lo:.2%}..{hi:.2%}, target {anomaly['target']:.2%}; "
                 f"{fa.get('method')})")
        if "events_per_24h" in fa:
            line += f"; {fa['events_per_24h']:.2f} events per 24 h"
    return line


def list_test_files(entry: StreamEntry, override: str | None) -> list[Path]:
    return data_files(override or entry.test_path)


@dataclass
class StreamJob:
    """What scoring one stream's test files needs, settled (and calibrated) before any
    window is scored, so that any scorer (one process, Ray workers, resumable chunks) can
    score them and :func:`decide_files` decide."""

    stream: str
    cfg: Any
    trained: Trained
    thresholds: dict[str, Any]
    files: list[Path]

    @property
    def profile(self) -> np.ndarray | None:
        return threshold_profile(self.thresholds)

    @property
    def limits(self) -> Thresholds:
        return Thresholds(**{k: float(self.thresholds[k]) for k in ("clear", "warn", "anomaly")})


def prepare_stream(
    stream: str,
    dcfg: DecisionConfig,
    test_override: str | None = None,
    recalibrate: bool = False,
    device_pref: str = "auto",
) -> StreamJob:
    """Load and check the stream's checkpoint, make its thresholds current, list its files."""
    entry = dcfg.streams[stream]
    cfg = streams.load_config(entry.config, entry.overrides, stream=stream)
    device = select_device(
        cfg.device.prefer_cuda if device_pref == "auto" else device_pref == "cuda"
    )
    trained = load_trained(entry.checkpoint, expected_stream=stream, device=device)
    check_config_matches(trained, cfg, entry.config)
    thr = current_thresholds(stream, entry, dcfg, trained, cfg, recalibrate)
    files = list_test_files(entry, test_override)
    if not files:
        pattern = test_override or entry.test_path
        shown = pattern if isinstance(pattern, str) else ", ".join(pattern)
        raise DataError(f"[{stream}] no test files match {shown}")
    return StreamJob(stream, cfg, trained, thr, files)


# --------------------------------------------------------------------------- fusion
def overlap_level(r: StreamDecisions, fid: str, inside: np.ndarray) -> tuple[str, int]:
    """Decision of one stream's file over the windows inside an overlap, and its events."""
    t = r.thresholds
    spans = find_events(r.file_scores[fid][inside], t.warn, t.anomaly, t.clear, r.alarm)
    return file_decision(spans), len(spans)


def fuse_pair(a: StreamDecisions, b: StreamDecisions) -> list[dict[str, Any]]:
    """Fused decisions for the file pairs of two streams whose time ranges overlap."""
    out = []
    for fa, (sa, ea) in a.times.items():
        for fb, (sb, eb) in b.times.items():
            lo, hi = max(sa.min(), sb.min()), min(ea.max(), eb.max())
            if lo > hi:
                continue
            in_a = (sa <= hi) & (ea >= lo)
            in_b = (sb <= hi) & (eb >= lo)
            la, na = overlap_level(a, fa, in_a)
            lb, nb = overlap_level(b, fb, in_b)
            decision = LEVELS[max(LEVELS.index(la), LEVELS.index(lb))]
            flagged = [s for s, lev in ((a.stream, la), (b.stream, lb)) if lev != "normal"]
            who = ("both streams" if len(flagged) == 2 else f"{flagged[0]} only") if flagged \
                else "neither stream"
            out.append({
                "asset": f"{fa} + {fb}",
                "decision": decision,
                "detail": f"{a.stream} {la} ({na} events in {int(in_a.sum())} windows), "
                          f"{b.stream} {lb} ({nb} events in {int(in_b.sum())} windows) over "
                          f"{_iso(lo)} .. {_iso(hi)}; flagged by {who}",
                f"{a.stream}_file": fa,
                f"{b.stream}_file": fb,
            })
    return out


def fuse(results: list[StreamDecisions]) -> tuple[list[dict[str, Any]], str]:
    """Fused decisions over every pair of streams, and a note saying what was fused."""
    if len(results) < 2:
        return [], "single stream run: no fused decision"
    fused = [f for i, a in enumerate(results) for b in results[i + 1:] for f in fuse_pair(a, b)]
    if fused:
        return fused, f"{len(fused)} file pair(s) of different streams overlap in time"
    return fused, "no files of different streams cover the same time range: no fused decision"


# --------------------------------------------------------------------------- outputs
def _summary_rows(r: StreamDecisions) -> list[dict[str, Any]]:
    rows = []
    for f in r.files:
        first = f.events[0] if f.events else None
        rows.append({
            "stream": r.stream, "file_id": f.file_id, "dqvl_decision": f.dqvl_decision,
            "decision": f.decision, "n_windows": f.n_windows, "n_warn": f.n_warn,
            "n_anomaly": f.n_anomaly, "n_events": f.n_events, "max_score": f.max_score,
            "first_alarm": f.first_alarm if f.first_alarm is not None else "",
            "fault_start": f.fault_start if f.fault_start is not None else "",
            "top_contributors": ", ".join(list(first.contributors)[:3]) if first else "",
            "label": f.label or "", "difficulty": f.difficulty or "",
            "correct": "" if f.correct is None else f.correct, "reason": ""})
    for d in r.dropped:
        rows.append({
            "stream": r.stream, "file_id": d["file_id"], "dqvl_decision": "drop",
            "decision": "dropped", "n_windows": 0, "n_warn": 0, "n_anomaly": 0, "n_events": 0,
            "max_score": None, "first_alarm": "", "fault_start": "", "top_contributors": "",
            "label": "", "difficulty": "", "correct": "", "reason": d["reason"]})
    return rows


def earlier_streams(layout: DecisionLayout) -> dict[str, dict[str, Any]]:
    """The streams an earlier run decided into this folder (with their run ids)."""
    try:
        data = json.loads(layout.decisions.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = data.get("streams") if isinstance(data, dict) else None
    if not isinstance(found, dict) or data.get("schema_version") != SCHEMA_VERSION:
        return {}
    return {
        name: {"run_id": data.get("run_id"), "created": data.get("created"), **entry}
        for name, entry in found.items()
        if isinstance(entry, dict) and layout.windows_csv(name).is_file()
    }


def _archive_other_model(layout: DecisionLayout, entry: dict[str, Any], r: StreamDecisions
                         ) -> None:
    """An earlier stream result of another checkpoint moves to that model's archive (its
    window and event CSVs, with its entry of decisions.json beside it) instead of being
    overwritten."""
    if entry.get("checkpoint_sha256") == r.checkpoint_sha256:
        return  # the same model decided again: its new results replace its old ones
    dest = run_archive(r.stream, entry.get("checkpoint_run_id"), f"decisions-{entry.get('run_id')}")
    moved = move_into(dest, [p for p in (layout.windows_csv(r.stream), layout.events_csv(r.stream))
                             if p.is_file()])
    folder = moved[0].parent if moved else dest
    atomic_write_json(folder / f"{r.stream}_decisions.json", entry)
    print(archive_note(f"the {r.stream} decisions of {entry.get('checkpoint', 'another model')}",
                       dest))


def _earlier_summary(layout: DecisionLayout, kept: set[str]) -> pd.DataFrame:
    """The rows of ``file_summary.csv`` that belong to the streams kept from earlier runs."""
    if not kept or not layout.file_summary.is_file():
        return pd.DataFrame()
    try:
        table = pd.read_csv(layout.file_summary, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame()
    return table[table["stream"].isin(kept)] if "stream" in table else pd.DataFrame()


def write_outputs(
    results: list[StreamDecisions],
    fused: list[dict[str, Any]],
    fused_note: str,
    layout: DecisionLayout,
    run_id: str,
    dcfg: DecisionConfig,
) -> tuple[Path, pd.DataFrame, dict[str, Any]]:
    """decisions.json, <stream>_windows.csv, <stream>_events.csv and file_summary.csv, each
    written atomically; streams decided earlier into the same folder and not redone now are
    kept.  Returns the decisions path, this run's per-file rows and the decision gate."""
    created = created_now()
    by_stream = earlier_streams(layout)
    summary_rows = []
    for r in results:
        if r.stream in by_stream:
            _archive_other_model(layout, by_stream[r.stream], r)
        by_stream[r.stream] = {
            "run_id": run_id,
            "created": created,
            "checkpoint": r.checkpoint,
            "checkpoint_sha256": r.checkpoint_sha256,
            "checkpoint_run_id": r.checkpoint_run_id,
            "thresholds": {k: num6(v) for k, v in r.thresholds.model_dump().items()},
            "alarm": r.alarm.model_dump(),
            "effective": r.effective,
            "contributor_kind": streams.get(r.stream).part_kind,
            "files": [f.model_dump(exclude_none=True) for f in r.files],
            "dropped": r.dropped,
        }
        atomic_write_text(layout.windows_csv(r.stream), r.windows.to_csv(index=False))
        atomic_write_text(layout.events_csv(r.stream), r.events.to_csv(index=False))
        summary_rows += _summary_rows(r)
    gate = decision_gate(by_stream, dcfg.decision_gate)
    decisions = {"schema_version": SCHEMA_VERSION, "created": created, "run_id": run_id,
                 "streams": by_stream, "fused": fused, "fused_note": fused_note,
                 "decision_gate": gate}
    path = atomic_write_json(layout.decisions, decisions)
    current = pd.DataFrame(summary_rows)
    earlier = _earlier_summary(layout, set(by_stream) - {r.stream for r in results})
    summary = pd.concat([earlier, current], ignore_index=True) if len(earlier) else current
    atomic_write_text(layout.file_summary, summary.to_csv(index=False))
    return path, current, gate
