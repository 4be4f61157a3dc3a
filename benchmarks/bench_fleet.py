"""Fleet scoring throughput: files/s and rows/s on 1 vs 2 Ray workers, and one process.

A generated fleet (``--units`` units x ``--files`` synthetic FDC files of ``--rows`` rows
and ``--channels`` channels, 1 s apart) is decided by one FDC model in the shape of the
local CPU config (``configs/patchtst_ssl_local.yaml``; weights from one short training
run on generated data: throughput does not depend on them).  Measured: the scoring step
of ``pipelines.fleet`` (read, DQVL, window, model, merge; thresholds calibrated once
before) on one local Ray instance, with 1 and then 2 workers, and the single-process
engine for reference; each the median of ``--repeats`` after one warm-up run (the
workers' model loads).  Ray's start and the workers' start are not in the figures.
Printed: the shapes, files/s and rows/s, the 2-vs-1-worker ratio, and the throughput a
node with ``--node-cores`` cores would give at the measured per-worker efficiency.

    python -m benchmarks.bench_fleet [--units 4 --files 2 --rows 4000 --repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.memory import print_peak_rss, reproduce_command
from core.paths import REPO_ROOT


def _fleet(root: Path, units: int, files: int, rows: int, channels: int) -> Path:
    """Training data, held-out normal data and every unit's test files, and a manifest."""
    from sensor_data.synthetic_fdc import make_fdc_frame

    def write(path: Path, n: int, seed: int) -> None:
        frame = make_fdc_frame(n, channels, seed)
        frame["timestamp"] = pd.to_datetime(1_704_067_200 + np.arange(n), unit="s")
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)

    write(root / "data" / "train" / "train.csv", 4000, 0)
    write(root / "data" / "calib" / "calib.csv", 4000, 1)
    entry = {"config": "configs/fdc.yaml", "checkpoint": "checkpoints/fdc.pt",
             "calibration_path": "data/calib/*.csv"}
    manifest = {"output_dir": "out", "units": {}}
    for u in range(units):
        for f in range(files):
            write(root / "data" / f"unit_{u}" / f"file_{f}.csv", rows, 10 + u * files + f)
        manifest["units"][f"unit_{u}"] = {
            "streams": {"patchtst": {**entry, "test_path": f"data/unit_{u}/*.csv"}},
            "calibration_dir": "calibration"}
    path = root / "fleet.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def _model(root: Path) -> None:
    """A checkpoint in the local CPU config's shape (a few training steps)."""
    from engine.trainer import fit
    from streams import load_config

    cfg = yaml.safe_load((REPO_ROOT / "configs" / "patchtst_ssl_local.yaml").read_text())
    cfg["device"] = {"prefer_cuda": False, "amp": False}
    cfg["data"].update(path="data/train/*.csv", scaler_path="artifacts/scaler.json")
    cfg["training"].update(epochs=1, max_steps_per_epoch=2, warmup_epochs=0, num_workers=0)
    cfg["logging"] = {"log_dir": "runs/fdc", "checkpoint_path": "checkpoints/fdc.pt",
                      "loss_dir": "artifacts/loss"}
    cfg["dqvl"]["report_dir"] = "artifacts/dqvl"
    (root / "configs").mkdir()
    (root / "configs" / "fdc.yaml").write_text(yaml.safe_dump(cfg))
    fit(load_config(root / "configs" / "fdc.yaml", stream="patchtst"), run_id="bench")


def _median(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: model loads, first reads
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, default=4)
    p.add_argument("--files", type=int, default=2, help="files per unit")
    p.add_argument("--rows", type=int, default=4_000, help="rows per file (1 s apart)")
    p.add_argument("--channels", type=int, default=52, help="FDC channels (TEP has 52)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--node-cores", type=int, default=16, help="cores of the projected node")
    args = p.parse_args(argv)

    import ray

    from inference.decisions import prepare_stream
    from pipelines.fleet import LocalEngine, load_manifest
    from pipelines.ray_pool import RayEngine

    root = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    os.environ["SSL_REPO_ROOT"] = str(root)
    manifest = _fleet(root, args.units, args.files, args.rows, args.channels)
    _model(root)
    units, _ = load_manifest(str(manifest))
    jobs = [prepare_stream("patchtst", u.dcfg, None, False, "cpu") for u in units]
    n_files = sum(len(j.files) for j in jobs)
    n_rows = n_files * args.rows
    windows = len(LocalEngine("cpu").score(jobs[:1])[0].scores) // len(jobs[0].files)
    print(f"fleet: {args.units} units x {args.files} files x {args.rows} rows x "
          f"{args.channels} channels = {n_files} files, {n_rows:,} rows; {windows} scored "
          f"windows per file (seq_len {jobs[0].cfg.data.seq_len}, stride_sec "
          f"{jobs[0].cfg.scoring.stride_sec}); cpu cores {os.cpu_count()}")

    rates: dict[str, float] = {}
    local = LocalEngine("cpu")
    rates["1 process"] = _median(lambda: local.score(jobs), args.repeats)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    try:
        for n in (1, 2):
            with RayEngine(workers=n) as engine:
                rates[f"ray {n} worker(s)"] = _median(lambda e=engine: e.score(jobs),
                                                      args.repeats)
    finally:
        ray.shutdown()
    for name, sec in rates.items():
        print(f"{name:>16}: {sec:6.2f} s  {n_files / sec:6.2f} files/s  "
              f"{n_rows / sec:10,.0f} rows/s")
    one, two = rates["ray 1 worker(s)"], rates["ray 2 worker(s)"]
    speedup = one / two
    per_worker = n_rows / one
    print(f"2 vs 1 workers: {speedup:.2f}x (efficiency {speedup / 2:.0%} per worker)")
    print(f"projected per node of {args.node_cores} cores at that efficiency: "
          f"{per_worker * args.node_cores * speedup / 2:,.0f} rows/s, "
          f"{n_files / one * args.node_cores * speedup / 2:.1f} files/s of this size")
    print_peak_rss()
    print(f"reproduce: {reproduce_command('benchmarks.bench_fleet', argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
