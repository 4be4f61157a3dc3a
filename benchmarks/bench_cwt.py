"""CWT scalogram throughput: batched fast path vs the PyWavelets per-window reference.

Both paths run in the same process on the same synthetic vibration windows (noise +
harmonics + impulses), and the agreement of the two is reported on the windows the
reference computed.  Run from the repository root:

    python -m benchmarks.bench_cwt                      # CPU, 2 threads
    python -m benchmarks.bench_cwt --device cuda        # GPU figure for the fast path
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pywt
import torch

from benchmarks.memory import peak_rss_mib
from core.cli import run_main
from core.errors import UserError
from core.io import atomic_write_json
from dsp.cwt import (
    NORMALIZATIONS,
    WAVELET,
    BatchedCwt,
    CwtSpec,
    reference_pooled_magnitude,
    reference_precision,
    reference_scalogram,
)


def synthetic_windows(n: int, n_samples: int, fs: float, seed: int) -> np.ndarray:
    """(n, T, 3) float32 vibration-like windows: broadband noise, a harmonic series, impulses."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs
    out = 0.3 * rng.standard_normal((n, n_samples, 3))
    for i in range(n):
        f0 = rng.uniform(20.0, 60.0)
        for axis in range(3):
            for k in range(1, 6):
                amp, phase = rng.uniform(0.2, 1.0) / k, rng.uniform(0, 2 * np.pi)
                out[i, :, axis] += amp * np.sin(2 * np.pi * k * f0 * t + phase)
        hits = rng.integers(0, n_samples, size=4)
        out[i, hits, rng.integers(0, 3, size=4)] += rng.uniform(3.0, 6.0, size=4)
    return out.astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Any, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[list[float], list[float]]:
    """Per image: Pearson r, and max |ours - ref| as a fraction of the reference's range."""
    pearson, max_err = [], []
    for a, b in zip(ours, ref, strict=True):
        pearson.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
        max_err.append(float(np.abs(a - b).max() / (b.max() - b.min())))
    return pearson, max_err


