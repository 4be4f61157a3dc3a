"""Decisions on test files: window levels, the file rule, fusion of streams, the outputs.

Per stream: load the checkpoint safely, check it against the stream config, calibrate
thresholds from held-out normal files when they are missing, stale (another checkpoint,
scoring setting or threshold policy) or a recalibration is asked for, then score every
window of every test file DQVL keeps.  A dropped file is listed with its reason.

File decision: a file takes the highest level reached by at least
``max(file_rule.min_windows, file_rule.min_fraction * n_windows)`` of its windows.
Fused decision: for every pair of files of two streams whose time ranges overlap, the
more severe of the two decisions over the overlapping windows (and which stream flagged
it).  ``labels.csv`` in a test folder is ground truth, never data: it only adds per-file
correctness (``normal`` must be decided normal, a fault ``warn`` or ``anomaly``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

import streams
from core.config import DecisionConfig, FileRule, StreamEntry
from core.device import select_device
from core.errors import DataError
from core.io import atomic_write_json, atomic_write_text
from core.layout import DecisionLayout
from core.paths import display_path
from engine.archive import archive_note, move_into, run_archive
from engine.checkpoint import created_now
from inference.calibration import (
    LEVELS,
    calibrate,
    expand_globs,
    levels,
    load_thresholds,
    stale_reason,
    threshold_profile,
)
from inference.checkpoint_io import check_config_matches, load_trained
from inference.scoring import ScoredFiles, contributor_names, parts_key, score_files

SCHEMA_VERSION = "1.0"
LABELS_FILE = "labels.csv"


# --------------------------------------------------------------------------- typed results
class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Record):
    warn: float
    anomaly: float


class WindowResult(_Record):
    index: int
    start: str | int  # ISO time when the file has timestamps, else the first row / sample
    end: str | int
    score: float
    level: str
    contributions: dict[str, float]  # the largest parts (channels, axes) of the score
    bands: dict[str, float] | None = None  # vibration: error per frequency band


class FileDecision(_Record):
    file_id: str
    dqvl_decision: str
    decision: str
    n_windows: int
    n_warn: int
    n_anomaly: int
    max_score: float | None
    windows: list[WindowResult]


@dataclass
class StreamDecisions:
    stream: str
    checkpoint: str
    checkpoint_sha256: str
    checkpoint_run_id: str | None
    thresholds: Thresholds
    files: list[FileDecision]
    dropped: list[dict[str, str]]
    windows: pd.DataFrame  # one row per window, for <stream>_windows.csv
    # file id -> (window start times, window end times) as datetime64[ns], for fusion
    times: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    window_levels: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------- rules
def file_level(window_levels: np.ndarray, rule: FileRule) -> str:
    """Highest level reached by enough windows (see the module docstring)."""
    n = len(window_levels)
    if n == 0:
        return "normal"
    need = max(1, min(n, max(rule.min_windows, math.ceil(rule.min_fraction * n))))
    if np.sum(window_levels == "anomaly") >= need:
        return "anomaly"
    if np.sum(window_levels != "normal") >= need:
        return "warn"
    return "normal"


def _num(x: float) -> float:
    """Six significant digits: keeps decisions.json readable and small."""
    return float(f"{float(x):.6g}")


def _iso(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="ms"))


def _top(names: list[str], values: np.ndarray, k: int) -> list[tuple[str, float]]:
    order = np.argsort(values)[::-1][:k]
    return [(names[i], float(values[i])) for i in order]


def _file_times(scored: ScoredFiles, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Start/end times of one file's windows as the reader stamped them (None: unknown)."""
    if scored.start_times is None or scored.end_times is None or not len(sel):
        return None
    begin, end = scored.start_times[sel], scored.end_times[sel]
    if np.isnat(begin).any() or np.isnat(end).any():
        return None
    return begin, end


