"""Vibration detection quality of Swin-MAE-SSL on synthetic machinery data.

Train the small CPU Swin-MAE (``configs/swinmae_ssl.yaml`` by default) with the product's
training engine, outputs under ``--out-dir``.  The training machines run across a speed
and load range (``--train-speeds`` / ``--train-loads``, default 26 / 29.5 / 33 Hz at loads
0.8 / 1.0 / 0.6, ``data.synthetic.duration_sec`` seconds each, seeds
``data.synthetic.seed + i``); they are written as CSV files and read through the product's
file path (``data.source=files``).  Then score held-out machines (other seeds) through the
same scoring path as real files (``prepare_vibration_scoring`` -> cached scalograms ->
``infer_score``):

- calibration normals at speeds and loads *between* the training ones (``CALIB``,
  ``--calib``): the normal error profile comes from the first half (by time) of each
  calibration machine and the window thresholds (0.99 and 0.999 quantiles of their
  scores) from the second half, as the product's calibration does;
- normals under each condition of ``CONDITIONS``: a trained condition (29.5 Hz, rated
  load), a constant speed inside the trained range that no training machine ran at, a
  slow speed ramp across the file, and a load below the trained range;
- faults (bearing, imbalance, looseness from ``sensor_data.synthetic_vib``) at 29.5 Hz,
  rated load.

Reported:
- per fault type, against the trained-condition normals: AUROC for raw scores (mean
  reconstruction error) and relative scores (``|log(error / normal error)|`` per axis and
  frequency row), each with the axis aggregation ``mean`` and ``max``, and which frequency
  band has the largest *excess* error and whether it contains the centre of
  ``fault_band_hz``;
- per normal condition, with the product's relative scores and ``scoring.aggregation``:
  AUROC of that condition's normal windows vs each fault's windows, the share of its
  windows above the two calibration thresholds (false alarms per window), and the band
  where its error exceeds the trained-condition normals' most; and a sweep of constant
  speeds (``SWEEP_HZ``, load 0.8) with the share of windows above each threshold.
  Nothing is tuned on these windows.

Run (2 CPU threads; 10 s on an idle machine, a few minutes on a busy one):
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

from benchmarks.memory import print_peak_rss
from core.device import select_device
from core.io import atomic_write_json
from core.paths import display_path, resolve_path
from engine.trainer import fit
from inference.calibration import reference_windows
from inference.checkpoint_io import load_trained
from inference.scoring import aggregate, breakdown, score_windows
from sensor_data.synthetic_vib import FAULTS, fault_band_hz, make_vibration, write_vibration_csv
from sensor_data.vib_prep import prepare_vibration_scoring
from sensor_data.vibration import VibTable
from streams import load_config
from streams.swinmae import SwinMAEConfig

FAULT_HZ, FAULT_LOAD = 29.5, 1.0  # faults run at a trained condition
# (shaft Hz, load) of the calibration machines, cycled: between the training speeds.
CALIB: tuple[tuple[float, float], ...] = ((27.8, 0.9), (32.0, 0.7), (28.6, 0.65))
QUANTILES = (0.99, 0.999)
# name -> (description, make_vibration conditions, seed base).  Seeds never overlap the
# training seeds (data.synthetic.seed + i, 0.. by default) or each other.
CONDITIONS: dict[str, tuple[str, dict, int]] = {
    "trained": ("29.5 Hz, load 1.0 (a training condition)",
                {"shaft_hz": 29.5, "load": 1.0}, 1000),
    "unseen_speed": ("31.2 Hz, load 0.8 (speed inside the range, never trained)",
                     {"shaft_hz": 31.2, "load": 0.8}, 1100),
    "ramp": ("27.0 -> 32.0 Hz ramp, load 0.8",
             {"shaft_hz": 27.0, "shaft_hz_end": 32.0, "load": 0.8}, 1200),
    "low_load": ("29.5 Hz, load 0.5 (below the trained 0.6-1.0)",
                 {"shaft_hz": 29.5, "load": 0.5}, 1300),
}
# Constant speeds across (and at the ends of) the trained range, load SWEEP_LOAD: false
# alarms by speed (seeds 1400 + 10 j).
SWEEP_HZ = (26.0, 27.0, 28.0, 29.0, 30.0, 31.0, 32.0, 33.0)
SWEEP_LOAD = 0.8


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def write_training_files(
    folder: Path, speeds: list[float], loads: list[float], duration: float, fs: float, seed: int
) -> list[Path]:
    """One normal training machine per (speed, load) as CSV; older ones are removed."""
    if len(speeds) != len(loads):
        raise SystemExit(f"--train-speeds has {len(speeds)} values, --train-loads {len(loads)}")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("train_*.csv"):
        old.unlink()
    return [
        write_vibration_csv(
            folder / f"train_{i:03d}_{hz:g}hz_load{load:g}.csv",
            make_vibration(duration, fs, seed + i, shaft_hz=hz, load=load),
            fs,
        )
        for i, (hz, load) in enumerate(zip(speeds, loads, strict=True))
    ]


def bench_config(args: argparse.Namespace, out_dir: Path) -> SwinMAEConfig:
    overrides = [
        f"logging.log_dir={out_dir / 'runs'}",
        f"logging.checkpoint_path={out_dir / 'swinmae_bench.pt'}",
        f"logging.loss_dir={out_dir / 'loss'}",
        f"dqvl.report_dir={out_dir / 'dqvl'}",
        f"cwt.cache_dir={out_dir / 'cwt_cache'}",
        "data.source=files",
        f"data.path={out_dir / 'train_vib'}",
        f"device.prefer_cuda={str(args.device == 'cuda').lower()}",
        *args.overrides,
    ]
    if args.epochs:
        overrides.append(f"training.epochs={args.epochs}")
    return load_config(args.config, overrides, stream="swinmae")


def held_out(
    kind: str | None, n: int, duration: float, fs: float, base: int | None = None,
    **conditions: float,
) -> list[VibTable]:
    """Held-out machines: seeds 1000+ never overlap the training seeds."""
    if base is None:
        base = 2000 + 100 * FAULTS.index(kind)
    return [
        VibTable(f"{kind or 'normal'}_{i}",
                 make_vibration(duration, fs, base + i, fault=kind, **conditions))
        for i in range(n)
    ]


def _conditions(text: str) -> tuple[tuple[float, float], ...]:
    """``"27.8:0.9,32:0.7"`` -> ((27.8, 0.9), (32.0, 0.7))."""
    pairs = [item.split(":") for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--calib: expected HZ:LOAD[,HZ:LOAD...], got {text!r}")
    return tuple((float(hz), float(load)) for hz, load in pairs)


def calibration_machines(
    n: int, duration: float, fs: float, calib: tuple[tuple[float, float], ...] = CALIB
) -> list[VibTable]:
    out = []
    for i in range(n):
        hz, load = calib[i % len(calib)]
        out.append(VibTable(f"calib_{i}", make_vibration(duration, fs, 1500 + i, shaft_hz=hz,
                                                         load=load)))
    return out


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
    p.add_argument("--train-speeds", default="26,29.5,33", help="Hz, one training machine each")
    p.add_argument("--train-loads", default="0.8,1.0,0.6", help="load of each training machine")
    p.add_argument("--calib", default=",".join(f"{hz:g}:{ld:g}" for hz, ld in CALIB),
                   help="HZ:LOAD of the calibration machines, cycled")
    p.add_argument("--machines", type=int, default=3, help="held-out machines per class")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per machine")
    p.add_argument("--calib-duration", type=float, default=20.0,
                   help="seconds per calibration machine (half profile, half thresholds)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out-dir", default="artifacts/benchmarks/vib")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = resolve_path(args.out_dir)
    t0 = time.perf_counter()
    cfg = bench_config(args, out_dir)
    fs = cfg.data.fs
    speeds, loads = _floats(args.train_speeds), _floats(args.train_loads)
    calib = _conditions(args.calib)
    calib_used = [calib[i % len(calib)] for i in range(args.machines)]
    write_training_files(out_dir / "train_vib", speeds, loads, cfg.data.synthetic.duration_sec,
                         fs, cfg.data.synthetic.seed)
    result = fit(cfg, run_id="bench-vib")
    device = select_device(args.device == "cuda")
    trained = load_trained(result.paths.checkpoint, expected_stream="swinmae", device=device)
    bands = trained.task.score_layout(trained.cfg)
    sc = trained.cfg.scoring

    def basis_of(tables: list[VibTable]):
        ds, _ = prepare_vibration_scoring(tables, cfg, device)
        return ds, score_windows(ds, trained, progress=False)[1]["basis"]

    calib_ds, calib_basis = basis_of(calibration_machines(args.machines, args.calib_duration, fs,
                                                          calib))
    ref = reference_windows(calib_ds.file_ids, calib_ds.starts)
    profile = calib_basis[ref].mean(axis=0)  # normal error profile: first half of each file
    basis = {"calib": calib_basis[~ref]}  # thresholds: second half
    for name, (_, conditions, base) in CONDITIONS.items():
        basis[name] = basis_of(held_out(None, args.machines, args.duration, fs, base,
                                        **conditions))[1]
    for fault in FAULTS:
        basis[fault] = basis_of(held_out(fault, args.machines, args.duration, fs,
                                         shaft_hz=FAULT_HZ, load=FAULT_LOAD))[1]

    def parts(kind: str, mode: str) -> dict:
        return breakdown(basis[kind], trained.task, layout=bands,
                         profile=profile if mode == "relative" else None)[1]

    def scores(kind: str) -> np.ndarray:  # the product's relative window scores
        return breakdown(basis[kind], trained.task, aggregation=sc.aggregation, top_k=sc.top_k,
                         profile=profile, layout=bands)[0]

    n_normal = len(basis["trained"])
    train_desc = ", ".join(f"{hz:g} Hz/load {ld:g}" for hz, ld in zip(speeds, loads, strict=True))
    print(f"\nSwin-MAE-SSL on synthetic vibration, trained on {len(speeds)} machines "
          f"({train_desc}, {cfg.data.synthetic.duration_sec:g} s each); {n_normal} "
          f"trained-condition normal windows and as many per fault (at {FAULT_HZ:g} Hz, load "
          f"{FAULT_LOAD:g}) from {args.machines} held-out machines each; profile from "
          f"{int(ref.sum())} windows and thresholds from {int((~ref).sum())} windows of "
          f"{args.machines} calibration machines ("
          + ", ".join(f"{hz:g} Hz/load {ld:g}" for hz, ld in calib_used) + ")")
    print(f"{'fault':<10} {'mode':<9} {'AUROC mean':>10} {'AUROC max':>10}  "
          f"{'top excess band':<16} {'fault band':<13} in band")
    rows: dict[str, dict] = {}
    for fault in FAULTS:
        band = fault_band_hz(fault, FAULT_HZ, fs)
        for mode in ("raw", "relative"):
            normal, bad = parts("trained", mode), parts(fault, mode)
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

    # ------------------------------------------------------------ operating conditions
    calib_scores = scores("calib")
    thresholds = {q: float(np.quantile(calib_scores, q)) for q in QUANTILES}
    fault_scores = {f: scores(f) for f in FAULTS}
    ref_bands = parts("trained", "relative")["band_errors"]
    print(f"\nNormals under changing conditions: relative scores, aggregation={sc.aggregation}; "
          f"thresholds = quantiles of {len(calib_scores)} held-out calibration windows: "
          + ", ".join(f"q{q:g} = {t:.4f}" for q, t in thresholds.items()))
    head = "".join(f" {'AUROC ' + f[:5]:>11}" for f in FAULTS)
    print(f"{'condition':<13} {'windows':>7}{head} {'FA@q0.99':>9} {'FA@q0.999':>9} "
          f"{'max/q0.999':>10}  top excess band")
    conditions_out: dict[str, dict] = {}
    for name, (desc, conditions, _) in CONDITIONS.items():
        s = scores(name)
        au = {f: float(roc_auc_score(np.r_[np.zeros(len(s)), np.ones(len(fs_))], np.r_[s, fs_]))
              for f, fs_ in fault_scores.items()}
        far = {q: float((s > t).mean()) for q, t in thresholds.items()}
        excess = parts(name, "relative")["band_errors"].mean(axis=0) - ref_bands.mean(axis=0)
        top_band = bands.labels[int(np.argmax(excess))] if name != "trained" else "-"
        ratio = float(s.max() / thresholds[0.999])
        conditions_out[name] = {"description": desc, "conditions": conditions,
                                "windows": len(s), "auroc_vs_fault": au,
                                "false_alarm_rate": {str(q): v for q, v in far.items()},
                                "max_score_over_q0999": ratio, "top_excess_band": top_band,
                                "mean_score": float(s.mean())}
        cells = "".join(f" {au[f]:>11.4f}" for f in FAULTS)
        print(f"{name:<13} {len(s):>7}{cells} {far[0.99]:>9.1%} {far[0.999]:>9.1%} "
              f"{ratio:>10.2f}  {top_band}")
    sweep: dict[str, dict] = {}
    for j, hz in enumerate(SWEEP_HZ):
        tables = held_out(None, args.machines, args.duration, fs, 1400 + 10 * j, shaft_hz=hz,
                          load=SWEEP_LOAD)
        basis[f"sweep_{hz:g}"] = basis_of(tables)[1]
        s = scores(f"sweep_{hz:g}")
        sweep[f"{hz:g}"] = {"windows": len(s), "median_score": float(np.median(s)),
                            "false_alarm_rate": {str(q): float((s > t).mean())
                                                 for q, t in thresholds.items()}}
    print(f"speed sweep, load {SWEEP_LOAD:g}, {args.machines} machines each; share of windows "
          "above q0.99 / q0.999 (median score):")
    print("  " + "; ".join(
        f"{hz} Hz {v['false_alarm_rate']['0.99']:.0%} / {v['false_alarm_rate']['0.999']:.0%} "
        f"({v['median_score']:.3f})" for hz, v in sweep.items()))
    detect = {f: {str(q): float((v > t).mean()) for q, t in thresholds.items()}
              for f, v in fault_scores.items()}
    print("fault windows above q0.99 / q0.999: " + ", ".join(
        f"{f} {d['0.99']:.1%} / {d['0.999']:.1%}" for f, d in detect.items()))
    for name, (desc, _, _) in CONDITIONS.items():
        print(f"  {name}: {desc}")

    edges = bands.edges_hz
    seconds = time.perf_counter() - t0
    print(f"config scoring: aggregation={cfg.scoring.aggregation}, "
          f"error_profile={cfg.scoring.error_profile} (auto = relative for vibration); "
          f"total {seconds:.0f} s on {device} with {args.threads} threads")
    cmd = "python -m benchmarks.bench_vib_detection " + shlex.join(sys.argv[1:] if argv is None
                                                                   else argv)
    print_peak_rss()
    print(f"reproduce: {cmd.strip()}")
    path = atomic_write_json(out_dir / "results.json", {
        "config": args.config, "overrides": args.overrides, "epochs": cfg.training.epochs,
        "train": [{"shaft_hz": hz, "load": ld} for hz, ld in zip(speeds, loads, strict=True)],
        "calibration": [{"shaft_hz": hz, "load": ld} for hz, ld in calib_used],
        "machines": args.machines, "duration_s": args.duration,
        "calib_duration_s": args.calib_duration, "faults": rows,
        "thresholds": {str(q): t for q, t in thresholds.items()},
        "calibration_windows": len(calib_scores), "conditions": conditions_out,
        "speed_sweep": {"load": SWEEP_LOAD, "by_hz": sweep},
        "fault_windows_above": detect,
        "band_edges_hz": [float(e) for e in edges], "seconds": round(seconds, 1),
        "reproduce": cmd.strip()})
    print(f"results: {display_path(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
