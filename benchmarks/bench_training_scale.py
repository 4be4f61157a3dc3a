"""Training time that grows with the data, not with its windows: time to equal validation loss.

More data makes every-window epochs longer in proportion.  With a per-epoch step budget
(``training.max_steps_per_epoch``: each epoch trains on a fresh random sample of windows)
and early stopping (``training.early_stop_patience``), the time to reach a given
validation loss should grow far less than the data.  Measured on the TEP normal run
``d00`` (500 rows x 52 channels, z-scored on itself) replicated 1x, 4x and 16x, each copy
with its own Gaussian noise (0.1 in z units) as separate files, so no window straddles
copies; validation = the first 480 rows of ``d00_te`` (fixed masks, as the engine does).
Model and optimiser: the TEP benchmark's defaults (window 64, patch 4, mask 0.6, d_model
64, 2 layers, batch 32, lr 1e-3).

Target: the best validation loss of the 1x run with every window per epoch after
``--epochs`` epochs (the CPU profile's 20).  Reported per volume and regime: epochs run,
wall seconds until the validation loss first reached the target (``-`` if never) and in
all; medians are not taken (one run each: the figures move by a few percent between runs
on a shared machine).  Run (2 cores, a few minutes):
    python -m benchmarks.bench_training_scale --threads 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.memory import print_peak_rss
from engine.trainer import fit
from sensor_data.fdc_prep import FdcWindows
from sensor_data.scaler import ChannelScaler
from sensor_data.tep import CALIB_ROWS, CHANNELS, load_tep_array
from streams import build_model, config_from_dict
from streams.base import TrainingSetup
from streams.patchtst import PatchTSTConfig

SEQ_LEN = 64


def replicated(train: np.ndarray, copies: int, noise: float, seed: int) -> list[np.ndarray]:
    """``copies`` noisy copies of one run (copy 0 is the run itself)."""
    rng = np.random.default_rng(seed)
    return [train] + [(train + rng.normal(0, noise, train.shape)).astype(np.float32)
                      for _ in range(copies - 1)]


def windows(runs: list[np.ndarray], step: int) -> FdcWindows:
    index = np.array([(r, s) for r, run in enumerate(runs)
                      for s in range(0, len(run) - SEQ_LEN + 1, step)])
    return FdcWindows(runs, [f"run{r}" for r in range(len(runs))], index, SEQ_LEN, CHANNELS)


def config(out: Path, epochs: int, budget: int | None, patience: int | None) -> PatchTSTConfig:
    raw = {
        "stream": "patchtst", "seed": 0, "device": {"prefer_cuda": False},
        "data": {"source": "files", "seq_len": SEQ_LEN, "stride": 1, "normalization": "zscore",
                 "scaler_path": str(out / "scaler.json")},
        "dqvl": {"report_dir": str(out / "dqvl")},
        "model": {"patch_len": 4, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 128,
                  "dropout": 0.1, "mask_ratio": 0.6},
        "training": {"epochs": epochs, "batch_size": 32, "lr": 1e-3, "warmup_epochs": 1,
                     "max_steps_per_epoch": budget, "early_stop_patience": patience},
        "logging": {"log_dir": str(out / "runs"), "checkpoint_path": str(out / "model.pt"),
                    "loss_dir": str(out / "loss")},
    }
    return config_from_dict(raw, stream="patchtst", source="bench_training_scale")


def train(cfg: PatchTSTConfig, runs: list[np.ndarray], val: np.ndarray) -> list[dict[str, Any]]:
    def build(cfg: PatchTSTConfig, device: torch.device, run_id: str) -> TrainingSetup:
        meta = {"n_channels": len(CHANNELS), "channels": list(CHANNELS)}
        return TrainingSetup(build_model(cfg, meta), windows(runs, 1),
                             windows([val], SEQ_LEN // 2), meta)

    return fit(cfg, build, run_id="bench-scale").history


def time_to(history: list[dict[str, Any]], target: float) -> float | None:
    """Wall seconds until the validation loss first reached ``target``."""
    total = 0.0
    for row in history:
        total += row["seconds"]
        if row["val_loss"] <= target:
            return total
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_training_scale",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--volumes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--epochs", type=int, default=20, help="every-window epochs of the 1x run")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--max-budget-epochs", type=int, default=60)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    raw = load_tep_array("d00").astype(np.float32)
    scaler = ChannelScaler.fit([raw], "zscore", CHANNELS)
    train0 = scaler.transform(raw)
    val = scaler.transform(load_tep_array("d00_te")[:CALIB_ROWS].astype(np.float32))
    steps_1x = -(-(len(train0) - SEQ_LEN + 1) // 32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        base = train(config(Path(tmp) / "base", args.epochs, None, None), [train0], val)
        target = min(r["val_loss"] for r in base)
        print(f"target validation loss {target:.5f} (1x, every window, {args.epochs} epochs; "
              f"{steps_1x} steps per epoch)")
        for v in args.volumes:
            runs = replicated(train0, v, args.noise, seed=v)
            regimes = (("every window", max(2, args.epochs // v), None, None),
                       ("step budget + early stop", args.max_budget_epochs, steps_1x,
                        args.patience))
            for name, epochs, budget, patience in regimes:
                out = Path(tmp) / f"{v}x-{budget}"
                hist = base if (v == 1 and budget is None) else train(
                    config(out, epochs, budget, patience), runs, val)
                reach = time_to(hist, target)
                rows.append((v, name, len(hist), reach, sum(r["seconds"] for r in hist),
                             min(r["val_loss"] for r in hist)))
    print(f"\n{'data':>5} | {'regime':<25} | {'epochs':>6} | {'s to target':>11} | "
          f"{'s in all':>8} | best val")
    for v, name, n, reach, total, best in rows:
        shown = f"{reach:.0f}" if reach is not None else "-"
        print(f"{v:>4}x | {name:<25} | {n:>6} | {shown:>11} | {total:>8.0f} | {best:.5f}")
    print_peak_rss()
    print("reproduce: python -m benchmarks.bench_training_scale "
          + shlex.join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
