"""Tennessee Eastman Process (TEP) demo data from the files the ``bibmon`` package ships.

The ``dNN.dat`` / ``dNN_te.dat`` files are found through the package's import spec, so
bibmon itself (which pulls in its whole modelling stack) is never imported.  ``d00.dat``
is stored transposed (52 x 500); every other file is (rows x 52).  Runs are sampled every
3 minutes; in each fault test run ``dNN_te`` the fault starts after 8 h, i.e. at row 160.

:func:`materialise_tep` writes the demo data set used by ``make run`` and
:func:`load_tep_protocol` hands the same split to the detection benchmark, so both follow
one protocol: train ``d00``; calibration normal = first 480 rows of ``d00_te``; test normal
= its last 480 rows; fault runs ``d01_te``..``d21_te`` abnormal from row 160 on.  The demo
adds the normal start of each fault run to calibration (see :data:`DEMO_PRE_ROWS`).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError
from core.io import atomic_write_text
from sensor_data.files import LABELS_FILE

CHANNELS = [f"xmeas_{i:02d}" for i in range(1, 42)] + [f"xmv_{i:02d}" for i in range(1, 12)]
N_CHANNELS = len(CHANNELS)  # 52
FAULT_IDS = tuple(range(1, 22))
# Faults known to be nearly indistinguishable from normal operation in TEP (labelled
# "hard" in the demo's ground truth and counted apart).
HARD_FAULTS = (3, 9, 15)
FAULT_START_ROW = 160  # 8 h at 3 min per row
CALIB_ROWS = 480
# Demo: the first rows of every fault test run are normal operation of an independent run.
# The demo calibrates on rows 0..95 of each (plus the first half of d00_te) and tests on
# rows 96.. (64 rows = one window of normal context before the onset), so calibration sees
# how normal operation varies between runs and no test row is ever calibration data.
DEMO_PRE_ROWS = 96
SAMPLE_PERIOD_S = 180
START = np.datetime64("2000-01-01T00:00:00", "ns")
_NAME = re.compile(r"d(\d\d)(_te)?")

TRAIN_DIR = "data/local/train/fdc"
CALIB_DIR = "data/local/calib/fdc"
TEST_DIR = "data/local/test/fdc"


def tep_dir() -> Path:
    """Folder of the TEP ``.dat`` files inside the installed bibmon package."""
    spec = importlib.util.find_spec("bibmon")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("bibmon is not installed: the Tennessee Eastman demo data comes with it")
    folder = Path(next(iter(spec.submodule_search_locations))) / "tennessee_eastman"
    if not (folder / "d21_te.dat").is_file():
        raise DataError(f"{folder}: Tennessee Eastman files (d00.dat ... d21_te.dat) not found")
    return folder


def load_tep_array(name: str) -> np.ndarray:
    """One run as read, float64 ``(rows, 52)``; ``name`` like ``d00`` or ``d05_te``."""
    match = _NAME.fullmatch(name)
    if match is None or int(match.group(1)) > max(FAULT_IDS):
        raise DataError(f"unknown Tennessee Eastman run {name!r} (expected d00..d21[_te])")
    path = tep_dir() / f"{name}.dat"
    values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if values.shape[0] == N_CHANNELS and values.shape[1] != N_CHANNELS:
        values = values.T  # d00.dat is stored channel-major
    if values.shape[1] != N_CHANNELS:
        raise DataError(f"{path}: expected {N_CHANNELS} channels, got shape {values.shape}")
    return np.ascontiguousarray(values)


def load_tep(name: str) -> pd.DataFrame:
    """One run as a frame: ``timestamp`` (3 min period) then ``xmeas_01``..``xmv_11``."""
    values = load_tep_array(name)
    frame = pd.DataFrame(values, columns=CHANNELS)
    stamps = START + np.arange(len(frame)) * np.timedelta64(SAMPLE_PERIOD_S, "s")
    frame.insert(0, "timestamp", stamps)
    return frame


def _slice_rows(frame: pd.DataFrame, rows: slice) -> pd.DataFrame:
    return frame.iloc[rows].reset_index(drop=True)


def _demo_files() -> list[tuple[str, Callable[[], str]]]:
    """(repository-relative path, CSV text factory) for every demo file, lazily."""

    def csv(name: str, rows: slice = slice(None)) -> Callable[[], str]:
        return lambda: _slice_rows(load_tep(name), rows).to_csv(index=False)

    files = [
        (f"{TRAIN_DIR}/d00.csv", csv("d00")),
        (f"{CALIB_DIR}/d00_te_calib.csv", csv("d00_te", slice(0, CALIB_ROWS))),
        (f"{TEST_DIR}/d00_te_normal.csv", csv("d00_te", slice(CALIB_ROWS, None))),
    ]
    files += [(f"{CALIB_DIR}/d{f:02d}_te_pre.csv", csv(f"d{f:02d}_te", slice(0, DEMO_PRE_ROWS)))
              for f in FAULT_IDS]
    files += [(f"{TEST_DIR}/d{f:02d}_te.csv", csv(f"d{f:02d}_te", slice(DEMO_PRE_ROWS, None)))
              for f in FAULT_IDS]
    files.append((f"{TEST_DIR}/{LABELS_FILE}", lambda: labels_frame().to_csv(index=False)))
    return files


def labels_frame() -> pd.DataFrame:
    """Ground truth of the demo test folder: ``fault_start_row`` empty for the normal file,
    ``difficulty`` ``hard`` for :data:`HARD_FAULTS`."""
    rows: list[dict[str, Any]] = [
        {"file": "d00_te_normal.csv", "fault_id": 0, "fault_start_row": None, "label": "normal",
         "difficulty": ""}
    ]
    rows += [
        {
            "file": f"d{f:02d}_te.csv",
            "fault_id": f,
            "fault_start_row": FAULT_START_ROW - DEMO_PRE_ROWS,  # row of the test file
            "label": "fault",
            "difficulty": "hard" if f in HARD_FAULTS else "detectable",
        }
        for f in FAULT_IDS
    ]
    frame = pd.DataFrame(rows)
    frame["fault_start_row"] = frame["fault_start_row"].astype("Int64")
    return frame


def materialise_tep(root: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Write the TEP demo set under ``root``; existing files are skipped, never overwritten.

    Returns the files written by this call (an empty list when everything was there).
    """
    written, skipped = [], []
    for rel, make_text in _demo_files():
        path = Path(root) / rel
        if path.exists():
            skipped.append(rel)
            continue
        written.append(atomic_write_text(path, make_text()))
    if skipped:
        shown = (
            ", ".join(skipped) if len(skipped) <= 3 else f"{skipped[0]} and {len(skipped) - 1} more"
        )
        log(f"Tennessee Eastman demo: {len(skipped)} existing file(s) left untouched: {shown}")
    return written


def _float32(name: str) -> np.ndarray:
    return load_tep_array(name).astype(np.float32)


def load_tep_protocol() -> dict[str, Any]:
    """Arrays for the detection benchmark (float32, channels as in :data:`CHANNELS`).

    ``faults`` holds the abnormal part (rows 160+) of each fault run; ``fault_runs`` the
    whole run and ``test_normal_run`` the whole ``d00_te``, for window-based models that
    need the rows before the first scored one as context.
    """
    normal_test = _float32("d00_te")
    fault_runs = {f: _float32(f"d{f:02d}_te") for f in FAULT_IDS}
    return {
        "channels": list(CHANNELS),
        "sample_period_s": SAMPLE_PERIOD_S,
        "fault_start_row": FAULT_START_ROW,
        "calib_rows": CALIB_ROWS,
        "train": _float32("d00"),
        "calib": normal_test[:CALIB_ROWS],
        "test_normal": normal_test[CALIB_ROWS:],
        "faults": {f: run[FAULT_START_ROW:] for f, run in fault_runs.items()},
        "test_normal_run": normal_test,
        "fault_runs": fault_runs,
    }
