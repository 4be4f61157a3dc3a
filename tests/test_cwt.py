"""Fast CWT scalograms: agreement with the PyWavelets reference, image properties, cache."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import DataError
from dsp import cwt, scalogram_cache
from dsp.cwt import (
    BatchedCwt,
    CwtSpec,
    finish_scalogram,
    frequencies,
    image_row_frequencies,
    reference_scalogram,
    scales,
)
from dsp.scalogram_cache import compute_scalograms
from streams.swinmae import SwinMAEConfig

FS, T, SIZE = 1000.0, 1000, 64
# freq_min 4 Hz: the lowest wavelets (+-8 scale units = 2000 samples) are longer than the
# 1 s window, so the tapered-filter path is exercised as well as decimation.
SPEC = CwtSpec(fs=FS, freq_min=4.0, freq_max=450.0, n_freqs=48, image_size=SIZE)
MIN_PEARSON = 0.999  # agreement bar, per image (measured >= 0.999999)
MAX_ERR = 0.02  # max |ours - reference| per image, as a fraction of the reference's range
# (measured <= 0.0096, on white noise)
TONES = (9.0, 60.0, 310.0)


def _tone(f0: float) -> np.ndarray:
    t = np.arange(T) / FS
    return np.stack([a * np.sin(2 * np.pi * f0 * t + p) for a, p in ((1, 0), (0.5, 1), (2, 2))], 1)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(T) / FS
    harmonics = sum(np.sin(2 * np.pi * 37.0 * k * t + k) / k for k in range(1, 6))
    mix = harmonics[:, None] * np.array([1.0, 0.6, 0.3]) + 0.05 * rng.standard_normal((T, 3))
    mix[[150, 480, 820], [0, 1, 2]] += 6.0  # impulses
    out = {"noise": rng.standard_normal((T, 3)), "harmonics+impulses": mix}
    out.update({f"tone{f0:g}": _tone(f0) for f0 in TONES})
    return {k: v.astype(np.float32) for k, v in out.items()}


SIGNALS = _signals()


@pytest.fixture(scope="module")
def fast() -> BatchedCwt:
    return BatchedCwt(SPEC, T)


@pytest.fixture(scope="module")
def pairs(fast: BatchedCwt) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (ours, reference) images of every test signal."""
    ours = fast(np.stack(list(SIGNALS.values()))).numpy()
    return {
        name: (img, reference_scalogram(window, SPEC))
        for (name, window), img in zip(SIGNALS.items(), ours, strict=True)
    }


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    pearson = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
    return pearson, float(np.abs(ours - ref).max() / (ref.max() - ref.min()))


def test_frequency_grid_is_log_spaced_and_descending() -> None:
    f = frequencies(SPEC)
    assert f.shape == (48,)
    assert f[0] == pytest.approx(450.0) and f[-1] == pytest.approx(4.0)
    assert np.allclose(f[1:] / f[:-1], (4.0 / 450.0) ** (1 / 47))
    assert np.allclose(scales(SPEC), FS / f)  # cmor C = 1: scale = fs / f
    rows = image_row_frequencies(SPEC)
    assert rows.shape == (SIZE,) and np.all(np.diff(rows) < 0)
    assert rows.min() >= 4.0 and rows.max() <= 450.0


def test_spec_from_config_and_validation() -> None:
    cfg = SwinMAEConfig()
    spec = CwtSpec.from_config(cfg)
    assert (spec.fs, spec.image_size) == (cfg.data.fs, cfg.image.size)
    assert spec.n_freqs == cfg.cwt.n_freqs
    assert (spec.freq_min, spec.freq_max) == (cfg.cwt.freq_min, cfg.cwt.freq_max)
    assert (spec.log1p, spec.normalization) == (cfg.cwt.log1p, cfg.cwt.normalization)
    with pytest.raises(ValueError, match="fs/2"):
        CwtSpec(fs=1000, freq_min=5, freq_max=600, n_freqs=8, image_size=16)
    with pytest.raises(ValueError, match="normalization"):
        CwtSpec(fs=1000, freq_min=5, freq_max=400, n_freqs=8, image_size=16, normalization="l2")


