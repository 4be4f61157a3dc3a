"""Where a live scorer writes: append-only JSONL logs, the status file, the restart state.

Lines are appended whole (one write, then flush; events also fsync), so a crash can leave
at most a partial last line, which the next start cuts off.  A log rolls over by size
(``scores.jsonl`` -> ``scores.1.jsonl`` -> ...).  The restart state is one ``.npz``
(arrays plus a JSON header, no pickles) replaced atomically, so it is always whole.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.io import atomic_write_bytes


class JsonlLog:
    """An append-only JSON-lines file with size-based rotation."""

    def __init__(self, path: Path, rotate_bytes: int, keep: int, sync: bool = False) -> None:
        self.path, self.rotate_bytes, self.keep, self.sync = Path(path), rotate_bytes, keep, sync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_partial_line()

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.{n}{self.path.suffix}")

    def _cut_partial_line(self) -> None:
        """Drop a last line a crash left unfinished (everything after the last newline)."""
        if not self.path.is_file():
            return
        with self.path.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read(back)
            if tail and not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                f.truncate(size - back + cut + 1 if cut >= 0 else size - back)

    def last(self) -> dict[str, Any] | None:
        """The last whole line (from the newest rotated file when this one is empty)."""
        for path in (self.path, self._rotated(1)):
            if not path.is_file() or path.stat().st_size == 0:
                continue
            with path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - (1 << 20)))
                lines = f.read().splitlines()
            for line in reversed(lines):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return None

    def append(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            if self.sync:
                os.fsync(f.fileno())
        if self.path.stat().st_size >= self.rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        oldest = self._rotated(self.keep)
        if oldest.exists():
            oldest.unlink()
        for n in range(self.keep - 1, 0, -1):
            if self._rotated(n).exists():
                os.replace(self._rotated(n), self._rotated(n + 1))
        os.replace(self.path, self._rotated(1))


def save_state(path: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """The restart state: ``arrays`` plus ``header`` as JSON, in one atomic ``.npz``."""
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    np.savez(buf, __header__=meta, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """What :func:`save_state` wrote, or None when there is none or it does not read."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        header = json.loads(arrays.pop("__header__").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return header, arrays
