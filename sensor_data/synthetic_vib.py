"""Seeded synthetic machinery vibration and the demo vibration data set.

The signal imitates an accelerometer on a rotating machine: shaft harmonics with a fixed
"machine signature" (amplitudes per axis are constants, phases are per seed), a
gear-mesh tone with shaft-rate sidebands, broadband noise and a slow speed wobble.
Faults add what a vibration analyst looks for:

- ``bearing``: an impulse train at the outer-race defect rate (BPFO ~ 3.58 x shaft), each
  impact ringing a decaying structural resonance (about 3 kHz, kept under Nyquist),
  amplitude-modulated at shaft rate (load zone);
- ``imbalance``: a larger 1x component on the radial axes (x, y, 90 degrees apart);
- ``looseness``: a sub-harmonic family (0.5x, 1.5x, 2.5x) plus many 1x harmonics.

:func:`fault_band_hz` says where each fault puts its energy so scoring tests can check
the per-band breakdown points at the right place.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from core.io import atomic_write_bytes, atomic_write_text
from core.paths import display_path
from sensor_data.files import LABELS_FILE

FAULTS: tuple[str, ...] = ("bearing", "imbalance", "looseness")
BPFO_RATIO = 3.58  # outer-race defect frequency / shaft frequency (typical rolling bearing)
GEAR_TEETH = 19
# 1x, 2x, 3x shaft harmonic amplitudes per axis (x, y radial; z axial): the machine signature.
HARMONIC_AMPS = np.array([[0.60, 0.50, 0.20], [0.30, 0.25, 0.15], [0.15, 0.12, 0.08]])
NOISE_STD = np.array([0.20, 0.20, 0.15])


def _resonance_hz(fs: float) -> float:
    """Bearing-housing resonance: ~3 kHz on a real sensor, kept well below Nyquist."""
    return min(3000.0, 0.4 * fs)


def _mesh_hz(shaft_hz: float, fs: float) -> float:
    """Gear-mesh tone, with fewer teeth when needed so it stays below fs / 4."""
    teeth = max(1, min(GEAR_TEETH, int(0.25 * fs / shaft_hz)))
    return teeth * shaft_hz


def fault_band_hz(fault: str, shaft_hz: float, fs: float) -> tuple[float, float]:
    """Frequency band (Hz) that holds most of the energy a fault adds."""
    nyquist = fs / 2
    if fault == "bearing":
        res = _resonance_hz(fs)
        return 0.8 * res, min(1.2 * res, nyquist)
    if fault == "imbalance":
        return 0.8 * shaft_hz, 1.2 * shaft_hz
    if fault == "looseness":
        return 0.35 * shaft_hz, 0.65 * shaft_hz
    raise ValueError(f"unknown fault {fault!r} (expected one of {', '.join(FAULTS)})")


def _shaft_phase(n: int, fs: float, shaft_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Shaft angle (rad) with a slow, smooth speed wobble of a few tenths of a percent."""
    t = np.arange(n) / fs
    wobble_hz = rng.uniform(0.05, 0.5, size=3)
    wobble = sum(
        rng.uniform(0.0005, 0.002) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        for f in wobble_hz
    )
    inst_hz = shaft_hz * (1.0 + wobble)
    return 2 * np.pi * np.cumsum(inst_hz) / fs


def _bearing(
    phase: np.ndarray, fs: float, shaft_hz: float, severity: float, rng: np.random.Generator
) -> np.ndarray:
    """Impacts at BPFO (with slip jitter) ringing a damped resonance, AM at shaft rate."""
    n = phase.size
    revs = phase / (2 * np.pi)
    impacts = np.arange(1, int(revs[-1] * BPFO_RATIO)) / BPFO_RATIO  # in shaft revolutions
    impacts = impacts + rng.normal(0, 0.01 / BPFO_RATIO, impacts.size)  # rolling-element slip
    idx = np.searchsorted(revs, impacts)
    idx = idx[(idx > 0) & (idx < n)]
    train = np.zeros(n)
    load_zone = 1.0 + 0.5 * np.cos(phase[idx])
    np.add.at(train, idx, load_zone * rng.uniform(0.8, 1.2, idx.size))
    res = _resonance_hz(fs)
    tau = 3.0 / res  # decays over a few cycles
    tk = np.arange(int(5 * tau * fs) + 1) / fs
    ring = np.exp(-tk / tau) * np.sin(2 * np.pi * res * tk)
    burst = fftconvolve(train, ring)[:n]
    return 2.0 * severity * burst[:, None] * np.array([1.0, 0.7, 0.3])


