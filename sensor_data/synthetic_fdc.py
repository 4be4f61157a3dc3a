"""Seeded synthetic FDC data: correlated, process-like channels with optional faults.

Channels share a few slow latent factors (as real process variables share upstream
conditions), each with its own offset and unit scale, plus AR(1) measurement noise and a
slow drift.  Faults start at ``fault_start`` and touch a quarter of the channels, so a
model trained on normal frames has something real to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from core.errors import ConfigError
from core.io import atomic_write_text

FAULTS = ("step", "drift", "noise", "stuck")
START = np.datetime64("2024-01-01T00:00:00", "ns")
PERIOD = np.timedelta64(1, "s")


def _ar1(rng: np.random.Generator, n_rows: int, n_cols: int, phi: float) -> np.ndarray:
    """Unit-variance AR(1) noise per column."""
    shocks = rng.standard_normal((n_rows, n_cols)) * np.sqrt(1.0 - phi**2)
    return lfilter([1.0], [1.0, -phi], shocks, axis=0)


def _normal_signals(rng: np.random.Generator, n_rows: int, n_channels: int) -> np.ndarray:
    """Normal operation in standardised units, shape (n_rows, n_channels)."""
    n_factors = min(3, n_channels)
    factors = _ar1(rng, n_rows, n_factors, phi=0.98)
    t = np.arange(n_rows)[:, None]
    periods = rng.uniform(200, 600, n_factors)
    factors += 0.5 * np.sin(2 * np.pi * t / periods + rng.uniform(0, 2 * np.pi, n_factors))
    loadings = rng.normal(0.0, 1.0, (n_factors, n_channels))
    noise = 0.3 * _ar1(rng, n_rows, n_channels, phi=0.7)
    drift = np.linspace(0.0, 1.0, n_rows)[:, None] * rng.normal(0.0, 0.2, n_channels)
    return factors @ loadings + noise + drift


def make_fdc_frame(
    n_rows: int,
    n_channels: int,
    seed: int,
    fault: str | None = None,
    fault_start: int | None = None,
) -> pd.DataFrame:
    """A frame with a ``timestamp`` column (1 s period) and channels ``ch_00..``."""
    if fault is not None and fault not in FAULTS:
        raise ConfigError(f"unknown synthetic fault {fault!r}; use one of {', '.join(FAULTS)}")
    rng = np.random.default_rng(seed)
    signals = _normal_signals(rng, n_rows, n_channels)
    offsets = rng.uniform(-50.0, 150.0, n_channels)
    units = 10.0 ** rng.uniform(-1.0, 1.0, n_channels)
    if fault is not None:
        rng = np.random.default_rng([seed, 1])  # own stream: normal rows equal the clean frame
        start = n_rows // 2 if fault_start is None else int(fault_start)
        n_hit = max(1, n_channels // 4)
        hit = rng.choice(n_channels, size=n_hit, replace=False)
        part = signals[start:, hit]
        if fault == "step":
            part += 3.0 * rng.choice([-1.0, 1.0], n_hit)
        elif fault == "drift":
            part += np.linspace(0.0, 4.0, len(part))[:, None] * rng.choice([-1.0, 1.0], n_hit)
        elif fault == "noise":
            part += 1.5 * rng.standard_normal(part.shape)
        else:  # stuck: the sensor freezes at its value at fault onset
            part[:] = signals[max(start - 1, 0), hit]
        signals[start:, hit] = part
    values = (signals * units + offsets).astype(np.float32)
    frame = pd.DataFrame(values, columns=[f"ch_{i:02d}" for i in range(n_channels)])
    frame.insert(0, "timestamp", START + np.arange(n_rows) * PERIOD)
    return frame


def write_fdc_files(
    folder: Path, n_files: int, n_rows: int, n_channels: int, seed: int
) -> list[Path]:
    """Write ``synthetic_000.csv``... (seed + i each) atomically; returns the paths."""
    folder = Path(folder)
    paths = []
    for i in range(n_files):
        text = make_fdc_frame(n_rows, n_channels, seed + i).to_csv(index=False)
        paths.append(atomic_write_text(folder / f"synthetic_{i:03d}.csv", text))
    return paths
