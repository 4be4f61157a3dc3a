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

Operating conditions.  ``shaft_hz`` is the nominal speed; it must lie below Nyquist
(``fs / 2``, else ValueError) and should stay under ``fs / 8`` so the shaft harmonics,
BPFO and the looseness family do not alias (above that the higher lines fold back;
low-rate test signals rely on that being allowed).  ``shaft_hz_end`` makes
the speed a slow linear ramp from ``shaft_hz`` (first sample) to ``shaft_hz_end`` (last
sample), see :func:`shaft_speed_hz`.  The wobble rides on top of either.  ``load``
(0 .. 1.5 of rated, default 1.0) scales what a machine's load changes: gear-mesh energy
most (``1 + 0.8 (load - 1)``), the 2x/3x harmonics some (``1 + 0.3 (load - 1)``), 1x a
little (``1 + 0.15 (load - 1)``) and the broadband noise slightly (``1 + 0.1 (load - 1)``);
fault signatures do not depend on load.  At ``load=1.0`` and a constant speed the output
is bit-identical to the generator before these options existed.

Demo set (:func:`materialise_vibration_demo`, fs 2000 Hz, seeds ``1000 * seed + offset``;
the trained range is 26-33 Hz and loads 0.6-1.0):

=========================  ======  ============  =====  ==================================
file                       dur. s  shaft Hz      load   role
=========================  ======  ============  =====  ==================================
train_normal_000           30      26.0          0.8    training, low end of the range
train_normal_001           30      29.5          1.0    training, middle, rated load
train_normal_002           30      33.0          0.6    training, high end, light load
calib_normal_000           15      27.8          0.9    calibration (not a training speed)
calib_normal_001           15      32.0          0.7    calibration (not a training speed)
test_normal_000            10      31.2          0.8    unseen constant speed in the range
test_normal_001            10      27.0 -> 32.0  0.7    slow speed ramp across the file
test_fault_bearing         10      29.5          1.0    outer-race bearing defect
test_fault_imbalance       10      28.0          0.9    imbalance
test_fault_looseness       10      31.0          0.8    mechanical looseness
=========================  ======  ============  =====  ==================================

``test/vib/labels.csv`` has the columns ``file,label,fault_type,shaft_hz,load``; a ramp's
``shaft_hz`` reads ``start-end`` (e.g. ``27.0-32.0``).  Files already there are never
overwritten, so a ``data/local`` written by an earlier version keeps its old set (every
file at 29.5 Hz, rated load) until its ``vib`` folders are removed.  The calibration
normals cover 27.8-32 Hz, where the test normals run: the relative error profile knows
only the calibration speeds (see the 2026-12-02 vibration figures in docs/benchmarks.md).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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
MESH_AMPS = np.array([0.12, 0.10, 0.15])
MAX_LOAD = 1.5  # generator accepts 0 .. 1.5 x rated load
# Per unit of (load - 1): 1x, 2x, 3x harmonics, gear mesh, broadband noise.
LOAD_SLOPES = {"harmonics": np.array([0.15, 0.30, 0.30]), "mesh": 0.8, "noise": 0.1}


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


def _check_speed(name: str, hz: float, fs: float) -> None:
    if not (math.isfinite(hz) and 0 < hz < fs / 2):
        raise ValueError(
            f"{name}={hz!r} Hz must be a positive shaft speed below Nyquist (fs/2 = "
            f"{fs / 2:g} Hz for fs={fs:g}); keep it under fs/8 = {fs / 8:g} Hz for a signal "
            "whose harmonics, bearing defect rate and gear mesh do not alias"
        )


def _check_conditions(
    duration_sec: float, fs: float, shaft_hz: float, shaft_hz_end: float | None, load: float
) -> int:
    """Validate the operating conditions; returns the number of samples."""
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs={fs!r} must be a positive sampling rate in Hz")
    n = int(round(duration_sec * fs)) if math.isfinite(duration_sec) else 0
    if n < 1:
        raise ValueError(f"duration_sec={duration_sec!r} at fs={fs:g} gives no sample")
    _check_speed("shaft_hz", shaft_hz, fs)
    if shaft_hz_end is not None:
        _check_speed("shaft_hz_end", shaft_hz_end, fs)
    if not (math.isfinite(load) and 0 <= load <= MAX_LOAD):
        raise ValueError(
            f"load={load!r} must be between 0 and {MAX_LOAD:g} (a fraction of rated load; "
            "1.0 = rated)"
        )
    return n


def shaft_speed_hz(
    duration_sec: float, fs: float, shaft_hz: float = 29.5, shaft_hz_end: float | None = None
) -> np.ndarray | float:
    """Nominal shaft speed (Hz, without the wobble): the constant ``shaft_hz``, or per sample
    a linear ramp from ``shaft_hz`` at the first sample to ``shaft_hz_end`` at the last."""
    n = _check_conditions(duration_sec, fs, shaft_hz, shaft_hz_end, 1.0)
    if shaft_hz_end is None:
        return shaft_hz
    return np.linspace(shaft_hz, shaft_hz_end, n)


