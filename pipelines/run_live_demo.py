"""``make demo-live``: the trained demo models watch a replayed plant, alarms on the dashboard.

Replays a Tennessee Eastman fault run (normal rows first, then fault 1) and a vibration
file with a bearing fault through the live scorer (``configs/live_local.yaml``), with the
dashboard's Live tab open on http://127.0.0.1:8765.  At the end it prints, per stream,
when the first alarm rose after the labelled fault onset, next to what the batch decision
of the same file found.  Needs the models and thresholds of ``make run``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.cli import run_main
from core.config import load_decision_config
from core.errors import UserError
from core.layout import DECISION_CONFIG, DecisionLayout
from core.paths import display_path, repo_root, resolve_path
from inference.labels import read_labels
from inference.live.config import LiveConfig, load_live_config
from inference.live.service import build_scorers, run_scorers
from pipelines.run_main_job import RUNTIME_DECISION_CONFIG

DEFAULT_CONFIG = "configs/live_local.yaml"


def demo_config(path: str) -> LiveConfig:
    """The live config, judging with the decision config ``make run`` decided with: on a
    machine without CUDA that is the CPU-profile one it wrote to artifacts/runtime_configs."""
    live = load_live_config(path)
    if live.decision_config == DECISION_CONFIG and resolve_path(RUNTIME_DECISION_CONFIG).is_file():
        live = live.model_copy(update={"decision_config": RUNTIME_DECISION_CONFIG})
    return live


def _check_ready(live: LiveConfig) -> None:
    dcfg = load_decision_config(live.decision_config)
    layout = DecisionLayout.from_config(dcfg)
    for stream in live.streams:
        entry = dcfg.streams[stream]
        needed = [resolve_path(entry.checkpoint), layout.thresholds(stream)]
        missing = [display_path(p) for p in needed if not p.is_file()]
        if missing:
            raise UserError(f"{', '.join(missing)} not found: run `make run` first (it trains "
                            "the demo models and calibrates their thresholds)")


def _start_dashboard(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "training_dashboard.server", "--host", "127.0.0.1",
           "--port", str(port)]
    return subprocess.Popen(cmd, cwd=repo_root(), stdout=subprocess.DEVNULL)


def _stamp(value: Any) -> np.datetime64 | None:
    return np.datetime64(value, "ms") if isinstance(value, str) else None


def _batch_first_alarm(dcfg_path: str, stream: str, file_name: str) -> str | None:
    layout = DecisionLayout.from_config(load_decision_config(dcfg_path))
    try:
        data = json.loads(layout.decisions.read_text(encoding="utf-8"))
        files = data["streams"][stream]["files"]
    except (OSError, ValueError, KeyError):
        return None
    found = [f for f in files if Path(f["file_id"]).name == file_name]
    return found[0].get("first_alarm") if found else None


def _delay(first: Any, onset: np.datetime64 | None) -> str:
    at = _stamp(first)
    if at is None or onset is None:
        return "no alarm" if first is None else f"at {first}"
    minutes = float((at - onset) / np.timedelta64(1, "s")) / 60
    return f"{first} ({minutes:+.1f} min after the onset)"


def report(scorers: list[Any], live: LiveConfig) -> None:
    """Per stream: first alarm of the live run vs the batch decision of the same file."""
    for s in scorers:
        src = live.streams[s.stream].source
        path = resolve_path(getattr(src, "path", ""))
        truth = read_labels([path]).get(path.name) if path.name else None
        onset = None
        rec = getattr(s.source, "rec", None)
        if truth and truth.fault_start_row is not None and rec is not None and \
                rec.stamps is not None:
            onset = rec.stamps[min(truth.fault_start_row, len(rec.stamps) - 1)]
        log = s.out / "events.jsonl"
        lines = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
        raised = [x["event"] for x in lines
                  if x["kind"] == "process" and x["transition"] == "raised"]
        first = raised[0]["raised_at"] if raised else None
        batch = _batch_first_alarm(live.decision_config, s.stream, path.name)
        print(f"[{s.stream}] {path.name}: live first alarm {_delay(first, onset)}; "
              f"batch decision: {_delay(batch, onset)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.run_live_demo",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"live config ({DEFAULT_CONFIG})")
    p.add_argument("--port", type=int, default=8765, help="dashboard port (loopback)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    p.add_argument("--keep-open", action="store_true",
                   help="keep the dashboard running after the replays end (Ctrl-C stops)")
    args = p.parse_args(argv)
    live = demo_config(args.config)
    print(f"judging with {live.decision_config}")
    _check_ready(live)
    server = None if args.no_dashboard else _start_dashboard(args.port)
    if server is not None:
        print(f"dashboard: http://127.0.0.1:{args.port}/ (Live tab)")
    try:
        scorers = build_scorers(live, fresh=True)
        for s in scorers:
            print(f"[{s.stream}] replaying {s.source.describe()}")
        run_scorers(scorers, threading.Event())
        report(scorers, live)
        if server is not None and args.keep_open:
            print("replays done; the dashboard stays up until Ctrl-C")
            server.wait()
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    run_main(main)
