"""Morlet CWT scalograms of 3-axis vibration windows: a PyWavelets reference and a fast path.

Both paths compute the same image, step by step:

1. Complex Morlet CWT, wavelet ``cmor1.5-1.0`` (PyWavelets' definition
   ``psi(t) = (pi*B)**-0.5 * exp(-t**2/B) * exp(2j*pi*C*t)``, B=1.5, C=1.0); complex so that
   the magnitude is the local amplitude envelope, not an oscillating real part.  Frequencies
   are log-spaced from ``freq_max`` (image row 0, the usual image convention) down to
   ``freq_min`` (last row); scales come from ``pywt.frequency2scale``.  The signal is
   zero-padded at both ends, exactly as ``pywt.cwt`` does.
2. Magnitude ``|W(f, t)|``.
3. Resize ``(n_freqs, T) -> (H, W)``: time by area averaging (column ``j`` is the mean over
   samples ``floor(j*T/W) .. ceil((j+1)*T/W) - 1``, i.e. ``adaptive_avg_pool1d``), then
   frequency by linear interpolation (``F.interpolate`` bilinear, ``align_corners=False``)
   when ``n_freqs < H`` or by area averaging when ``n_freqs > H``.  Area in time keeps short
   impulses visible, which point sampling would miss.
4. ``log1p`` (optional), then per-image normalisation over all three axes together (so the
   relative level of x/y/z survives): robust ``(v - median) / IQR``, ``zscore`` or ``minmax``.
   The divisor is floored at 1e-3 of the image's range (and 1e-12), which only matters for
   near-flat or very sparse images (a pure tone in silence): values stay within +-1000.

Steps 3-4 are one shared function (:func:`finish_scalogram`), so the paths differ only in
how ``|W|`` is obtained.  On CPU it runs its heavy steps with numpy, to the same
definitions as above: the frequency resize is a blend of two fixed rows with the weights
``F.interpolate`` computes (equal to float rounding), ``log1p`` is numpy's, and the robust
quantiles are numpy's 'linear' ones, exactly, by selection within value brackets that a
sorted strided sample places around the wanted ranks (checked by counts; several times
faster than ``np.quantile``).

Reference (:func:`reference_scalogram`): ``pywt.cwt(method="fft")`` per window.  PyWavelets
samples an integrated wavelet tabulated on ``2**precision`` points; at large scales the
default precision (12) makes a staircase filter whose output is mostly artefact (at 0.5 Hz
and fs 2000 Hz, scale 4000, the lowest row is off by >100 %), so the reference uses
:func:`reference_precision`: a grid step of at most 1/256 sample at the largest scale,
capped at precision 22 (there: 0.01 % mean error on the lowest row, 0.2 % on the worst).

Fast path (:class:`BatchedCwt`): the same filter as PyWavelets (difference of the wavelet's
integral at the sample edges, times ``sqrt(scale)``, same alignment) but from the closed-form
integral (complex ``erf``), so it is free of the tabulation error; taps where the Gaussian
envelope is below 2e-9 of its peak (beyond 5.5 scale units) are dropped.  One FFT of each
padded signal per FFT length, then per frequency row a product with the precomputed filter
spectrum and an inverse FFT.  Rows whose filter is narrow-band are computed on a coarse time
grid: the rows of one decimation ``D`` share one circular run of ``N/D`` spectrum bins that
holds all their filters (a slice, no gather), whose inverse transform gives each complex
coefficient exactly at every ``D``-th sample (``fs / D >= oversample * f``, default 4); the
magnitude is cubic-interpolated back before the area average.  Both are folded into one
banded pooling matrix per group, applied as a batched matmul over blocks of 8 columns
(each block reads only the samples its columns need).  Filter taps beyond the lags that can
reach the window are free; for wavelets longer than the window they are tapered smoothly so
the spectrum stays compact enough to decimate.  On CPU the work runs in cache-sized steps
(a few windows per pass, ~2 MiB of complex values per step).  Agreement with the reference
(tests and benchmark): Pearson >= 0.999 per image (measured >= 0.99999) and max
|difference| <= 0.02 of the image's range (measured ~0.01 on the benchmark windows and on
the tests' white noise; ~0.03 on pure white noise at fs 2000 Hz, 0.5-1000 Hz, where the
0.5-8 Hz rows' envelopes are the least smooth for their coarse grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from scipy.special import erf

from core.errors import DataError

# Bump when the image definition or the fast path's numerics change: it keys the caches.
CODE_VERSION = "dsp.cwt/2"
WAVELET = "cmor1.5-1.0"
_BANDWIDTH = 1.5  # B of cmorB-C
_CENTER = 1.0  # C of cmorB-C
_SUPPORT = 8.0  # PyWavelets tabulates cmor on [-8, 8]
NORMALIZATIONS = ("robust", "zscore", "minmax")
_QUANTILE_MAX_NUMEL = 1 << 24
_NORM_REL_FLOOR = 1e-3  # normalisation divisor >= this fraction of the image's range ...
_NORM_EPS = 1e-12  # ... and >= this: a flat image stays flat instead of NaN
_BAND_TOL = 1e-6  # largest filter gain (relative to its peak) allowed outside a decimated band
_ENVELOPE_CUT = 5.5  # filter taps beyond +-5.5 scale units (envelope < 2e-9) are dropped
# FFT sizes c * 2**k: torch's CPU FFT runs these fastest (27 * 5 or 25 are ~1.5x slower per point)
_FFT_ODD_FACTORS = (1, 3, 5, 9, 15)
_MIN_COARSE_SAMPLES = 32  # a decimated row keeps at least this many samples per window


@dataclass(frozen=True)
class CwtSpec:
    """Everything that defines a scalogram image (also the cache key)."""

    fs: float
    freq_min: float
    freq_max: float
    n_freqs: int
    image_size: int
    log1p: bool = True
    normalization: str = "robust"

    def __post_init__(self) -> None:
        if not 0 < self.freq_min < self.freq_max <= self.fs / 2:
            raise ValueError(
                f"CwtSpec: need 0 < freq_min < freq_max <= fs/2, got freq_min={self.freq_min}, "
                f"freq_max={self.freq_max}, fs={self.fs}"
            )
        if self.n_freqs < 1 or self.image_size < 1:
            raise ValueError("CwtSpec: n_freqs and image_size must be positive")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"CwtSpec: normalization must be one of {', '.join(NORMALIZATIONS)}, "
                f"got {self.normalization!r}"
            )

    @classmethod
    def from_config(cls, cfg: Any) -> CwtSpec:
        """Build from a :class:`core.config.SwinMAEConfig`."""
        return cls(
            fs=float(cfg.data.fs),
            freq_min=float(cfg.cwt.freq_min),
            freq_max=float(cfg.cwt.freq_max),
            n_freqs=int(cfg.cwt.n_freqs),
            image_size=int(cfg.image.size),
            log1p=bool(cfg.cwt.log1p),
            normalization=str(cfg.cwt.normalization),
        )


# --------------------------------------------------------------------------- frequency grid
def frequencies(spec: CwtSpec) -> np.ndarray:
    """Row frequencies in Hz before resizing: log-spaced, row 0 = ``freq_max`` (descending)."""
    return np.geomspace(spec.freq_max, spec.freq_min, spec.n_freqs)


def scales(spec: CwtSpec) -> np.ndarray:
    """PyWavelets scales of :func:`frequencies` (``scale = C * fs / f``)."""
    return np.asarray(pywt.frequency2scale(WAVELET, frequencies(spec) / spec.fs), dtype=float)


def image_row_frequencies(spec: CwtSpec) -> np.ndarray:
    """Frequency (Hz) at the centre of each of the ``image_size`` image rows.

    Follows the frequency resize: the row's fractional position in the scalogram rows,
    interpolated geometrically (rows are log-spaced).
    """
    n, h = spec.n_freqs, spec.image_size
    if n == 1:
        return np.full(h, spec.freq_max)
    pos = np.clip((np.arange(h) + 0.5) * n / h - 0.5, 0.0, n - 1.0)
    log_f = np.log(frequencies(spec))
    return np.clip(np.exp(np.interp(pos, np.arange(n), log_f)), spec.freq_min, spec.freq_max)


def reference_precision(spec: CwtSpec) -> int:
    """PyWavelets ``precision`` giving a tabulation step <= 1/256 sample at the largest scale."""
    return int(np.clip(math.ceil(math.log2(2 * _SUPPORT * 256 * scales(spec).max())), 12, 22))


# --------------------------------------------------------------------------- shared finish
def _use_numpy(t: torch.Tensor) -> bool:
    """Whether to run a step with numpy: on CPU several of its kernels (selection, log1p,
    complex abs, small matmuls) are much faster than torch's; elsewhere torch runs it."""
    return t.device.type == "cpu"


