"""Vibration detection quality of Swin-MAE-SSL on synthetic machinery data.

Train the small CPU Swin-MAE (``configs/swinmae_ssl.yaml`` by default: synthetic normal
vibration, seeds 0..n_files-1) with the product's training engine, outputs under
``--out-dir``.  Then score held-out machines (other seeds): normal ones and the same kind
of machine with each fault (bearing, imbalance, looseness from
``sensor_data.synthetic_vib``), through the same scoring path as real files
(``prepare_vibration_scoring`` -> cached scalograms -> ``infer_score``).

Reported per fault type:
- AUROC of normal windows vs faulty windows for raw scores (mean reconstruction error)
  and relative scores (``|log(error / normal error)|`` per axis and frequency row, the
  normal profile measured on separate normal "calibration" machines, as the product's
  calibration does), each with the axis aggregation ``mean`` (every axis counts: the mean
  pixel error for raw scores) and ``max`` (the worst axis);
- which frequency band has the largest *excess* error (mean fault band error minus mean
  normal band error) and whether it contains the centre of ``fault_band_hz``.

Run (2 CPU threads, a few minutes):
    python -m benchmarks.bench_vib_detection --threads 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from core.device import select_device
from core.io import atomic_write_json
from core.paths import display_path, resolve_path
from engine.trainer import fit
from inference.checkpoint_io import load_trained
from inference.scoring import aggregate, breakdown, score_windows
from sensor_data.synthetic_vib import FAULTS, fault_band_hz, make_vibration
from sensor_data.vib_prep import prepare_vibration_scoring
from sensor_data.vibration import VibTable
from streams import load_config
from streams.swinmae import SwinMAEConfig

SHAFT_HZ = 29.5  # make_vibration's default shaft speed


def bench_config(args: argparse.Namespace, out_dir: Path) -> SwinMAEConfig:
    overrides = [
        f"logging.log_dir={out_dir / 'runs'}",
        f"logging.checkpoint_path={out_dir / 'swinmae_bench.pt'}",
        f"logging.loss_dir={out_dir / 'loss'}",
        f"dqvl.report_dir={out_dir / 'dqvl'}",
        f"cwt.cache_dir={out_dir / 'cwt_cache'}",
        "data.source=synthetic",
        f"device.prefer_cuda={str(args.device == 'cuda').lower()}",
        *args.overrides,
    ]
    if args.epochs:
        overrides.append(f"training.epochs={args.epochs}")
    return load_config(args.config, overrides, stream="swinmae")


def held_out(
    kind: str | None, n: int, duration: float, fs: float, base: int | None = None
) -> list[VibTable]:
    """Held-out machines: seeds 1000+ never overlap the training seeds."""
    if base is None:
        base = 1000 if kind is None else 2000 + 100 * FAULTS.index(kind)
    return [
        VibTable(f"{kind or 'normal'}_{i}", make_vibration(duration, fs, base + i, fault=kind))
        for i in range(n)
    ]


def band_check(
    normal: np.ndarray, faulty: np.ndarray, edges: np.ndarray, band: tuple[float, float]
) -> tuple[int, bool]:
    """Band with the largest mean excess error, and whether it overlaps the fault band."""
    excess = faulty.mean(axis=0) - normal.mean(axis=0)
    top = int(np.argmax(excess))
    lo, hi = edges[top], edges[top + 1]
    centre = np.sqrt(band[0] * band[1])
    return top, bool(lo <= centre <= hi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_vib_detection",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/swinmae_ssl.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=0, help="override training.epochs")
    p.add_argument("--machines", type=int, default=3, help="held-out machines per class")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per machine")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out-dir", default="artifacts/benchmarks/vib")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = resolve_path(args.out_dir)
    t0 = time.perf_counter()
    cfg = bench_config(args, out_dir)
    result = fit(cfg, run_id="bench-vib")
    device = select_device(args.device == "cuda")
    trained = load_trained(result.paths.checkpoint, expected_stream="swinmae", device=device)
    fs = cfg.data.fs

    basis = {}
    for kind, base in (("calib", 1500), ("normal", 1000), *((f, None) for f in FAULTS)):
        fault = None if kind in ("calib", "normal") else kind
        tables = held_out(fault, args.machines, args.duration, fs, base)
        ds, _ = prepare_vibration_scoring(tables, cfg, device)
        basis[kind] = score_windows(ds, trained, progress=False)[1]["basis"]
    profile = basis["calib"].mean(axis=0)  # normal error profile from the calibration machines
    bands = trained.task.score_layout(trained.cfg)

    def parts(kind: str, mode: str) -> dict:
        return breakdown(basis[kind], trained.task, layout=bands,
                         profile=profile if mode == "relative" else None)[1]

    n_normal = len(basis["normal"])
    print(f"\nSwin-MAE-SSL on synthetic vibration: {n_normal} normal windows and as many per "
          f"fault from {args.machines} held-out machines each; profile from "
          f"{len(basis['calib'])} windows of {args.machines} other normal machines")
    print(f"{'fault':<10} {'mode':<9} {'AUROC mean':>10} {'AUROC max':>10}  "
          f"{'top excess band':<16} {'fault band':<13} in band")
    rows: dict[str, dict] = {}
    for fault in FAULTS:
        band = fault_band_hz(fault, SHAFT_HZ, fs)
        for mode in ("raw", "relative"):
            normal, bad = parts("normal", mode), parts(fault, mode)
            y = np.r_[np.zeros(n_normal), np.ones(len(bad["axis_errors"]))]
            au = {}
            for agg in ("mean", "max"):
                s = [aggregate(torch.as_tensor(a["axis_errors"]), agg).numpy()
                     for a in (normal, bad)]
                au[agg] = float(roc_auc_score(y, np.r_[s[0], s[1]]))
            top, ok = band_check(normal["band_errors"], bad["band_errors"],
                                 normal["band_edges_hz"], band)
            label = normal["band_labels"][top]
            rows.setdefault(fault, {})[mode] = {"auroc_mean": au["mean"], "auroc_max": au["max"],
                                                "top_band": label, "band_ok": ok}
            rows[fault]["fault_band_hz"] = list(band)
            print(f"{fault:<10} {mode:<9} {au['mean']:>10.4f} {au['max']:>10.4f}  {label:<16} "
                  f"{band[0]:.0f}-{band[1]:.0f} Hz{'':<4} {'yes' if ok else 'NO'}")
    edges = bands.edges_hz
    seconds = time.perf_counter() - t0
    print(f"config scoring: aggregation={cfg.scoring.aggregation}, "
          f"error_profile={cfg.scoring.error_profile} (auto = relative for vibration); "
          f"total {seconds:.0f} s on {device} with {args.threads} threads")
    cmd = "python -m benchmarks.bench_vib_detection " + shlex.join(sys.argv[1:] if argv is None
                                                                   else argv)
    print(f"reproduce: {cmd.strip()}")
    path = atomic_write_json(out_dir / "results.json", {
        "config": args.config, "overrides": args.overrides, "epochs": cfg.training.epochs,
        "machines": args.machines, "duration_s": args.duration, "faults": rows,
        "band_edges_hz": [float(e) for e in edges], "seconds": round(seconds, 1),
        "reproduce": cmd.strip()})
    print(f"results: {display_path(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
