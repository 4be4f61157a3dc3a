"""Repository-relative path handling.

Every path in configs and CLIs is relative to the repository root, never to the current
directory or the config file's folder, so the same command works from a notebook, a
subfolder, CI or Colab.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTERNAL_PREFIX = "_external"  # stands for a folder outside the repository


def repo_root() -> Path:
    """The repository root; ``SSL_REPO_ROOT`` redirects outputs (used by tests)."""
    override = os.environ.get("SSL_REPO_ROOT")
    return Path(override).resolve() if override else REPO_ROOT


def resolve_path(path: str | os.PathLike[str], root: Path | None = None) -> Path:
    """Resolve ``path`` against the repository root unless it is already absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root or repo_root()) / p


def display_path(path: str | os.PathLike[str], root: Path | None = None) -> str:
    """Render a path relative to the repository root when it lies inside it."""
    p = Path(path)
    base = (root or repo_root()).resolve()
    try:
        return p.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(p)


def repo_rel(path: str | os.PathLike[str], root: Path) -> str:
    """Repository-relative POSIX path; a file outside the repository keeps only its name."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return f"{EXTERNAL_PREFIX}/{Path(path).name}"
