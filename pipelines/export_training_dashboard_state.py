"""Export the training dashboard state (and optionally persist it in the run history).

The state is everything the dashboard shows, in one JSON file: pipeline node statuses
(live from ``artifacts/pipeline/status.json``, else inferred from the artifacts on disk),
epoch progress, the validation checklist, loss series, config highlights, artifact
readiness, DQVL counts and the latest test run (with its decision gate, marked stale when a
checkpoint changed after the decision run).  It is validated against
``training_dashboard/schema/dashboard-state.schema.json`` before it is written (a
failure is a bug in this exporter), holds only repository-relative paths, and is written
atomically.  ``--persist-run-history`` also stores a snapshot per run id and updates
``runs/index.json`` under a file lock, so concurrent or interrupted exports never corrupt
or lose the history.

    python -m pipelines.export_training_dashboard_state --repo-root . \\
        --out training_dashboard/data/dashboard-state.json --persist-run-history --run-id ID
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from jsonschema import Draft202012Validator

import streams
from core.cli import run_main
from core.config import StreamConfig, effective_config
from core.errors import UserError
from core.io import atomic_write_json, file_sha256
from core.layout import (
    BUNDLE_DIR,
    CHECKLIST,
    DASHBOARD_STATE,
    DECISION_CONFIG,
    DecisionLayout,
    RunLayout,
    event_files,
)
from core.paths import EXTERNAL_PREFIX, REPO_ROOT, repo_rel, resolve_path
from core.status import NODE_IDS, check_run_id, new_run_id, read_status
from engine.loss_log import loss_trend_warning, read_history_csv
from pipelines.validate_training_outputs import config_highlights, latest_bundle, run_checklist

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = REPO_ROOT / "training_dashboard/schema/dashboard-state.schema.json"
LAYOUT_PATH = REPO_ROOT / "training_dashboard/data/dashboard-layout.json"
DEFAULT_HISTORY_LIMIT = 50
WINDOW_CAP = 2000  # per file in test_run: keeps the state file small enough for the browser
HISTORY_LOCK_TIMEOUT_S = 60.0
INDEX_NAME = "index.json"


class StateSchemaError(RuntimeError):
    """The exporter built a state that breaks its own schema: a bug, never user input."""


# --------------------------------------------------------------------------- schema
@cache
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _validator(definition: str | None = None) -> Draft202012Validator:
    schema = load_schema()
    if definition is not None:
        schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema)


def conforms(obj: Any, definition: str) -> bool:
    """Whether an input piece (status progress, checklist, decisions) fits its schema part."""
    return _validator(definition).is_valid(obj)


def validate_state(state: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(state), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "<root>"
        raise StateSchemaError(f"dashboard state breaks its schema at {where}: {errors[0].message}")


# --------------------------------------------------------------------------- small readers
def _mtime_iso(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        return None


def _read_json(path: Path) -> Any:
    """Parsed JSON, or None when absent or unreadable (a warning says which)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"warning: {path.name}: unreadable JSON, ignored ({type(exc).__name__})",
              file=sys.stderr)
        return None


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def read_loss(path: Path) -> list[dict[str, Any]]:
    """Loss history rows (``epoch`` int, the rest float or None); [] when absent or bad."""
    if not path.is_file():
        return []
    try:
        rows = read_history_csv(path)
    except (OSError, ValueError, KeyError) as exc:
        print(f"warning: {path.name}: unreadable loss history, ignored ({exc})", file=sys.stderr)
        return []
    out = []
    for row in rows:
        if not math.isfinite(row["epoch"]):
            continue
        out.append({k: (int(v) if k == "epoch" else _finite(v)) for k, v in row.items()})
    return out


def final_loss(series: list[dict[str, Any]]) -> float | None:
    """Last validation loss, else last training loss."""
    if not series:
        return None
    last = series[-1]
    return last["val_loss"] if last["val_loss"] is not None else last["train_loss"]


def read_dqvl_counts(report_dir: Path) -> dict[str, int] | None:
    summary = _read_json(report_dir / "summary.json")
    counts = summary.get("counts") if isinstance(summary, dict) else None
    return counts if conforms(counts, "dqvl_counts") else None


# --------------------------------------------------------------------------- sections
def _artifact(root: Path, path: Path, stream: str, kind: str) -> dict[str, Any]:
    if kind == "tensorboard":
        events = event_files(path)
        ready, size = bool(events), sum(p.stat().st_size for p in events)
    else:
        ready = path.is_file()
        size = path.stat().st_size if ready else 0
    return {"path": repo_rel(path, root), "stream": stream, "kind": kind, "ready": ready,
            "size_bytes": size if ready else None}


