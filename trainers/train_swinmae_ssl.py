"""Train Swin-MAE-SSL on vibration scalograms: ``python -m trainers.train_swinmae_ssl``."""

from __future__ import annotations

import torch

from core.cli import run_main
from core.config import SwinMAEConfig
from engine.builders import build_model
from engine.cli import train_main
from engine.trainer import TrainingSetup
from sensor_data.vib_prep import prepare_vibration_training


def build_setup(cfg: SwinMAEConfig, device: torch.device, run_id: str) -> TrainingSetup:
    prep = prepare_vibration_training(cfg, run_id, device)
    meta = {"image_size": cfg.image.size, "frequencies": [float(f) for f in prep.spec_frequencies]}
    return TrainingSetup(build_model(cfg, meta), prep.train, prep.val, meta)


def main(argv: list[str] | None = None) -> int:
    return train_main(
        "swinmae",
        build_setup,
        argv,
        "Self-supervised Swin masked autoencoder on Morlet CWT scalograms of 3-axis "
        "vibration: DQVL, windows, cached scalograms, training with checkpoints.",
    )


if __name__ == "__main__":
    run_main(main)