def test_plan_decimates_low_rows(fast: BatchedCwt) -> None:
    decimations = {g.decimation: len(g.rows) for g in fast.groups}
    assert decimations[1] < SPEC.n_freqs / 2  # most rows are computed on a coarse grid
    assert max(decimations) >= 8
    assert sum(decimations.values()) == SPEC.n_freqs


@pytest.mark.parametrize("name", list(SIGNALS))
def test_agrees_with_pywavelets_reference(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], name: str
) -> None:
    ours, ref = pairs[name]
    pearson, max_err = _agreement(ours, ref)
    assert pearson >= MIN_PEARSON, f"{name}: Pearson {pearson:.5f}"
    assert max_err <= MAX_ERR, f"{name}: max error {max_err:.4f} of the range"
    for axis in range(3):  # per axis too: the three channels are not mixed up
        assert np.corrcoef(ours[axis].ravel(), ref[axis].ravel())[0, 1] >= MIN_PEARSON


@pytest.mark.parametrize("f0", TONES)
def test_pure_tone_peaks_at_its_row(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], fast: BatchedCwt, f0: float
) -> None:
    centre = slice(SIZE // 4, 3 * SIZE // 4)  # away from the zero-padded edges
    ours, _ = pairs[f"tone{f0:g}"]
    peak = int(ours[:, :, centre].mean(axis=(0, 2)).argmax())
    closest = int(np.abs(np.log(image_row_frequencies(SPEC) / f0)).argmin())
    assert abs(peak - closest) <= 1, (peak, closest)
    # Same on the scalogram rows themselves (before the resize).
    pooled = fast.pooled_magnitude(torch.from_numpy(_tone(f0)[:, 0].astype(np.float32))[None])
    row = int(pooled[0, :, centre].mean(dim=1).argmax())
    assert abs(row - int(np.abs(np.log(frequencies(SPEC) / f0)).argmin())) <= 1


def test_shapes_dtypes_and_input_types(fast: BatchedCwt) -> None:
    batch = np.stack([SIGNALS["noise"], SIGNALS["tone60"]])
    out = fast(batch)
    assert out.shape == (2, 3, SIZE, SIZE) and out.dtype == torch.float32
    assert out.device.type == "cpu" and torch.isfinite(out).all()
    assert torch.equal(fast(torch.from_numpy(batch)), out)
    assert fast(batch[:0]).shape == (0, 3, SIZE, SIZE)
    ref = reference_scalogram(SIGNALS["noise"], SPEC)
    assert ref.shape == (3, SIZE, SIZE) and ref.dtype == np.float32


def test_bad_input_is_a_clear_error(fast: BatchedCwt) -> None:
    with pytest.raises(DataError, match=r"expected windows of shape \(B, 1000, 3\)"):
        fast(np.zeros((2, 999, 3), dtype=np.float32))
    with pytest.raises(DataError, match="expected windows"):
        fast(np.zeros((2, 1000), dtype=np.float32))
    bad = SIGNALS["noise"].copy()
    bad[10, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fast(bad[None])


def test_log1p_switch() -> None:
    spec_lin = CwtSpec(fs=FS, freq_min=4.0, freq_max=450.0, n_freqs=48, image_size=SIZE,
                       log1p=False, normalization="minmax")
    spec_log = CwtSpec(fs=FS, freq_min=4.0, freq_max=450.0, n_freqs=48, image_size=SIZE,
                       log1p=True, normalization="minmax")
    window = 5.0 * SIGNALS["harmonics+impulses"]  # wide dynamic range: log1p matters
    lin = BatchedCwt(spec_lin, T)(window[None])[0].numpy()
    log = BatchedCwt(spec_log, T)(window[None])[0].numpy()
    pearson, max_err = _agreement(lin, reference_scalogram(window, spec_lin))
    assert pearson >= MIN_PEARSON and max_err <= MAX_ERR
    # log1p is monotone: the pixel order is kept, but the values are compressed.
    order = np.argsort(lin.ravel(), kind="stable")
    assert np.all(np.diff(log.ravel()[order]) >= -1e-5)
    assert np.median(log) > np.median(lin) + 0.05


@pytest.mark.parametrize("mode", ["robust", "zscore", "minmax"])
def test_normalisation_modes(mode: str) -> None:
    spec = CwtSpec(fs=FS, freq_min=4.0, freq_max=450.0, n_freqs=32, image_size=SIZE,
                   normalization=mode)
    batch = np.stack([SIGNALS["noise"], 3.0 * SIGNALS["harmonics+impulses"]])
    for img in BatchedCwt(spec, T)(batch).numpy().astype(np.float64):
        if mode == "robust":
            q25, q50, q75 = np.quantile(img, [0.25, 0.5, 0.75])
            assert abs(q50) < 1e-5 and q75 - q25 == pytest.approx(1.0, abs=1e-5)
        elif mode == "zscore":
            assert abs(img.mean()) < 1e-5 and img.std() == pytest.approx(1.0, abs=1e-5)
        else:
            assert img.min() == pytest.approx(0.0, abs=1e-6)
            assert img.max() == pytest.approx(1.0, abs=1e-6)


def test_flat_window_gives_finite_image(fast: BatchedCwt) -> None:
    out = fast(np.zeros((1, T, 3), dtype=np.float32))
    assert torch.equal(out, torch.zeros_like(out))


def test_sparse_image_stays_bounded(fast: BatchedCwt) -> None:
    """One impulse in silence: the IQR is ~0, so the divisor floor (1e-3 of the range) keeps
    the robust image within +-1000 (float16-safe) and the two paths still agree."""
    window = np.zeros((T, 3), dtype=np.float32)
    window[T // 2, 0] = 1.0
    ours = fast(window[None])[0].numpy()
    assert np.abs(ours).max() <= 1000.0 + 1e-3 and ours.max() > 900.0
    pearson, max_err = _agreement(ours, reference_scalogram(window, SPEC))
    assert pearson >= MIN_PEARSON and max_err <= MAX_ERR


def test_chunking_matches_one_batch() -> None:
    batch = np.stack([SIGNALS[k] for k in ("noise", "tone9", "tone310", "harmonics+impulses")])
    whole = BatchedCwt(SPEC, T, chunk_size=64)(batch)
    split = BatchedCwt(SPEC, T, chunk_size=1)(batch)
    assert torch.allclose(whole, split, rtol=0, atol=1e-5)
    via_cache_fn = compute_scalograms(batch, SPEC, "cpu", batch_size=3)
    assert np.allclose(via_cache_fn, whole.numpy(), rtol=0, atol=1e-5)


def test_torch_only_path_matches_cpu_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps that use numpy on CPU run in torch elsewhere (CUDA): same images."""
    batch = np.stack([SIGNALS[k] for k in ("noise", "tone9", "harmonics+impulses")])
    for mode in ("robust", "minmax"):
        spec = CwtSpec(fs=FS, freq_min=4.0, freq_max=450.0, n_freqs=48, image_size=SIZE,
                       normalization=mode)
        cpu = BatchedCwt(spec, T)(batch)
        with monkeypatch.context() as m:
            m.setattr(cwt, "_use_numpy", lambda t: False)
            generic = BatchedCwt(spec, T)(batch)
        assert torch.allclose(cpu, generic, rtol=0, atol=1e-4)


def _quantile_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    misleading = rng.uniform(0.0, 0.5, 50_000).astype(np.float32)
    misleading[:: cwt._SAMPLE_STRIDE] = 1.0  # the strided sample sees only the maximum
    return {
        "image-sized": np.log1p(rng.lognormal(size=3 * 224 * 224)).astype(np.float32),
        "ties": rng.integers(0, 5, 40_000).astype(np.float32),
        "constant": np.full(30_000, 2.5, dtype=np.float32),
        "sorted": np.sort(rng.standard_normal(20_000)).astype(np.float32),
        "misleading sample": misleading,
        "float64": rng.standard_normal(25_000),
        "small": rng.standard_normal(37).astype(np.float32),
        "two": np.array([3.0, -1.0], dtype=np.float32),
        "one": np.array([7.0], dtype=np.float32),
    }


@pytest.mark.parametrize("name", list(_quantile_cases()))
def test_linear_quantiles_equal_numpy(name: str) -> None:
    values = _quantile_cases()[name]
    for qs in ((0.25, 0.5, 0.75), (0.0, 0.1, 1.0)):
        ours = cwt._linear_quantiles(values.copy(), qs)
        assert np.array_equal(ours, np.quantile(values, qs)), (name, qs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("rows", "height"), [(48, 64), (96, 224), (5, 7), (1, 4)])
def test_row_resize_equals_bilinear_interpolate(dtype: torch.dtype, rows: int, height: int) -> None:
    pooled = torch.rand(2, 3, rows, 16, dtype=dtype, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(pooled, size=(height, 16), mode="bilinear", align_corners=False)
    ours = cwt._resize_rows(pooled, height, None)
    assert ours.dtype == dtype and ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


def test_constant_pooled_image_finishes_to_zeros() -> None:
    pooled = torch.full((2, 3, SPEC.n_freqs, SIZE), 0.7)
    assert torch.equal(finish_scalogram(pooled, SPEC), torch.zeros(2, 3, SIZE, SIZE))


@pytest.mark.parametrize(
    ("n_samples", "width", "decimation"),
    [(1000, 64, 1), (1000, 64, 4), (4000, 224, 2), (4000, 224, 64), (5, 16, 1)],
)
def test_block_pool_equals_dense_matmul(n_samples: int, width: int, decimation: int) -> None:
    dense = (cwt._box_pool_matrix(n_samples, width) if decimation == 1
             else cwt._coarse_pool_matrix(n_samples, width, decimation))
    pool = cwt._block_pool(dense, torch.device("cpu"))
    values = torch.rand(6, max(pool.n_read, dense.shape[0]), dtype=torch.float64)
    ref = values[:, : dense.shape[0]] @ torch.from_numpy(dense)
    assert torch.allclose(pool(values.float()).double(), ref, rtol=1e-5, atol=1e-6)


class _CountingCwt(BatchedCwt):
    calls = 0

    def __call__(self, windows, out=None):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        return super().__call__(windows, out=out)


def test_cache_hit_does_not_recompute(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scalogram_cache, "BatchedCwt", _CountingCwt)
    _CountingCwt.calls = 0
    windows = np.stack([SIGNALS["noise"], SIGNALS["tone60"], SIGNALS["tone9"]])
    first = compute_scalograms(windows, SPEC, "cpu", batch_size=2, cache_dir=tmp_path)
    assert _CountingCwt.calls == 2  # two batches
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and re.fullmatch(r"[0-9a-f]{64}\.npy", files[0].name)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp file

    again = compute_scalograms(windows, SPEC, "cpu", batch_size=2, cache_dir=tmp_path)
    assert _CountingCwt.calls == 2  # hit: nothing recomputed
    assert np.array_equal(first, again) and again.dtype == np.float32

    other_spec = CwtSpec(fs=FS, freq_min=4.0, freq_max=450.0, n_freqs=40, image_size=SIZE)
    compute_scalograms(windows, other_spec, "cpu", batch_size=2, cache_dir=tmp_path)
    assert _CountingCwt.calls == 4  # different spec: miss
    changed = windows.copy()
    changed[0, 0, 0] += 1e-3
    compute_scalograms(changed, SPEC, "cpu", batch_size=2, cache_dir=tmp_path)
    assert _CountingCwt.calls == 6  # different data: miss
    half = compute_scalograms(windows, SPEC, "cpu", batch_size=8, cache_dir=tmp_path,
                              dtype=np.float16)
    assert _CountingCwt.calls == 7 and half.dtype == np.float16  # dtype is part of the key
    assert np.allclose(half, first, atol=0.05)
    assert len(list(tmp_path.glob("*.npy"))) == 4


def test_corrupt_cache_file_is_recomputed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scalogram_cache, "BatchedCwt", _CountingCwt)
    _CountingCwt.calls = 0
    windows = SIGNALS["noise"][None]
    path = scalogram_cache.cache_path(windows, SPEC, tmp_path)
    path.write_bytes(b"not an npy file")
    out = compute_scalograms(windows, SPEC, "cpu", cache_dir=tmp_path)
    assert _CountingCwt.calls == 1
    assert np.array_equal(np.load(path, allow_pickle=False), out)