def build_artifacts(
    root: Path, configs: dict[str, StreamConfig], decisions: DecisionLayout
) -> list[dict[str, Any]]:
    out = []
    for stream, cfg in configs.items():
        run = RunLayout.from_config(cfg, root)
        wanted = [
            (run.checkpoint, "checkpoint"),
            (run.best, "checkpoint_best"),
            (run.config_yaml, "effective_config"),
            (run.history_csv, "loss_history"),
            (run.curve_png, "loss_curve"),
            (run.log_dir, "tensorboard"),
            (run.dqvl_summary, "dqvl_summary"),
            (decisions.thresholds(stream), "calibration"),
        ]
        wanted += [(resolve_path(path, root), kind)
                   for path, kind in streams.get(stream).extra_artifacts(cfg)]
        out += [_artifact(root, path, stream, kind) for path, kind in wanted]
    bundle = latest_bundle(root) or root / BUNDLE_DIR / "<run_id>.zip"
    for path, kind in ((bundle, "bundle"), (root / CHECKLIST, "checklist"),
                       (decisions.decisions, "decisions")):
        out.append(_artifact(root, path, "shared", kind))
    return out


def _node(status: str, message: str, updated_at: str | None = None) -> dict[str, Any]:
    return {"status": status, "message": message, "updated_at": updated_at}


def infer_nodes(
    root: Path,
    configs: dict[str, StreamConfig],
    loss: dict[str, list[dict[str, Any]]],
    dqvl: dict[str, dict[str, int] | None],
    checklist: dict[str, Any] | None,
    checklist_ran: bool = True,
) -> dict[str, dict[str, Any]]:
    """Node statuses read off the artifacts, for when no live status says otherwise.
    A checklist computed here (``checklist_ran`` False) is a preview: the gate stays idle."""
    summaries = {s: RunLayout.from_config(configs[s], root).dqvl_summary for s in configs}
    seen = [s for s in configs if dqvl[s] is not None]
    nodes: dict[str, dict[str, Any]] = {}
    if seen:
        stamp = _mtime_iso(summaries[seen[0]])
        nodes["data_prep"] = _node("done", f"data prepared for {', '.join(seen)}", stamp)
        counts = "; ".join(
            f"{s}: keep {dqvl[s]['keep']}, drop {dqvl[s]['drop']}, skipped {dqvl[s]['skipped']}"
            for s in seen)
        empty = [s for s in seen if dqvl[s]["keep"] + dqvl[s]["skipped"] == 0]
        nodes["dqvl"] = _node("fail" if empty else "done", counts, stamp)
    else:
        nodes["data_prep"] = _node("idle", "no data prepared yet")
        nodes["dqvl"] = _node("idle", "no DQVL summary yet")
    ckpts = {s: RunLayout.from_config(configs[s], root).checkpoint for s in configs}
    for s in configs:
        if ckpts[s].is_file():
            last = final_loss(loss[s])
            shown = f", final loss {last:.4g}" if last is not None else ""
            warning = loss_trend_warning(loss[s])
            shown += f"; WARNING: {warning}" if warning else ""
            nodes[f"{s}_training"] = _node(
                "done", f"{len(loss[s])} epoch(s){shown}", _mtime_iso(ckpts[s]))
        else:
            nodes[f"{s}_training"] = _node("idle", "no checkpoint yet")
    bundle = latest_bundle(root)
    if bundle is not None and all(p.is_file() for p in ckpts.values()):
        nodes["artifact_save"] = _node("done", f"bundle {repo_rel(bundle, root)}",
                                       _mtime_iso(bundle))
    else:
        nodes["artifact_save"] = _node("idle", "checkpoints and bundle not complete yet")
    if checklist is None:
        nodes["validation_gate"] = _node("idle", "checklist not run yet")
    else:
        failing = [str(i["id"]) for i in checklist["items"] if i["status"] == "FAIL"]
        msg = f"{checklist['passed']}/{checklist['total']} passed"
        msg += f"; failing: {', '.join(failing)}" if failing else ""
        if checklist_ran:
            nodes["validation_gate"] = _node("done" if checklist["ok"] else "fail", msg,
                                             checklist.get("created"))
        else:
            nodes["validation_gate"] = _node("idle", f"not run yet; preview: {msg}")
    return nodes


