"""What every training entry point installs around the engine: live status for the dashboard."""

from __future__ import annotations

from core.status import NODE_IDS, set_node, set_progress
from engine.cli import train_main
from engine.trainer import FitResult


def report_progress(progress: dict) -> None:
    """Live epoch progress for the dashboard (``artifacts/pipeline/status.json``)."""
    set_progress(**progress)


def mark_done(stream: str, result: FitResult) -> None:
    """The stream's training node (when the pipeline graph has one) is done."""
    node = f"{stream}_training"
    if node in NODE_IDS:
        last = result.history[-1]
        message = f"{len(result.history)} epochs, val loss {last['val_loss']:.4g}"
        set_node(node, "done", f"{message}; WARNING: {result.warning}" if result.warning
                 else message)


def train_with_status(stream: str | None, argv: list[str] | None, description: str) -> int:
    return train_main(stream, argv, description, progress_hook=report_progress,
                      on_done=mark_done)
