"""Decide every unit of a fleet manifest in one command, and one summary across units.

    python -m pipelines.run_fleet --manifest configs/fleet_example.yaml
        [--engine ray [--address auto|HOST:PORT|ray://HOST:PORT] [--workers N]
         [--chunk-windows N]] [--recalibrate] [--run-id ID] [--out-dir DIR]

Each unit is decided as ``pipelines.run_local_test_pipeline`` decides one decision config
(same files in ``<out-dir>/<unit>/``); ``summary.json`` and ``summary.csv`` in the fleet
folder list every unit, stream and file with its decision, events and the unit's
decision gate.  The manifest format is in :mod:`pipelines.fleet`.
"""

from __future__ import annotations

import argparse

from core.cli import run_main
from core.paths import display_path
from core.status import new_run_id
from pipelines.fleet import (
    add_engine_args,
    decide_units,
    load_manifest,
    open_engine,
    unit_lines,
    write_summary,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.run_fleet",
        description="Decide normal/warn/anomaly for every unit of a fleet manifest and write "
        "one summary across units.",
    )
    parser.add_argument("--manifest", default="configs/fleet_example.yaml",
                        help="YAML (units: id -> decision config) or CSV manifest")
    parser.add_argument("--recalibrate", action="store_true",
                        help="recompute every unit's thresholds even if current ones exist")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--out-dir", default=None, help="default: output_dir of the manifest")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="--engine local only (Ray workers score on CPUs)")
    add_engine_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    units, fleet_dir = load_manifest(args.manifest, args.out_dir)
    run_id = args.run_id or new_run_id()
    with open_engine(args, args.device) as engine:
        decided = decide_units(units, engine, run_id, args.recalibrate)
    json_path, csv_path = write_summary(decided, fleet_dir, run_id)
    print()
    for line in unit_lines(decided):
        print(line)
    print(f"fleet summary: {display_path(json_path)}, {display_path(csv_path)} "
          f"({len(decided)} units)")
    return 0


if __name__ == "__main__":
    run_main(main)