def _live_node(entry: Any) -> dict[str, Any] | None:
    """A node from the live status file, or None when it is idle or malformed."""
    if not isinstance(entry, dict) or entry.get("status") not in ("running", "done", "fail"):
        return None
    message, updated = entry.get("message"), entry.get("updated_at")
    return _node(entry["status"], message if isinstance(message, str) else "",
                 updated if isinstance(updated, str) else None)


def merge_nodes(
    inferred: dict[str, dict[str, Any]], status: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Live status wins where it says anything but ``idle``; labels come from the layout."""
    live = (status or {}).get("nodes")
    live = live if isinstance(live, dict) else {}
    out = []
    for spec in layout()["nodes"]:
        node = (_live_node(live.get(spec["id"])) or inferred.get(spec["id"])
                or _node("idle", "not part of this export"))
        out.append({"id": spec["id"], "label": spec["label"], "type": spec["type"], **node})
    return out


@cache
def layout() -> dict[str, Any]:
    data = json.loads(LAYOUT_PATH.read_text(encoding="utf-8"))
    if [n["id"] for n in data["nodes"]] != list(NODE_IDS):
        raise StateSchemaError(f"{LAYOUT_PATH.name}: node ids differ from {NODE_IDS}")
    return data


def load_checklist(
    root: Path, checklist_json: str | None, configs: dict[str, str]
) -> tuple[dict[str, Any] | None, bool]:
    """(checklist, ran): from ``--checklist-json`` (must be valid), else the default file,
    else a fresh in-process preview without the scoring smoke (``ran`` False)."""
    if checklist_json:
        path = resolve_path(checklist_json, root)
        data = _read_json(path)
        if not conforms(data, "checklist"):
            raise UserError(f"{repo_rel(path, root)}: missing or not a validation checklist")
        return data, True
    data = _read_json(root / CHECKLIST)
    if conforms(data, "checklist"):
        return data, True
    try:
        preview = run_checklist(root, configs, skip_smoke=True)
    except UserError as exc:
        print(f"warning: checklist not available ({exc})", file=sys.stderr)
        return None, False
    return preview, False


def _event_positions(windows: list[dict[str, Any]], events: list[dict[str, Any]]) -> set[int]:
    """Positions of the windows inside an alarm event (by window index, both ends included)."""
    inside: set[int] = set()
    for event in events:
        inside.update(range(event["start_window"], event["end_window"] + 1))
    return {i for i, w in enumerate(windows) if w.get("index") in inside}


def cap_windows(
    windows: list[dict[str, Any]], cap: int = WINDOW_CAP,
    events: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """At most ``cap`` windows, in the original order: every window inside an event (even
    past ``cap``: the timeline draws each event over its own windows), then the other
    warn/anomaly windows (highest scores first), the rest filled with evenly spaced normal
    ones."""
    if len(windows) <= cap:
        return windows
    kept = _event_positions(windows, events or [])
    flagged = [i for i, w in enumerate(windows) if w.get("level") != "normal" and i not in kept]
    flagged.sort(key=lambda i: -(windows[i].get("score") or 0.0))
    kept.update(flagged[: max(0, cap - len(kept))])
    normal = [i for i, w in enumerate(windows) if w.get("level") == "normal" and i not in kept]
    room = max(0, cap - len(kept))
    step = len(normal) / room if room else 0
    kept.update(normal[int(k * step)] for k in range(room))
    return [windows[i] for i in sorted(kept)]


def gate_stale_reason(decisions_path: Path, gate: dict[str, Any],
                      checkpoints: dict[str, Path]) -> str | None:
    """Why the decision gate no longer speaks for the checkpoints on disk (None: it does).
    The gate judged the models whose sha256 it recorded (null: not known); a checkpoint
    retrained or replaced since (other bytes, or written after decisions.json) has not been
    judged yet."""
    decided = decisions_path.stat().st_mtime
    recorded = gate.get("checkpoints", {})
    reasons = []
    for stream, path in sorted(checkpoints.items()):
        if not path.is_file():
            reasons.append(f"{stream} checkpoint missing")
        elif recorded.get(stream) and recorded[stream] != file_sha256(path):
            reasons.append(f"{stream} checkpoint changed")
        elif path.stat().st_mtime > decided:
            reasons.append(f"{stream} checkpoint newer than the decisions")
    return "; ".join(reasons) or None


def _drop_bad_gate(data: Any, where: str) -> None:
    """A malformed decision gate is dropped with a warning, so the test run still shows."""
    if (isinstance(data, dict) and "decision_gate" in data
            and not conforms(data["decision_gate"], "decision_gate")):
        print(f"warning: {where}: decision_gate does not match the format, ignored",
              file=sys.stderr)
        del data["decision_gate"]


def load_test_run(
    root: Path, decisions: DecisionLayout, runs: dict[str, RunLayout]
) -> dict[str, Any] | None:
    """The latest decisions.json with windows capped per file and its decision gate marked
    ``stale`` (with ``stale_reason``) when a current checkpoint is not the one it judged."""
    data = _read_json(decisions.decisions)
    if data is None:
        return None
    where = repo_rel(decisions.decisions, root)
    _drop_bad_gate(data, where)
    if not conforms(data, "test_run"):
        print(f"warning: {where} does not match the decisions format, ignored", file=sys.stderr)
        return None
    for stream in data["streams"].values():
        for item in stream["files"]:
            if len(item["windows"]) > WINDOW_CAP:
                item["windows"] = cap_windows(item["windows"], events=item.get("events", []))
                item["windows_truncated"] = True
    gate = data.get("decision_gate")
    if gate is not None:
        judged = {*data["streams"], *gate.get("checkpoints", {})}
        reason = gate_stale_reason(decisions.decisions, gate,
                                   {s: runs[s].checkpoint for s in judged if s in runs})
        gate.update(stale=reason is not None, stale_reason=reason)
    return data


# --------------------------------------------------------------------------- path hygiene
def _clean(obj: Any, root: str) -> Any:
    """Non-finite floats -> None; the machine's repository path -> repository-relative;
    any other absolute path string -> its name under the external marker."""
    if isinstance(obj, dict):
        return {k: _clean(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v, root) for v in obj]
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, str):
        text = obj.replace(root + "/", "").replace(root, ".")
        if text.startswith("/") and "\n" not in text and " " not in text:
            return f"{EXTERNAL_PREFIX}/{Path(text).name}"
        return text
    return obj


def assert_no_machine_path(state: dict[str, Any], root: Path) -> None:
    text = json.dumps(state)
    for path in {str(root), str(REPO_ROOT)}:
        if path != "/" and path in text:
            raise StateSchemaError(f"dashboard state contains a machine path ({path})")


# --------------------------------------------------------------------------- build
def build_state(
    root: Path,
    run_id: str | None = None,
    config_paths: dict[str, str] | None = None,
    checklist_json: str | None = None,
    decision_config: str | None = None,
) -> dict[str, Any]:
    """The validated dashboard state for the repository at ``root``; ``config_paths``:
    stream -> config (default: every stream's ``make run`` config); ``decision_config``
    says where the thresholds and the latest test run are (see ``DecisionLayout``)."""
    root = Path(root).resolve()
    paths = config_paths or streams.local_config_paths()
    configs = streams.load_stream_configs(paths, root)
    runs = {s: RunLayout.from_config(cfg, root) for s, cfg in configs.items()}
    decisions = DecisionLayout.from_file(decision_config, root)
    status = read_status(root)
    run_id = check_run_id(run_id or (status or {}).get("run_id") or new_run_id())
    loss = {s: read_loss(run.history_csv) for s, run in runs.items()}
    dqvl = {s: read_dqvl_counts(run.dqvl_dir) for s, run in runs.items()}
    checklist, checklist_ran = load_checklist(root, checklist_json, paths)
    progress = (status or {}).get("progress")
    state = {
        "schema_version": SCHEMA_VERSION,
        "meta": {"run_id": run_id,
                 "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                 "repo_root": ".", "source": "export"},
        "nodes": merge_nodes(
            infer_nodes(root, configs, loss, dqvl, checklist, checklist_ran), status),
        "edges": layout()["edges"],
        "progress": progress if conforms(progress, "progress") else None,
        "checklist": checklist,
        "loss": loss,
        "config": {s: config_highlights(effective_config(cfg)) for s, cfg in configs.items()},
        "artifacts": build_artifacts(root, configs, decisions),
        "dqvl": dqvl,
        "test_run": load_test_run(root, decisions, runs),
    }
    state = _clean(state, str(root))
    validate_state(state)
    assert_no_machine_path(state, root)
    return state


# --------------------------------------------------------------------------- run history
def _index_entry(state: dict[str, Any]) -> dict[str, Any]:
    checklist = state.get("checklist") or {}
    return {
        "run_id": state["meta"]["run_id"],
        "generated_at": state["meta"]["generated_at"],
        "passed": checklist.get("passed"),
        "total": checklist.get("total"),
        "final_loss": {s: final_loss(series) for s, series in state["loss"].items()},
    }


def _known_runs(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Every run the history knows: index entries plus snapshot files not (yet) indexed,
    so a lost or corrupt index never loses a run."""
    entries: dict[str, dict[str, Any]] = {}
    index = _read_json(runs_dir / INDEX_NAME)
    for entry in index.get("runs", []) if isinstance(index, dict) else []:
        run_id = entry.get("run_id") if isinstance(entry, dict) else None
        if isinstance(run_id, str) and (runs_dir / f"{run_id}.json").is_file():
            entries[run_id] = entry
    for snap in runs_dir.glob("*.json"):
        if snap.name == INDEX_NAME or snap.stem in entries:
            continue
        data = _read_json(snap)
        if isinstance(data, dict) and isinstance(data.get("meta"), dict) and "loss" in data:
            entries[snap.stem] = _index_entry(data)
    return entries


def persist_run_history(
    state: dict[str, Any], runs_dir: Path, limit: int = DEFAULT_HISTORY_LIMIT
) -> dict[str, Any]:
    """Store ``runs/<run_id>.json`` and update ``runs/index.json`` (newest first, at most
    ``limit`` runs).  Snapshots that fall off the end are deleted only after the new index
    is in place, so an interruption at any point leaves a consistent history."""
    if limit < 1:
        raise UserError(f"--run-history-limit must be >= 1, got {limit}")
    run_id = check_run_id(state["meta"]["run_id"])
    runs_dir.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(runs_dir / ".index.lock"), timeout=HISTORY_LOCK_TIMEOUT_S):
            atomic_write_json(runs_dir / f"{run_id}.json", state)
            entries = _known_runs(runs_dir)
            entries[run_id] = _index_entry(state)
            ordered = sorted(entries.values(),
                             key=lambda e: (str(e.get("generated_at")), e["run_id"]),
                             reverse=True)
            keep, evicted = ordered[:limit], ordered[limit:]
            index = {"schema_version": SCHEMA_VERSION, "runs": keep}
            atomic_write_json(runs_dir / INDEX_NAME, index)
            for entry in evicted:
                (runs_dir / f"{check_run_id(entry['run_id'])}.json").unlink(missing_ok=True)
    except Timeout:
        raise UserError(f"{runs_dir.name}/{INDEX_NAME}: run history is locked by another "
                        f"export for more than {HISTORY_LOCK_TIMEOUT_S:g} s") from None
    return index


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.export_training_dashboard_state",
        description="Write the training dashboard state JSON (schema-validated, atomic).",
    )
    parser.add_argument("--repo-root", default=".", help="repository root (default: .)")
    parser.add_argument("--out", default=DASHBOARD_STATE, help="state file (default: %(default)s)")
    streams.add_stream_config_args(parser)
    parser.add_argument("--decision-config", default=None,
                        help="decision config whose calibration and output folders to show "
                        f"(default: {DECISION_CONFIG} when present, else the default folders)")
    parser.add_argument("--run-id", help="run id (default: the live status run id, else a "
                        "UTC timestamp); characters A-Z a-z 0-9 . _ -")
    parser.add_argument("--persist-run-history", action="store_true",
                        help="also write runs/<run_id>.json and update runs/index.json "
                        "next to --out")
    parser.add_argument("--run-history-limit", type=int, default=DEFAULT_HISTORY_LIMIT,
                        help="runs kept in the history, newest first (default: %(default)s)")
    parser.add_argument("--checklist-json", help=f"validation checklist to embed (default: "
                        f"{CHECKLIST} when present, else a fresh run without scoring smoke)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.repo_root).resolve()
    if args.run_id:
        check_run_id(args.run_id)
    if args.run_history_limit < 1:
        raise UserError(f"--run-history-limit must be >= 1, got {args.run_history_limit}")
    state = build_state(root, args.run_id, streams.stream_config_paths(args, root),
                        args.checklist_json, args.decision_config)
    out = resolve_path(args.out, root)
    atomic_write_json(out, state)
    print(f"dashboard state: {repo_rel(out, root)} (run {state['meta']['run_id']})")
    if args.persist_run_history:
        index = persist_run_history(state, out.parent / "runs", args.run_history_limit)
        print(f"run history: {repo_rel(out.parent / 'runs' / INDEX_NAME, root)} "
              f"({len(index['runs'])} run(s))")
    return 0


if __name__ == "__main__":
    run_main(main)
