"""Keep a run's results when a new training run takes over its fixed artifact paths.

The seed fixes where a stream's artifacts live (``checkpoints/patchtst_ssl.pt``, the loss
history, the scaler, ...): those paths always hold the *latest* run.  Before a fresh run
writes anything there, the previous run's files move to ``artifacts/archive/<stream>/
<run id>/`` (same relative paths), so no run destroys another run's results.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import torch

from core.paths import display_path, repo_root

ARCHIVE_DIR = "artifacts/archive"


def previous_run_id(checkpoint: Path) -> str:
    """The run id stored in a checkpoint, else its modification time (unreadable file)."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
        run_id = ckpt.get("run_id") if isinstance(ckpt, dict) else None
    except Exception:  # any unreadable file still gets archived, under its time
        run_id = None
    if isinstance(run_id, str) and run_id and "/" not in run_id and run_id not in (".", ".."):
        return run_id
    stamp = datetime.fromtimestamp(checkpoint.stat().st_mtime, UTC)
    return stamp.strftime("%Y%m%dT%H%M%SZ")


def archive_previous_run(stream: str, checkpoint: Path, files: Iterable[Path]) -> Path | None:
    """Move the files of the run that produced ``checkpoint`` into the archive.

    Returns the archive folder, or None when there was no previous checkpoint.  Files
    outside the repository stay where they are (the archive mirrors repository paths).
    """
    if not checkpoint.is_file():
        return None
    root = repo_root().resolve()
    base = root / ARCHIVE_DIR / stream / previous_run_id(checkpoint)
    dest, n = base, 1
    while dest.exists():  # the same run id archived before: never overwrite that copy
        n += 1
        dest = base.with_name(f"{base.name}.{n}")
    for path in files:
        path = Path(path).resolve()
        if not path.exists() or not path.is_relative_to(root):
            continue
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
    return dest


def archive_note(stream: str, checkpoint: Path, dest: Path) -> str:
    return (f"replacing the run at {display_path(checkpoint)}: its checkpoint, loss history, "
            f"TensorBoard logs and data reports moved to {display_path(dest)}/")
