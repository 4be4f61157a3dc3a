"""Shared command line for the trainers (the entry points in trainers/ stay thin)."""

from __future__ import annotations

import argparse
import os

from core.config import add_config_args, config_from_args
from core.paths import display_path
from engine.trainer import BuildFn, fit
from pipelines.status import set_node, set_progress
from sensor_data.dqvl_report import new_run_id


def report_progress(progress: dict) -> None:
    """Live progress for the dashboard (artifacts/pipeline/status.json)."""
    set_progress(**progress)


def train_main(
    stream: str,
    build: BuildFn,
    argv: list[str] | None,
    description: str,
) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m trainers.train_{stream}_ssl",
        description=description,
        epilog="Multi-GPU / multi-process: torchrun --nproc_per_node=N "
        f"-m trainers.train_{stream}_ssl --config ...",
    )
    add_config_args(parser, default_config=f"configs/{stream}_ssl.yaml")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint (finished epochs are kept)",
    )
    parser.add_argument(
        "--run-id",
        default=os.environ.get("SSL_RUN_ID"),
        help="run id stamped into reports (default: $SSL_RUN_ID, else the UTC time)",
    )
    args = parser.parse_args(argv)
    cfg = config_from_args(args, stream=stream)
    result = fit(
        cfg,
        build,
        resume=args.resume,
        run_id=args.run_id or new_run_id(),
        progress_hook=report_progress,
    )
    if result.history:
        last = result.history[-1]
        set_node(
            f"{stream}_training",
            "done",
            f"{len(result.history)} epochs, val loss {last['val_loss']:.4g}",
        )
        print(
            f"[{stream}] done: {len(result.history)} epochs, train_loss={last['train_loss']:.5f}, "
            f"val_loss={last['val_loss']:.5f}; checkpoint {display_path(result.paths.checkpoint)}, "
            f"loss curve {display_path(result.paths.curve_png)}"
        )
    return 0
