"""A CSV a historian keeps appending to, or a folder where new CSV files arrive.

Like ``tail -F``: the open file is read to its end (whole lines only: a line still being
written waits for its newline), then the source looks for what comes next: more lines, a
file that replaced it under the same name (rotation: the old one is read to its end
first), or the next file of the glob in name order.  Each file's first line is its
header; columns are matched by name (case-insensitive), a missing one reads as NaN with
a ``bad_payload`` notice, and stamps parse like the batch readers parse them.  The
position (file, byte offset, inode and last stamp) lets a restart continue where it was.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from core.paths import display_path, repo_rel, repo_root, resolve_path
from inference.live.config import CsvTailSourceConfig
from inference.live.rows import LiveRow, SourceItem, SourceNotice
from sensor_data.timestamps import find_timestamp_col, parse_timestamps

MAX_READ_BYTES = 4 << 20  # per read: a large backlog goes out in pieces


class CsvTailSource:
    kind = "csv_tail"
    finished = False  # a historian file never "ends"

    def __init__(self, cfg: CsvTailSourceConfig, names: dict[str, str],
                 timestamp_col: str | None) -> None:
        self.cfg = cfg
        self.names = names  # live column -> column name in the files
        self.timestamp_col = cfg.timestamp_col or timestamp_col
        self.columns: list[str] = []
        self.file: IO[bytes] | None = None
        self.path: Path | None = None
        self.inode: int | None = None
        self.header: list[str] | None = None
        self.pending = b""
        self.after: np.datetime64 | None = None  # resume: rows up to this stamp are skipped
        self.last_stamp: str | None = None

    # ------------------------------------------------------------------ files
    def _candidates(self) -> list[Path]:
        pattern = str(resolve_path(self.cfg.path))
        return sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())

    def _open_file(self, path: Path, offset: int = 0) -> list[SourceItem]:
        self._close_file()
        try:
            self.file = path.open("rb")
        except OSError as exc:
            return [SourceNotice("bad_payload", f"{display_path(path)}: cannot open ({exc})")]
        self.path, self.inode = path, os.fstat(self.file.fileno()).st_ino
        self.header, self.pending = None, b""
        if offset:
            self.file.seek(0)
            self._take_header(self.file.readline())
            self.file.seek(max(offset, self.file.tell()))
        return []

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None

    def _replaced(self) -> bool:
        """The name now points at another file (rotated) or the file got shorter."""
        assert self.path is not None and self.file is not None
        try:
            st = self.path.stat()
        except OSError:
            return True
        return st.st_ino != self.inode or st.st_size < self.file.tell()

    def _next_path(self) -> Path | None:
        later = [p for p in self._candidates() if self.path is None or p.name > self.path.name]
        return later[0] if later else None

    # ------------------------------------------------------------------ protocol
    def open(self, columns: list[str], resume: dict[str, Any] | None) -> None:
        self.columns = list(columns)
        resume = resume or {}
        if resume.get("stamp") is not None:
            self.after = np.datetime64(resume["stamp"], "ns")
        name = resume.get("file")
        if name:
            path = resolve_path(name)
            if path.is_file() and path.stat().st_ino == resume.get("inode"):
                self._open_file(path, int(resume.get("offset", 0)))
                return
        first = self._candidates()
        if first:
            self._open_file(first[0])

    def read(self, timeout_s: float) -> list[SourceItem]:
        deadline = time.monotonic() + timeout_s
        while True:
            items = self._read_once()
            if items or time.monotonic() >= deadline:
                return items
            time.sleep(min(self.cfg.poll_s, max(0.0, deadline - time.monotonic())))

    def _read_once(self) -> list[SourceItem]:
        if self.file is None:
            first = self._candidates()
            return self._open_file(first[0]) if first else []
        chunk = self.file.read(MAX_READ_BYTES)
        if chunk:
            return self._parse(chunk)
        if self._replaced():  # the old file is read to its end: go on with the new one
            assert self.path is not None
            if self.path.is_file():
                return self._open_file(self.path)
        nxt = self._next_path()
        return self._open_file(nxt) if nxt is not None else []

    def describe(self) -> str:
        now = display_path(self.path) if self.path else "no file yet"
        return f"tail of {self.cfg.path} (now {now})"

    def close(self) -> None:
        self._close_file()

    # ------------------------------------------------------------------ parsing
    def _take_header(self, line: bytes) -> list[SourceItem]:
        text = line.decode("utf-8", errors="replace").lstrip("\ufeff").strip("\r\n")
        self.header = next(csv.reader([text]), [])
        have = {h.strip().lower(): i for i, h in enumerate(self.header)}
        self._index = [have.get(self.names.get(c, c).strip().lower()) for c in self.columns]
        self._stamp_col = find_timestamp_col(self.header, self.timestamp_col)
        missing = [c for c, i in zip(self.columns, self._index, strict=True) if i is None]
        if missing:
            return [SourceNotice("bad_payload", f"{self._shown()}: no column for "
                                 f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
                                 " (read as missing)", missing)]
        return []

    def _shown(self) -> str:
        return display_path(self.path) if self.path else self.cfg.path

    def _parse(self, chunk: bytes) -> list[SourceItem]:
        data = self.pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self.pending = data
            return []
        self.pending, data = data[cut + 1:], data[: cut + 1]
        out: list[SourceItem] = []
        if self.header is None:
            first, _, data = data.partition(b"\n")
            out += self._take_header(first)
        text = data.decode("utf-8", errors="replace")
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
        if rows:
            out += self._rows(rows)
        return out

    def _rows(self, rows: list[list[str]]) -> list[SourceItem]:
        assert self.header is not None and self.file is not None and self.path is not None
        width = len(self.header)
        frame = pd.DataFrame([(r + [""] * width)[:width] for r in rows], columns=range(width))
        values = np.full((len(rows), len(self.columns)), np.nan, np.float32)
        bad: list[str] = []
        for j, i in enumerate(self._index):
            if i is None:
                continue
            raw = frame[i].str.strip()
            numbers = pd.to_numeric(raw, errors="coerce")
            if (numbers.isna() & (raw != "")).any():
                bad.append(self.columns[j])
            values[:, j] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        stamps = None
        if self._stamp_col is not None:
            stamps = parse_timestamps(frame[self.header.index(self._stamp_col)].str.strip())
        out: list[SourceItem] = []
        if bad:
            out.append(SourceNotice("bad_payload", f"{self._shown()}: non-numeric values in "
                                    f"{', '.join(bad[:6])} (read as missing)", bad))
        if stamps is not None and self.after is not None:
            keep = ~(stamps <= self.after)
            values, stamps = values[keep], stamps[keep]
        if stamps is not None and len(stamps) and not np.isnat(stamps[-1]):
            self.last_stamp = str(stamps[-1])
        position = {"file": repo_rel(self.path, repo_root()), "offset": self.file.tell()
                    - len(self.pending), "inode": self.inode, "stamp": self.last_stamp}
        if len(values):
            out.append(LiveRow(stamps, values, position))
        return out
