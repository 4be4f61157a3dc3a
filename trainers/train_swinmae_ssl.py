"""Train Swin-MAE-SSL on vibration scalograms: ``python -m trainers.train_swinmae_ssl``."""

from __future__ import annotations

from core.cli import run_main
from streams.swinmae import NAME
from trainers.common import train_with_status


def main(argv: list[str] | None = None) -> int:
    return train_with_status(
        NAME,
        argv,
        "Self-supervised Swin masked autoencoder on Morlet CWT scalograms of 3-axis "
        "vibration: DQVL, windows, cached scalograms, training with checkpoints.",
    )


if __name__ == "__main__":
    run_main(main)