def _column_spans(n_samples: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample spans ``[lo, hi)`` averaged into each column (``adaptive_avg_pool1d``'s)."""
    j = np.arange(width)
    return (j * n_samples) // width, -((-(j + 1) * n_samples) // width)


# Exact quantiles: every 11th value (prime: no aliasing with the image's rows and columns)
# locates each wanted rank to within +- 64 sample ranks (measured on 224x224 scalograms of
# vibration and white noise: within 39); counts then verify the bracket.  A finer sample
# than every 61st costs a longer sort but leaves ~4x fewer candidates to select among.
_SAMPLE_STRIDE = 11
_SAMPLE_MARGIN = 64


def _adjacent_order_statistics(values: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, ...]:
    """``sorted(values)[k]`` and ``sorted(values)[min(k + 1, n - 1)]`` for each ``k`` in
    ``ranks``, of a 1-D array, without selecting over all of it.

    A sorted strided sample gives a value bracket ``[lo, hi]`` around each rank; one pass
    counts the values below ``lo`` and gathers those inside, and only these few are
    partitioned.  The counts prove the bracket holds both ranks, else the whole array is
    partitioned: the result is always exact.
    """
    n = values.size
    upper = np.minimum(ranks + 1, n - 1)
    if n < 64 * _SAMPLE_STRIDE:
        part = np.partition(values, np.unique(np.concatenate([ranks, upper])))
        return part[ranks], part[upper]
    sample = np.sort(values[::_SAMPLE_STRIDE])
    low, high = np.empty(ranks.size, values.dtype), np.empty(ranks.size, values.dtype)
    for i, (k0, k1) in enumerate(zip(ranks.tolist(), upper.tolist(), strict=True)):
        pos = k0 * sample.size // n
        inside = values >= sample[max(pos - _SAMPLE_MARGIN, 0)]
        below = n - np.count_nonzero(inside)
        np.logical_and(inside, values <= sample[min(pos + _SAMPLE_MARGIN, sample.size - 1)],
                       out=inside)
        candidates = values[inside]
        if below <= k0 and k1 < below + candidates.size:
            candidates.partition(k0 - below)
            low[i] = candidates[k0 - below]
            high[i] = candidates[k0 - below + 1 :].min() if k1 > k0 else low[i]
        else:  # the sample misjudged this rank: select over everything
            part = np.partition(values, (k0, k1))
            low[i], high[i] = part[k0], part[k1]
    return low, high


def _linear_quantiles(values: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """``np.quantile(values, qs)`` ('linear') of a 1-D array, bit for bit (same float64
    interpolation), from :func:`_adjacent_order_statistics`: ~5x faster on images."""
    virtual = (values.size - 1) * np.asarray(qs, dtype=np.float64)
    ranks = np.floor(virtual).astype(np.int64)
    gamma = virtual - ranks
    low, high = _adjacent_order_statistics(values, ranks)
    diff = high - low
    out = low + diff * gamma
    np.subtract(high, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _quantiles(flat: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """(len(qs), B) linear-interpolated quantiles per row with torch (off the CPU path:
    there :func:`_robust_rows_` selects with numpy, several times faster than a sort)."""
    q = torch.tensor(qs, dtype=flat.dtype, device=flat.device)
    rows = max(1, _QUANTILE_MAX_NUMEL // flat.shape[1])  # torch.quantile's input size limit
    return torch.cat([torch.quantile(part, q, dim=1) for part in flat.split(rows)], dim=1)


def _magnitude(coef: torch.Tensor) -> torch.Tensor:
    """``|coef|``: numpy's on CPU (about 2x faster than ``sqrt(re**2 + im**2)`` in torch,
    4x faster than torch's complex ``abs``), that formula elsewhere."""
    if _use_numpy(coef):
        return torch.from_numpy(np.abs(coef.numpy()))
    parts = torch.view_as_real(coef)
    re, im = parts[..., 0], parts[..., 1]
    return (re * re).addcmul_(im, im).sqrt_()


def _robust_rows_(rows: np.ndarray) -> None:
    """The robust branch of :func:`_normalise` on a (B, n) array in place, image by image
    so that each is read from cache: the same operations in the same precision."""
    for row in rows:
        q1, median, q3 = _linear_quantiles(row, (0.25, 0.5, 0.75)).astype(row.dtype)
        scale = max(q3 - q1, _NORM_REL_FLOOR * (row.max() - row.min()), row.dtype.type(_NORM_EPS))
        np.subtract(row, median, out=row)
        np.divide(row, scale, out=row)


def _normalise(img: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image normalisation over (3, H, W), in place; ``img`` is contiguous (B, 3, H, W)."""
    flat = img.flatten(1)
    if mode == "robust" and _use_numpy(flat):
        _robust_rows_(flat.numpy())
        return img
    if mode == "robust":
        q = _quantiles(flat, (0.25, 0.5, 0.75))
        centre, scale = q[1], q[2] - q[0]
    elif mode == "zscore":
        centre, scale = flat.mean(dim=1), flat.std(dim=1, unbiased=False)
    elif mode == "minmax":
        centre = flat.amin(dim=1)
        scale = flat.amax(dim=1) - centre
    else:
        raise ValueError(f"unknown normalization {mode!r}")
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    scale = torch.maximum(scale, _NORM_REL_FLOOR * spread).clamp_min(_NORM_EPS)
    flat.sub_(centre[:, None]).div_(scale[:, None])
    return img


def _row_lerp(n_rows: int, height: int, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    """(lower row, upper row, upper weight) of each output row of bilinear ``F.interpolate``
    (``align_corners=False``) from ``n_rows`` to ``height`` rows, computed as its CPU kernel
    does: source ``scale * (i + 0.5) - 0.5`` in the tensor's precision with one rounding."""
    i = np.arange(height, dtype=np.float64) + 0.5
    if dtype == torch.float32:
        scale = np.float64(np.float32(n_rows) / np.float32(height))
        source = (scale * i - 0.5).astype(np.float32)  # exact in float64: a fused multiply-add
    else:
        source = (n_rows / height) * i - 0.5
    source = np.maximum(source, 0)
    lower = source.astype(np.int64)
    return lower, np.minimum(lower + 1, n_rows - 1), source - lower


def _resize_rows(pooled: torch.Tensor, height: int, out: torch.Tensor | None) -> torch.Tensor:
    """(B, C, n, W) -> (B, C, height, W) as bilinear ``F.interpolate`` with the width unchanged
    (equal to float rounding): a blend of two fixed rows, several times faster on CPU."""
    lower, upper, weight = (torch.as_tensor(a, device=pooled.device)
                            for a in _row_lerp(pooled.shape[2], height, pooled.dtype))
    weight = weight.to(pooled.dtype)[:, None]
    img = torch.index_select(pooled, 2, lower, out=out) if out is not None else (
        pooled.index_select(2, lower))
    return img.mul_(1 - weight).addcmul_(pooled.index_select(2, upper), weight)


def _log1p_(img: torch.Tensor) -> None:
    """In place; numpy's vectorised ``log1p`` is ~10x faster than torch's on CPU."""
    if _use_numpy(img):
        values = img.numpy()
        np.log1p(values, out=values)
    else:
        img.log1p_()


def finish_scalogram(
    pooled: torch.Tensor, spec: CwtSpec, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Frequency resize, log1p and normalisation of time-pooled magnitudes.

    ``pooled`` is (B, 3, n_freqs, image_size): ``|W|`` already area-averaged in time.  The
    image is written to ``out`` (contiguous, (B, 3, H, W)) when given.
    """
    size = (spec.image_size, spec.image_size)
    if spec.n_freqs < spec.image_size:
        img = _resize_rows(pooled, spec.image_size, out)
    else:
        img = (F.adaptive_avg_pool2d(pooled, size) if spec.n_freqs > spec.image_size
               else pooled.clone(memory_format=torch.contiguous_format))
        if out is not None:
            img = out.copy_(img)
    if spec.log1p:
        _log1p_(img)
    return _normalise(img, spec.normalization)


def _check_windows(windows: np.ndarray | torch.Tensor, n_samples: int | None) -> None:
    shape = tuple(windows.shape)
    if len(shape) != 3 or shape[2] != 3 or (n_samples is not None and shape[1] != n_samples):
        want = f"(B, {n_samples if n_samples is not None else 'T'}, 3)"
        raise DataError(f"CWT input: expected windows of shape {want}, got {shape}")


# --------------------------------------------------------------------------- reference path
def reference_pooled_magnitude(
    window: np.ndarray, spec: CwtSpec, precision: int | None = None
) -> torch.Tensor:
    """(3, n_freqs, W) float64 ``|W|`` of one (T, 3) window from ``pywt.cwt``, area-averaged
    over time; ``precision`` defaults to :func:`reference_precision`."""
    window = np.asarray(window, dtype=np.float64)
    _check_windows(window[None], None)
    coefs, _ = pywt.cwt(
        window.T, scales(spec), WAVELET, sampling_period=1.0 / spec.fs, method="fft",
        axis=-1, precision=reference_precision(spec) if precision is None else precision,
    )  # (n_freqs, 3, T) complex
    mag = torch.from_numpy(np.abs(coefs).transpose(1, 0, 2).copy())
    return F.adaptive_avg_pool1d(mag, spec.image_size)


def reference_scalogram(window: np.ndarray, spec: CwtSpec) -> np.ndarray:
    """(3, H, W) float32 scalogram of one (T, 3) window with ``pywt.cwt`` (the reference)."""
    pooled = reference_pooled_magnitude(window, spec)
    return finish_scalogram(pooled[None], spec)[0].to(torch.float32).numpy()


# --------------------------------------------------------------------------- filter design
def _morlet_integral(x: np.ndarray) -> np.ndarray:
    """Closed form of ``integral_{-8}^{x} psi(t) dt`` for cmorB-C (what pywt tabulates)."""
    root_b = math.sqrt(_BANDWIDTH)
    shift = 1j * math.pi * _CENTER * root_b
    gain = 0.5 * math.exp(-((math.pi * _CENTER) ** 2) * _BANDWIDTH)
    return gain * (erf(x / root_b - shift) - erf(-_SUPPORT / root_b - shift))


def _natural_half_support(scale: float) -> int:
    """Largest |lag| with a non-zero tap in PyWavelets' filter at ``scale``."""
    n_taps = int(math.floor(2 * _SUPPORT * scale + 1e-9)) + 1
    return max((n_taps - 2) // 2 + 1, n_taps - 1 - (n_taps - 2) // 2)


def _filter_taps(scale: float, lags: np.ndarray) -> np.ndarray:
    """Taps ``h[k]`` with ``W[t] = sum_m x[m] h[t - m]`` equal to ``pywt.cwt`` at ``scale``.

    pywt convolves with the reversed conjugate integral sampled at ``-8 + n/scale``, takes
    ``-sqrt(scale) * diff`` and crops ``floor((L - 2) / 2)`` samples; this is that filter.
    """
    n_taps = int(math.floor(2 * _SUPPORT * scale + 1e-9)) + 1
    upper = n_taps - 1 - (n_taps - 2) // 2 - lags  # index of the upper integration edge

    def integral_at(n: np.ndarray) -> np.ndarray:
        inside = (n >= 0) & (n < n_taps)
        x = -_SUPPORT + np.clip(n, 0, n_taps - 1) / scale
        return np.where(inside, _morlet_integral(x), 0)

    return math.sqrt(scale) * np.conj(integral_at(upper) - integral_at(upper - 1))


def _needed_half_support(scale: float) -> int:
    """Largest |lag| kept at ``scale``: PyWavelets' support (+-8 scale units), cut where the
    Gaussian envelope is below 2e-9 of its peak (float32 cannot tell the difference)."""
    return min(_natural_half_support(scale), math.ceil(_ENVELOPE_CUT * scale))


def _fft_size(n: int) -> int:
    """Smallest ``c * 2**k >= n`` with ``c`` in :data:`_FFT_ODD_FACTORS`."""
    return min(c << max(0, math.ceil(math.log2(n / c))) for c in _FFT_ODD_FACTORS)


def _exact_reach(n_samples: int, decimation: int) -> int:
    """Largest |lag| whose tap must be exact: outputs at ``-D .. T-1+2D`` (the coarse samples
    the cubic interpolation reads) from inputs ``0 .. T-1``."""
    return n_samples + 2 * decimation - 1


def _least_length(n_samples: int, decimation: int, half_support: int) -> int:
    """Least FFT length ``N`` for rows sampled every ``decimation`` samples.

    Taps up to ``|lag| <= N - T - 2D`` cannot wrap onto the outputs that are read, which
    leaves room beyond :func:`_exact_reach` to taper a wavelet longer than the window.
    """
    return n_samples + 2 * decimation + min(half_support, 3 * n_samples)


def _filter_spectrum(scale: float, n_samples: int, decimation: int, n_fft: int) -> np.ndarray:
    """FFT (length ``n_fft``) of the circularly placed, tapered filter at ``scale``."""
    exact = _exact_reach(n_samples, decimation)
    allowed = n_fft - n_samples - 2 * decimation
    reach = min(_natural_half_support(scale), allowed)
    lags = np.arange(-reach, reach + 1)
    taps = _filter_taps(scale, lags)
    if reach > exact:  # smooth raised-cosine roll-off over the unused lags
        ramp = np.clip((np.abs(lags) - exact) / (allowed - exact), 0.0, 1.0)
        taps = taps * 0.5 * (1.0 + np.cos(np.pi * ramp))
    circular = np.zeros(n_fft, dtype=complex)
    np.add.at(circular, lags % n_fft, taps)
    return np.fft.fft(circular)


def _shared_band(spectra: np.ndarray, n_bins: int) -> tuple[int, np.ndarray]:
    """Start of one circular run of ``n_bins`` bins kept for all rows of a group (centred
    between their peaks), and which rows fit in it (gain outside <= 1e-6 of their peak).

    A shared band makes the kept spectrum one slice instead of a gather per row; a row's
    coarse samples are exact in any band that holds its filter (only their phase differs).
    """
    n = spectra.shape[1]
    power = np.abs(spectra) ** 2
    peaks = power.argmax(axis=1)
    start = (int(peaks.min()) + int(peaks.max())) // 2 - n_bins // 2
    outside = np.ones(n, dtype=bool)
    outside[(start + np.arange(n_bins)) % n] = False
    leak = power[:, outside].max(axis=1) if outside.any() else np.zeros(len(spectra))
    return start % n, leak <= _BAND_TOL**2 * power.max(axis=1)


def _circular_bins(x: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """``x[:, start : start + count]`` with the bins wrapping around the end of the spectrum."""
    end = start + count
    if end <= x.shape[1]:
        return x[:, start:end]
    return torch.cat([x[:, start:], x[:, : end - x.shape[1]]], dim=1)


_CPU_CHUNK_BYTES = 2 << 20  # complex work per step on CPU: about the L2 cache (measured best)
_CPU_PASS_WINDOWS = 8  # windows per pass on CPU (their spectra are reused by every group)
_CUDA_CHUNK_BYTES = 256 << 20  # large steps keep the GPU busy; peak memory ~ a few times this
_POOL_BLOCK_COLUMNS = 8  # image columns per block of the banded time-pooling matmul


@dataclass
class _BlockPool:
    """A banded (n_in, W) pooling matrix applied as one batched matmul over column blocks.

    Block ``b`` (``c`` columns) reads the inputs ``b * step .. b * step + L - 1``, which hold
    all its non-zero weights: about ``n_in * c`` multiply-adds per row instead of the dense
    matrix's ``n_in * W``, whose columns need only a few taps each.
    """

    step: int
    weights: torch.Tensor  # (G, L, c)
    width: int

    @property
    def n_read(self) -> int:
        """Inputs read per row (from 0; past ``n_in`` the weights are zero)."""
        return (self.weights.shape[0] - 1) * self.step + self.weights.shape[1]

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """(n, >= n_read) -> (n, W); inputs beyond the real ``n_in`` must be finite."""
        n_blocks, length, cols = self.weights.shape
        windows = values[:, : self.n_read].unfold(-1, length, self.step).transpose(0, 1)
        if _use_numpy(values):  # numpy's per-block BLAS calls: ~5x torch's bmm here
            out = torch.from_numpy(np.matmul(windows.numpy(), self.weights.numpy()))
        else:
            out = torch.matmul(windows, self.weights)  # (G, n, c)
        return out.transpose(0, 1).reshape(values.shape[0], n_blocks * cols)[:, : self.width]


def _block_pool(dense: np.ndarray, device: torch.device) -> _BlockPool:
    """:class:`_BlockPool` of a dense (n_in, W) matrix whose non-zeros advance with the column."""
    n_in, width = dense.shape
    cols = min(_POOL_BLOCK_COLUMNS, width)
    n_blocks = -(-width // cols)
    padded = np.zeros((n_in, n_blocks * cols))
    padded[:, :width] = dense
    used = (padded != 0).reshape(n_in, n_blocks, cols).any(axis=2)  # (n_in, G)
    first = used.argmax(axis=0)
    last = n_in - 1 - used[::-1].argmax(axis=0)
    b = np.arange(1, n_blocks)
    step = int((first[1:] // b).min()) if n_blocks > 1 else 1
    if step < 1:  # blocks do not advance (tiny input): one dense block
        return _BlockPool(1, torch.as_tensor(dense[None], dtype=torch.float32, device=device),
                          width)
    length = int((last - np.arange(n_blocks) * step).max()) + 1
    rows = np.zeros(((n_blocks - 1) * step + length, n_blocks * cols))
    rows[:n_in] = padded
    weights = np.stack([rows[k * step : k * step + length, k * cols : (k + 1) * cols]
                        for k in range(n_blocks)])
    return _BlockPool(step, torch.as_tensor(weights, dtype=torch.float32, device=device), width)


def _box_pool_matrix(n_samples: int, width: int) -> np.ndarray:
    """(T, W): the area average of each column (``adaptive_avg_pool1d``) as a matrix."""
    lo, hi = _column_spans(n_samples, width)
    pool = np.zeros((n_samples, width))
    for j in range(width):
        pool[lo[j] : hi[j], j] = 1.0 / (hi[j] - lo[j])
    return pool


@dataclass
class _RowGroup:
    """Rows computed with the same FFT length and decimation ``D``."""

    rows: torch.Tensor  # (R,) row indices into the scalogram
    decimation: int
    n_fft: int
    band_start: int  # first of the M = N / D spectrum bins kept (a circular run; 0 when D == 1)
    spectrum: torch.Tensor  # (R, M) complex64 filter values (1/M, 1/D, one-sample delay folded in)
    pool: _BlockPool  # |coefficients| -> W columns (cubic interpolation folded in when D > 1)
    chunk: int  # signals per step (cache-sized on CPU)


def _coarse_pool_matrix(n_samples: int, width: int, decimation: int) -> np.ndarray:
    """(n_coarse, W): cubic (Catmull-Rom) interpolation of the magnitude from every D-th
    sample, then the area average of each column (cubic keeps the envelope error small).

    Coarse sample ``c`` is time ``(c - 1) * D``: one before the window start, for the stencil.
    """
    lo, hi = _column_spans(n_samples, width)
    pool = np.zeros(((n_samples - 1) // decimation + 4, width))
    for j in range(width):
        t = np.arange(lo[j], hi[j])
        left = t // decimation
        f = (t - left * decimation) / decimation
        for offset, w in enumerate((
            (-f**3 + 2 * f**2 - f) / 2,
            (3 * f**3 - 5 * f**2 + 2) / 2,
            (-3 * f**3 + 4 * f**2 + f) / 2,
            (f**3 - f**2) / 2,
        )):
            np.add.at(pool[:, j], left + offset, w / t.size)
    return pool


class BatchedCwt:
    """Fast scalograms of (B, T, 3) windows on one device; build once per (spec, T, device).

    ``oversample``: a row is decimated by ``D`` only if the coarse rate ``fs / D`` is at least
    ``oversample`` times its centre frequency and its filter fits the kept band (gain outside
    below 1e-6 of the peak).  ``chunk_size`` caps the windows transformed at once; on CPU the
    passes are smaller still (a few windows, each step's complex work cache-resident).
    """

    def __init__(
        self,
        spec: CwtSpec,
        n_samples: int,
        device: torch.device | str | None = None,
        *,
        chunk_size: int = 64,
        oversample: float = 4.0,
    ) -> None:
        if n_samples < 2:
            raise ValueError(f"BatchedCwt: n_samples must be >= 2, got {n_samples}")
        self.spec = spec
        self.n_samples = n_samples
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.chunk_size = max(1, int(chunk_size))
        self.groups = self._plan(oversample)
        self.fft_lengths = sorted({g.n_fft for g in self.groups})
        per_pass = _CPU_PASS_WINDOWS if self.device.type == "cpu" else (
            max(1, min(g.chunk for g in self.groups) // 3))
        self._windows_per_pass = min(self.chunk_size, per_pass)

    # ------------------------------------------------------------------ planning
    def _plan(self, oversample: float) -> list[_RowGroup]:
        spec, t = self.spec, self.n_samples
        row_scales = scales(spec)
        max_dec = 1
        while t // (2 * max_dec) >= _MIN_COARSE_SAMPLES:
            max_dec *= 2
        decimation = np.ones(spec.n_freqs, dtype=int)
        for i, f in enumerate(frequencies(spec)):
            while decimation[i] < max_dec and spec.fs / (2 * decimation[i]) >= oversample * f:
                decimation[i] *= 2
        # Rows whose filter leaks out of the kept band fall back to a finer grid.
        while True:
            plans: dict[int, tuple[int, list[int], np.ndarray, int]] = {}
            failed = False
            for d in sorted(set(decimation.tolist())):
                rows = np.flatnonzero(decimation == d)
                support = max(_needed_half_support(row_scales[r]) for r in rows)
                n_fft = _fft_size(-(-_least_length(t, d, support) // d)) * d  # a multiple of D
                spectra = np.stack([_filter_spectrum(row_scales[r], t, d, n_fft) for r in rows])
                start, fits = (0, np.ones(len(rows), dtype=bool)) if d == 1 else (
                    _shared_band(spectra, n_fft // d))
                decimation[rows[~fits]] //= 2
                failed |= not fits.all()
                plans[d] = (n_fft, rows.tolist(), spectra, start)
            if not failed:
                break
        return [self._group(d, *plan) for d, plan in sorted(plans.items())]

    def _group(
        self, d: int, n_fft: int, rows: list[int], spectra: np.ndarray, start: int
    ) -> _RowGroup:
        dev, t, width = self.device, self.n_samples, self.spec.image_size
        m = n_fft // d
        if d == 1:
            values = spectra
            pool = _box_pool_matrix(t, width)
        else:
            band = np.arange(m)
            # 1/D restores the amplitude; the phase ramp delays by one coarse sample so that
            # output 0 is time -D and the samples read are a plain slice.
            values = spectra[:, (start + band) % n_fft] / d * np.exp(-2j * np.pi * band / m)
            pool = _coarse_pool_matrix(t, width, d)
        budget = _CPU_CHUNK_BYTES if dev.type == "cpu" else _CUDA_CHUNK_BYTES
        return _RowGroup(
            rows=torch.as_tensor(rows, dtype=torch.long, device=dev),
            decimation=d,
            n_fft=n_fft,
            band_start=start,
            spectrum=torch.as_tensor(values / m, dtype=torch.complex64, device=dev),
            pool=_block_pool(pool, dev),
            chunk=max(1, budget // (values.size * 8)),
        )

    # ------------------------------------------------------------------ transform
    def _pooled_rows(self, g: _RowGroup, x: torch.Tensor) -> torch.Tensor:
        """(s, N) signal spectra -> (s, R, W) pooled ``|W|`` of the group's rows."""
        s, (n_rows, m) = x.shape[0], g.spectrum.shape
        z = _circular_bins(x, g.band_start, m)[:, None, :] * g.spectrum
        # All M outputs: a contiguous magnitude is faster than one of the n_read wanted.
        mag = _magnitude(torch.fft.ifft(z, dim=-1, norm="forward")).view(s * n_rows, m)
        if mag.shape[1] < g.pool.n_read:  # block windows reach past the transform: zeros
            mag = F.pad(mag, (0, g.pool.n_read - mag.shape[1]))
        return g.pool(mag).view(s, n_rows, -1)

    def _pooled_pass(self, signals: torch.Tensor) -> torch.Tensor:
        """(S, T) -> (S, n_freqs, W): one forward FFT per length, then each group in steps."""
        out = signals.new_empty(signals.shape[0], self.spec.n_freqs, self.spec.image_size)
        spectra = {n: torch.fft.fft(signals, n=n, dim=-1) for n in self.fft_lengths}
        for g in self.groups:
            for start in range(0, signals.shape[0], g.chunk):
                x = spectra[g.n_fft][start : start + g.chunk]
                out[start : start + g.chunk].index_copy_(1, g.rows, self._pooled_rows(g, x))
        return out

    @torch.no_grad()
    def pooled_magnitude(self, signals: torch.Tensor) -> torch.Tensor:
        """(S, T) signals -> (S, n_freqs, W) float32 ``|W|`` area-averaged over time."""
        signals = signals.to(device=self.device, dtype=torch.float32)
        per_pass = 3 * self._windows_per_pass
        return torch.cat([self._pooled_pass(s) for s in signals.split(per_pass)])

    @torch.no_grad()
    def __call__(
        self, windows: np.ndarray | torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, 3) windows -> (B, 3, H, W) float32 scalograms on ``self.device``.

        ``out``: a contiguous float32 tensor of that shape on ``self.device`` to write into
        and return; reusing one spares a fresh allocation per call, whose first touch costs
        about 0.3 ms per 224x224 image on CPU (page faults).
        """
        _check_windows(windows, self.n_samples)
        x = torch.as_tensor(windows).to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(x.sum(dtype=torch.float64))):
            raise DataError("CWT input: windows contain NaN or infinite values")
        size = self.spec.image_size
        shape = (x.shape[0], 3, size, size)
        if out is None:
            out = x.new_empty(shape)
        elif (tuple(out.shape) != shape or out.dtype != torch.float32
              or out.device != x.device or not out.is_contiguous()):
            raise ValueError(f"BatchedCwt: out must be a contiguous float32 {shape} tensor on "
                             f"{x.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")
        for start in range(0, x.shape[0], self._windows_per_pass):
            chunk = x[start : start + self._windows_per_pass]
            b = chunk.shape[0]
            signals = chunk.transpose(1, 2).reshape(b * 3, self.n_samples)
            pooled = self._pooled_pass(signals).view(b, 3, self.spec.n_freqs, size)
            finish_scalogram(pooled, self.spec, out=out[start : start + b])
        return out
