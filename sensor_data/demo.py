"""Materialise the demo data set under ``data/local`` (``python -m sensor_data.demo``).

FDC: the Tennessee Eastman process runs shipped in the ``bibmon`` package. Vibration:
seeded synthetic machinery signals with bearing, imbalance and looseness faults in the
test files.  Existing files are never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import run_main
from core.paths import display_path, repo_root, resolve_path
from sensor_data.synthetic_vib import materialise_vibration_demo
from sensor_data.tep import materialise_tep

STREAM_DIRS = {"fdc": "data/local/train/fdc", "vib": "data/local/train/vib"}
DATA_SUFFIXES = {".csv", ".parquet", ".pq", ".npy"}


def has_data(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in DATA_SUFFIXES for p in folder.iterdir())


def materialise_demo(
    root: Path, streams: tuple[str, ...] = ("fdc", "vib"), fill_missing: bool = False
) -> dict[str, list[Path]]:
    """Write the demo files for each stream whose training folder has no data yet."""
    written: dict[str, list[Path]] = {}
    for stream in streams:
        if has_data(root / STREAM_DIRS[stream]) and not fill_missing:
            print(f"demo data: {STREAM_DIRS[stream]} already has files; using them")
            continue
        make = materialise_tep if stream == "fdc" else materialise_vibration_demo
        written[stream] = make(root)
        print(f"demo data: wrote {len(written[stream])} {stream} file(s) under data/local/")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sensor_data.demo",
        description="Write the demo data (TEP FDC runs from bibmon, synthetic vibration) "
        "under data/local/ when a stream's training folder is empty. Never overwrites.",
    )
    parser.add_argument("--stream", choices=["fdc", "vib", "both"], default="both")
    parser.add_argument(
        "--fill-missing",
        action="store_true",
        help="also add demo files that are missing when the folder already has data",
    )
    args = parser.parse_args(argv)
    streams = ("fdc", "vib") if args.stream == "both" else (args.stream,)
    root = repo_root()
    materialise_demo(root, streams, fill_missing=args.fill_missing)
    print(f"data folder: {display_path(resolve_path('data/local'))}")
    return 0


if __name__ == "__main__":
    run_main(main)
