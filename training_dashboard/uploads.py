"""Checks for files uploaded through the dashboard before they reach ``data/``.

The dashboard accepts files from a browser, possibly on a shared network (token bind), so
everything about an upload is treated as hostile until checked: the name (no folders, no
traversal, no hidden files), archives (zip-slip, symlinks, zip bombs, entry counts), sizes,
and the content itself (the extension must match what the bytes are). Files are staged in
a temporary folder next to the destination and moved in only after every file passed, so a
rejected upload writes nothing. Existing files are never overwritten: a name that already
exists rejects the whole upload with 409 (rename the file and upload again).
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

import streams
from core.errors import UserError

TARGETS = ("train", "test")
ZIP_EXTENSION = ".zip"
MAX_NAME_LENGTH = 128
CHUNK = 1 << 20
NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"
CSV_DELIMITERS = (",", ";", "\t")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_DRIVE = re.compile(r"^[A-Za-z]:")
_COMMIT_LOCK = threading.Lock()
MIB = 1 << 20


@dataclass(frozen=True)
class UploadLimits:
    """Upper bounds for one upload request; tests pass tiny values."""

    max_files: int = 32
    max_file_bytes: int = 512 * MIB
    max_request_bytes: int = 2048 * MIB
    max_zip_entries: int = 256
    max_zip_total_bytes: int = 2048 * MIB


class UploadRejected(UserError):
    """An upload that fails a check; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def destination_dir(repo_root: Path, stream: str, target: str) -> Path:
    """``data/local/<target>/<fdc|vib>/`` for a stream, the folders the local configs read."""
    if stream not in streams.names():
        raise UploadRejected(
            f"unknown stream '{stream}' (expected {' or '.join(streams.names())})")
    if target not in TARGETS:
        raise UploadRejected(f"unknown target '{target}' (expected train or test)")
    return repo_root / "data" / "local" / target / streams.get(stream).data_folder


def sanitize_name(raw: str) -> str:
    """A safe plain file name: folders and hidden names are refused, odd characters become _.

    Names with a path (``/``, ``\\``, a drive letter) are refused rather than cut down to
    their last part, so a crafted name never lands somewhere the user did not expect.
    """
    if not raw or "\x00" in raw:
        raise UploadRejected("empty or invalid file name")
    if "/" in raw or "\\" in raw or _DRIVE.match(raw):
        raise UploadRejected(f"'{raw}': file names must not contain folders or drive letters")
    if raw.startswith("."):
        raise UploadRejected(f"'{raw}': hidden or relative file names are not accepted")
    name = _UNSAFE_CHARS.sub("_", raw)
    if len(name) > MAX_NAME_LENGTH:
        raise UploadRejected(f"'{raw[:40]}...': file name longer than {MAX_NAME_LENGTH} characters")
    return name


def check_extension(name: str, stream: str, allow_zip: bool) -> str:
    """The lower-case extension of ``name`` if the stream accepts it, else a 415 rejection."""
    ext = Path(name).suffix.lower()
    allowed = streams.get(stream).file_suffixes + ((ZIP_EXTENSION,) if allow_zip else ())
    if ext not in allowed:
        raise UploadRejected(
            f"'{name}': type '{ext or '(none)'}' is not accepted for {stream} "
            f"(allowed: {', '.join(allowed)})",
            status=415,
        )
    return ext


def sniff_file(path: Path, ext: str, shown: str) -> None:
    """Check that the bytes of ``path`` really are what its extension claims."""
    if ext == ".csv":
        _sniff_csv(path, shown)
    elif ext == ".parquet":
        _sniff_parquet(path, shown)
    elif ext == ".npy":
        _sniff_npy(path, shown)
    else:  # pragma: no cover - callers check extensions first
        raise UploadRejected(f"'{shown}': no content check for '{ext}'", status=415)


