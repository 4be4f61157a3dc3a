"""Finding a stream's input files from the repository-relative globs in ``data.path``."""

from __future__ import annotations

import codecs
import glob
from collections.abc import Sequence
from pathlib import Path

from core.errors import DataError
from core.paths import resolve_path

_SNIFF_BYTES = 64 * 1024
LABELS_FILE = "labels.csv"  # reserved: a ground-truth table beside test files, never data


def list_data_files(
    patterns: str | Sequence[str], suffixes: Sequence[str], kind: str
) -> list[Path]:
    """Files matching the glob(s), sorted and deduplicated.

    A pattern naming a folder means every file in it with a readable suffix; a glob takes
    what it matches (an unreadable match is reported by DQVL, not hidden); ``labels.csv``
    is always skipped.
    """
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    found: set[Path] = set()
    for pat in pats:
        resolved = resolve_path(pat)
        if resolved.is_dir():
            found.update(p.resolve() for p in resolved.iterdir() if p.suffix.lower() in suffixes)
        else:
            found.update(Path(p).resolve() for p in glob.glob(str(resolved), recursive=True))
    files = sorted(p for p in found if p.is_file() and p.name != LABELS_FILE)
    if not files:
        shown = ", ".join(repr(p) for p in pats)
        raise DataError(
            f"data.path: no {kind} file matches {shown} (paths are relative to the repository root)"
        )
    return files


def sniff_utf8_text(path: Path, shown: str) -> None:
    """Reject binary or non-UTF-8 content up front with a precise message."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise DataError(
            f"{shown}: binary data or a UTF-16/32 encoding (NUL bytes); expected UTF-8 text"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{shown}: not UTF-8 text (byte {exc.start}: wrong encoding or binary data)"
        ) from None
