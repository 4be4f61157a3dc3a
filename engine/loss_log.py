"""Loss history as CSV and PNG; both rewritten atomically from the full history each epoch."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from core.io import atomic_savefig, atomic_write_text

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


def write_history_csv(history: list[dict[str, Any]], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def read_history_csv(path: Path) -> list[dict[str, float]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {k: (float(r[k]) if r.get(k) not in (None, "") else math.nan) for k in HISTORY_COLUMNS}
        for r in rows
    ]


def loss_trend_warning(history: list[dict[str, Any]]) -> str | None:
    """One loud line when training ended without its loss falling (the last finite train
    loss is not below the first), e.g. scaling blown up by a near-constant tag."""
    rows = [r for r in history if r.get("train_loss") is not None
            and math.isfinite(r["train_loss"])]
    if len(rows) < 2 or rows[-1]["train_loss"] < rows[0]["train_loss"]:
        return None
    first, last = rows[0], rows[-1]
    return (f"training loss did not fall: {first['train_loss']:.4g} at epoch {first['epoch']} "
            f"-> {last['train_loss']:.4g} at epoch {last['epoch']}; check the DQVL report and "
            "the scaler (floored or clipped channels) or lower training.lr")


def plot_loss_curve(
    history: list[dict[str, Any]], path: Path, title: str, warning: str | None = None
) -> Path:
    """The loss curve; ``warning`` (see :func:`loss_trend_warning`) is printed on it in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(epochs, [r["train_loss"] for r in history], marker="o", ms=3, label="train")
    val = [r["val_loss"] for r in history]
    if any(v is not None and not math.isnan(v) for v in val):
        ax.plot(epochs, val, marker="s", ms=3, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked reconstruction MSE")
    ax.set_title(title)
    if warning:
        ax.set_title(f"{title}: LOSS NOT FALLING", color="red")
        ax.text(0.5, 0.02, warning.split(";")[0], transform=ax.transAxes, ha="center",
                va="bottom", color="red", fontsize=8)
    if history and min(r["train_loss"] for r in history) > 0:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        return atomic_savefig(fig, path)
    finally:
        plt.close(fig)
