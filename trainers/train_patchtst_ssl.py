"""Train PatchTST-SSL on FDC process data: ``python -m trainers.train_patchtst_ssl``."""

from __future__ import annotations

from core.cli import run_main
from streams.patchtst import NAME
from trainers.common import train_with_status


def main(argv: list[str] | None = None) -> int:
    return train_with_status(
        NAME,
        argv,
        "Self-supervised PatchTST (masked patch reconstruction) on FDC data: DQVL, "
        "split by time, robust scaling on train rows, training with checkpoints.",
    )


if __name__ == "__main__":
    run_main(main)
