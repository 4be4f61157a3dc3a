"""``python -m inference.live --config configs/live_local.yaml``: watch live sources."""

from __future__ import annotations

import argparse
import signal
import threading

from core.cli import run_main
from core.paths import display_path, resolve_path
from inference.live.config import load_live_config
from inference.live.service import build_scorers, run_scorers
from inference.scoring import BACKENDS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m inference.live",
        description="Score live rows (OPC UA, MQTT, a growing CSV or a replayed file) with "
        "the checkpoints and thresholds of the decision config, and raise the same alarm "
        "events as the batch decisions; data-quality events apart. Restart-safe: it "
        "resumes where it stopped. Ctrl-C stops cleanly.")
    p.add_argument("--config", default="configs/live_local.yaml",
                   help="live config (default: configs/live_local.yaml)")
    p.add_argument("--stream", action="append", default=[], metavar="NAME",
                   help="only these streams of the config (repeatable; default: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="model pass: torch, or onnx (ONNX Runtime on the graph python -m "
                   "inference.export_onnx wrote for the same checkpoint, in artifacts/onnx/)")
    p.add_argument("--fresh", action="store_true",
                   help="start from the first row: earlier outputs of these streams are moved "
                   "to <output_dir>/archive/ (nothing is deleted)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    live = load_live_config(args.config)
    scorers = build_scorers(live, args.stream, args.device, args.fresh, args.backend)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(f"stopping ({signal.Signals(signum).name}); state is saved")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    out = display_path(resolve_path(live.output_dir))
    for s in scorers:
        print(f"[{s.stream}] watching {s.source.describe()}; window {s.inp.window} rows; "
              f"outputs in {out}/{s.stream}/")
    run_scorers(scorers, stop)
    for s in scorers:
        print(f"[{s.stream}] {s.state}: {s.n_rows} rows, {s.next_window} windows, "
              f"{s.event_id} alarm events")
    return 0


if __name__ == "__main__":
    run_main(main)
