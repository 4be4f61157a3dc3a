"""Peak memory of one large Parquet FDC file through reading, DQVL, scaling and scoring.

Goal (issue 13): a 1 GB Parquet file goes through DQVL and scoring in no more than about
twice its size in RAM.  The file (``--size-gb``, default 1.0 = 10^9 bytes) is written
once under ``artifacts/benchmarks/large_file/`` (``--rewrite`` writes it again), row group
by row group: a 1 Hz ``timestamp`` column and the 52 Tennessee Eastman channel names
(``sensor_data.tep.CHANNELS``) as float64 slow sines + random walks + noise, which Snappy
barely compresses, so the file is about as large as its float64 values.

Each phase runs in its own process, so one phase's memory never counts for another:
writing the file, training a tiny PatchTST (seq_len 64) on 4,000 rows of the same
generator in a temporary repository root (``SSL_REPO_ROOT``), and the measured phase:
``load_trained`` + ``streams.load_config`` (the baseline), then the product's scoring path
``inference.scoring.score_files(..., max_windows=N)`` on the large file, which reads it,
runs DQVL, aligns and scales the channels, cuts the windows and scores N of them spread
over the file.  The measured process reports its peak RSS (``getrusage`` ``ru_maxrss``),
the baseline before scoring, both against the file size, and per phase (read, DQVL,
scaling, model) the seconds and the largest RSS a 5 ms sampler saw.  ``--no-dqvl`` adds
a second measured run with ``dqvl.enabled=false``.  Run:
    python -m benchmarks.bench_large_file [--size-gb 1.0] [--max-windows 2000] [--no-dqvl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.memory import reproduce_command

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "artifacts" / "benchmarks" / "large_file"
START_NS = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
GROUP_ROWS = 100_000  # rows per Parquet row group (about 42 MB of float64)
TRAIN_ROWS = 4_000
RESULT = "RESULT "  # prefix of the measured child's JSON line
MIB = 2**20

TINY_CFG: dict[str, Any] = {
    "stream": "patchtst",
    "seed": 0,
    "device": {"prefer_cuda": False, "amp": False},
    "data": {"source": "files", "path": "data/local/train/fdc/*.parquet", "seq_len": 64,
             "stride": 8, "val_fraction": 0.2},
    "model": {"patch_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32,
              "mask_ratio": 0.4},
    "training": {"epochs": 1, "batch_size": 32, "lr": 0.003, "warmup_epochs": 0,
                 "max_steps_per_epoch": 10},
    # The product's scoring defaults (configs/patchtst_ssl_local.yaml): a window every 6 min.
    "scoring": {"aggregation": "topk", "top_k": 3, "batch_size": 256, "stride_sec": 360},
    "logging": {"log_dir": "runs/patchtst_ssl", "checkpoint_path": "checkpoints/patchtst_ssl.pt"},
}


# --------------------------------------------------------------------------- the file
class _Signal:
    """Per channel: offset, unit, a slow sine, and a random walk carried across row groups."""

    def __init__(self, n_channels: int, seed: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.offset = self.rng.uniform(-50, 500, n_channels)
        self.unit = self.rng.uniform(0.1, 20, n_channels)
        self.period = self.rng.uniform(600, 86_400, n_channels)
        self.phase = self.rng.uniform(0, 2 * np.pi, n_channels)
        self.walk = np.zeros(n_channels)
        self.row = 0

    def block(self, n_rows: int) -> Any:
        """The next ``n_rows`` rows, float64 ``(n_rows, C)``."""
        import numpy as np

        t = (self.row + np.arange(n_rows, dtype=np.float64))[:, None]
        walk = self.walk + np.cumsum(self.rng.normal(0, 0.01, (n_rows, self.walk.size)), axis=0)
        self.walk, self.row = walk[-1], self.row + n_rows
        sine = np.sin(2 * np.pi * t / self.period + self.phase)
        noise = self.rng.normal(0, 0.1, walk.shape)
        return self.offset + self.unit * (sine + walk + noise)


def _batches(n_rows: int, seed: int = 0) -> Iterator[Any]:
    """Record batches of the file: ``timestamp`` at 1 Hz and the TEP channels."""
    import numpy as np
    import pyarrow as pa

    from sensor_data.tep import CHANNELS

    signal = _Signal(len(CHANNELS), seed)
    for first in range(0, n_rows, GROUP_ROWS):
        n = min(GROUP_ROWS, n_rows - first)
        stamps = START_NS + (first + np.arange(n, dtype=np.int64)) * 10**9
        values = signal.block(n)
        columns = [pa.array(stamps, type=pa.timestamp("ns"))]
        columns += [pa.array(values[:, j]) for j in range(len(CHANNELS))]
        yield pa.RecordBatch.from_arrays(columns, names=["timestamp", *CHANNELS])


def write_file(path: Path, n_rows: int) -> None:
    """Write ``n_rows`` rows one row group at a time (never the whole table in memory)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.tmp")
    writer = None
    for batch in _batches(n_rows):
        if writer is None:
            writer = pq.ParquetWriter(partial, batch.schema, compression="snappy",
                                      use_dictionary=False)
        writer.write_batch(batch, row_group_size=GROUP_ROWS)
    assert writer is not None
    writer.close()
    partial.replace(path)


