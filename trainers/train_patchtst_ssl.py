"""Train PatchTST-SSL on FDC process data: ``python -m trainers.train_patchtst_ssl``."""

from __future__ import annotations

import torch

from core.cli import run_main
from core.config import PatchTSTConfig
from engine.builders import build_model
from engine.cli import train_main
from engine.trainer import TrainingSetup
from sensor_data.fdc_prep import prepare_fdc_training


def build_setup(cfg: PatchTSTConfig, device: torch.device, run_id: str) -> TrainingSetup:
    prep = prepare_fdc_training(cfg, run_id)
    meta = {"n_channels": len(prep.scaler.channels), "channels": list(prep.scaler.channels)}
    return TrainingSetup(build_model(cfg, meta), prep.train, prep.val, meta)


def main(argv: list[str] | None = None) -> int:
    return train_main(
        "patchtst",
        build_setup,
        argv,
        "Self-supervised PatchTST (masked patch reconstruction) on FDC data: DQVL, "
        "split by time, robust scaling on train rows, training with checkpoints.",
    )


if __name__ == "__main__":
    run_main(main)