def _shaft_phase(
    n: int, fs: float, shaft_hz: np.ndarray | float, rng: np.random.Generator
) -> np.ndarray:
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
    *,
    load: float = 1.0,
    shaft_hz_end: float | None = None,
) -> np.ndarray:
    """``(T, 3)`` float32 x/y/z acceleration (g-like units); the same seed gives the same array.

    ``shaft_hz_end`` (optional) ramps the speed linearly from ``shaft_hz`` to it across the
    file; ``load`` (0 .. 1.5, 1.0 = rated) scales mesh, harmonics and noise (module doc).
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r} (expected one of {', '.join(FAULTS)})")
    n = _check_conditions(duration_sec, fs, shaft_hz, shaft_hz_end, load)
    rng = np.random.default_rng(seed)
    speed = shaft_speed_hz(duration_sec, fs, shaft_hz, shaft_hz_end)
    phase = _shaft_phase(n, fs, speed, rng)
    # Teeth chosen for the top speed so the mesh stays below fs / 4 over a whole ramp.
    top_hz = shaft_hz if shaft_hz_end is None else max(shaft_hz, shaft_hz_end)
    dl = load - 1.0  # exactly 0.0 at rated load: every factor below is then exactly 1.0
    harmonic_amps = HARMONIC_AMPS * (1.0 + LOAD_SLOPES["harmonics"] * dl)[:, None]
    out = np.zeros((n, 3))
    offsets = rng.uniform(0, 2 * np.pi, size=(3, 3))
    for k in range(3):
        out += harmonic_amps[k] * np.sin((k + 1) * phase[:, None] + offsets[k])
    mesh_order = _mesh_hz(top_hz, fs) / top_hz
    sidebands = 1.0 + 0.3 * np.cos(phase)
    mesh_amps = MESH_AMPS * (1.0 + LOAD_SLOPES["mesh"] * dl)
    out += mesh_amps * (sidebands * np.sin(mesh_order * phase))[:, None]
    out += rng.normal(0, 1, size=(n, 3)) * (NOISE_STD * (1.0 + LOAD_SLOPES["noise"] * dl))
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
class DemoFile(NamedTuple):
    """One demo file: where it goes, its seed offset, length and operating conditions."""

    split: str  # train | calib | test
    stem: str
    offset: int  # seed = 1000 * seed + offset
    duration: float  # seconds
    fault: str | None
    shaft_hz: float
    load: float
    shaft_hz_end: float | None = None  # a linear speed ramp when set

    @property
    def speed_label(self) -> str:
        """``29.5`` for a constant speed, ``27.0-32.0`` for a ramp (labels.csv)."""
        if self.shaft_hz_end is None:
            return f"{self.shaft_hz:.1f}"
        return f"{self.shaft_hz:.1f}-{self.shaft_hz_end:.1f}"


# Conditions: see the module docstring.  Sizes keep the CSVs < 10 MB total.
_DEMO: tuple[DemoFile, ...] = (
    DemoFile("train", "train_normal_000", 0, 30.0, None, 26.0, 0.8),
    DemoFile("train", "train_normal_001", 1, 30.0, None, 29.5, 1.0),
    DemoFile("train", "train_normal_002", 2, 30.0, None, 33.0, 0.6),
    DemoFile("calib", "calib_normal_000", 100, 15.0, None, 27.8, 0.9),
    DemoFile("calib", "calib_normal_001", 101, 15.0, None, 32.0, 0.7),
    DemoFile("test", "test_normal_000", 200, 10.0, None, 31.2, 0.8),
    DemoFile("test", "test_normal_001", 201, 10.0, None, 27.0, 0.7, shaft_hz_end=32.0),
    DemoFile("test", "test_fault_bearing", 300, 10.0, "bearing", 29.5, 1.0),
    DemoFile("test", "test_fault_imbalance", 301, 10.0, "imbalance", 28.0, 0.9),
    DemoFile("test", "test_fault_looseness", 302, 10.0, "looseness", 31.0, 0.8),
)


def materialise_vibration_demo(root: Path, fs: float = 2000.0, seed: int = 0) -> list[Path]:
    """Write the demo vibration set under ``root/data/local/{train,calib,test}/vib``.

    Existing files are never overwritten (skipped and reported).  Returns the files
    written by this call.
    """
    base = Path(root) / "data" / "local"
    written: list[Path] = []
    labels = ["file,label,fault_type,shaft_hz,load"]

    def _put(path: Path, write: Callable[[Path], Path]) -> None:
        if path.exists():
            print(f"demo data: kept existing {display_path(path)} (not overwritten)")
            return
        written.append(write(path))

    for item in _DEMO:
        path = base / item.split / "vib" / f"{item.stem}.csv"
        signal = {
            "duration_sec": item.duration,
            "fs": fs,
            "seed": seed * 1000 + item.offset,
            "fault": item.fault,
            "shaft_hz": item.shaft_hz,
            "shaft_hz_end": item.shaft_hz_end,
            "load": item.load,
        }
        _put(path, lambda p, kw=signal: write_vibration_csv(p, make_vibration(**kw), fs))
        if item.split == "test":
            kind = "fault" if item.fault else "normal"
            labels.append(
                f"{path.name},{kind},{item.fault or 'none'},{item.speed_label},{item.load:.2f}"
            )
    labels_text = "\n".join(labels) + "\n"
    _put(base / "test" / "vib" / LABELS_FILE, lambda p: atomic_write_text(p, labels_text))
    return written