def decide_files(
    stream: str,
    trained: Any,
    scored: ScoredFiles,
    thresholds: Thresholds,
    dcfg: DecisionConfig,
) -> StreamDecisions:
    """Window levels, per-file decisions and the per-window table of one stream."""
    task = streams.get(stream)
    names = contributor_names(trained)
    parts = scored.aux[parts_key(task)]
    bands = scored.aux.get("band_errors")
    band_labels = scored.aux.get("band_labels", [])
    lv = levels(scored.scores, thresholds.warn, thresholds.anomaly)
    ids = np.asarray(scored.file_ids, dtype=object)
    # Few parts (axes): show them all; many (channels): the top ones.
    k = len(names) if len(names) <= 3 else dcfg.top_contributors
    dqvl = {r.file_id: r.decision for r in scored.reports}
    info = trained.ckpt_info
    result = StreamDecisions(stream, info["path"], info["sha256"], info.get("run_id"),
                             thresholds, [], scored.dropped, pd.DataFrame())
    rows = []
    for fid in scored.kept:
        sel = np.flatnonzero(ids == fid)
        starts = scored.starts[sel]
        times = _file_times(scored, sel)
        if times is not None:
            result.times[fid] = times
        result.window_levels[fid] = lv[sel]
        windows = []
        for j, i in enumerate(sel):
            if times is not None:
                start, end = _iso(times[0][j]), _iso(times[1][j])
            else:
                start, end = int(starts[j]), int(starts[j]) + scored.window - 1
            top = _top(names, parts[i], k)
            band_map = None
            row = {"file": fid, "window": j, "start": start, "end": end,
                   "score": float(scored.scores[i]), "level": str(lv[i]),
                   "top_contributors": ";".join(f"{n}:{v:.4g}" for n, v in
                                                top[: dcfg.top_contributors])}
            if bands is not None:
                band_map = {lab: _num(v) for lab, v in zip(band_labels, bands[i], strict=True)}
                row["top_band"] = band_labels[int(np.argmax(bands[i]))]
            windows.append(WindowResult(
                index=j, start=start, end=end, score=_num(scored.scores[i]), level=str(lv[i]),
                contributions={n: _num(v) for n, v in top}, bands=band_map))
            rows.append(row)
        file_lv = lv[sel]
        result.files.append(FileDecision(
            file_id=fid,
            dqvl_decision=dqvl.get(fid, "keep"),
            decision=file_level(file_lv, dcfg.file_rule),
            n_windows=int(len(sel)),
            n_warn=int(np.sum(file_lv == "warn")),
            n_anomaly=int(np.sum(file_lv == "anomaly")),
            max_score=_num(scored.scores[sel].max()) if len(sel) else None,
            windows=windows,
        ))
    result.windows = pd.DataFrame(rows)
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
        saved = load_thresholds(thr_path, stream)
        reason = stale_reason(saved, trained, cfg)
        if reason is None and saved.get("policy") != dcfg.thresholds.model_dump():
            reason = "the threshold policy changed since calibration"
    if reason:
        print(f"[{stream}] calibrating ({reason}) on {entry.calibration_path}")
        calibrate(trained, cfg, entry.calibration_path, dcfg.thresholds, thr_path)
    thr = load_thresholds(thr_path, stream)
    kind = "relative to the normal error profile" if threshold_profile(thr) is not None \
        else "raw error"
    print(f"[{stream}] thresholds warn={float(thr['warn']):.4g} "
          f"anomaly={float(thr['anomaly']):.4g} on {kind} ({display_path(thr_path)}, "
          f"{thr.get('n_windows')} calibration windows)")
    return thr


def list_test_files(entry: StreamEntry, override: str | None) -> list[Path]:
    return [p for p in expand_globs(override or entry.test_path) if p.name != LABELS_FILE]


def decide_stream(
    stream: str,
    dcfg: DecisionConfig,
    test_override: str | None = None,
    recalibrate: bool = False,
    device_pref: str = "auto",
) -> tuple[StreamDecisions, ScoredFiles]:
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
    scored = score_files(trained, cfg, files, profile=threshold_profile(thr))
    limits = Thresholds(warn=float(thr["warn"]), anomaly=float(thr["anomaly"]))
    return decide_files(stream, trained, scored, limits, dcfg), scored


# --------------------------------------------------------------------------- fusion
def fuse_pair(a: StreamDecisions, b: StreamDecisions, rule: FileRule) -> list[dict[str, Any]]:
    """Fused decisions for the file pairs of two streams whose time ranges overlap."""
    out = []
    for fa, (sa, ea) in a.times.items():
        for fb, (sb, eb) in b.times.items():
            lo, hi = max(sa.min(), sb.min()), min(ea.max(), eb.max())
            if lo > hi:
                continue
            in_a = (sa <= hi) & (ea >= lo)
            in_b = (sb <= hi) & (eb >= lo)
            la = file_level(a.window_levels[fa][in_a], rule)
            lb = file_level(b.window_levels[fb][in_b], rule)
            decision = LEVELS[max(LEVELS.index(la), LEVELS.index(lb))]
            flagged = [s for s, lev in ((a.stream, la), (b.stream, lb)) if lev != "normal"]
            who = ("both streams" if len(flagged) == 2 else f"{flagged[0]} only") if flagged \
                else "neither stream"
            out.append({
                "asset": f"{fa} + {fb}",
                "decision": decision,
                "detail": f"{a.stream} {la} ({int(in_a.sum())} windows), {b.stream} {lb} "
                          f"({int(in_b.sum())} windows) over {_iso(lo)} .. {_iso(hi)}; "
                          f"flagged by {who}",
                f"{a.stream}_file": fa,
                f"{b.stream}_file": fb,
            })
    return out