def _sniff_csv(path: Path, shown: str) -> None:
    """UTF-8 text without NUL bytes whose first line is a header of delimited fields."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    first_line: str | None = None
    head = ""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if b"\x00" in chunk:
                raise UploadRejected(f"'{shown}': binary content (NUL bytes) in a .csv file")
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise UploadRejected(f"'{shown}': not UTF-8 text ({exc.reason})") from exc
            if first_line is None:
                head += text
                if "\n" in head or len(head) > CHUNK:
                    first_line = head.split("\n", 1)[0]
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise UploadRejected(f"'{shown}': not UTF-8 text ({exc.reason})") from exc
    header = (head if first_line is None else first_line).rstrip("\r")
    fields = max((header.split(d) for d in CSV_DELIMITERS), key=len)
    if len(fields) < 2 or not all(f.strip() for f in fields):
        raise UploadRejected(
            f"'{shown}': the first line is not a CSV header (expected delimited column names)"
        )


def _sniff_parquet(path: Path, shown: str) -> None:
    """PAR1 magic at both ends and a footer that pyarrow can parse."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        start = fh.read(4)
        fh.seek(max(size - 4, 0))
        end = fh.read(4)
    if size < 12 or start != PARQUET_MAGIC or end != PARQUET_MAGIC:
        raise UploadRejected(f"'{shown}': not a Parquet file (PAR1 magic missing)")
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
        raise UploadRejected(f"'{shown}': corrupt Parquet footer ({exc})") from exc


def _sniff_npy(path: Path, shown: str) -> None:
    """A readable NPY header with a plain (non-object) dtype and all the data present.

    This is the header parse ``np.load(allow_pickle=False)`` does; object arrays (pickles)
    are refused here so they never reach the readers.
    """
    fmt = np.lib.format
    with path.open("rb") as fh:
        if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise UploadRejected(f"'{shown}': not an NPY file (\\x93NUMPY magic missing)")
        fh.seek(0)
        try:
            version = fmt.read_magic(fh)
            read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"unsupported NPY format version {version}")
            shape, _, dtype = read_header[version](fh)
        except ValueError as exc:
            raise UploadRejected(f"'{shown}': unreadable NPY header ({exc})") from exc
        offset = fh.tell()
    if dtype.hasobject:
        raise UploadRejected(f"'{shown}': NPY holds Python objects (pickle); not accepted")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise UploadRejected(f"'{shown}': truncated NPY (header says {shape} {dtype})")


def _copy_limited(src: BinaryIO, dest: Path, limit: int, shown: str) -> int:
    """Copy ``src`` into a new file, refusing (413) once more than ``limit`` bytes arrive.

    Counting the bytes actually read (not a size field) is what stops a zip bomb whose
    headers lie about the uncompressed size.
    """
    total = 0
    with dest.open("xb") as out:
        while chunk := src.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise UploadRejected(
                    f"'{shown}': larger than the {_human(limit)} size limit", status=413
                )
            out.write(chunk)
    return total


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def zip_entry_name(info: zipfile.ZipInfo, archive: str) -> str | None:
    """The flattened safe name of an archive member, None for entries to skip (folders).

    Absolute names, drive letters, backslashes, ``..`` parts, symlinks and encrypted
    members are refused; ``a/b/c.csv`` is flattened to ``c.csv``.
    """
    raw = info.filename
    shown = f"{archive}:{raw}"
    mode = (info.external_attr >> 16) & 0o170000
    if mode == 0o120000:
        raise UploadRejected(f"'{shown}': symbolic links are not accepted in archives")
    if raw.startswith("/") or "\\" in raw or _DRIVE.match(raw) or "\x00" in raw:
        raise UploadRejected(f"'{shown}': absolute or Windows-style path in archive")
    parts = raw.split("/")
    if ".." in parts:
        raise UploadRejected(f"'{shown}': '..' in an archive path (zip-slip)")
    if info.is_dir() or parts[0] == "__MACOSX":
        return None
    if info.flag_bits & 0x1:
        raise UploadRejected(f"'{shown}': encrypted archive members are not accepted")
    return sanitize_name(parts[-1])


