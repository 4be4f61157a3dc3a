"""Scoring throughput of ``inference.scoring.infer_score`` per stream (windows per second).

Models are built from the stream configs (default: the CPU baseline configs) with random
weights: throughput does not depend on the weight values.  Inputs are random normalised
windows ``(B, seq_len, C)`` (FDC) and random scalograms ``(B, 3, H, W)`` (vibration); the
scalogram computation itself is measured by ``benchmarks.bench_cwt``.

Reference in the same run: one plain masked forward pass of the same model on the same
batch (what a training step's forward costs).  Deterministic scoring runs one forward per
complementary mask, so ``ratio = score time / one forward`` should be close to the number
of masks; a ratio well above it would point at overhead in the scoring code.  Figures are
medians over ``--repeats`` after one warm-up.  For the FDC stream it also prints what the
measured rate means for a plant: minutes to score one unit-day (``--unit-rows`` rows, by
default 86,400 = one channel set logged at 1 Hz for 24 h) at several scoring strides, the
time between scored windows that each stride gives, and the config's ``scoring.stride_sec``
default against scoring every row (the reference path).
Peak resident memory of the process is printed at the end.  Run:
    python -m benchmarks.bench_scoring --threads 2 [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch

from benchmarks.memory import print_peak_rss, reproduce_command
from inference.checkpoint_io import Trained
from inference.scoring import infer_score
from sensor_data.windows import scoring_stride
from streams import build_model, load_config


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def random_trained(stream: str, config: str, channels: int) -> Trained:
    """A randomly initialised model of ``config``, as scoring sees a checkpoint."""
    cfg = load_config(config, stream=stream)
    meta = {"n_channels": channels, "channels": [f"c{i}" for i in range(channels)]}
    model = build_model(cfg, meta).eval()
    info = {"path": f"random weights ({config})", "sha256": "random"}
    return Trained(model, cfg, meta, {}, info, torch.device("cpu"))


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The stream configs, FDC channels, batch and repeats every scoring benchmark takes."""
    p.add_argument("--patch-config", default="configs/patchtst_ssl.yaml")
    p.add_argument("--swin-config", default="configs/swinmae_ssl.yaml")
    p.add_argument("--channels", type=int, default=52, help="FDC channels (TEP has 52)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)


def bench_stream(stream: str, config: str, batch: int, channels: int, repeats: int,
                 device: torch.device) -> dict[str, float]:
    trained = random_trained(stream, config, channels)
    cfg, task = trained.cfg, trained.task
    model = trained.model.to(device)
    gen = torch.Generator().manual_seed(0)
    if stream == "patchtst":
        x = torch.randn(batch, cfg.data.seq_len, channels, generator=gen)
        n_masks = len(model.complementary_masks(1, channels, "cpu"))
    else:
        size = cfg.image.size
        x = torch.randn(batch, 3, size, size, generator=gen)
        n_masks = len(model.complementary_masks(1, "cpu"))
    x = x.to(device)
    amp = cfg.device.amp

    def score() -> object:
        return infer_score(x, model, task, aggregation=cfg.scoring.aggregation,
                           top_k=cfg.scoring.top_k, layout=task.score_layout(cfg), amp=amp)

    def forward() -> object:
        with torch.inference_mode():
            return model(x)["loss"]

    t_score = _median_seconds(score, repeats, device)
    t_fwd = _median_seconds(forward, repeats, device)
    return {"windows_per_s": batch / t_score, "forward_windows_per_s": batch / t_fwd,
            "ratio": t_score / t_fwd, "n_masks": n_masks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_scoring",
                                description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--unit-rows", type=int, default=86_400,
                   help="rows of one unit-day (86,400 = 1 Hz for 24 h)")
    p.add_argument("--unit-period-s", type=float, default=1.0,
                   help="seconds per row of the unit-day (1 Hz logging by default)")
    p.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"cpu, {args.threads} threads")
    print(f"scoring throughput ({label}), batch {args.batch}, median of {args.repeats}")
    print(f"{'stream':<9} {'config':<28} {'score win/s':>12} {'1 fwd win/s':>12} "
          f"{'ratio':>6} {'masks':>5}")
    rates = {}
    for stream, config in (("patchtst", args.patch_config), ("swinmae", args.swin_config)):
        r = bench_stream(stream, config, args.batch, args.channels, args.repeats, device)
        rates[stream] = r["windows_per_s"]
        print(f"{stream:<9} {config:<28} {r['windows_per_s']:>12.1f} "
              f"{r['forward_windows_per_s']:>12.1f} {r['ratio']:>6.2f} {r['n_masks']:>5d}")
    print("ratio = deterministic score time / one masked forward (expected ~ masks)")
    patch_cfg = load_config(args.patch_config, stream="patchtst")
    seq_len = patch_cfg.data.seq_len
    rate = rates["patchtst"]
    print(f"\nFDC unit-day: {args.unit_rows:,} rows x {args.channels} channels at "
          f"{args.unit_period_s:g} s per row, window {seq_len} rows, at {rate:.1f} scored "
          f"windows/s")

    def unit_minutes(stride: int) -> tuple[int, float]:
        windows = math.ceil((args.unit_rows - seq_len) / stride) + 1
        return windows, windows / rate / 60

    for stride in args.strides:
        windows, minutes = unit_minutes(stride)
        print(f"  stride {stride:>3}: {windows:>7,} windows, {minutes:7.2f} min per unit-day; "
              f"a window every {stride * args.unit_period_s:g} s")
    default = scoring_stride(seq_len, patch_cfg.data.stride, patch_cfg.scoring.stride_sec,
                             args.unit_period_s)
    ref_windows, ref_min = unit_minutes(1)
    fast_windows, fast_min = unit_minutes(default)
    print(f"reference (every row, what scoring did before scoring.stride_sec): "
          f"{ref_windows:,} windows, {ref_min:.2f} min per unit-day")
    print(f"product default (scoring.stride_sec={patch_cfg.scoring.stride_sec} in "
          f"{args.patch_config} -> {default} rows at {args.unit_period_s:g} s per row): "
          f"{fast_windows:,} windows, {fast_min:.2f} min per unit-day -> "
          f"{ref_min / fast_min:.1f}x the reference (scores at the windows it keeps are the "
          f"reference's: tests/test_scoring.py)")
    print_peak_rss()
    print(f"reproduce: {reproduce_command('benchmarks.bench_scoring', argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