def rows_for(size_gb: float) -> int:
    """Rows that make about ``size_gb`` * 10^9 bytes (8 bytes per column and row)."""
    from sensor_data.tep import CHANNELS

    return max(TRAIN_ROWS, int(size_gb * 1e9 / (8 * (len(CHANNELS) + 1))))


# --------------------------------------------------------------------------- the model
def train_tiny(root: Path) -> None:
    """A tiny but valid PatchTST checkpoint and scaler for the 52 channels in ``root``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from engine.trainer import fit
    from streams import load_config

    data = root / "data" / "local" / "train" / "fdc"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_batches(list(_batches(TRAIN_ROWS))), data / "train.parquet")
    config = root / "configs" / "patch.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(TINY_CFG))
    os.environ["SSL_REPO_ROOT"] = str(root)
    fit(load_config(config, stream="patchtst"), run_id="bench")


# --------------------------------------------------------------------------- measuring
def _rss_mib() -> float:
    """Resident set of this process now, in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


class _Phases:
    """Seconds and the largest sampled RSS per phase of the measured process.

    A thread samples RSS every 5 ms; the exact whole-process peak is ``ru_maxrss``.
    """

    def __init__(self) -> None:
        self.current: str | None = None
        self.stats: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            name = self.current
            if name is not None:
                entry = self.stats[name]
                entry["peak_mib"] = max(entry["peak_mib"], _rss_mib())

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        outer, self.current = self.current, name
        entry = self.stats.setdefault(name, {"seconds": 0.0, "peak_mib": 0.0, "calls": 0})
        entry["peak_mib"] = max(entry["peak_mib"], _rss_mib())
        t0 = time.perf_counter()
        try:
            yield
        finally:
            entry["seconds"] += time.perf_counter() - t0
            entry["calls"] += 1
            entry["peak_mib"] = max(entry["peak_mib"], _rss_mib())
            self.current = outer

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        """Time every call of ``owner.attr`` as phase ``name`` (the product code is unchanged)."""
        inner: Callable[..., Any] = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return inner(*args, **kwargs)

        setattr(owner, attr, timed)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _verdict(report: Any) -> str:
    if not report.usable:
        return f"dropped: {report.reason()}"
    warns = ", ".join(w["rule"] for w in report.warnings) if report.warnings else "none"
    return f"kept (warnings: {warns})"


def measure(root: Path, path: Path, max_windows: int, threads: int, dqvl: bool) -> dict:
    """The measured phase: baseline after imports and model load, then ``score_files``."""
    import resource

    import torch

    import inference.scoring as scoring
    import sensor_data.fdc_prep as prep
    from inference.checkpoint_io import load_trained
    from sensor_data.scaler import ChannelScaler
    from streams import load_config

    torch.set_num_threads(threads)
    os.environ["SSL_REPO_ROOT"] = str(root)
    overrides = [] if dqvl else ["dqvl.enabled=false"]
    cfg = load_config(root / "configs" / "patch.yaml", overrides, stream="patchtst")
    trained = load_trained(cfg.logging.checkpoint_path, expected_stream="patchtst")
    baseline = _rss_mib()
    phases = _Phases()
    phases.wrap(prep, "read_fdc", "read")
    phases.wrap(prep, "check_fdc", "dqvl")
    phases.wrap(ChannelScaler, "transform", "scale")
    phases.wrap(scoring, "score_windows", "model")
    t0 = time.perf_counter()
    with phases.phase("score_files"):
        scored = scoring.score_files(trained, cfg, [path], progress=False,
                                     max_windows=max_windows)
    seconds = time.perf_counter() - t0
    phases.stop()
    report = scored.reports[0]
    return {
        "dqvl": dqvl,
        "baseline_mib": baseline,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": seconds,
        "rows": report.metrics.get("n_rows"),
        "channels": report.metrics.get("n_channels"),
        "verdict": _verdict(report),
        "windows_scored": int(len(scored.scores)),
        "stride_rows": report.metrics.get("scoring_stride_rows"),
        "phases": phases.stats,
    }


