"""What keeps normal data normal on the TEP demo: calibration data and score normalisation.

Uses the FDC checkpoint `make run` trained (checkpoints/patchtst_ssl.pt, its runtime config)
and the demo files under data/local.  Compares, with the product's threshold fit and alarm
rule (configs/decision_local.yaml):
- calibration on ONE normal run (first half of d00_te, 24 h) vs on MANY (that plus the
  normal first 4.8 h of each of the 21 fault runs, the demo's default);
- raw channel errors vs errors divided by a normal per-channel profile (the mean, or the
  median, over the first half of each calibration file, floored at the median channel;
  thresholds then come from the second halves).
Reported per variant: effective calibration windows, events on the normal test file,
detected faults among the 18 detectable ones and the median detection delay (minutes from
the onset to the first anomaly event).  These are demo files a person has looked at: the
sealed figures are in bench_tep_detection.py --final.

    python -m benchmarks.bench_demo_calibration
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import torch

import streams
from benchmarks.memory import print_peak_rss
from core.config import load_decision_config
from core.errors import DataError
from inference.alarms import find_events
from inference.calibration import reference_windows
from inference.checkpoint_io import load_trained
from inference.labels import read_labels
from inference.scoring import score_files
from inference.threshold_fit import fit_thresholds, total_effective_size
from sensor_data.tep import HARD_FAULTS

CONFIG = "artifacts/runtime_configs/patchtst_ssl_local.cpu.yaml"
ONE_RUN = "data/local/calib/fdc/d00_te_calib.csv"
MANY_RUNS = "data/local/calib/fdc/*.csv"
TESTS = "data/local/test/fdc/d*.csv"


def channel_scale(basis: np.ndarray, ids: list[str], starts: np.ndarray, kind: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(per-channel divisor, windows left for thresholds) for a normalisation ``kind``."""
    if kind == "raw":
        return np.ones(basis.shape[1]), np.ones(len(basis), dtype=bool)
    ref = reference_windows(ids, starts)
    prof = basis[ref].mean(axis=0) if kind == "mean" else np.median(basis[ref], axis=0)
    return np.maximum(prof, np.median(prof)), ~ref


def top3(basis: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.sort(basis / scale, axis=1)[:, -3:].mean(axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_demo_calibration",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--checkpoint", default="checkpoints/patchtst_ssl.pt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dcfg = load_decision_config("configs/decision_local.yaml")
    cfg = streams.load_config(args.config, stream="patchtst")
    trained = load_trained(args.checkpoint, expected_stream="patchtst")
    tests = [Path(p) for p in sorted(glob.glob(TESTS))]
    truths = read_labels(tests)
    test = score_files(trained, cfg, tests, progress=False)
    step_min = 2 * 3  # scoring.stride_sec 360 s = 2 rows of 3 minutes
    print(f"{'calibration':>11} {'scores':>6} | {'eff.':>5} {'normal ev':>9} {'det/18':>6} "
          f"{'median delay':>12}")
    for calib_name, pattern in (("one run", ONE_RUN), ("many runs", MANY_RUNS)):
        cal = score_files(trained, cfg, [Path(p) for p in sorted(glob.glob(pattern))],
                          progress=False)
        for kind in ("raw", "mean", "median"):
            scale, used = channel_scale(cal.aux["basis"], cal.file_ids, cal.starts, kind)
            s = top3(cal.aux["basis"][used], scale)
            groups = list(np.asarray(cal.file_ids, dtype=object)[used])
            eff = total_effective_size(s, groups)
            try:
                fit = {k: v.value for k, v in fit_thresholds(
                    s, groups, dcfg.thresholds, calib_name, warn_little_data=False).items()}
            except DataError:
                print(f"{calib_name:>11} {kind:>6} | {eff:>5.0f} refused: too few effective "
                      "windows for thresholds")
                continue
            normal_events, delays, detected = 0, [], 0
            ids = np.asarray(test.file_ids, dtype=object)
            for fid in test.kept:
                sel = np.flatnonzero(ids == fid)
                events = find_events(top3(test.aux["basis"][sel], scale), fit["warn"],
                                     fit["anomaly"], fit["clear"], dcfg.alarm)
                truth = truths[fid]
                if truth.label == "normal":
                    normal_events += len(events)
                    continue
                if int(fid[1:3]) in HARD_FAULTS:
                    continue
                onset = np.searchsorted(test.starts[sel] + test.window - 1,
                                        truth.fault_start_row)
                hits = [e for e in events if e.level == "anomaly" and e.raised >= onset]
                if hits:
                    detected += 1
                    delays.append((hits[0].raised - onset) * step_min)
            print(f"{calib_name:>11} {kind:>6} | {eff:>5.0f} {normal_events:>9} {detected:>6} "
                  f"{np.median(delays) if delays else float('nan'):>9.0f} min")
    print_peak_rss()
    print(f"reproduce: python -m benchmarks.bench_demo_calibration {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
