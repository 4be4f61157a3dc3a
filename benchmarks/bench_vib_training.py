"""End-to-end vibration training throughput: cached batched CWT vs PyWavelets in __getitem__.

Both paths start from the same raw (N, T, 3) windows and train the same Swin-MAE (the CPU
default config) with the same batch size for the same number of epochs, in this process:

* ours: scalograms computed once with the batched PyTorch CWT, then epochs over the cache;
* naive: a Dataset whose ``__getitem__`` runs the PyWavelets reference CWT, every epoch.

Reported: training windows per second over the whole run (CWT time included), medians of
``--repeats``, and the ratio.  Run from the repository root:

    python -m benchmarks.bench_vib_training
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from benchmarks.memory import print_peak_rss
from core.cli import run_main
from dsp.cwt import CwtSpec, reference_scalogram
from dsp.scalogram_cache import compute_scalograms
from sensor_data.synthetic_vib import make_vibration
from streams import build_model
from streams.swinmae import SwinMAEConfig


class NaiveCwtWindows(Dataset):
    """The path we replace: the reference CWT of each window on every access."""

    def __init__(self, windows: np.ndarray, spec: CwtSpec) -> None:
        self.windows, self.spec = windows, spec

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(reference_scalogram(self.windows[i], self.spec))


def raw_windows(cfg: SwinMAEConfig, n: int, seed: int) -> np.ndarray:
    win = int(round(cfg.data.win_sec * cfg.data.fs))
    signal = make_vibration(n * cfg.data.win_sec + 1.0, cfg.data.fs, seed)
    return np.stack([signal[i * win : (i + 1) * win] for i in range(n)]).astype(np.float32)


def train_epochs(model: torch.nn.Module, loader: DataLoader, epochs: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in loader:
            batch = batch[0] if isinstance(batch, list | tuple) else batch
            loss = model(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def run_once(cfg: SwinMAEConfig, windows: np.ndarray, epochs: int, naive: bool) -> float:
    torch.manual_seed(0)
    model = build_model(cfg)
    spec = CwtSpec.from_config(cfg)
    start = time.perf_counter()
    if naive:
        dataset: Dataset = NaiveCwtWindows(windows, spec)
    else:
        dataset = TensorDataset(torch.from_numpy(compute_scalograms(windows, spec, "cpu")))
    loader = DataLoader(dataset, batch_size=cfg.training.batch_size, shuffle=True)
    train_epochs(model, loader, epochs)
    return len(windows) * epochs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_vib_training")
    parser.add_argument("--windows", type=int, default=32, help="raw windows (default 32)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = SwinMAEConfig()
    cfg.training.batch_size = 16
    windows = raw_windows(cfg, args.windows, seed=0)
    ours, naive = [], []
    for _ in range(args.repeats):  # alternate so load changes hit both paths alike
        ours.append(run_once(cfg, windows, args.epochs, naive=False))
        naive.append(run_once(cfg, windows, args.epochs, naive=True))
    m_ours, m_naive = statistics.median(ours), statistics.median(naive)
    print(
        f"windows {windows.shape} -> images (3, {cfg.image.size}, {cfg.image.size}), "
        f"{cfg.cwt.n_freqs} freqs {cfg.cwt.freq_min}-{cfg.cwt.freq_max} Hz, fs {cfg.data.fs}, "
        f"batch {cfg.training.batch_size}, epochs {args.epochs}, threads {args.threads}"
    )
    print("| path | training windows/s (median) | all repeats |")
    print("|---|---:|---|")
    print(f"| cached batched CWT (ours) | {m_ours:.1f} | {', '.join(f'{v:.1f}' for v in ours)} |")
    print(f"| PyWavelets in __getitem__ | {m_naive:.1f} | "
          f"{', '.join(f'{v:.1f}' for v in naive)} |")
    print(f"ratio ours/naive: {m_ours / m_naive:.2f}x")
    print_peak_rss()
    print("reproduce: python -m benchmarks.bench_vib_training "
          + shlex.join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    run_main(main)
