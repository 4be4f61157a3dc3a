"""Batch decisions on test files: calibrate (if needed), DQVL, score, threshold, write.

    python -m pipelines.run_local_test_pipeline [--stream NAME|dual]
        [--config configs/decision_local.yaml] [--data-path STREAM=GLOB]
        [--recalibrate] [--run-id ID] [--out-dir DIR]
        [--engine ray [--address auto|HOST:PORT|ray://HOST:PORT] [--workers N]
         [--chunk-windows N]]

The rules (alarm events, file decision, fusion of streams) live in :mod:`inference.decisions`
and :mod:`inference.alarms`.  Outputs in the output folder: ``decisions.json`` (with the
decision-quality gate), ``<stream>_windows.csv`` (one row per window),
``<stream>_events.csv`` (one row per alarm event), ``file_summary.csv`` (one row per file,
dropped files included) and the test files' DQVL reports under ``dqvl/<stream>/``.  The run
ends with a table per test file and one line of false alarms and missed faults.
``--engine ray`` scores the files (and chunks of long files) on Ray workers with identical
results (:mod:`pipelines.fleet`); many units at once: ``python -m pipelines.run_fleet``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import streams
from core.cli import run_main
from core.config import load_decision_config
from core.errors import ConfigError
from core.layout import DecisionLayout
from core.paths import display_path, resolve_path
from core.status import new_run_id
from inference.decisions import FileDecision, Stamp, StreamDecisions
from inference.scoring import BACKENDS
from pipelines.fleet import Unit, add_engine_args, decide_units, open_engine

ALL = "dual"  # every stream the decision config names


def _elapsed(a: Stamp, b: Stamp) -> str:
    """``b - a`` in readable units (ISO times), or in rows / samples."""
    if isinstance(a, int) or isinstance(b, int):
        return f"{int(b) - int(a):+d} rows"
    sec = float((np.datetime64(b) - np.datetime64(a)) / np.timedelta64(1, "s"))
    return f"{sec / 60:+.0f} min" if abs(sec) >= 120 else f"{sec:+.1f} s"


def _first_alarm(f: FileDecision) -> str:
    if not f.events:
        return "-"
    raised = f.events[0].raised_at
    if f.fault_start is not None:
        return f"{_elapsed(f.fault_start, raised)} from onset"
    return f"{_elapsed(f.windows[0].end, raised)} into file" if f.windows else str(raised)


def summary_table(results: list[StreamDecisions]) -> pd.DataFrame:
    """The ten-second table: per test file its truth, decision, events and first alarm."""
    rows = []
    for r in results:
        for f in r.files:
            truth = f.label or "?"
            if f.difficulty:
                truth += f" ({f.difficulty})"
            top = f.events[0].contributors if f.events else {}
            rows.append({"stream": r.stream, "file": f.file_id, "truth": truth,
                         "decision": f.decision, "events": f.n_events,
                         "first alarm": _first_alarm(f),
                         "top contributors": ", ".join(list(top)[:3]) or "-",
                         "ok": "" if f.correct is None else ("yes" if f.correct else "NO")})
        rows += [{"stream": r.stream, "file": d["file_id"], "truth": "", "decision": "dropped",
                  "events": 0, "first alarm": "-", "top contributors": d["reason"][:60],
                  "ok": ""} for d in r.dropped]
    return pd.DataFrame(rows)


def verdict_line(gate: dict[str, Any]) -> str:
    """False alarms on normal files and missed detectable faults, in one line."""
    if gate["status"] == "no_labels":
        return f"decision quality: {gate['detail']}"
    alarmed = gate["normal_with_events"]
    early = gate.get("early_alarms", [])
    line = (f"false alarms: {len(alarmed)} of {gate['normal_files']} normal files raised "
            f"events{' (' + ', '.join(alarmed) + ')' if alarmed else ''}"
            f"{'; before the onset in ' + ', '.join(early) if early else ''}; missed faults: "
            f"{len(gate['missed'])} of {gate['faults']} detectable"
            f"{' (' + ', '.join(gate['missed']) + ')' if gate['missed'] else ''}")
    if gate["hard_faults"]:
        line += f"; hard faults detected {gate['hard_detected']} of {gate['hard_faults']}"
    return line + f" -> decision gate {gate['status'].upper()}"


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--fdc-data-path`` and the like, and ``--data-path STREAM=GLOB``."""
    for task in streams.tasks():
        parser.add_argument(f"--{task.cli_flag}-data-path", dest=f"data_{task.name}",
                            default=None, help=f"test glob for {task.title} files")
    parser.add_argument("--data-path", action="append", default=[], metavar="STREAM=GLOB",
                        help="test glob for any stream (repeatable)")


def data_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """Stream -> test glob given on the command line (None: the decision config's)."""
    out = {t.name: getattr(args, f"data_{t.name}") for t in streams.tasks()}
    for text in args.data_path:
        name, sep, pattern = text.partition("=")
        if not sep or not pattern:
            raise ConfigError(f"--data-path {text!r}: expected STREAM=GLOB")
        streams.get(name)
        out[name] = pattern
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.run_local_test_pipeline",
        description="Calibrate thresholds (if needed) and decide normal/warn/anomaly on test "
        "files for one stream or every stream of the decision config.",
    )
    parser.add_argument("--stream", choices=(*streams.names(), ALL), default=ALL,
                        help=f"one stream, or {ALL} for every stream the config names")
    parser.add_argument("--config", default="configs/decision_local.yaml")
    add_data_args(parser)
    parser.add_argument("--recalibrate", action="store_true",
                        help="recompute thresholds even if current ones exist")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--out-dir", default=None, help="default: output_dir of the config")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="model pass for scoring: torch, or onnx (ONNX Runtime on the graph "
                        "python -m inference.export_onnx wrote for the same checkpoint, in "
                        "artifacts/onnx/; calibration stays in PyTorch)")
    add_engine_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dcfg = load_decision_config(args.config)
    for name in dcfg.streams:
        try:
            streams.get(name)
        except ConfigError as exc:
            raise ConfigError(f"{args.config}: streams.{name}: {exc}") from None
    wanted = list(dcfg.streams) if args.stream == ALL else [args.stream]
    missing = [s for s in wanted if s not in dcfg.streams]
    if missing:
        raise ConfigError(f"{args.config}: streams.{missing[0]} is not configured")
    run_id = args.run_id or new_run_id()
    layout = DecisionLayout.from_config(dcfg)
    if args.out_dir:
        layout = replace(layout, out_dir=resolve_path(args.out_dir))
    unit = Unit(Path(args.config).stem, dcfg, wanted, data_overrides(args), layout)
    with open_engine(args, args.device, args.backend) as engine:
        (decided,) = decide_units([unit], engine, run_id, args.recalibrate)
    results, fused, note, path, gate = (decided.results, decided.fused, decided.fused_note,
                                        decided.decisions, decided.gate)
    print()
    table = summary_table(results)
    if len(table):
        print(table.to_string(index=False))
    print(verdict_line(gate))
    print(f"fused: {note}")
    for f in fused:
        print(f"  {f['asset']}: {f['decision']} ({f['detail']})")
    print(f"decisions: {display_path(path)}; per-window / events: "
          + ", ".join(f"{display_path(layout.windows_csv(r.stream))} / "
                      f"{display_path(layout.events_csv(r.stream))}" for r in results)
          + f"; per-file: {display_path(layout.file_summary)}")
    return 0


if __name__ == "__main__":
    run_main(main)
