"""Batch decisions on test files: calibrate (if needed), DQVL, score, threshold, write.

    python -m pipelines.run_local_test_pipeline [--stream {patchtst,swinmae,dual}]
        [--config configs/decision_local.yaml] [--patch-data-path GLOB]
        [--swin-data-path GLOB] [--recalibrate] [--run-id ID] [--out-dir DIR]

Per stream: load the checkpoint safely, check it against the stream config, calibrate
thresholds from held-out normal files when they are missing, stale (another checkpoint or
aggregation) or ``--recalibrate`` is given, then score every window of every test file
DQVL keeps.  A dropped file is listed with its reason; the others are still scored.

Outputs in the output folder: ``decisions.json`` (format in the data contracts),
``<stream>_windows.csv`` (one row per window), ``file_summary.csv`` (one row per file,
dropped files included) and the test files' DQVL reports under ``dqvl/<stream>/``.

File decision: a file takes the highest level reached by at least
``max(file_rule.min_windows, file_rule.min_fraction * n_windows)`` of its windows.
Fused decision: for every FDC / vibration file pair whose time ranges overlap, the more
severe of the two streams' decisions over the overlapping windows (with which stream
flagged it).  ``labels.csv`` in a test folder is ground truth, never data: when present it
is used to print per-file correctness (``normal`` must be decided normal, a fault must be
``warn`` or ``anomaly``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.cli import run_main
from core.config import StreamConfig, load_config, read_yaml
from core.device import select_device
from core.errors import ConfigError, DataError
from core.io import atomic_write_json, atomic_write_text
from core.paths import display_path, resolve_path
from engine.checkpoint import created_now
from inference.calibration import (
    LEVELS,
    ThresholdPolicy,
    calibrate,
    expand_globs,
    levels,
    load_thresholds,
    stale_reason,
    threshold_profile,
    thresholds_path,
)
from inference.checkpoint_io import Trained, check_config_matches, load_trained
from inference.scoring import ScoredFiles, contributor_names, score_files
from sensor_data.dqvl_report import new_run_id, write_reports
from sensor_data.fdc import find_timestamp_col, parse_timestamps

SCHEMA_VERSION = "1.0"
LABELS_FILE = "labels.csv"
KIND = {"patchtst": "channel", "swinmae": "axis"}
GlobList = str | list[str]


# --------------------------------------------------------------------------- config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamEntry(_Strict):
    config: str
    checkpoint: str
    calibration_path: GlobList
    test_path: GlobList
    # --set style overrides of the stream config for scoring, e.g. ["data.stride=4"]
    overrides: list[str] = []


class FileRule(_Strict):
    min_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05
    min_windows: Annotated[int, Field(ge=1)] = 2


class DecisionConfig(_Strict):
    streams: dict[Literal["patchtst", "swinmae"], StreamEntry]
    thresholds: ThresholdPolicy = ThresholdPolicy()
    file_rule: FileRule = FileRule()
    top_contributors: Annotated[int, Field(ge=1)] = 5
    calibration_dir: str = "artifacts/calibration"
    output_dir: str = "artifacts/decisions"


def load_decision_config(path: str) -> DecisionConfig:
    raw = read_yaml(path)
    try:
        return DecisionConfig.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            key = ".".join(str(p) for p in e["loc"]) or "<root>"
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            parts.append(f"{key}: {msg.removeprefix('Value error, ')}")
        shown = display_path(resolve_path(path))
        raise ConfigError(f"{shown}: invalid decision config: " + "; ".join(parts)) from None


# --------------------------------------------------------------------------- helpers
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


def read_time_column(path: Path, configured: str | None) -> np.ndarray | None:
    """Only the timestamp column of a CSV/Parquet file as datetime64[ns] (None if absent)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
            col = find_timestamp_col(header, configured)
            if col is None:
                return None
            series = pd.read_csv(path, usecols=[col])[col]
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            col = find_timestamp_col(list(pq.read_schema(path).names), configured)
            if col is None:
                return None
            series = pq.read_table(path, columns=[col]).to_pandas()[col]
        else:
            return None
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return parse_timestamps(series)