# --------------------------------------------------------------------------- orchestration
def _child(*args: str, env: dict[str, str] | None = None) -> str:
    """Run this module in a fresh process (its memory is its own); returns its stdout."""
    cmd = [sys.executable, "-m", "benchmarks.bench_large_file", *args]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"child {' '.join(args[:2])} failed with exit code {done.returncode}")
    return done.stdout


def _print_file(path: Path, rows: int, file_mib: float) -> None:
    """The file against its values' size (the parent never opens it: its memory would
    count in a child's ``ru_maxrss``, which starts from the parent's peak)."""
    values = rows * 52 * 8 / MIB
    print(f"file: {path.relative_to(REPO)}: {rows:,} rows x (timestamp + 52 float64), "
          f"{file_mib:.0f} MiB on disk (float64 values {values:.0f} MiB; float32 in memory "
          f"{values / 2:.0f} MiB)")


def _print_result(r: dict, file_mib: float) -> None:
    peak, base = r["peak_mib"], r["baseline_mib"]
    label = "DQVL on" if r["dqvl"] else "DQVL off (dqvl.enabled=false)"
    print(f"\n[{label}] {r['rows']:,} rows x {r['channels']} channels, verdict: {r['verdict']}")
    print(f"  {r['windows_scored']:,} windows scored (stride {r['stride_rows']} rows, "
          f"spread over the file), score_files {r['seconds']:.1f} s")
    print(f"  baseline RSS (imports + model): {base:7.0f} MiB")
    print(f"  peak RSS (ru_maxrss):           {peak:7.0f} MiB = {peak / file_mib:.2f}x the file")
    print(f"  peak - baseline:                {peak - base:7.0f} MiB = "
          f"{(peak - base) / file_mib:.2f}x the file")
    print(f"  {'phase':<12} {'seconds':>8} {'sampled peak MiB':>17}")
    for name in ("read", "dqvl", "scale", "model", "score_files"):
        s = r["phases"].get(name)
        if s:
            print(f"  {name:<12} {s['seconds']:>8.1f} {s['peak_mib']:>17.0f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_large_file",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gb", type=float, default=1.0, help="file size in 10^9 bytes")
    p.add_argument("--rewrite", action="store_true", help="write the file even if present")
    p.add_argument("--max-windows", type=int, default=2000, help="windows scored")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-dqvl", action="store_true",
                   help="also measure a run with dqvl.enabled=false")
    p.add_argument("--phase", choices=("write", "train", "measure"), help=argparse.SUPPRESS)
    p.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--dqvl-off", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase == "write":
        write_file(args.path, rows_for(args.size_gb))
        return 0
    if args.phase == "train":
        train_tiny(args.root)
        return 0
    if args.phase == "measure":
        result = measure(args.root, args.path, args.max_windows, args.threads, not args.dqvl_off)
        print(RESULT + json.dumps(result))
        return 0

    path = OUT_DIR / f"fdc_{args.size_gb:g}gb.parquet"
    t0 = time.perf_counter()
    if args.rewrite or not path.is_file():
        _child("--phase", "write", "--path", str(path), "--size-gb", str(args.size_gb))
        print(f"wrote {path.relative_to(REPO)} in {time.perf_counter() - t0:.0f} s")
    file_mib = path.stat().st_size / MIB
    with tempfile.TemporaryDirectory(prefix="bench_large_file_") as tmp:
        root = Path(tmp)
        t1 = time.perf_counter()
        _child("--phase", "train", "--root", str(root))
        print(f"tiny PatchTST (seq_len 64, 52 channels) trained in "
              f"{time.perf_counter() - t1:.0f} s in a temporary repository root")
        runs = [False, True] if args.no_dqvl else [False]
        for off in runs:
            extra = ["--dqvl-off"] if off else []
            out = _child("--phase", "measure", "--root", str(root), "--path", str(path),
                         "--max-windows", str(args.max_windows), "--threads", str(args.threads),
                         *extra)
            line = next(x for x in out.splitlines() if x.startswith(RESULT))
            result = json.loads(line[len(RESULT):])
            if not off:
                _print_file(path, result["rows"], file_mib)
            _print_result(result, file_mib)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; goal: peak RSS <= ~2x the file size")
    print(f"reproduce: {reproduce_command('benchmarks.bench_large_file', argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
