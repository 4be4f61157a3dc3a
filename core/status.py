"""Live pipeline status (``artifacts/pipeline/status.json``) shared by the pipeline,
the trainers and the dashboard server.

Several processes update the file (the pipeline marks nodes, a trainer reports epoch
progress, the server reads it), so every update is a read-modify-write under a file lock
followed by an atomic replace: readers never see half a file and no update is lost.
Status reporting must never break training, so a write that cannot get the lock or hits
an I/O error only emits a warning.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from core.errors import UserError
from core.io import atomic_write_json
from core.layout import STATUS
from core.paths import repo_root

NODE_IDS: tuple[str, ...] = (
    "data_prep",
    "dqvl",
    "patchtst_training",
    "swinmae_training",
    "artifact_save",
    "validation_gate",
)
NODE_STATUSES: tuple[str, ...] = ("idle", "running", "done", "fail")
LOCK_TIMEOUT_S = 10.0
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_RESERVED_RUN_IDS = {".", "..", "index"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A sortable UTC timestamp, the default run id everywhere."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` unchanged if it is a safe file stem, else raise a clear error.

    Run ids become file names (bundles, run history snapshots), so anything that could
    escape the folder or collide with ``index.json`` is refused rather than rewritten.
    """
    if not _RUN_ID_RE.fullmatch(run_id or "") or run_id in _RESERVED_RUN_IDS:
        raise UserError(
            f"run id {run_id!r}: use 1-128 characters from A-Z a-z 0-9 . _ - "
            "(not '.', '..' or 'index')"
        )
    return run_id


def status_path(root: Path | None = None) -> Path:
    return (root or repo_root()) / STATUS


def empty_status(run_id: str | None = None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "stage": None,
        "nodes": {n: {"status": "idle", "message": "", "updated_at": None} for n in NODE_IDS},
        "progress": None,
        "log": None,
    }


def read_status(root: Path | None = None) -> dict[str, Any] | None:
    """The current status, or None when there is none (or it is unreadable)."""
    path = status_path(root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("nodes"), dict) else None


def _update(mutate: Callable[[dict[str, Any]], None], root: Path | None) -> dict[str, Any] | None:
    path = status_path(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_name(".status.lock")), timeout=LOCK_TIMEOUT_S):
            data = read_status(root) or empty_status()
            mutate(data)
            atomic_write_json(path, data)
            return data
    except (OSError, Timeout) as exc:
        warnings.warn(f"could not update {STATUS}: {exc}", stacklevel=3)
        return None


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN/inf; a diverged loss is reported as null, not as invalid JSON."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def reset_status(run_id: str, root: Path | None = None) -> dict[str, Any] | None:
    """Start a new run: every node idle, no progress."""

    def mutate(data: dict[str, Any]) -> None:
        data.clear()
        data.update(empty_status(run_id))

    return _update(mutate, root)


def _set_node_in(data: dict[str, Any], node_id: str, status: str, message: str) -> None:
    data["nodes"][node_id] = {"status": status, "message": message, "updated_at": now_iso()}
    if status == "running":
        data["stage"] = node_id


def set_node(
    node_id: str,
    status: str,
    message: str = "",
    log: str | None = None,
    root: Path | None = None,
) -> dict[str, Any] | None:
    """Set one node's status (``idle|running|done|fail``); ``log`` is the log to tail."""
    if node_id not in NODE_IDS:
        raise ValueError(f"unknown node {node_id!r}; expected one of {', '.join(NODE_IDS)}")
    if status not in NODE_STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(NODE_STATUSES)}")

    def mutate(data: dict[str, Any]) -> None:
        _set_node_in(data, node_id, status, message)
        if log is not None:
            data["log"] = log

    return _update(mutate, root)


def set_progress(
    stream: str,
    epoch: int,
    epochs: int,
    step: int = 0,
    steps: int = 0,
    loss: float | None = None,
    windows_per_s: float | None = None,
    root: Path | None = None,
) -> dict[str, Any] | None:
    """Report training progress (call once per epoch, rank 0 only).

    Progress means the data was loaded and passed DQVL, so data prep and DQVL nodes that
    are still ``running`` are marked ``done``, and the stream's training node is marked
    ``running`` with the epoch in its message (a stream without a node in the graph, e.g.
    a plugin, reports its progress only).
    """
    node = f"{stream}_training"
    loss_val = _finite_or_none(loss)
    rate = _finite_or_none(windows_per_s)
    shown_loss = f"{loss_val:.4g}" if loss_val is not None else "n/a"

    def mutate(data: dict[str, Any]) -> None:
        for upstream in ("data_prep", "dqvl"):
            if data["nodes"].get(upstream, {}).get("status") == "running":
                _set_node_in(data, upstream, "done", f"{stream}: data ready")
        if node in NODE_IDS:
            _set_node_in(data, node, "running", f"epoch {epoch}/{epochs}, loss {shown_loss}")
        data["progress"] = {
            "stream": stream,
            "epoch": int(epoch),
            "epochs": int(epochs),
            "step": int(step),
            "steps": int(steps),
            "loss": loss_val,
            "windows_per_s": rate,
        }

    return _update(mutate, root)
