"""Batch decisions on test files: calibrate (if needed), DQVL, score, threshold, write.

    python -m pipelines.run_local_test_pipeline [--stream NAME|dual]
        [--config configs/decision_local.yaml] [--data-path STREAM=GLOB]
        [--recalibrate] [--run-id ID] [--out-dir DIR]

The rules (file decision, fusion of streams) live in :mod:`inference.decisions`.  Outputs
in the output folder: ``decisions.json`` (format in the data contracts),
``<stream>_windows.csv`` (one row per window), ``file_summary.csv`` (one row per file,
dropped files included) and the test files' DQVL reports under ``dqvl/<stream>/``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import pandas as pd

import streams
from core.cli import run_main
from core.config import load_decision_config
from core.errors import ConfigError
from core.layout import DecisionLayout
from core.paths import display_path, resolve_path
from core.status import new_run_id
from inference.decisions import decide_stream, fuse, list_test_files, read_labels, write_outputs
from sensor_data.dqvl_report import write_reports

ALL = "dual"  # every stream the decision config names


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


def _data_overrides(args: argparse.Namespace) -> dict[str, str | None]:
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
    for task in streams.tasks():
        parser.add_argument(f"--{task.cli_flag}-data-path", dest=f"data_{task.name}",
                            default=None, help=f"test glob for {task.title} files")
    parser.add_argument("--data-path", action="append", default=[], metavar="STREAM=GLOB",
                        help="test glob for any stream (repeatable)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="recompute thresholds even if current ones exist")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--out-dir", default=None, help="default: output_dir of the config")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
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
    overrides = _data_overrides(args)

    results, all_tests = [], []
    for stream in wanted:
        result, scored = decide_stream(stream, dcfg, overrides.get(stream), args.recalibrate,
                                       args.device)
        write_reports(scored.reports, layout.dqvl_dir(stream), run_id)
        results.append(result)
        all_tests += list_test_files(dcfg.streams[stream], overrides.get(stream))

    fused, note = fuse(results, dcfg.file_rule)
    path, summary = write_outputs(results, fused, note, layout, run_id, read_labels(all_tests))
    print()
    _print_table(summary)
    print(f"fused: {note}")
    for f in fused:
        print(f"  {f['asset']}: {f['decision']} ({f['detail']})")
    print(f"decisions: {display_path(path)}; per-window: "
          + ", ".join(display_path(layout.windows_csv(r.stream)) for r in results)
          + f"; per-file: {display_path(layout.file_summary)}")
    return 0


if __name__ == "__main__":
    run_main(main)