def make_vibration(
    duration_sec: float,
    fs: float,
    seed: int,
    shaft_hz: float = 29.5,
    fault: str | None = None,
    severity: float = 1.0,
) -> np.ndarray:
    """``(T, 3)`` float32 x/y/z acceleration (g-like units); the same seed gives the same array."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r} (expected one of {', '.join(FAULTS)})")
    n = int(round(duration_sec * fs))
    rng = np.random.default_rng(seed)
    phase = _shaft_phase(n, fs, shaft_hz, rng)
    out = np.zeros((n, 3))
    offsets = rng.uniform(0, 2 * np.pi, size=(3, 3))
    for k in range(3):
        out += HARMONIC_AMPS[k] * np.sin((k + 1) * phase[:, None] + offsets[k])
    mesh_order = _mesh_hz(shaft_hz, fs) / shaft_hz
    sidebands = 1.0 + 0.3 * np.cos(phase)
    out += np.array([0.12, 0.10, 0.15]) * (sidebands * np.sin(mesh_order * phase))[:, None]
    out += rng.normal(0, 1, size=(n, 3)) * NOISE_STD
    if fault == "bearing":
        out += _bearing(phase, fs, shaft_hz, severity, rng)
    elif fault == "imbalance":
        radial = np.stack([np.sin(phase), np.cos(phase), np.zeros(n)], axis=1)
        out += 1.2 * severity * radial
    elif fault == "looseness":
        for order, amp in ((0.5, 0.5), (1.5, 0.3), (2.5, 0.2)):
            out += severity * amp * np.sin(order * phase + rng.uniform(0, 2 * np.pi))[:, None]
        for k in range(4, 11):
            out += (
                severity
                * 0.25
                / np.sqrt(k)
                * np.sin(k * phase + rng.uniform(0, 2 * np.pi))[:, None]
                * np.array([1.0, 0.8, 0.3])
            )
    return out.astype(np.float32)


def vibration_csv_bytes(values: np.ndarray, fs: float, with_timestamp: bool = True) -> bytes:
    """CSV text ``x,y,z[,timestamp]`` (3 decimals ~ a 16-bit ADC; stamps in seconds)."""
    buf = io.BytesIO()
    if with_timestamp:
        stamps = np.arange(values.shape[0]) / fs
        table = np.column_stack([values.astype(np.float64), stamps])
        fmt, header = ["%.3f", "%.3f", "%.3f", "%.10g"], "x,y,z,timestamp"
    else:
        table, fmt, header = values, "%.3f", "x,y,z"
    np.savetxt(buf, table, fmt=fmt, delimiter=",", header=header, comments="")
    return buf.getvalue()


def write_vibration_csv(
    path: Path, values: np.ndarray, fs: float, with_timestamp: bool = True
) -> Path:
    """Write a vibration CSV atomically (a crash never leaves half a file)."""
    return atomic_write_bytes(path, vibration_csv_bytes(values, fs, with_timestamp))


# --------------------------------------------------------------------------- demo set
# (subfolder, file stem, seed offset, duration s, fault).  Sizes keep the CSVs < 10 MB total.
_DEMO: tuple[tuple[str, str, int, float, str | None], ...] = (
    *(("train", f"train_normal_{i:03d}", i, 30.0, None) for i in range(3)),
    *(("calib", f"calib_normal_{i:03d}", 100 + i, 15.0, None) for i in range(2)),
    *(("test", f"test_normal_{i:03d}", 200 + i, 10.0, None) for i in range(2)),
    *(("test", f"test_fault_{f}", 300 + i, 10.0, f) for i, f in enumerate(FAULTS)),
)


def materialise_vibration_demo(root: Path, fs: float = 2000.0, seed: int = 0) -> list[Path]:
    """Write the demo vibration set under ``root/data/local/{train,calib,test}/vib``.

    Existing files are never overwritten (skipped and reported).  Returns the files
    written by this call.
    """
    base = Path(root) / "data" / "local"
    written: list[Path] = []
    labels = ["file,label,fault_type"]

    def _put(path: Path, write: Callable[[Path], Path]) -> None:
        if path.exists():
            print(f"demo data: kept existing {display_path(path)} (not overwritten)")
            return
        written.append(write(path))

    for split, stem, offset, duration, fault in _DEMO:
        path = base / split / "vib" / f"{stem}.csv"
        signal = {"duration_sec": duration, "fs": fs, "seed": seed * 1000 + offset, "fault": fault}
        _put(path, lambda p, kw=signal: write_vibration_csv(p, make_vibration(**kw), fs))
        if split == "test":
            labels.append(f"{path.name},{'fault' if fault else 'normal'},{fault or 'none'}")
    labels_text = "\n".join(labels) + "\n"
    _put(base / "test" / "vib" / LABELS_FILE, lambda p: atomic_write_text(p, labels_text))
    return written
