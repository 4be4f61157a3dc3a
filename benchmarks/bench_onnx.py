"""Scoring throughput on ONNX Runtime vs PyTorch, per stream, on the same batch.

Models are built from the stream configs with random weights (throughput does not depend
on the weight values), exported with :func:`inference.export_onnx.export_graph` into a
temporary folder, and scored both ways: ``inference.scoring.infer_score`` (PyTorch) and
``inference.onnx_scoring.onnx_infer_score`` (ONNX Runtime, CPU provider, the same number of
threads), interleaved, median of ``--repeats`` after one warm-up each.  The largest score
difference between the two is printed with the rates.  Run from the repository root:

    python -m benchmarks.bench_onnx --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_scoring import add_model_args, random_trained
from benchmarks.memory import print_peak_rss, reproduce_command
from inference.export_onnx import export_graph, window_shape
from inference.onnx_scoring import OnnxScoringGraph, onnx_infer_score
from inference.scoring import infer_score


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_stream(stream: str, config: str, args: argparse.Namespace, folder: Path) -> str:
    trained = random_trained(stream, config, args.channels)
    task, cfg = trained.task, trained.cfg
    shape = window_shape(trained)
    x = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    export_graph(trained, folder / f"{stream}.onnx")
    export_s = time.perf_counter() - start
    graph = OnnxScoringGraph(folder / f"{stream}.onnx", trained, threads=args.threads)
    layout = task.score_layout(cfg)
    kw = {"aggregation": cfg.scoring.aggregation, "top_k": cfg.scoring.top_k, "layout": layout}
    ref, _ = infer_score(x, trained.model, task, amp=False, **kw)
    got, _ = onnx_infer_score(x, graph, task, **kw)
    diff = float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-12))
    seconds = _interleaved({
        "torch": lambda: infer_score(x, trained.model, task, amp=False, **kw),
        "onnx": lambda: onnx_infer_score(x, graph, task, **kw),
    }, args.repeats)
    rate = {name: args.batch / s for name, s in seconds.items()}
    return (f"{stream:<9} {config:<32} {str(tuple(x.shape)):<20} {rate['torch']:>10.1f} "
            f"{rate['onnx']:>10.1f} {rate['onnx'] / rate['torch']:>6.2f}x {diff:>9.1e} "
            f"{export_s:>6.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_onnx",
                                description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"deterministic scoring, PyTorch vs ONNX Runtime (CPU, {args.threads} threads), "
          f"batch {args.batch}, median of {args.repeats} interleaved; random weights")
    print(f"{'stream':<9} {'config':<32} {'input':<20} {'torch w/s':>10} {'onnx w/s':>10} "
          f"{'ratio':>7} {'max rel':>9} {'export s':>8}")
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        for stream, config in (("patchtst", args.patch_config), ("swinmae", args.swin_config)):
            print(bench_stream(stream, config, args, Path(tmp)), flush=True)
    print("ratio = ONNX Runtime windows/s / PyTorch windows/s; max rel = largest |score "
          "difference| / largest |score|")
    print_peak_rss()
    print(f"reproduce: {reproduce_command('benchmarks.bench_onnx', argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