def _iso(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="ms"))


def read_labels(test_files: list[Path]) -> dict[str, str]:
    """file name -> ``normal`` | ``fault`` from ``labels.csv`` beside the test files."""
    out: dict[str, str] = {}
    for folder in sorted({p.parent for p in test_files}):
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


def _paths_by_id(files: list[Path]) -> dict[str, Path]:
    """Both the name and the repo-relative path of a file map to it (file ids use either)."""
    out = {}
    for p in files:
        out[p.name] = p
        out[display_path(p)] = p
    return out


# --------------------------------------------------------------------------- per stream
@dataclass
class StreamResult:
    stream: str
    checkpoint: str
    thresholds: dict[str, Any]
    files: list[dict[str, Any]]
    dropped: list[dict[str, str]]
    windows: pd.DataFrame
    # file id -> (window start times, window end times) as datetime64[ns], for fusion
    times: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    window_levels: dict[str, np.ndarray] = field(default_factory=dict)


def _window_times(
    trained: Trained, cfg: StreamConfig, path: Path, starts: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Start/end time of each window of one file, or None without usable timestamps."""
    stamps = read_time_column(path, cfg.data.timestamp_col)
    if stamps is None or len(stamps) == 0:
        return None
    if trained.stream == "patchtst":
        if len(stamps) < int(starts.max(initial=0)) + window:
            return None
        begin, end = stamps[starts], stamps[starts + window - 1]
    else:  # samples at the configured fs from the first stamp (also after resampling)
        if np.isnat(stamps[0]):
            return None
        ns = 1e9 / cfg.data.fs
        begin = stamps[0] + (starts * ns).astype("timedelta64[ns]")
        end = stamps[0] + ((starts + window - 1) * ns).astype("timedelta64[ns]")
    if np.isnat(begin).any() or np.isnat(end).any():
        return None
    return begin, end


def _top(names: list[str], values: np.ndarray, k: int) -> list[tuple[str, float]]:
    order = np.argsort(values)[::-1][:k]
    return [(names[i], float(values[i])) for i in order]


def decide_stream(
    stream: str,
    entry: StreamEntry,
    dcfg: DecisionConfig,
    test_override: str | None,
    recalibrate: bool,
    device_pref: str,
) -> tuple[StreamResult, ScoredFiles]:
    cfg = load_config(entry.config, entry.overrides, stream=stream)
    device = select_device(
        cfg.device.prefer_cuda if device_pref == "auto" else device_pref == "cuda"
    )
    trained = load_trained(entry.checkpoint, expected_stream=stream, device=device)
    check_config_matches(trained, cfg, entry.config)

    thr_path = thresholds_path(dcfg.calibration_dir, stream)
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
    warn, anomaly = float(thr["warn"]), float(thr["anomaly"])
    profile = threshold_profile(thr)
    kind = "relative to the normal error profile" if profile is not None else "raw error"
    print(f"[{stream}] thresholds warn={warn:.4g} anomaly={anomaly:.4g} on {kind} "
          f"({display_path(thr_path)}, {thr.get('n_windows')} calibration windows)")

    pattern = test_override or entry.test_path
    test_files = [p for p in expand_globs(pattern) if p.name != LABELS_FILE]
    if not test_files:
        shown = pattern if isinstance(pattern, str) else ", ".join(pattern)
        raise DataError(f"[{stream}] no test files match {shown}")
    scored = score_files(trained, cfg, test_files, profile=profile)
    return _build_result(stream, trained, cfg, dcfg, scored, test_files, warn, anomaly), scored


def _build_result(
    stream: str,
    trained: Trained,
    cfg: StreamConfig,
    dcfg: DecisionConfig,
    scored: ScoredFiles,
    test_files: list[Path],
    warn: float,
    anomaly: float,
) -> StreamResult:
    names = contributor_names(trained)
    parts = scored.aux.get("channel_errors" if stream == "patchtst" else "axis_errors")
    bands = scored.aux.get("band_errors")
    band_labels = scored.aux.get("band_labels", [])
    lv = levels(scored.scores, warn, anomaly)
    ids = np.asarray(scored.file_ids, dtype=object)
    by_id = _paths_by_id(test_files)
    k = dcfg.top_contributors if stream == "patchtst" else len(names)
    dqvl = {r.file_id: r.decision for r in scored.reports}
    files, rows = [], []
    result = StreamResult(stream, trained.ckpt_info["path"], {"warn": warn, "anomaly": anomaly},
                          [], scored.dropped, pd.DataFrame())
    for fid in scored.kept:
        sel = np.flatnonzero(ids == fid)
        starts = scored.starts[sel]
        times = _window_times(trained, cfg, by_id[fid], starts, scored.window)
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
            win = {"index": j, "start": start, "end": end, "score": _num(scored.scores[i]),
                   "level": str(lv[i]), "contributions": {n: _num(v) for n, v in top}}
            row = {"file": fid, "window": j, "start": start, "end": end,
                   "score": float(scored.scores[i]), "level": str(lv[i]),
                   "top_contributors": ";".join(f"{n}:{v:.4g}" for n, v in
                                                top[: dcfg.top_contributors])}
            if bands is not None:
                win["bands"] = {lab: _num(v) for lab, v in zip(band_labels, bands[i],
                                                                strict=True)}
                row["top_band"] = band_labels[int(np.argmax(bands[i]))]
            windows.append(win)
            rows.append(row)
        file_lv = lv[sel]
        files.append({
            "file_id": fid,
            "dqvl_decision": dqvl.get(fid, "keep"),
            "decision": file_level(file_lv, dcfg.file_rule),
            "n_windows": int(len(sel)),
            "n_warn": int(np.sum(file_lv == "warn")),
            "n_anomaly": int(np.sum(file_lv == "anomaly")),
            "max_score": _num(scored.scores[sel].max()) if len(sel) else None,
            "windows": windows,
        })
    result.files = files
    result.windows = pd.DataFrame(rows)
    return result


# --------------------------------------------------------------------------- fusion
def fuse(a: StreamResult, b: StreamResult, rule: FileRule) -> list[dict[str, Any]]:
    """Fused decisions for FDC / vibration file pairs whose time ranges overlap."""
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
                "patchtst_file": fa,
                "swinmae_file": fb,
            })
    return out


# --------------------------------------------------------------------------- outputs
def write_outputs(
    results: list[StreamResult],
    fused: list[dict[str, Any]],
    fused_note: str,
    out_dir: Path,
    run_id: str,
    labels: dict[str, str],
) -> tuple[Path, pd.DataFrame]:
    streams = {}
    summary_rows = []
    for r in results:
        streams[r.stream] = {"checkpoint": r.checkpoint,
                             "thresholds": {k: _num(v) for k, v in r.thresholds.items()},
                             "contributor_kind": KIND[r.stream], "files": r.files,
                             "dropped": r.dropped}
        atomic_write_text(out_dir / f"{r.stream}_windows.csv", r.windows.to_csv(index=False))
        for f in r.files:
            label = labels.get(Path(f["file_id"]).name)
            summary_rows.append({
                "stream": r.stream, "file_id": f["file_id"], "dqvl_decision": f["dqvl_decision"],
                "decision": f["decision"], "n_windows": f["n_windows"], "n_warn": f["n_warn"],
                "n_anomaly": f["n_anomaly"], "max_score": f["max_score"], "label": label or "",
                "correct": "" if label is None else (label == "normal") == (
                    f["decision"] == "normal"), "reason": ""})
        for d in r.dropped:
            label = labels.get(Path(d["file_id"]).name)
            summary_rows.append({
                "stream": r.stream, "file_id": d["file_id"], "dqvl_decision": "drop",
                "decision": "dropped", "n_windows": 0, "n_warn": 0, "n_anomaly": 0,
                "max_score": None, "label": label or "", "correct": "", "reason": d["reason"]})
    decisions = {"schema_version": SCHEMA_VERSION, "created": created_now(), "run_id": run_id,
                 "streams": streams, "fused": fused, "fused_note": fused_note}
    path = atomic_write_json(out_dir / "decisions.json", decisions)
    summary = pd.DataFrame(summary_rows)
    atomic_write_text(out_dir / "file_summary.csv", summary.to_csv(index=False))
    return path, summary


def _print_table(summary: pd.DataFrame) -> None:
    if summary.empty:
        return
    cols = ["stream", "file_id", "decision", "n_windows", "n_warn", "n_anomaly", "max_score",
            "label", "correct"]
    shown = summary[cols].copy()
    shown["max_score"] = shown["max_score"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    print(shown.to_string(index=False))
    for _, row in summary[summary["decision"] == "dropped"].iterrows():
        print(f"dropped {row['stream']} {row['file_id']}: {row['reason']}")
    judged = summary[summary["correct"] != ""]
    if len(judged):
        ok = int(sum(bool(v) for v in judged["correct"]))
        print(f"correct against labels.csv: {ok}/{len(judged)} files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.run_local_test_pipeline",
        description="Calibrate thresholds (if needed) and decide normal/warn/anomaly on test "
        "files for one or both streams.",
    )
    parser.add_argument("--stream", choices=("patchtst", "swinmae", "dual"), default="dual")
    parser.add_argument("--config", default="configs/decision_local.yaml")
    parser.add_argument("--patch-data-path", default=None, help="test glob for FDC files")
    parser.add_argument("--swin-data-path", default=None, help="test glob for vibration files")
    parser.add_argument("--recalibrate", action="store_true",
                        help="recompute thresholds even if current ones exist")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--out-dir", default=None, help="default: output_dir of the config")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)

    dcfg = load_decision_config(args.config)
    wanted = ["patchtst", "swinmae"] if args.stream == "dual" else [args.stream]
    missing = [s for s in wanted if s not in dcfg.streams]
    if missing:
        raise ConfigError(f"{args.config}: streams.{missing[0]} is not configured")
    run_id = args.run_id or new_run_id()
    out_dir = resolve_path(args.out_dir or dcfg.output_dir)
    overrides = {"patchtst": args.patch_data_path, "swinmae": args.swin_data_path}

    results, all_tests = [], []
    for stream in wanted:
        entry = dcfg.streams[stream]
        result, scored = decide_stream(stream, entry, dcfg, overrides[stream],
                                       args.recalibrate, args.device)
        write_reports(scored.reports, out_dir / "dqvl" / stream, run_id)
        results.append(result)
        all_tests += expand_globs(overrides[stream] or entry.test_path)

    fused: list[dict[str, Any]] = []
    if len(results) == 2:
        fused = fuse(results[0], results[1], dcfg.file_rule)
        note = (f"{len(fused)} FDC/vibration file pair(s) overlap in time" if fused else
                "no FDC and vibration files cover the same time range: no fused decision")
    else:
        note = "single stream run: no fused decision"
    labels = read_labels(all_tests)
    path, summary = write_outputs(results, fused, note, out_dir, run_id, labels)
    print()
    _print_table(summary)
    print(f"fused: {note}")
    for f in fused:
        print(f"  {f['asset']}: {f['decision']} ({f['detail']})")
    print(f"decisions: {display_path(path)}; per-window: "
          + ", ".join(display_path(out_dir / f"{r.stream}_windows.csv") for r in results)
          + f"; per-file: {display_path(out_dir / 'file_summary.csv')}")
    return 0


if __name__ == "__main__":
    run_main(main)