def fuse(results: list[StreamDecisions], rule: FileRule) -> tuple[list[dict[str, Any]], str]:
    """Fused decisions over every pair of streams, and a note saying what was fused."""
    if len(results) < 2:
        return [], "single stream run: no fused decision"
    fused = [f for i, a in enumerate(results) for b in results[i + 1:]
             for f in fuse_pair(a, b, rule)]
    if fused:
        return fused, f"{len(fused)} file pair(s) of different streams overlap in time"
    return fused, "no files of different streams cover the same time range: no fused decision"


# --------------------------------------------------------------------------- outputs
def read_labels(files: list[Path]) -> dict[str, str]:
    """file name -> ``normal`` | ``fault`` from ``labels.csv`` beside the test files."""
    out: dict[str, str] = {}
    for folder in sorted({p.parent for p in files}):
        path = folder / LABELS_FILE
        if not path.is_file():
            continue
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError):
            print(f"note: {display_path(path)} is not a readable labels table; ignored")
            continue
        if not {"file", "label"} <= set(table.columns):
            print(f"note: {display_path(path)} lacks file/label columns; ignored")
            continue
        for name, label in zip(table["file"].astype(str), table["label"].astype(str),
                               strict=True):
            out[name] = "normal" if label.strip().lower() == "normal" else "fault"
    return out


def _summary_rows(r: StreamDecisions, labels: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for f in r.files:
        label = labels.get(Path(f.file_id).name)
        rows.append({
            "stream": r.stream, "file_id": f.file_id, "dqvl_decision": f.dqvl_decision,
            "decision": f.decision, "n_windows": f.n_windows, "n_warn": f.n_warn,
            "n_anomaly": f.n_anomaly, "max_score": f.max_score, "label": label or "",
            "correct": "" if label is None else (label == "normal") == (f.decision == "normal"),
            "reason": ""})
    for d in r.dropped:
        label = labels.get(Path(d["file_id"]).name)
        rows.append({
            "stream": r.stream, "file_id": d["file_id"], "dqvl_decision": "drop",
            "decision": "dropped", "n_windows": 0, "n_warn": 0, "n_anomaly": 0,
            "max_score": None, "label": label or "", "correct": "", "reason": d["reason"]})
    return rows


def earlier_streams(layout: DecisionLayout) -> dict[str, dict[str, Any]]:
    """The streams an earlier run decided into this folder (with their run ids)."""
    try:
        data = json.loads(layout.decisions.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = data.get("streams") if isinstance(data, dict) else None
    if not isinstance(found, dict):
        return {}
    return {
        name: {"run_id": data.get("run_id"), "created": data.get("created"), **entry}
        for name, entry in found.items()
        if isinstance(entry, dict) and layout.windows_csv(name).is_file()
    }


def _archive_other_model(layout: DecisionLayout, entry: dict[str, Any], r: StreamDecisions
                         ) -> None:
    """An earlier stream result of another checkpoint moves to that model's archive (its
    window CSV, with its entry of decisions.json beside it) instead of being overwritten."""
    if entry.get("checkpoint_sha256") == r.checkpoint_sha256:
        return  # the same model decided again: its new results replace its old ones
    dest = run_archive(r.stream, entry.get("checkpoint_run_id"), f"decisions-{entry.get('run_id')}")
    moved = move_into(dest, [layout.windows_csv(r.stream)])
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
    labels: dict[str, str],
) -> tuple[Path, pd.DataFrame]:
    """decisions.json, <stream>_windows.csv and file_summary.csv, each written atomically;
    streams decided earlier into the same folder and not redone now are kept.  Returns the
    decisions path and this run's per-file rows."""
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
            "thresholds": {k: _num(v) for k, v in r.thresholds.model_dump().items()},
            "contributor_kind": streams.get(r.stream).part_kind,
            "files": [f.model_dump(exclude_none=True) for f in r.files],
            "dropped": r.dropped,
        }
        atomic_write_text(layout.windows_csv(r.stream), r.windows.to_csv(index=False))
        summary_rows += _summary_rows(r, labels)
    decisions = {"schema_version": SCHEMA_VERSION, "created": created, "run_id": run_id,
                 "streams": by_stream, "fused": fused, "fused_note": fused_note}
    path = atomic_write_json(layout.decisions, decisions)
    current = pd.DataFrame(summary_rows)
    earlier = _earlier_summary(layout, set(by_stream) - {r.stream for r in results})
    summary = pd.concat([earlier, current], ignore_index=True) if len(earlier) else current
    atomic_write_text(layout.file_summary, summary.to_csv(index=False))
    return path, current