def _extract_zip(
    archive: Path, shown: str, staging: Path, stream: str, limits: UploadLimits
) -> list[Path]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRejected(f"'{shown}': not a valid zip archive ({exc})") from exc
    extracted: list[Path] = []
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_entries:
            raise UploadRejected(
                f"'{shown}': {len(infos)} entries, more than the limit of {limits.max_zip_entries}",
                status=413,
            )
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_zip_total_bytes:
            raise UploadRejected(
                f"'{shown}': unpacks to {_human(declared)}, more than the "
                f"{_human(limits.max_zip_total_bytes)} limit",
                status=413,
            )
        budget = limits.max_zip_total_bytes
        for info in infos:
            name = zip_entry_name(info, shown)
            if name is None:
                continue
            entry_shown = f"{shown}:{name}"
            ext = check_extension(name, stream, allow_zip=False)
            dest = staging / name
            if dest.exists():
                raise UploadRejected(f"'{entry_shown}': the name appears twice in this upload")
            try:
                limit = min(limits.max_file_bytes, budget)
                with zf.open(info) as src:
                    written = _copy_limited(src, dest, limit, entry_shown)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise UploadRejected(f"'{entry_shown}': corrupt archive member ({exc})") from exc
            budget -= written
            sniff_file(dest, ext, entry_shown)
            extracted.append(dest)
    return extracted


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p that returns the folders it created, deepest last, for cleanup."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _remove_empty(dirs: list[Path]) -> None:
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            break


def _commit(staged: list[Path], dest: Path) -> list[Path]:
    """Move staged files in without ever replacing an existing file (os.link is no-clobber)."""
    with _COMMIT_LOCK:
        clashes = [p.name for p in staged if (dest / p.name).exists()]
        if clashes:
            raise UploadRejected(
                f"already exists in {dest.name}/: {', '.join(sorted(clashes))} "
                "(existing files are never overwritten; rename and upload again)",
                status=409,
            )
        done: list[Path] = []
        for p in staged:
            try:
                os.link(p, dest / p.name)
            except FileExistsError as exc:
                for q in done:
                    q.unlink(missing_ok=True)
                raise UploadRejected(f"'{p.name}' appeared while uploading", status=409) from exc
            done.append(dest / p.name)
    return done


def save_upload(
    sources: Iterable[tuple[str, BinaryIO]],
    repo_root: Path,
    stream: str,
    target: str,
    limits: UploadLimits,
) -> list[Path]:
    """Check every uploaded file (and zip member) and move them into the stream's data folder.

    Returns the saved paths. Raises :class:`UploadRejected` and leaves the data tree as
    it was when any check fails.
    """
    dest = destination_dir(repo_root, stream, target)
    items = list(sources)
    if not items:
        raise UploadRejected("no files in the upload (form field 'files')")
    if len(items) > limits.max_files:
        raise UploadRejected(
            f"{len(items)} files in one upload, more than the limit of {limits.max_files}",
            status=413,
        )
    names = [sanitize_name(raw) for raw, _ in items]
    exts = [check_extension(n, stream, allow_zip=True) for n in names]
    created = _make_dirs(dest.parent)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=dest.parent))
    committed = False
    try:
        staged = _stage_all(items, names, exts, staging, stream, limits)
        created += _make_dirs(dest)
        saved = _commit(staged, dest)
        committed = True
        return saved
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not committed:
            _remove_empty(created)


def _stage_all(
    items: list[tuple[str, BinaryIO]],
    names: list[str],
    exts: list[str],
    staging: Path,
    stream: str,
    limits: UploadLimits,
) -> list[Path]:
    """Copy, unpack and content-check every file inside the staging folder."""
    staged: list[Path] = []
    for (_, fh), name, ext in zip(items, names, exts, strict=True):
        path = staging / ("archive-" + name if ext == ZIP_EXTENSION else name)
        if path.exists():
            raise UploadRejected(f"'{name}': the name appears twice in this upload")
        _copy_limited(fh, path, limits.max_file_bytes, name)
        if ext == ZIP_EXTENSION:
            staged += _extract_zip(path, name, staging, stream, limits)
            path.unlink()
        else:
            sniff_file(path, ext, name)
            staged.append(path)
    if not staged:
        raise UploadRejected("the upload holds no data files")
    return staged
