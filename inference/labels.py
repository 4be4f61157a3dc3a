"""Ground truth beside test files: ``labels.csv`` is never data, it only grades decisions.

Columns: ``file`` and ``label`` (``normal`` or anything else = a fault), optionally
``difficulty`` (``hard`` marks faults known to be nearly indistinguishable from normal
operation, e.g. Tennessee Eastman faults 3, 9 and 15: counted apart) and
``fault_start_row`` (the row / sample where the fault begins, for detection delays).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.paths import display_path
from sensor_data.files import LABELS_FILE


@dataclass(frozen=True)
class Truth:
    label: str  # "normal" | "fault"
    difficulty: str | None = None  # "hard" or None
    fault_start_row: int | None = None


def _optional_int(value: object) -> int | None:
    try:
        out = int(float(str(value)))
    except (TypeError, ValueError):
        return None
    return out if out >= 0 else None


def _difficulty(value: object) -> str | None:
    text = str(value).strip().lower()
    return "hard" if text == "hard" else None


def read_labels(files: list[Path]) -> dict[str, Truth]:
    """file name -> :class:`Truth` from the ``labels.csv`` of every test folder."""
    out: dict[str, Truth] = {}
    for folder in sorted({p.parent for p in files}):
        path = folder / LABELS_FILE
        if not path.is_file():
            continue
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError):
            print(f"note: {display_path(path)} is not a readable labels table; ignored")
            continue
        if not {"file", "label"} <= set(table.columns):
            print(f"note: {display_path(path)} lacks file/label columns; ignored")
            continue
        for row in table.to_dict("records"):
            normal = row["label"].strip().lower() == "normal"
            out[row["file"]] = Truth(
                "normal" if normal else "fault",
                None if normal else _difficulty(row.get("difficulty", "")),
                None if normal else _optional_int(row.get("fault_start_row", "")),
            )
    return out
