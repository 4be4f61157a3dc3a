"""Scalograms computed once per window set and cached on disk, not once per epoch.

The cache file is ``<cache_dir>/<sha256>.npy``; the hash covers the window bytes (as
float32), their shape, the :class:`~dsp.cwt.CwtSpec`, the output dtype and
:data:`dsp.cwt.CODE_VERSION`, so any change to the data, the settings or the transform's
numerics is a miss.  Files are written atomically and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.io import atomic_write_bytes
from core.paths import display_path, resolve_path
from dsp.cwt import CODE_VERSION, BatchedCwt, CwtSpec

log = logging.getLogger(__name__)


def cache_key(windows: np.ndarray, spec: CwtSpec, dtype: np.dtype | str = np.float32) -> str:
    """sha256 of everything the cached array depends on (``windows`` as float32)."""
    data = np.ascontiguousarray(windows, dtype=np.float32)
    header = {
        "code": CODE_VERSION,
        "spec": dataclasses.asdict(spec),
        "shape": list(data.shape),
        "dtype": np.dtype(dtype).str,
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode("utf-8"))
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


def cache_path(
    windows: np.ndarray, spec: CwtSpec, cache_dir: str | os.PathLike[str],
    dtype: np.dtype | str = np.float32,
) -> Path:
    """Where :func:`compute_scalograms` stores these windows' scalograms."""
    return resolve_path(cache_dir) / f"{cache_key(windows, spec, dtype)}.npy"


def _load(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The cached array, or None when it is missing or not what this key promises."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("CWT cache %s unreadable (%s); recomputing", display_path(path), exc)
        return None
    if arr.shape != shape or arr.dtype != dtype:
        log.warning("CWT cache %s has shape %s %s, expected %s %s; recomputing",
                    display_path(path), arr.shape, arr.dtype, shape, dtype)
        return None
    return arr


def compute_scalograms(
    windows: np.ndarray,
    spec: CwtSpec,
    device: torch.device | str | None = None,
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    dtype: np.dtype | str = np.float32,
) -> np.ndarray:
    """(N, T, 3) windows -> (N, 3, H, W) scalograms (``dtype``: float32, or float16 to halve
    memory), with the fast path on ``device``; loaded from ``cache_dir`` when present.

    ``cache_dir`` may be repository-relative (e.g. ``cfg.cwt.cache_dir``).
    """
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"compute_scalograms: dtype must be float32 or float16, got {out_dtype}")
    if windows.ndim != 3 or windows.shape[2] != 3:
        raise ValueError(f"compute_scalograms: expected (N, T, 3) windows, got {windows.shape}")
    n, size = windows.shape[0], spec.image_size
    shape = (n, 3, size, size)
    path = None
    if cache_dir is not None and n:
        path = cache_path(windows, spec, cache_dir, out_dtype)
        cached = _load(path, shape, out_dtype)
        if cached is not None:
            log.info("CWT cache hit: %s", display_path(path))
            return cached

    out = np.empty(shape, dtype=out_dtype)
    if n:
        cwt = BatchedCwt(spec, windows.shape[1], device, chunk_size=batch_size)
        with tqdm(total=n, desc="CWT scalograms", unit="win", disable=not progress) as bar:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                if cwt.device.type == "cpu" and out_dtype == np.float32:
                    cwt(windows[start:stop], out=torch.from_numpy(out[start:stop]))
                else:
                    out[start:stop] = cwt(windows[start:stop]).cpu().numpy()
                bar.update(stop - start)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
        log.info("CWT cache written: %s", display_path(path))
    return out
