"""Shared command line for the trainers (the entry points in trainers/ stay thin)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import streams
from core.config import add_config_args
from core.paths import display_path
from core.status import new_run_id
from engine.trainer import BuildFn, FitResult, ProgressHook, fit


def train_main(
    stream: str | None,
    argv: list[str] | None,
    description: str,
    *,
    build: BuildFn | None = None,
    progress_hook: ProgressHook | None = None,
    on_done: Callable[[str, FitResult], None] | None = None,
) -> int:
    """Parse ``--config/--set/--resume/--run-id`` and train.

    ``stream`` None: any registered stream, named by the config's ``stream:`` key.  The
    caller installs ``progress_hook`` (live progress) and ``on_done`` (after training);
    the engine itself reports nothing else.
    """
    task = streams.get(stream) if stream else None
    prog = f"python -m trainers.train_{stream}_ssl" if stream else "python -m trainers.train"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"Multi-GPU / multi-process: torchrun --nproc_per_node=N -m {prog[10:]} "
        "--config ...",
    )
    add_config_args(parser, default_config=task.default_config if task else None)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint (finished epochs are kept); refused before "
        "anything is written when the config changes the model",
    )
    parser.add_argument(
        "--run-id",
        default=os.environ.get("SSL_RUN_ID"),
        help="run id stamped into reports (default: $SSL_RUN_ID, else the UTC time)",
    )
    args = parser.parse_args(argv)
    cfg = streams.config_from_args(args, stream=stream)
    result = fit(
        cfg,
        build,
        resume=args.resume,
        run_id=args.run_id or new_run_id(),
        progress_hook=progress_hook,
    )
    if result.history:
        last = result.history[-1]
        if on_done is not None:
            on_done(cfg.stream, result)
        print(
            f"[{cfg.stream}] done: {len(result.history)} epochs, "
            f"train_loss={last['train_loss']:.5f}, val_loss={last['val_loss']:.5f}; "
            f"checkpoint {display_path(result.paths.checkpoint)}, "
            f"loss curve {display_path(result.paths.curve_png)}"
        )
    return 0
