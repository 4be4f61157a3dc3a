"""A tiny stream for engine tests: the engine is exercised without the real data path.

Run as ``python -m tests.toy_task --config <yaml> [--resume]``; ``TOY_SLEEP`` (seconds per
window) slows epochs down so a test can kill the process mid-epoch.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn
from torch.utils.data import Dataset

from core.cli import run_main
from core.config import StreamConfig
from engine.cli import train_main
from streams.base import TrainingSetup


class ToyWindows(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        latent = torch.randn(n, 16, 1, generator=g)  # one factor drives all four channels
        loadings = torch.tensor([1.0, 2.0, -1.0, 0.5])
        self.data = latent * loadings + 0.05 * torch.randn(n, 16, 4, generator=g)
        self.sleep = float(os.environ.get("TOY_SLEEP", "0"))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.sleep:
            time.sleep(self.sleep)
        return self.data[i]


class ToyAutoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = torch.rand(x.shape[:2], device=x.device) < 0.5
        recon = self.net(x)
        return {"loss": ((recon - x) ** 2).mean(-1)[mask].mean()}


def build_setup(cfg: StreamConfig, device: torch.device, run_id: str) -> TrainingSetup:
    return TrainingSetup(ToyAutoencoder(), ToyWindows(96, 0), ToyWindows(32, 1), {"toy": True})


def main(argv: list[str] | None = None) -> int:
    return train_main("patchtst", argv, "toy stream for engine tests", build=build_setup)


if __name__ == "__main__":
    run_main(main)
