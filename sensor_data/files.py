"""A stream's input files: finding them from ``data.path``, naming them, sniffing them.

Also the shape of a CSV's rows (:func:`csv_rows`), which pandas does not report: a row
with more or fewer fields than the header is read without complaint, its values landing
in whichever columns they happen to reach.
"""

from __future__ import annotations

import codecs
import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.paths import display_path, resolve_path

_SNIFF_BYTES = 64 * 1024
_SCAN_BYTES = 4 * 1024 * 1024  # CSV shape scan block: bounded memory for any file size
_COMMA, _QUOTE, _NEWLINE = ord(","), ord('"'), ord("\n")
_BLANK_BYTES = np.array([ord(" "), ord("\t"), ord("\r"), _NEWLINE], dtype=np.uint8)
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


def file_ids(paths: Sequence[Path]) -> list[str]:
    """File names, or repository-relative paths for all when two files share a name.

    An id names one file in datasets, DQVL reports and decisions, so two files called
    ``x.csv`` in different folders must never share one.
    """
    names = [Path(p).name for p in paths]
    return names if len(set(names)) == len(names) else [display_path(p) for p in paths]


@dataclass(frozen=True)
class CsvRows:
    """Field counts of a CSV's data rows (blank lines skipped, as pandas does).

    One trailing empty field (a line ending in ``,``) is not counted, on the header or a
    row, so a logger that ends every line with a comma is regular.
    """

    n_rows: int  # data rows after the header
    n_fields: int  # fields of the header
    ragged: np.ndarray  # data-row indices (0-based) whose field count differs
    ragged_fields: np.ndarray  # their field counts


def _last_solid(block: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Index of each line's last non-blank byte; below its begin for a blank line.

    Steps back over trailing blanks, so it loops only as often as the longest such run.
    """
    pos = ends - 1
    todo = np.flatnonzero(pos >= begins)
    while todo.size:
        todo = todo[np.isin(block[pos[todo]], _BLANK_BYTES)]
        pos[todo] -= 1
        todo = todo[pos[todo] >= begins[todo]]
    return pos


def _block_fields(block: np.ndarray, in_quote: bool) -> tuple[np.ndarray, bool]:
    """Field counts of the non-blank lines of a block of whole lines, and the quote state.

    A comma inside double quotes is not a separator (parity of the quotes before it).
    """
    commas = np.flatnonzero(block == _COMMA)
    quotes = np.flatnonzero(block == _QUOTE)
    if quotes.size:
        commas = commas[(np.searchsorted(quotes, commas) + in_quote) % 2 == 0]
        in_quote = bool((quotes.size + in_quote) % 2)
    ends = np.flatnonzero(block == _NEWLINE)
    begins = np.concatenate([[0], ends[:-1] + 1])
    last = _last_solid(block, begins, ends)
    solid = last >= begins
    trailing = solid & (block[np.maximum(last, 0)] == _COMMA)
    fields = np.diff(np.searchsorted(commas, ends), prepend=0) + 1 - trailing
    return fields[solid], in_quote


def _line_fields(path: Path) -> Iterator[np.ndarray]:
    """Field counts of the non-blank lines, one array per block of whole lines."""
    carry, in_quote = b"", False
    with path.open("rb") as fh:
        while chunk := fh.read(_SCAN_BYTES):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                fields, in_quote = _block_fields(np.frombuffer(data[:cut], np.uint8), in_quote)
                yield fields
    if carry:
        yield _block_fields(np.frombuffer(carry + b"\n", np.uint8), in_quote)[0]


def csv_rows(path: Path, shown: str) -> CsvRows:
    """Scan ``path`` block by block for rows of the wrong width; memory stays bounded."""
    header: int | None = None
    n_rows = 0
    ragged: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    widths: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for fields in _line_fields(path):
        if header is None:
            if fields.size == 0:
                continue
            header, fields = int(fields[0]), fields[1:]
        bad = np.flatnonzero(fields != header)
        ragged.append(bad + n_rows)
        widths.append(fields[bad])
        n_rows += fields.size
    if header is None:
        raise DataError(f"{shown}: empty file (no header)")
    return CsvRows(n_rows, header, np.concatenate(ragged), np.concatenate(widths))
