"""CWT scalogram throughput: ours (batched) vs PyWavelets per window vs fCWT, one process.

All paths run on the same synthetic vibration windows (noise + harmonics + impulses).  The
timed rows, at equal work per image (3 axes x n_freqs log-spaced frequencies x T samples):

* ours: :class:`dsp.cwt.BatchedCwt`, the full (3, H, W) image (CWT ``cmor1.5-1.0``, ``|W|``,
  time area-average to W columns, frequency resize, log1p, robust normalisation);
* fCWT raw |CWT|: ``fcwt.cwt`` (its Morlet, sigma 2) + ``np.abs`` at every one of the T
  samples, what fCWT computes -- no image;
* fCWT image: the same followed by our time pooling and ``finish_scalogram``: the same
  image pipeline as ours on fCWT's coefficients;
* PyWavelets: the reference, ``pywt.cwt`` per window (its agreement with ours is printed).

Ours, fCWT raw and fCWT image are timed in turn within each repeat (median of the repeats);
fCWT gets ``nthreads = --threads``.  fCWT is optional: ``pip install fcwt==0.1.18`` (needs
``apt-get install libfftw3-single3``); without it its rows are skipped.  OpenMP waits are
passive unless ``OMP_WAIT_POLICY`` is set (core/threads.py); an empty value means OpenMP's
default.  Run from the repository root:

    python -m benchmarks.bench_cwt                      # CPU, 2 threads
    python -m benchmarks.bench_cwt --threads 1
    python -m benchmarks.bench_cwt --device cuda        # GPU figure for the fast path
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pywt
import torch
import torch.nn.functional as F

from benchmarks.memory import peak_rss_mib
from core.cli import run_main
from core.errors import UserError
from core.io import atomic_write_json
from dsp.cwt import (
    NORMALIZATIONS,
    WAVELET,
    BatchedCwt,
    CwtSpec,
    finish_scalogram,
    reference_pooled_magnitude,
    reference_precision,
    reference_scalogram,
)

FCWT_INSTALL = "pip install fcwt==0.1.18 (needs: apt-get install libfftw3-single3)"
FCWT_SIGMA = 2.0  # fcwt.Morlet's parameter in its own examples


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
    return interleaved_medians({"fn": fn}, repeats, device)["fn"]


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each function, timed in turn within every repeat so that a change
    of host load hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def load_fcwt() -> ModuleType | None:
    """The ``fcwt`` module, or None (with one line saying how to install it)."""
    try:
        import fcwt
    except (ImportError, OSError) as exc:
        print(f"fCWT rows skipped: cannot import fcwt ({exc}); install: {FCWT_INSTALL}")
        return None
    return fcwt


class FcwtPath:
    """fCWT on the benchmark's grid: ``spec.n_freqs`` log-spaced frequencies from
    ``freq_max`` down to ``freq_min`` (as ours), every one of the ``n_samples`` samples."""

    def __init__(self, fcwt: ModuleType, spec: CwtSpec, n_samples: int, threads: int) -> None:
        self.spec = spec
        # Kept referenced: fCWT's Scales and FCWT hold raw pointers to the wavelet.
        self.wavelet = fcwt.Morlet(FCWT_SIGMA)
        self.scales = fcwt.Scales(self.wavelet, fcwt.FCWT_LOGSCALES, int(spec.fs),
                                  spec.freq_min, spec.freq_max, spec.n_freqs)
        self.transform = fcwt.FCWT(self.wavelet, threads, False, True)
        self.coef = np.zeros((spec.n_freqs, n_samples), dtype=np.complex64)
        self.mag = np.zeros((spec.n_freqs, n_samples), dtype=np.float32)

    def magnitude(self, signal: np.ndarray) -> np.ndarray:
        """(n_freqs, T) ``|CWT|`` of one contiguous float32 signal (a reused buffer)."""
        self.transform.cwt(signal, self.scales, self.coef)
        return np.abs(self.coef, out=self.mag)

    def raw(self, signals: np.ndarray) -> None:
        """``|CWT|`` of every (B, 3, T) signal: what fCWT computes."""
        for signal in signals.reshape(-1, signals.shape[-1]):
            self.magnitude(signal)

    def images(self, signals: np.ndarray, out: torch.Tensor) -> torch.Tensor:
        """(B, 3, T) -> ``out`` (B, 3, H, W): fCWT's ``|CWT|`` through our time pooling and
        finish (into a reused tensor, as ours is timed)."""
        size = self.spec.image_size
        for i, window in enumerate(signals):
            pooled = torch.stack([
                F.adaptive_avg_pool1d(torch.from_numpy(self.magnitude(axis)), size)
                for axis in window
            ])
            finish_scalogram(pooled[None], self.spec, out=out[i : i + 1])
        return out


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
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads and fCWT nthreads")
    p.add_argument("--fs", type=float, default=2000.0)
    p.add_argument("--win-sec", type=float, default=2.0)
    p.add_argument("--n-freqs", type=int, default=96)
    p.add_argument("--freq-min", type=float, default=0.5)
    p.add_argument("--freq-max", type=float, default=1000.0)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--normalization", default="robust", choices=NORMALIZATIONS)
    p.add_argument("--batch-size", type=int, default=64, help="windows per timed call")
    p.add_argument("--ref-windows", type=int, default=4, help="windows for the slow reference")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    p.add_argument("--ref-repeats", type=int, default=3, help="repeats of the slow reference")
    p.add_argument("--no-fcwt", action="store_true", help="skip the fCWT rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    return p.parse_args(argv)


def _wait_policy() -> str:
    value = os.environ.get("OMP_WAIT_POLICY")
    if value is None:
        return "unset (OpenMP default)"
    return value if value else "'' (empty: OpenMP default)"


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
    signals = np.ascontiguousarray(windows.transpose(0, 2, 1))  # (B, 3, T) for fCWT
    ref_windows = windows[: args.ref_windows]

    start = time.perf_counter()
    fast = BatchedCwt(spec, n_samples, device, chunk_size=args.batch_size)
    plan_s = time.perf_counter() - start
    fcwt = None if args.no_fcwt else load_fcwt()
    size = args.size
    ours_out = torch.empty(args.batch_size, 3, size, size, device=device)
    timed: dict[str, Callable[[], object]] = {
        "ours": lambda: fast(windows, out=ours_out),
        "ours_fresh": lambda: fast(windows),
    }
    if fcwt is not None:
        fc = FcwtPath(fcwt, spec, n_samples, args.threads)
        fcwt_out = torch.empty(args.batch_size, 3, size, size)
        timed["fcwt_raw"] = lambda: fc.raw(signals)
        timed["fcwt_image"] = lambda: fc.images(signals, out=fcwt_out)
    for fn in timed.values():  # warm-up: FFT plans, allocator, caches
        fn()
    seconds = interleaved_medians(timed, args.repeats, device)
    rate = {name: args.batch_size / s for name, s in seconds.items()}

    precision = reference_precision(spec)
    ref_s = _median_seconds(
        lambda: [reference_scalogram(w, spec) for w in ref_windows], args.ref_repeats, device
    ) / len(ref_windows)
    table_s = _median_seconds(
        lambda: pywt.integrate_wavelet(WAVELET, precision=precision), args.ref_repeats, device
    )
    rate["pywavelets"] = 1.0 / ref_s

    ours_imgs = fast(ref_windows).cpu().numpy()
    ref_imgs = np.stack([reference_scalogram(w, spec) for w in ref_windows])
    pearson, max_err = agreement(ours_imgs, ref_imgs)

    check = reference_check(ref_windows[0], spec)
    check_text = "; ".join(
        f"precision {p}{' (pywt default)' if p == 12 else ' (used)'}: lowest row "
        f"{low:.2%}, worst row {worst:.2%}" for p, (low, worst) in check.items()
    )
    load = os.getloadavg()
    groups = ", ".join(f"D={g.decimation}:{len(g.rows)}rows/N={g.n_fft}" for g in fast.groups)
    grid = f"3 axes x {args.n_freqs} freqs x {n_samples} samples"
    out_mib = ours_out.numel() * 4 / 2**20
    times = f"median of {args.repeats} interleaved repeats, batch {args.batch_size}"
    lines = [
        f"config: fs={args.fs:g} Hz, window {args.win_sec:g} s (T={n_samples}), 3 axes, "
        f"{args.n_freqs} freqs {args.freq_min:g}-{args.freq_max:g} Hz (log), "
        f"{args.size}x{args.size}, wavelet {WAVELET}, log1p, {args.normalization}",
        f"torch {torch.__version__}, pywt {pywt.__version__}, fcwt "
        f"{importlib.metadata.version('fcwt') if fcwt is not None else 'absent'}, "
        f"threads={args.threads} (torch and fCWT), device={device}, "
        f"OMP_WAIT_POLICY={_wait_policy()}, load average "
        f"{' '.join(f'{v:.1f}' for v in load)} on {os.cpu_count()} CPUs",
        f"fast plan (one-off): {plan_s:.2f} s; rows by decimation: {groups}",
        f"ours (BatchedCwt, full image: CWT {grid}, |W|, time area-average to {args.size} "
        f"columns, frequency resize, log1p, {args.normalization}): "
        f"{seconds['ours'] * 1e3:.1f} ms/batch -> {rate['ours']:.1f} img/s ({times}; into a "
        f"reused output tensor, `out=`); with a new output tensor per call: "
        f"{rate['ours_fresh']:.1f} img/s (first touch of {out_mib:.0f} MiB)",
    ]
    if fcwt is not None:
        lines += [
            f"fCWT raw |CWT| (fcwt.cwt Morlet({FCWT_SIGMA:g}) + np.abs, {grid} per image, "
            f"every sample; nthreads={args.threads}): {seconds['fcwt_raw'] * 1e3:.1f} ms/batch "
            f"-> {rate['fcwt_raw']:.1f} img/s ({times})",
            f"fCWT image (the same + our time pooling to {args.size} columns + "
            f"finish_scalogram, = ours' pipeline): {seconds['fcwt_image'] * 1e3:.1f} ms/batch "
            f"-> {rate['fcwt_image']:.1f} img/s ({times})",
            f"ours / fCWT raw |CWT|: {rate['ours'] / rate['fcwt_raw']:.2f}x (goal >= 1); "
            f"ours / fCWT image: {rate['ours'] / rate['fcwt_image']:.2f}x",
        ]
    lines += [
        f"PyWavelets reference (pywt.cwt fft, precision {precision}, per window, "
        f"{len(ref_windows)} windows): {ref_s * 1e3:.0f} ms/img -> {rate['pywavelets']:.2f} "
        f"img/s (median of {args.ref_repeats}); of which pywt's per-call wavelet table "
        f"~{table_s * 1e3:.0f} ms",
        f"ours / PyWavelets: {rate['ours'] / rate['pywavelets']:.1f}x "
        f"(vs the reference without its wavelet-table time: "
        f"{rate['ours'] * max(ref_s - table_s, 1e-9):.1f}x)",
        f"agreement ours vs PyWavelets on {len(ref_windows)} benchmark windows: Pearson mean "
        f"{np.mean(pearson):.6f} min {np.min(pearson):.6f}; max |ours-ref| / ref range: max "
        f"{np.max(max_err):.2e} mean {np.mean(max_err):.2e}",
        f"reference self-check (pywt vs the closed-form filter without decimation, lowest row "
        f"{args.freq_min:g} Hz = scale {args.fs / args.freq_min:g}): {check_text}",
        f"shapes: input {tuple(windows.shape)} float32 -> ours {tuple(ours_imgs.shape[1:])} "
        f"{ours_imgs.dtype}, reference {tuple(ref_imgs.shape[1:])} {ref_imgs.dtype}"
        + (f", fCWT raw (3, {args.n_freqs}, {n_samples}) float32 per image, fCWT image "
           f"(3, {args.size}, {args.size}) float32" if fcwt is not None else ""),
        f"load average {os.getloadavg()[0]:.1f} after the run; peak RSS {peak_rss_mib():.0f} MiB",
        " ".join(["reproduce: python -m benchmarks.bench_cwt"]
                 + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]),
    ]
    if load[0] > 0.5 * (os.cpu_count() or 1):
        lines.append(f"warning: busy host (load {load[0]:.1f} on {os.cpu_count()} CPUs): "
                     "figures are low and noisy")
    print("\n".join(lines))
    if args.json is not None:
        atomic_write_json(args.json, {
            "device": str(device), "threads": args.threads, "n_samples": n_samples,
            "n_freqs": args.n_freqs, "image_size": args.size, "batch_size": args.batch_size,
            "repeats": args.repeats, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average": list(load), "cpu_count": os.cpu_count(),
            "ours_img_per_s": rate["ours"], "ours_fresh_output_img_per_s": rate["ours_fresh"],
            "reference_img_per_s": rate["pywavelets"],
            "fcwt_raw_img_per_s": rate.get("fcwt_raw"),
            "fcwt_image_img_per_s": rate.get("fcwt_image"),
            "ours_over_fcwt_raw": rate["ours"] / rate["fcwt_raw"] if fcwt else None,
            "ours_over_fcwt_image": rate["ours"] / rate["fcwt_image"] if fcwt else None,
            "fcwt_version": importlib.metadata.version("fcwt") if fcwt is not None else None,
            "reference_precision": precision, "reference_table_s": table_s,
            "speedup": rate["ours"] / rate["pywavelets"], "pearson_mean": float(np.mean(pearson)),
            "pearson_min": float(np.min(pearson)), "max_err_max": float(np.max(max_err)),
            "max_err_mean": float(np.mean(max_err)),
            "reference_check": {str(p): v for p, v in check.items()},
            "peak_rss_mib": peak_rss_mib(),
        })
    return 0


if __name__ == "__main__":
    run_main(main)