def reference_check(window: np.ndarray, spec: CwtSpec) -> dict[int, tuple[float, float]]:
    """How far ``pywt.cwt`` is from the closed-form filter (fast path without decimation),
    per tabulation precision: (lowest row, worst row) of mean |difference| / mean |W|."""
    exact_path = BatchedCwt(spec, window.shape[0], "cpu", oversample=math.inf)
    exact = exact_path.pooled_magnitude(torch.from_numpy(window.T.copy())).double()
    out = {}
    for precision in (12, reference_precision(spec)):  # 12 is pywt's default
        ref = reference_pooled_magnitude(window, spec, precision=precision)
        rel = (ref - exact).abs().mean(dim=(0, 2)) / exact.mean(dim=(0, 2))
        out[precision] = (float(rel[-1]), float(rel.max()))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="device of the fast path (cpu, cuda)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--fs", type=float, default=2000.0)
    p.add_argument("--win-sec", type=float, default=2.0)
    p.add_argument("--n-freqs", type=int, default=96)
    p.add_argument("--freq-min", type=float, default=0.5)
    p.add_argument("--freq-max", type=float, default=1000.0)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--normalization", default="robust", choices=NORMALIZATIONS)
    p.add_argument("--batch-size", type=int, default=64, help="fast-path windows per call")
    p.add_argument("--ref-windows", type=int, default=4, help="windows for the slow reference")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    try:
        spec = CwtSpec(
            fs=args.fs, freq_min=args.freq_min, freq_max=args.freq_max, n_freqs=args.n_freqs,
            image_size=args.size, normalization=args.normalization,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    n_samples = int(round(args.fs * args.win_sec))
    windows = synthetic_windows(args.batch_size, n_samples, args.fs, args.seed)
    ref_windows = windows[: args.ref_windows]

    start = time.perf_counter()
    fast = BatchedCwt(spec, n_samples, device, chunk_size=args.batch_size)
    plan_s = time.perf_counter() - start
    fast(windows[:2])  # warm-up (FFT plans, allocator)
    ours_s = _median_seconds(lambda: fast(windows), args.repeats, device)
    ours_rate = args.batch_size / ours_s

    precision = reference_precision(spec)
    ref_s = _median_seconds(
        lambda: [reference_scalogram(w, spec) for w in ref_windows], args.repeats, device
    ) / len(ref_windows)
    table_s = _median_seconds(
        lambda: pywt.integrate_wavelet(WAVELET, precision=precision), args.repeats, device
    )
    ref_rate = 1.0 / ref_s

    ours_imgs = fast(ref_windows).cpu().numpy()
    ref_imgs = np.stack([reference_scalogram(w, spec) for w in ref_windows])
    pearson, max_err = agreement(ours_imgs, ref_imgs)

    check = reference_check(ref_windows[0], spec)
    check_text = "; ".join(
        f"precision {p}{' (pywt default)' if p == 12 else ' (used)'}: lowest row "
        f"{low:.2%}, worst row {worst:.2%}" for p, (low, worst) in check.items()
    )
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    groups = ", ".join(f"D={g.decimation}:{len(g.rows)}rows/N={g.n_fft}" for g in fast.groups)
    lines = [
        f"config: fs={args.fs:g} Hz, window {args.win_sec:g} s (T={n_samples}), 3 axes, "
        f"{args.n_freqs} freqs {args.freq_min:g}-{args.freq_max:g} Hz (log), "
        f"{args.size}x{args.size}, wavelet {WAVELET}, log1p, {args.normalization}",
        f"torch {torch.__version__}, pywt {pywt.__version__}, threads={args.threads}, "
        f"device={device}, load average {load} on {os.cpu_count()} CPUs",
        f"fast plan (one-off): {plan_s:.2f} s; rows by decimation: {groups}",
        f"ours (BatchedCwt, batch {args.batch_size}): {ours_s * 1e3:.1f} ms/batch -> "
        f"{ours_rate:.1f} img/s (median of {args.repeats})",
        f"reference (pywt.cwt fft, precision {precision}, per window, {len(ref_windows)} windows):"
        f" {ref_s * 1e3:.0f} ms/img -> {ref_rate:.2f} img/s (median of {args.repeats}); "
        f"of which pywt's per-call wavelet table ~{table_s * 1e3:.0f} ms",
        f"speed-up: {ours_rate / ref_rate:.1f}x "
        f"(vs the reference without its wavelet-table time: "
        f"{ours_rate * max(ref_s - table_s, 1e-9):.1f}x)",
        f"agreement on {len(ref_windows)} benchmark windows: Pearson mean {np.mean(pearson):.6f}"
        f" min {np.min(pearson):.6f}; max |ours-ref| / ref range: max {np.max(max_err):.2e}"
        f" mean {np.mean(max_err):.2e}",
        f"reference self-check (pywt vs the closed-form filter without decimation, lowest row "
        f"{args.freq_min:g} Hz = scale {args.fs / args.freq_min:g}): {check_text}",
        f"shapes: input {tuple(windows.shape)} float32 -> ours {tuple(ours_imgs.shape[1:])} "
        f"{ours_imgs.dtype}, reference {tuple(ref_imgs.shape[1:])} {ref_imgs.dtype}",
        " ".join(["reproduce: python -m benchmarks.bench_cwt"]
                 + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]),
    ]
    lines.insert(-1, f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
                 f"(core/threads.py); load average {os.getloadavg()[0]:.1f}; "
                 f"peak RSS {peak_rss_mib():.0f} MiB")
    print("\n".join(lines))
    if args.json is not None:
        atomic_write_json(args.json, {
            "device": str(device), "threads": args.threads, "n_samples": n_samples,
            "n_freqs": args.n_freqs, "image_size": args.size, "batch_size": args.batch_size,
            "ours_img_per_s": ours_rate, "reference_img_per_s": ref_rate,
            "reference_precision": precision, "reference_table_s": table_s,
            "speedup": ours_rate / ref_rate, "pearson_mean": float(np.mean(pearson)),
            "pearson_min": float(np.min(pearson)), "max_err_max": float(np.max(max_err)),
            "reference_check": {str(p): v for p, v in check.items()},
        })
    return 0


if __name__ == "__main__":
    run_main(main)
