"""Vibration data path: reader, synthetic generator, demo set, and prep into CWT datasets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import DataError
from sensor_data import files, vib_prep
from sensor_data.synthetic_vib import (
    FAULTS,
    fault_band_hz,
    make_vibration,
    materialise_vibration_demo,
    write_vibration_csv,
)
from sensor_data.vib_prep import (
    extract_windows,
    list_vibration_files,
    prepare_vibration_scoring,
    prepare_vibration_training,
)
from sensor_data.vibration import read_vibration
from sensor_data.windows import split_index
from streams.swinmae import SwinMAEConfig

FS = 1000.0
CPU = torch.device("cpu")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    return tmp_path


def _cfg(dqvl: dict | None = None, **data) -> SwinMAEConfig:
    raw = {
        "dqvl": dqvl or {},
        "data": {
            "source": "files",
            "path": "data/vib/*.csv",
            "fs": FS,
            "win_sec": 1.0,
            "win_stride_sec": 0.5,
            "val_fraction": 0.25,
            **data,
        },
        "cwt": {"freq_min": 5.0, "freq_max": 400.0, "n_freqs": 16},
        "image": {"size": 32},
    }
    return SwinMAEConfig.model_validate(raw)


def _write(repo, name: str, seconds: float = 4.0, seed: int = 0, fs: float = FS):
    path = repo / "data" / "vib" / name
    write_vibration_csv(path, make_vibration(seconds, fs, seed), fs)
    return path


def _band_energy(values: np.ndarray, fs: float, band: tuple[float, float]) -> np.ndarray:
    spec = np.abs(np.fft.rfft(values - values.mean(axis=0), axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(values), 1 / fs)
    return spec[(freqs >= band[0]) & (freqs <= band[1])].sum(axis=0)


# --------------------------------------------------------------------------- reader
def test_csv_axes_are_case_insensitive_and_values_float32(tmp_path):
    values = make_vibration(1.0, FS, 1)
    path = tmp_path / "upper.csv"
    frame = pd.DataFrame({"Z": values[:, 2], "Y": values[:, 1], "X": values[:, 0]})
    frame.to_csv(path, index=False)
    table = read_vibration(path)
    assert table.values.dtype == np.float32
    np.testing.assert_allclose(table.values, values, atol=1e-6)  # reordered to x, y, z
    assert table.timestamps is None and table.observed_fs is None
    assert table.missing_axes == []
    assert table.file_id == "upper.csv"


def test_configured_column_mapping_and_timestamp_column(tmp_path):
    values = make_vibration(1.0, FS, 2)
    path = tmp_path / "mapped.csv"
    frame = pd.DataFrame(
        {"acc_1": values[:, 0], "acc_2": values[:, 1], "acc_3": values[:, 2], "x": 0.0}
    )
    frame["t_s"] = np.arange(len(values)) / 800.0
    frame.to_csv(path, index=False)
    table = read_vibration(
        path, axes={"x": "acc_1", "y": "acc_2", "z": "acc_3"}, timestamp_col="t_s"
    )
    np.testing.assert_allclose(table.values, values, atol=1e-6)
    assert table.source_columns == {"x": "acc_1", "y": "acc_2", "z": "acc_3", "timestamp": "t_s"}
    assert table.observed_fs == pytest.approx(800.0)
    with pytest.raises(DataError, match="timestamp column 'stamp' not found"):
        read_vibration(path, timestamp_col="stamp")


def test_parquet_is_read_like_csv(tmp_path):
    values = make_vibration(1.0, FS, 3)
    path = tmp_path / "v.parquet"
    pd.DataFrame({"x": values[:, 0], "y": values[:, 1], "z": values[:, 2]}).to_parquet(path)
    np.testing.assert_array_equal(read_vibration(path).values, values)


def test_npy_accepts_real_numeric_2d_arrays(tmp_path):
    ints = np.arange(30, dtype=np.int16).reshape(10, 3)
    np.save(tmp_path / "ints.npy", ints)
    table = read_vibration(tmp_path / "ints.npy")
    assert table.values.dtype == np.float32
    np.testing.assert_array_equal(table.values, ints)
    assert table.missing_axes == [] and table.observed_fs is None


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((10, 2)), r"shape \(T, 3\).*got \(10, 2\)"),
        (np.zeros((10, 3, 1)), r"got \(10, 3, 1\)"),
        (np.zeros(30), r"got \(30,\)"),
        (np.zeros((10, 3), dtype=np.complex64), "dtype complex64"),
        (np.zeros((10, 3), dtype=bool), "dtype bool"),
        (np.array([["a", "b", "c"]]), "dtype <U1"),
        (np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "real numeric"),
        (np.zeros((0, 3)), "empty array"),
    ],
)
def test_npy_wrong_shape_or_dtype_is_rejected(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=match) as err:
        read_vibration(path)
    assert "bad.npy" in str(err.value)


def test_pickled_npy_is_rejected(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled or object arrays are not accepted"):
        read_vibration(path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", b"", "empty file"),
        ("blank.csv", b"\n\n", "empty file"),
        ("header.csv", b"x,y,z,timestamp\n", "header only"),
        ("binary.csv", bytes(range(256)) * 4, "binary data"),
        ("latin1.csv", "x,y,z,note\n1,2,3,caf\xe9\n".encode("latin-1"), "not UTF-8"),
        ("text.csv", b"x,y,z\n1,2,3\n4,oops,6\n", r"column 'y' is not numeric \(value 'oops'"),
        ("table.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("garbage.npy", b"not an npy file at all", "not a valid NPY file"),
    ],
)
def test_unreadable_files_raise_one_clear_data_error(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        read_vibration(path)
    assert name in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("block", [1, 7, 64 * 1024])
def test_csv_row_widths_ignore_blank_lines_quotes_and_one_trailing_comma(
    tmp_path, monkeypatch, block
):
    # Blocks of any size, even splitting a quoted field, give the same counts.
    monkeypatch.setattr(files, "_SCAN_BYTES", block)
    path = tmp_path / "rows.csv"
    path.write_text('x,"a,b",z\n\n1,"2,5",3\n4,5\n  \n6,7,8,\n"q,",1,2,3\n9,9,9')
    rows = files.csv_rows(path, "rows.csv")
    assert (rows.n_rows, rows.n_fields) == (5, 3)
    assert rows.ragged.tolist() == [1, 3] and rows.ragged_fields.tolist() == [2, 4]


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_vibration(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- generator
def test_generator_is_seeded_and_looks_like_machinery():
    a = make_vibration(2.0, FS, seed=7)
    assert a.shape == (2000, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, make_vibration(2.0, FS, seed=7))
    assert not np.array_equal(a, make_vibration(2.0, FS, seed=8))
    # The 1x shaft line dominates the radial axes of a healthy machine.
    shaft = _band_energy(a, FS, (28.0, 31.0))
    assert (shaft[:2] / _band_energy(a, FS, (0.0, FS / 2))[:2] > 0.3).all()


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_add_energy_in_their_band(fault):
    band = fault_band_hz(fault, 29.5, FS)
    assert 0 < band[0] < band[1] <= FS / 2
    normal = make_vibration(4.0, FS, seed=3)
    faulty = make_vibration(4.0, FS, seed=3, fault=fault)
    ratio = _band_energy(faulty, FS, band) / _band_energy(normal, FS, band)
    assert ratio[0] > 3.0  # the x axis (radial) carries every fault clearly


def test_bearing_band_stays_under_nyquist_and_severity_scales():
    lo, hi = fault_band_hz("bearing", 29.5, 25600.0)
    assert (lo, hi) == pytest.approx((2400.0, 3600.0))
    assert fault_band_hz("bearing", 29.5, 1000.0)[1] <= 500.0
    band = fault_band_hz("bearing", 29.5, FS)
    mild = _band_energy(make_vibration(4.0, FS, 1, fault="bearing", severity=0.5), FS, band)
    strong = _band_energy(make_vibration(4.0, FS, 1, fault="bearing", severity=2.0), FS, band)
    assert strong[0] > 4 * mild[0]
    with pytest.raises(ValueError, match="unknown fault"):
        make_vibration(1.0, FS, 0, fault="rust")


def test_csv_round_trip_keeps_values_and_rate(tmp_path):
    values = make_vibration(1.5, 2000.0, 4)
    path = write_vibration_csv(tmp_path / "v.csv", values, 2000.0)
    table = read_vibration(path)
    np.testing.assert_allclose(table.values, values, atol=5e-4 + 1e-6)
    assert table.observed_fs == pytest.approx(2000.0)
    no_ts = read_vibration(write_vibration_csv(tmp_path / "n.csv", values, 2000.0, False))
    assert no_ts.timestamps is None


def test_demo_set_is_small_labelled_and_never_overwrites(tmp_path):
    written = materialise_vibration_demo(tmp_path)
    vib = tmp_path / "data" / "local"
    assert len(list((vib / "train" / "vib").glob("*.csv"))) == 3
    assert len(list((vib / "calib" / "vib").glob("*.csv"))) == 2
    labels = pd.read_csv(vib / "test" / "vib" / "labels.csv", dtype=str)
    assert list(labels.columns) == ["file", "label", "fault_type", "shaft_hz", "load"]
    assert set(labels.loc[labels.label == "fault", "fault_type"]) == set(FAULTS)
    assert (labels.label == "normal").sum() == 2
    # Test normals run at an unseen constant speed and on a ramp inside the trained range.
    normal_speeds = dict(zip(labels.file, labels.shaft_hz, strict=True))
    assert normal_speeds["test_normal_000.csv"] == "31.2"
    assert normal_speeds["test_normal_001.csv"] == "27.0-32.0"
    for name in labels.file:
        assert (vib / "test" / "vib" / name).is_file()
    assert sum(p.stat().st_size for p in written) < 10e6
    ids = [p.name for p in written if p.name != "labels.csv"]
    assert len(ids) == len(set(ids))  # file ids are unique across train/calib/test
    table = read_vibration(vib / "train" / "vib" / "train_normal_000.csv")
    assert table.observed_fs == pytest.approx(2000.0)
    assert table.values.shape[0] >= 30 * 2000

    user_file = vib / "train" / "vib" / "train_normal_001.csv"
    user_file.write_text("x,y,z\n1,2,3\n")
    assert materialise_vibration_demo(tmp_path) == []
    assert user_file.read_text() == "x,y,z\n1,2,3\n"


# --------------------------------------------------------------------------- prep
@pytest.fixture
def spy(monkeypatch):
    """Record what reaches the CWT (window shapes, cache dir) while still computing it."""
    calls: list[dict] = []
    real = vib_prep.compute_scalograms

    def wrapper(windows, spec, device, **kw):
        calls.append({"shape": windows.shape, "windows": windows.copy(), **kw})
        return real(windows, spec, device, **kw)

    monkeypatch.setattr(vib_prep, "compute_scalograms", wrapper)
    return calls


def test_training_prep_drops_bad_files_and_keeps_good_ones(repo, spy):
    good_a = _write(repo, "a_good.csv", seconds=4.0, seed=1)
    _write(repo, "b_good.csv", seconds=5.0, seed=2)
    bad = repo / "data" / "vib"
    (bad / "c_empty.csv").write_text("")
    two = make_vibration(4.0, FS, 4)[:, :2]
    (bad / "d_two_axes.csv").write_text("x,y\n" + "".join(f"{a},{b}\n" for a, b in two))
    (bad / "e_text.csv").write_text("x,y,z\n" + "1,2,3\n" * 10 + "1,abc,3\n")
    write_vibration_csv(bad / "f_zeros.csv", np.zeros((4000, 3), dtype=np.float32), FS)
    nan_heavy = make_vibration(4.0, FS, 6)
    nan_heavy[::10] = np.nan
    write_vibration_csv(bad / "g_nan.csv", nan_heavy, FS)

    prep = prepare_vibration_training(_cfg(), "run1", CPU, progress=False)

    decisions = {r.file_id: (r.decision, [f["rule"] for f in r.hard_fails]) for r in prep.reports}
    assert decisions == {
        "a_good.csv": ("keep", []),
        "b_good.csv": ("keep", []),
        "c_empty.csv": ("drop", ["read_error"]),
        "d_two_axes.csv": ("drop", ["missing_axis"]),
        "e_text.csv": ("drop", ["read_error"]),
        "f_zeros.csv": ("drop", ["dead_file"]),
        "g_nan.csv": ("drop", ["nan_ratio"]),
    }
    assert "column 'y' is not numeric" in prep.reports[4].reason()
    assert prep.files == ["a_good.csv", "b_good.csv"]
    summary = json.loads(prep.summary_path.read_text())
    assert prep.summary_path == repo / "artifacts" / "dqvl" / "vib" / "summary.json"
    assert summary["counts"] == {"keep": 2, "drop": 5, "skipped": 0}
    assert summary["run_id"] == "run1"
    assert (prep.summary_path.parent / "g_nan.csv.json").is_file()

    # 4 s and 5 s at 1 kHz, window 1000, stride 500, last 25 % for validation.
    assert prep.train.file_ids == ["a_good.csv"] * 5 + ["b_good.csv"] * 6
    assert prep.train.starts.tolist() == [0, 500, 1000, 1500, 2000] + [
        0,
        500,
        1000,
        1500,
        2000,
        2500,
    ]
    assert prep.val.file_ids == ["a_good.csv", "b_good.csv"]
    assert prep.val.starts.tolist() == [3000, 3750]
    for ds in (prep.train, prep.val):
        item = ds[0]
        assert item.dtype == torch.float32 and item.shape == (3, 32, 32)
        assert torch.isfinite(item).all()

    # One CWT call per kept file, every window exactly one window long, cached in the repo.
    assert [c["shape"] for c in spy] == [(6, 1000, 3), (7, 1000, 3)]
    cache = repo / "artifacts" / "cache" / "cwt"
    assert all(c["cache_dir"] == cache for c in spy)
    assert len(list(cache.glob("*.npy"))) == 2  # one cached scalogram array per kept file
    # The first file's first window is the file's first second, mean-removed.
    raw = read_vibration(good_a).values[:1000]
    np.testing.assert_allclose(spy[0]["windows"][0], raw - raw.mean(axis=0), atol=1e-5)


def test_windows_never_cross_a_file_or_the_split(repo):
    lengths = {"a.csv": 4.3, "b.csv": 6.1, "c.csv": 3.0}
    for i, (name, seconds) in enumerate(lengths.items()):
        _write(repo, name, seconds=seconds, seed=i)
    prep = prepare_vibration_training(_cfg(win_stride_sec=0.3), "r", CPU, progress=False)
    for name, seconds in lengths.items():
        n = int(round(seconds * FS))
        split = split_index(n, 0.25)
        tr = prep.train.starts[np.array(prep.train.file_ids) == name]
        va = prep.val.starts[np.array(prep.val.file_ids) == name]
        assert len(tr) > 0
        assert (tr >= 0).all() and (tr + 1000 <= split).all()
        assert (va >= split).all() and (va + 1000 <= n).all()
        assert tr.tolist() == list(range(0, split - 1000 + 1, 300))


def test_fs_mismatch_resample_off_drops_and_on_keeps(repo, spy):
    _write(repo, "slow.csv", seconds=3.0, seed=1, fs=500.0)  # fs 500 vs configured 1000
    _write(repo, "ok.csv", seconds=3.0, seed=2)

    off = prepare_vibration_training(_cfg(), "off", CPU, progress=False)
    slow = next(r for r in off.reports if r.file_id == "slow.csv")
    assert slow.decision == "drop"
    assert [f["rule"] for f in slow.hard_fails] == ["fs_mismatch"]
    assert off.files == ["ok.csv"]

    spy.clear()
    on = prepare_vibration_training(_cfg(resample={"enabled": True}), "on", CPU, progress=False)
    slow = next(r for r in on.reports if r.file_id == "slow.csv")
    assert slow.decision == "keep"
    assert [w["rule"] for w in slow.warnings] == ["fs_mismatch"]
    assert on.files == ["ok.csv", "slow.csv"]
    # 1500 samples at 500 Hz become 3000 at 1 kHz: same windows as the 3 s file at 1 kHz.
    starts = {f: on.train.starts[np.array(on.train.file_ids) == f].tolist() for f in on.files}
    assert starts["slow.csv"] == starts["ok.csv"] == [0, 500, 1000]
    assert all(c["shape"][1:] == (1000, 3) for c in spy)


def test_resampling_preserves_the_shaft_tone(repo):
    slow = make_vibration(3.0, 500.0, seed=4)
    write_vibration_csv(repo / "data" / "vib" / "slow.csv", slow, 500.0)
    cfg = _cfg(resample={"enabled": True})
    values = vib_prep.to_configured_fs(read_vibration(repo / "data" / "vib" / "slow.csv"), cfg)
    assert values.shape == (3000, 3) and values.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(values[:, 0] - values[:, 0].mean()))
    peak_hz = np.fft.rfftfreq(3000, 1 / FS)[np.argmax(spectrum)]
    assert peak_hz == pytest.approx(29.5, abs=0.5)


def test_every_file_dropped_is_a_clear_error(repo):
    (repo / "data" / "vib").mkdir(parents=True)
    (repo / "data" / "vib" / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"every vibration file was dropped.*dqvl/vib/summary.json"):
        prepare_vibration_training(_cfg(), "r", CPU, progress=False)
    assert (repo / "artifacts" / "dqvl" / "vib" / "empty.csv.json").is_file()


def test_no_matching_file_names_the_pattern(repo):
    with pytest.raises(DataError, match="data/nothing/\\*.csv"):
        list_vibration_files("data/nothing/*.csv")
    _write(repo, "one.csv", seconds=1.0)
    (repo / "data" / "vib" / "labels.csv").write_text("file,label\n")
    assert [p.name for p in list_vibration_files(["data/vib/*.csv"])] == ["one.csv"]
    assert [p.name for p in list_vibration_files("data/vib")] == ["one.csv"]


def test_synthetic_source_and_disabled_dqvl(repo):
    cfg = _cfg(
        dqvl={"enabled": False},
        source="synthetic",
        synthetic={"n_files": 2, "duration_sec": 3.0, "seed": 5},
    )
    prep = prepare_vibration_training(cfg, "syn", CPU, progress=False)
    assert prep.files == ["synthetic_000", "synthetic_001"]
    assert {r.decision for r in prep.reports} == {"skipped"}
    assert len(prep.train) == 6 and len(prep.val) == 0  # 3 s: train 2250 samples, val 750
    assert prep.spec.n_freqs == 16
    freqs = prep.spec_frequencies
    assert len(freqs) == 16 and freqs[0] == pytest.approx(400.0) and freqs[-1] == pytest.approx(5.0)


def test_scoring_prep_windows_whole_files(repo):
    a = _write(repo, "a.csv", seconds=3.0, seed=1)
    bad = repo / "data" / "vib" / "bad.npy"
    np.save(bad, np.zeros((100, 2)))
    ds, reports = prepare_vibration_scoring([a, bad], _cfg(), CPU)
    assert ds.starts.tolist() == [0, 500, 1000, 1500, 2000]
    assert ds.file_ids == ["a.csv"] * 5
    assert [r.decision for r in reports] == ["keep", "drop"]
    assert len(ds[4].shape) == 3
    empty, reports = prepare_vibration_scoring([bad], _cfg(), CPU)
    assert len(empty) == 0 and empty.images.shape == (0, 3, 32, 32)


def _stamped_csv(repo, name: str, fs: float, stamps: np.ndarray, seed: int):
    values = make_vibration(len(stamps) / fs, fs, seed)
    frame = pd.DataFrame({"x": values[:, 0], "y": values[:, 1], "z": values[:, 2]})
    frame.assign(timestamp=stamps).to_csv(repo / "data" / "vib" / name, index=False)
    return repo / "data" / "vib" / name


def _sample_times(first: np.datetime64, starts: np.ndarray) -> np.ndarray:
    return first + starts * np.timedelta64(int(1e9 / FS), "ns")


def test_windows_carry_times_from_the_first_stamp_at_the_configured_fs(repo):
    (repo / "data" / "vib").mkdir(parents=True)
    iso_first = np.datetime64("2024-05-01T10:00:00", "ns")
    iso = iso_first + np.arange(4000) * np.timedelta64(1, "ms")
    _stamped_csv(repo, "a_iso.csv", FS, np.datetime_as_string(iso), seed=1)
    # Epoch seconds at 500 Hz, resampled to 1 kHz: windows count samples at 1 kHz.
    _stamped_csv(repo, "b_epoch.csv", 500.0, 1_700_000_000 + np.arange(2000) / 500.0, seed=2)
    epoch_first = np.datetime64("2023-11-14T22:13:20", "ns")
    first = {"a_iso.csv": iso_first, "b_epoch.csv": epoch_first}
    cfg = _cfg(resample={"enabled": True})
    prep = prepare_vibration_training(cfg, "r", CPU, progress=False)
    assert prep.files == ["a_iso.csv", "b_epoch.csv"]
    for ds in (prep.train, prep.val):
        firsts = np.array([first[f] for f in ds.file_ids])
        np.testing.assert_array_equal(ds.start_times, _sample_times(firsts, ds.starts))
        np.testing.assert_array_equal(ds.end_times, _sample_times(firsts, ds.starts + 999))
    assert prep.val.start_times[-1] == epoch_first + np.timedelta64(3000, "ms")

    bare = write_vibration_csv(
        repo / "data" / "vib" / "c_bare.csv", make_vibration(2.0, FS, 3), FS, False
    )
    ds, _ = prepare_vibration_scoring([bare], cfg, CPU)
    assert len(ds) == 3 and np.isnat(ds.start_times).all() and np.isnat(ds.end_times).all()


def test_window_nan_handling_is_mean_removed_zero_fill():
    values = np.tile(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), (10, 1))
    values[:5, 0] = 5.0
    values[3, 1] = np.nan
    values[4, 2] = np.inf
    out = extract_windows(values, np.array([0, 4]), 6)
    assert out.shape == (2, 6, 3) and np.isfinite(out).all()
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-6)
    assert out[0, 3, 1] == 0.0 and out[0, 4, 2] == 0.0
    np.testing.assert_allclose(out[0, :, 0], [5 - 26 / 6] * 5 + [1 - 26 / 6], rtol=1e-6)
