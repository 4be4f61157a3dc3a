"""Keep a run's results when a newer model takes over their fixed paths.

The seed fixes where a stream's artifacts live (``checkpoints/patchtst_ssl.pt``, the loss
history, the scaler, the thresholds, the decisions): those paths always hold the *latest*
model's results.  Before a newer model writes there, the previous model's files move to
``artifacts/archive/<stream>/<its run id>/`` under their repository-relative paths, so no
run destroys another run's results and one folder holds everything one model produced.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from core.errors import CheckpointError
from core.paths import display_path, repo_root
from engine.checkpoint import load_checkpoint

ARCHIVE_DIR = "artifacts/archive"


def _safe_run_id(run_id: object) -> str | None:
    text = run_id if isinstance(run_id, str) else ""
    return text if text and "/" not in text and "\\" not in text and text not in (".", "..") \
        else None


def previous_run_id(checkpoint: Path) -> str:
    """The run id stored in a checkpoint, else its modification time (unreadable file)."""
    try:
        run_id = load_checkpoint(checkpoint).get("run_id")
    except CheckpointError:  # an unreadable file is still archived, under its time
        run_id = None
    stamp = datetime.fromtimestamp(checkpoint.stat().st_mtime, UTC).strftime("%Y%m%dT%H%M%SZ")
    return _safe_run_id(run_id) or stamp


def run_archive(stream: str, run_id: object, fallback: str = "unknown-run") -> Path:
    """``artifacts/archive/<stream>/<run_id>/`` (``fallback`` for a missing or unsafe id)."""
    return repo_root().resolve() / ARCHIVE_DIR / stream / (_safe_run_id(run_id) or fallback)


def move_into(dest: Path, files: Iterable[Path]) -> list[Path]:
    """Move each existing file or folder under ``dest`` at its repository-relative path; a
    name already taken there gets a ``.2``, ``.3``, ... suffix (nothing is overwritten).
    Paths outside the repository stay where they are."""
    root = repo_root().resolve()
    moved = []
    for path in files:
        path = Path(path).resolve()
        if not path.exists() or not path.is_relative_to(root):
            continue
        target = dest / path.relative_to(root)
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"{path.stem}.{n}{path.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        moved.append(target)
    return moved


def archive_previous_run(stream: str, checkpoint: Path, files: Iterable[Path]) -> Path | None:
    """Move the files of the run that produced ``checkpoint`` into its archive folder.

    Returns the folder, or None when there was no previous checkpoint.
    """
    if not checkpoint.is_file():
        return None
    dest = run_archive(stream, previous_run_id(checkpoint))
    move_into(dest, [checkpoint, *files])
    return dest


def archive_note(what: str, dest: Path) -> str:
    return f"replacing {what}: the previous one moved to {display_path(dest)}/"
