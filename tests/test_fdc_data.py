"""FDC data path: reader, scaler, leakage-free split/windows, scoring windows, TEP demo data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigError, DataError
from sensor_data.fdc import EXCLUDED_BY_NAME, EXCLUDED_COUNTER, read_fdc
from sensor_data.fdc_prep import (
    FdcWindows,
    list_fdc_files,
    prepare_fdc_scoring,
    prepare_fdc_training,
)
from sensor_data.scaler import ChannelScaler
from sensor_data.synthetic_fdc import make_fdc_frame, write_fdc_files
from sensor_data.tep import CHANNELS, load_tep, load_tep_protocol, materialise_tep
from sensor_data.windows import split_index
from tests.test_dqvl_fdc import fdc_cfg


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    return tmp_path


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- reader
def test_csv_and_parquet_read_the_same_values(root: Path) -> None:
    frame = make_fdc_frame(50, 3, seed=1)
    frame.loc[4, "ch_01"] = np.nan
    frame.loc[7, "ch_02"] = np.inf
    csv = read_fdc(_csv(root / "a.csv", frame))
    frame.to_parquet(root / "a.parquet")
    pq = read_fdc(root / "a.parquet")
    assert csv.values.dtype == np.float32 and csv.values.shape == (50, 3)
    assert csv.channels == pq.channels == ["ch_00", "ch_01", "ch_02"]
    np.testing.assert_array_equal(csv.values, pq.values)
    assert np.isnan(csv.values[4, 1]) and np.isposinf(csv.values[7, 2])  # kept as read
    np.testing.assert_array_equal(csv.timestamps, pq.timestamps)
    assert csv.timestamps.dtype == np.dtype("datetime64[ns]")
    assert (np.diff(csv.timestamps) == np.timedelta64(1, "s")).all()
    assert csv.file_id == "a.csv" and pq.timestamp_col == "timestamp"


@pytest.mark.parametrize("name", ["Time", "TIMESTAMP", "time"])
def test_timestamp_column_is_found_by_name_in_any_case(root: Path, name: str) -> None:
    frame = make_fdc_frame(20, 2, seed=0).rename(columns={"timestamp": name})
    table = read_fdc(_csv(root / "t.csv", frame))
    assert table.timestamp_col == name
    assert table.channels == ["ch_00", "ch_01"]
    assert not np.isnat(table.timestamps).any()


def test_configured_timestamp_and_channels(root: Path) -> None:
    frame = make_fdc_frame(20, 4, seed=0).rename(columns={"timestamp": "ts"})
    path = _csv(root / "t.csv", frame)
    auto = read_fdc(path)
    assert auto.timestamp_col is None and auto.non_numeric_columns == ["ts"]
    table = read_fdc(path, timestamp_col="ts", channels=["ch_03", "ch_01"])
    assert table.timestamp_col == "ts" and table.channels == ["ch_03", "ch_01"]
    np.testing.assert_allclose(table.values[:, 0], frame["ch_03"].to_numpy(), rtol=1e-6)
    assert read_fdc(path, timestamp_col="ts", channel_regex=r"_0[12]$").channels == [
        "ch_01",
        "ch_02",
    ]
    with pytest.raises(DataError, match=r"t\.csv: configured channels not found: ch_09, x"):
        read_fdc(path, channels=["ch_00", "ch_09", "x"])
    with pytest.raises(ConfigError, match="channel_regex"):
        read_fdc(path, channel_regex="(")


def test_numeric_timestamps_are_seconds_and_text_columns_are_excluded(root: Path) -> None:
    frame = pd.DataFrame(
        {"time": [0.0, 0.5, 1.0, 1.5], "a": [1, 2, 3, 4], "mode": ["A", "B", "A", "B"]}
    )
    table = read_fdc(_csv(root / "n.csv", frame))
    assert table.channels == ["a"] and table.non_numeric_columns == ["mode"]
    assert (np.diff(table.timestamps) == np.timedelta64(500, "ms")).all()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty file"),
        ("header.csv", b"timestamp,a\n", "header only"),
        ("blank.csv", b"\n\n", "cannot parse as CSV"),
        ("bin.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        ("latin.csv", "temp\u00e9rature\n1\n".encode("latin-1"), "not UTF-8"),
        ("quote.csv", b'a,b\n"1,2\n3,4\n', "cannot parse as CSV"),  # ragged rows: DQVL
        ("bad.parquet", b"not parquet at all", "not a readable Parquet file"),
        ("data.xlsx", b"PK", "unsupported file type '.xlsx'"),
    ],
)
def test_bad_files_raise_one_clear_data_error(
    root: Path, name: str, content: bytes, message: str
) -> None:
    path = root / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_fdc(path)
    assert str(err.value).startswith(f"{name}: ")


def test_missing_file_and_no_matching_pattern(root: Path) -> None:
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_fdc(root / "nope.csv")
    with pytest.raises(DataError, match=r"data.path: no FDC file matches 'data/x/\*.csv', 'y.csv'"):
        list_fdc_files(["data/x/*.csv", "y.csv"])


def test_file_listing_is_sorted_deduplicated_and_skips_labels(root: Path) -> None:
    write_fdc_files(root / "data/train", 3, 40, 2, seed=0)
    (root / "data/train/labels.csv").write_text("file,label\n")
    found = list_fdc_files(["data/train/*.csv", "data/train/synthetic_001.csv"])
    assert [p.name for p in found] == [f"synthetic_{i:03d}.csv" for i in range(3)]


def _report(root: Path, file_id: str) -> dict:
    return json.loads((root / f"artifacts/dqvl/fdc/{file_id}.json").read_text())


def _alone(root: Path, file_id: str) -> dict:
    """The report a training run on ``file_id`` alone gives (what other files must not change)."""
    prepare_fdc_training(fdc_cfg(path=f"data/train/{file_id}"), "r", progress=False)
    return _report(root, file_id)


def test_label_id_and_counter_columns_are_excluded_with_reasons(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, class 1: a label column leaked into the channels (AUROC 0.65 -> 0.81)."""
    _csv(root / "data/train/b.csv", make_fdc_frame(200, 4, seed=1))
    b_alone = _alone(root, "b.csv")
    labelled = make_fdc_frame(200, 4, seed=0)
    labelled["is_anomaly"] = (np.arange(200) % 50 == 0).astype(int)
    labelled["batch_id"] = 7
    labelled.to_csv(root / "data/train/a.csv")  # with the index: an unnamed 0..n-1 counter
    prepared = prepare_fdc_training(fdc_cfg(), "r", progress=True)

    channels = ["ch_00", "ch_01", "ch_02", "ch_03"]
    excluded = {
        "Unnamed: 0": EXCLUDED_COUNTER,
        "is_anomaly": EXCLUDED_BY_NAME,
        "batch_id": EXCLUDED_BY_NAME,
    }
    assert prepared.scaler.channels == channels and prepared.train.channels == channels
    a = _report(root, "a.csv")
    assert a["decision"] == "keep" and a["metrics"]["channels"] == channels
    assert a["metrics"]["excluded_columns"] == excluded
    assert _report(root, "b.csv") == b_alone  # the other file's result is unchanged
    summary = json.loads(prepared.summary_path.read_text())
    assert summary["channels"] == channels and summary["excluded_columns"] == excluded
    saved = json.loads((root / "artifacts/scaler_fdc.json").read_text())
    assert saved["excluded_columns"] == excluded
    err = capsys.readouterr().err
    assert (
        f"FDC channels: 4 used, 3 column(s) excluded: {EXCLUDED_BY_NAME}: is_anomaly, batch_id; "
        f"{EXCLUDED_COUNTER}: Unnamed: 0\n"
    ) in err
    # nothing of the label reached the scaler: it equals one fitted on the sensors alone
    raw = [read_fdc(root / f"data/train/{n}.csv", channels=channels).values for n in "ab"]
    reference = ChannelScaler.fit([v[: split_index(200, 0.2)] for v in raw], "robust", channels)
    np.testing.assert_allclose(prepared.scaler.center, reference.center)
    np.testing.assert_allclose(prepared.scaler.scale, reference.scale)

    # the rule is overridable: no pattern keeps the names, a listed channel always wins
    path = root / "data/train/a.csv"
    assert read_fdc(path, exclude_counters=True).channels == [*channels, "is_anomaly", "batch_id"]
    listed = read_fdc(path, channels=["Unnamed: 0", "ch_00"], exclude_counters=True)
    assert listed.channels == ["Unnamed: 0", "ch_00"] and listed.excluded == {}
    assert fdc_cfg(exclude_columns="").data.exclude_columns is None


def test_an_unnamed_timestamp_column_is_found_and_a_time_like_one_is_named(root: Path) -> None:
    """Issue 12, class 1: historian/to_csv exports put the stamps in an unnamed column."""
    frame = make_fdc_frame(200, 3, seed=0)
    stamps = frame["timestamp"].to_numpy("datetime64[ns]")
    indexed = frame.set_index("timestamp").rename_axis(None)
    _csv(root / "data/train/c.csv", make_fdc_frame(200, 3, seed=2))
    indexed.to_csv(root / "data/train/a.csv")  # header ",ch_00,...": pandas' "Unnamed: 0"
    frame.rename(columns={"timestamp": "Time: UTC"}).to_csv(root / "data/train/b.csv", index=False)
    c_alone = _alone(root, "c.csv")
    prepared = prepare_fdc_training(fdc_cfg(), "r", progress=False)

    assert prepared.files == ["a.csv", "c.csv"] and prepared.train.channels == list(indexed)
    a = read_fdc(root / "data/train/a.csv")
    assert a.timestamp_col == "Unnamed: 0" and a.channels == ["ch_00", "ch_01", "ch_02"]
    np.testing.assert_array_equal(a.timestamps, stamps)
    b = _report(root, "b.csv")
    assert [f["rule"] for f in b["hard_fails"]] == ["timestamp_missing"]
    assert b["hard_fails"][0]["message"] == (
        "no timestamp column (name it timestamp/time or set data.timestamp_col); column "
        "'Time: UTC' looks like time: use it with --set 'data.timestamp_col=\"Time: UTC\"'"
    )
    assert _report(root, "c.csv") == c_alone
    with pytest.raises(DataError, match=r"b\.csv: configured data.timestamp_col 'Time' not found"):
        read_fdc(root / "data/train/b.csv", timestamp_col="Time")
    named = read_fdc(root / "data/train/b.csv", timestamp_col="Time: UTC")
    np.testing.assert_array_equal(named.timestamps, stamps)
    indexed.to_parquet(root / "a.parquet")  # the index is stored as __index_level_0__
    pq_table = read_fdc(root / "a.parquet")
    assert pq_table.timestamp_col == "__index_level_0__" and pq_table.channels == a.channels
    np.testing.assert_array_equal(pq_table.timestamps, stamps)


def test_trailing_delimiters_and_ragged_rows_never_shift_columns(root: Path) -> None:
    """Issue 12, class 2: a trailing comma moved the stamps into the index and a good file
    was dropped as "timestamps go backwards"."""
    frame = make_fdc_frame(200, 3, seed=0)
    lines = frame.to_csv(index=False).splitlines()
    train = root / "data/train"
    _csv(train / "a_clean.csv", frame)
    clean_alone = _alone(root, "a_clean.csv")
    (train / "trailing.csv").write_text("\n".join([lines[0], *(f"{x}," for x in lines[1:])]))
    ragged = list(lines)
    ragged[10] += ",99"  # line 11: one value too many
    ragged[20] = ragged[20].rsplit(",", 1)[0]  # line 21: one value short
    (train / "ragged.csv").write_text("\n".join(ragged) + "\n")
    many = [x.rsplit(",", 1)[0] if i % 10 == 5 else x for i, x in enumerate(lines)]
    (train / "many_ragged.csv").write_text("\n".join(many) + "\n")
    big = frame.astype({"ch_01": object})
    big.loc[[5, 6], "ch_01"] = ["1e39", "-4e40"]  # beyond float32
    _csv(train / "overflow.csv", big)
    prepared = prepare_fdc_training(fdc_cfg(), "r", progress=False)

    clean = read_fdc(train / "a_clean.csv")
    trailing = read_fdc(train / "trailing.csv")
    assert trailing.channels == clean.channels and trailing.timestamp_col == "timestamp"
    np.testing.assert_array_equal(trailing.values, clean.values)
    np.testing.assert_array_equal(trailing.timestamps, clean.timestamps)
    report = _report(root, "trailing.csv")
    assert report["decision"] == "keep" and report["warnings"] == []

    report = _report(root, "ragged.csv")
    assert report["decision"] == "keep"
    assert report["metrics"]["ragged_rows"] == 2 and report["metrics"]["ragged_lines"] == [11, 21]
    assert report["warnings"][0]["message"].startswith(
        "2 of 200 rows do not have the header's 4 fields (first at line 11, 21)"
    )
    values = read_fdc(train / "ragged.csv").values
    np.testing.assert_array_equal(values[9], clean.values[9])  # the extra field is ignored
    assert np.isnan(values[19, 2]) and (values[19, :2] == clean.values[19, :2]).all()

    report = _report(root, "many_ragged.csv")
    assert [f["rule"] for f in report["hard_fails"]] == ["ragged_rows"]
    assert "20 of 200 rows" in report["hard_fails"][0]["message"]
    assert "(10.00% > limit 1.00%)" in report["hard_fails"][0]["message"]

    report = _report(root, "overflow.csv")
    assert report["metrics"]["overflow_values"] == {"ch_01": 2}
    overflow = [w for w in report["warnings"] if w["rule"] == "float32_overflow"]
    assert overflow and "ch_01 (2)" in overflow[0]["message"]
    assert _report(root, "a_clean.csv") == clean_alone
    assert "trailing.csv" in prepared.files and "ragged.csv" in prepared.files


# --------------------------------------------------------------------------- scaler
def test_robust_and_zscore_fit_values_and_nan_handling() -> None:
    x = np.array([[1.0, 5.0, np.nan], [2.0, 5.0, 1.0], [3.0, 5.0, 3.0], [4.0, 5.0, np.inf]])
    robust = ChannelScaler.fit([x[:2], x[2:]], "robust", ["a", "b", "c"])
    np.testing.assert_allclose(robust.center, [2.5, 5.0, 2.0])
    np.testing.assert_allclose(robust.scale[[0, 2]], [1.5, 1.0])  # IQRs
    assert robust.scale[1] == pytest.approx(1e-3 * 6.0)  # constant: 0.1 % of |centre| + 1
    assert robust.floored == {"b": "epsilon"} and robust.clipped == {}
    z = ChannelScaler.fit([x], "zscore", ["a", "b", "c"])
    np.testing.assert_allclose(z.center, [2.5, 5.0, 2.0])
    np.testing.assert_allclose(z.scale[[0, 2]], [np.std([1, 2, 3, 4]), 1.0])
    out = robust.transform(x.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [-1.0, -1 / 3, 1 / 3, 1.0], rtol=1e-6)
    assert out[0, 2] == 0.0 and out[3, 2] == 0.0 and (out[:, 1] == 0.0).all()


def test_scaler_json_round_trip_and_errors(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(100, 3)) * [1, 10, 100]
    scaler = ChannelScaler.fit([x], "robust", ["a", "b", "c"])
    scaler.excluded = {"label": "a label"}
    path = scaler.save(tmp_path / "s.json")
    saved = json.loads(path.read_text())
    old_keys = {"schema_version", "method", "center", "scale", "channel_names"}
    new_keys = {"clip_z", "floored", "clipped_train_values", "excluded_columns"}
    assert set(saved) == old_keys | new_keys
    loaded = ChannelScaler.load(path)
    assert loaded.method == "robust" and loaded.channels == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.center, scaler.center)
    np.testing.assert_array_equal(loaded.scale, scaler.scale)
    assert loaded.excluded == {"label": "a label"} and loaded.clip is None
    # a scaler saved before the 1.1 keys still loads, unbounded and without exclusions
    (tmp_path / "old.json").write_text(json.dumps({k: saved[k] for k in old_keys}))
    old = ChannelScaler.load(tmp_path / "old.json")
    assert (old.clip, old.floored, old.clipped, old.excluded) == (None, {}, {}, {})
    np.testing.assert_array_equal(old.transform(x[:5]), scaler.transform(x[:5]))
    (tmp_path / "clip.json").write_text(json.dumps({**saved, "clip_z": -1}))
    with pytest.raises(DataError, match="clip_z must be null or a number > 0"):
        ChannelScaler.load(tmp_path / "clip.json")
    with pytest.raises(DataError, match="scaler file not found"):
        ChannelScaler.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        ChannelScaler.load(tmp_path / "bad.json")
    (tmp_path / "short.json").write_text(json.dumps({**saved, "scale": [1.0]}))
    with pytest.raises(DataError, match="lengths do not match"):
        ChannelScaler.load(tmp_path / "short.json")


def test_scale_is_floored_and_bounded_on_near_constant_heavy_tailed_channels() -> None:
    """Real tags sit still with rare moves: IQR ~0 made |z| 1e4 (issue 12, class 4)."""
    rng = np.random.default_rng(0)
    normal = rng.normal(10.0, 2.0, 5000)
    still = np.where(rng.random(5000) < 0.9, 5.0 + 1e-6 * rng.standard_normal(5000), 5.5)
    tailed = rng.standard_t(1.5, 5000)  # heavy tails: its IQR is still the right scale
    x = np.column_stack([normal, still, tailed])
    channels = ["normal", "still", "tailed"]
    scaler = ChannelScaler.fit([x], "robust", channels, clip=20.0)
    assert scaler.floored == {"still": "std"}
    assert scaler.scale[1] == pytest.approx(1.349 * np.std(still), rel=1e-6)
    z = scaler.transform(x.astype(np.float32))
    assert np.abs(z).max() <= 20.0
    assert np.abs(z[:, 1]).max() < 5  # was (5.5 - 5) / IQR ~ 1e5
    assert set(scaler.clipped) == {"tailed"} and scaler.clipped["tailed"] > 0
    assert scaler.clipped["tailed"] == int((np.abs(z[:, 2]) == 20.0).sum())
    # other channels' scaling does not change with the floored one beside them
    alone = ChannelScaler.fit([x[:, [0, 2]]], "robust", ["normal", "tailed"], clip=20.0)
    np.testing.assert_array_equal(alone.scale, scaler.scale[[0, 2]])
    np.testing.assert_array_equal(alone.center, scaler.center[[0, 2]])
    zscore = ChannelScaler.fit([x], "zscore", channels)
    assert zscore.floored == {} and zscore.clip is None


def test_training_floors_and_bounds_near_constant_tags_and_says_so(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, class 4 on files: the scaler JSON and the console name the channels."""
    rng = np.random.default_rng(1)
    for i in range(2):
        frame = make_fdc_frame(300, 3, seed=i)
        frame["valve"] = np.where(rng.random(300) < 0.95, 2.0, 2.0 + rng.uniform(1, 5, 300))
        _csv(root / f"data/train/f{i}.csv", frame)
    prepared = prepare_fdc_training(fdc_cfg(), "r", progress=True)
    saved = json.loads((root / "artifacts/scaler_fdc.json").read_text())
    assert saved["floored"] == {"valve": "std"} and saved["clip_z"] == 20.0
    assert set(saved["clipped_train_values"]) <= {"valve"}
    err = capsys.readouterr().err
    assert "1 channel(s) with ~0 spread, scale floored (statistic used): valve (std)" in err
    for arr in prepared.train.arrays:
        assert np.abs(arr).max() <= 20.0
    # the other channels are scaled exactly as without the valve beside them
    raw = [read_fdc(root / f"data/train/f{i}.csv").values[:240, :3] for i in range(2)]
    reference = ChannelScaler.fit(raw, "robust", ["ch_00", "ch_01", "ch_02"])
    np.testing.assert_array_equal(prepared.scaler.scale[:3], reference.scale)


def test_scaler_channel_check_reorders_or_names_the_difference() -> None:
    scaler = ChannelScaler("robust", np.zeros(3), np.ones(3), ["a", "b", "c"])
    assert scaler.check_channels(["c", "a", "b"], "f.csv") == [1, 2, 0]
    with pytest.raises(DataError, match=r"f\.csv: channel set differs .*missing c; extra d"):
        scaler.check_channels(["a", "b", "d"], "f.csv")
    scaler.excluded = {"label": "a label"}  # columns training left out are no difference
    assert scaler.check_channels(["label", "c", "a", "b"], "f.csv") == [2, 3, 1]


# --------------------------------------------------------------------------- split / windows
def test_windows_never_cross_a_file_or_the_split(root: Path) -> None:
    lengths = [150, 233, 97, 30]  # the 30-row file is shorter than a window: DQVL drops it
    for i, n in enumerate(lengths):
        _csv(root / f"data/train/f{i}.csv", make_fdc_frame(n, 3, seed=i))
    cfg = fdc_cfg(stride=5, val_fraction=0.25)
    prepared = prepare_fdc_training(cfg, run_id="r", progress=False)
    assert prepared.files == ["f0.csv", "f1.csv", "f2.csv"]
    assert prepared.reports[3].hard_fails[0]["rule"] == "too_short"
    n_rows = dict(zip(prepared.files, lengths, strict=False))
    seq = cfg.data.seq_len
    for fid, start in zip(prepared.train.file_ids, prepared.train.starts, strict=True):
        assert start >= 0 and start + seq <= split_index(n_rows[fid], 0.25)
    for fid, start in zip(prepared.val.file_ids, prepared.val.starts, strict=True):
        assert start >= split_index(n_rows[fid], 0.25) and start + seq <= n_rows[fid]
    # every file contributes, f2 (97 rows: 73 train, 24 val) only train windows
    assert set(prepared.train.file_ids) == {"f0.csv", "f1.csv", "f2.csv"}
    assert "f2.csv" not in set(prepared.val.file_ids)
    # window content is exactly the normalised rows of its own file
    raw = read_fdc(root / "data/train/f1.csv").values
    k = int(np.flatnonzero(prepared.train.file_ids == "f1.csv")[2])
    start = int(prepared.train.starts[k])
    item = prepared.train[k]
    assert tuple(item.shape) == (seq, 3) and str(item.dtype) == "torch.float32"
    np.testing.assert_allclose(
        item.numpy(), prepared.scaler.transform(raw)[start : start + seq], rtol=1e-6
    )
    assert (root / "artifacts/scaler_fdc.json").is_file()


def test_scaler_sees_training_rows_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = make_fdc_frame(200, 3, seed=4)
    split = split_index(200, 0.2)
    poisoned = frame.copy()
    poisoned.loc[split:, ["ch_00", "ch_01", "ch_02"]] = 1e6  # extreme values in validation only
    fitted = {}
    for name, f in {"clean": frame, "poisoned": poisoned}.items():
        monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path / name))
        _csv(tmp_path / name / "data/train/f.csv", f)
        for method in ("robust", "zscore"):
            cfg = fdc_cfg(normalization=method)
            fitted[name, method] = prepare_fdc_training(cfg, "r", progress=False).scaler
    train_part = read_fdc(tmp_path / "clean/data/train/f.csv").values[:split]
    for method in ("robust", "zscore"):
        reference = ChannelScaler.fit([train_part], method, ["ch_00", "ch_01", "ch_02"])
        for name in ("clean", "poisoned"):
            np.testing.assert_allclose(fitted[name, method].center, reference.center)
            np.testing.assert_allclose(fitted[name, method].scale, reference.scale)


def test_no_training_window_is_a_clear_error(root: Path) -> None:
    _csv(root / "data/train/f.csv", make_fdc_frame(36, 2, seed=0))  # 29 train rows < 32
    with pytest.raises(DataError, match="no training windows.*seq_len=32"):
        prepare_fdc_training(fdc_cfg(), "r", progress=False)


def test_synthetic_source_makes_windows_without_files(root: Path) -> None:
    cfg = fdc_cfg(source="synthetic", synthetic={"n_files": 2, "n_rows": 120, "n_channels": 5})
    prepared = prepare_fdc_training(cfg, "r", progress=False)
    assert prepared.files == ["synthetic_000", "synthetic_001"]
    assert prepared.train.n_channels == 5 and len(prepared.train) == 2 * 9
    assert not (root / "data").exists()


# --------------------------------------------------------------------------- scoring
def test_scoring_windows_use_the_saved_scaler_and_handle_channel_mismatch(root: Path) -> None:
    write_fdc_files(root / "data/train", 2, 120, 3, seed=0)
    cfg = fdc_cfg()
    prepared = prepare_fdc_training(cfg, "r", progress=False)
    scaler = ChannelScaler.load(root / "artifacts/scaler_fdc.json")
    test = make_fdc_frame(100, 3, seed=7)
    good = _csv(root / "data/test/good.csv", test)
    shuffled_cols = _csv(
        root / "data/test/reordered.csv", test[["ch_02", "ch_00", "timestamp", "ch_01"]]
    )
    wrong = _csv(root / "data/test/wrong.csv", make_fdc_frame(100, 4, seed=7))
    windows, reports = prepare_fdc_scoring(
        [good, shuffled_cols, wrong], scaler, cfg, window=32, stride=16
    )
    assert [r.decision for r in reports] == ["keep", "keep", "drop"]
    assert reports[2].hard_fails[0]["rule"] == "channel_mismatch"
    assert windows.files == ["good.csv", "reordered.csv"]
    np.testing.assert_array_equal(windows.starts[:6], [0, 16, 32, 48, 64, 68])  # last row too
    assert len(windows) == 12 and windows.file_ids[6] == "reordered.csv"
    np.testing.assert_array_equal(windows.arrays[0], windows.arrays[1])  # reordered back
    np.testing.assert_array_equal(
        windows.arrays[0], prepared.scaler.transform(read_fdc(good).values)
    )
    with pytest.raises(DataError, match=r"wrong\.csv: channel set differs.*extra ch_03"):
        prepare_fdc_scoring([wrong], scaler, cfg, window=32, stride=16)


# --------------------------------------------------------------------------- window times
NAT = np.datetime64("NaT", "ns")


def _assert_row_times(windows: FdcWindows, stamps: dict[str, np.ndarray]) -> None:
    """Each window's start/end time is the stamp of its first/last row in its own file."""
    rows = list(zip(windows.file_ids, windows.starts, strict=True))
    last = windows.seq_len - 1
    np.testing.assert_array_equal(windows.start_times, [stamps[f][s] for f, s in rows])
    np.testing.assert_array_equal(windows.end_times, [stamps[f][s + last] for f, s in rows])
    assert windows.start_times.dtype == windows.end_times.dtype == np.dtype("datetime64[ns]")


def test_windows_carry_the_stamps_of_their_first_and_last_row(root: Path) -> None:
    iso = make_fdc_frame(120, 3, seed=0)  # written as ISO text, 1 s apart
    epoch = make_fdc_frame(120, 3, seed=1)
    epoch["timestamp"] = 1_700_000_000 + 0.5 * np.arange(120)  # numeric epoch seconds
    _csv(root / "data/train/a.csv", iso)
    epoch_path = _csv(root / "data/train/b.csv", epoch)
    bare = _csv(root / "data/test/bare.csv", iso.drop(columns="timestamp"))
    stamps = {
        "a.csv": iso["timestamp"].to_numpy("datetime64[ns]"),
        "b.csv": np.datetime64("2023-11-14T22:13:20", "ns")
        + np.arange(120) * np.timedelta64(500, "ms"),
        "bare.csv": np.full(120, NAT),
    }
    cfg = fdc_cfg(val_fraction=0.4)  # 48 validation rows: room for validation windows
    prepared = prepare_fdc_training(cfg, "r", progress=False)
    assert set(prepared.val.file_ids) == {"a.csv", "b.csv"}
    _assert_row_times(prepared.train, stamps)
    _assert_row_times(prepared.val, stamps)

    cfg.dqvl.require_timestamp = False
    windows, _ = prepare_fdc_scoring([epoch_path, bare], prepared.scaler, cfg, 32, stride=16)
    assert windows.files == ["b.csv", "bare.csv"]
    _assert_row_times(windows, stamps)  # the file without a timestamp column: all NaT
    assert np.isnat(windows.start_times[windows.file_ids == "bare.csv"]).all()


def test_a_window_on_an_unparsed_stamp_stays_nat() -> None:
    stamps = np.datetime64("2024-01-01", "ns") + np.arange(10) * np.timedelta64(1, "s")
    stamps[5] = NAT
    arrays = [np.zeros((10, 1), dtype=np.float32)] * 2
    index = np.array([[0, 0], [0, 2], [0, 5], [1, 0]])
    windows = FdcWindows(arrays, ["a", "b"], index, 4, ["c"], [stamps, None])
    np.testing.assert_array_equal(windows.start_times, [stamps[0], stamps[2], NAT, NAT])
    np.testing.assert_array_equal(windows.end_times, [stamps[3], NAT, stamps[8], NAT])
    assert np.isnat(FdcWindows(arrays, ["a", "b"], index, 4, ["c"]).start_times).all()


# --------------------------------------------------------------------------- synthetic
def test_synthetic_frames_are_seeded_and_faults_start_where_asked() -> None:
    a = make_fdc_frame(300, 8, seed=3)
    pd.testing.assert_frame_equal(a, make_fdc_frame(300, 8, seed=3))
    assert not a.equals(make_fdc_frame(300, 8, seed=4))
    assert list(a.columns) == ["timestamp"] + [f"ch_{i:02d}" for i in range(8)]
    corr = np.corrcoef(a.iloc[:, 1:].to_numpy().T)
    assert np.abs(corr[np.triu_indices(8, 1)]).max() > 0.5  # channels share latent factors
    for fault in ("step", "drift", "noise", "stuck"):
        f = make_fdc_frame(300, 8, seed=3, fault=fault, fault_start=200)
        changed = (f.iloc[:, 1:] != a.iloc[:, 1:]).to_numpy()
        assert not changed[:200].any(), fault
        assert changed[200:].any(axis=0).sum() == 2, fault  # a quarter of the channels
    stuck = make_fdc_frame(300, 8, seed=3, fault="stuck", fault_start=200).iloc[200:, 1:]
    assert (stuck.std() == 0).sum() == 2
    with pytest.raises(ConfigError, match="unknown synthetic fault"):
        make_fdc_frame(10, 2, seed=0, fault="melt")


# --------------------------------------------------------------------------- TEP
def test_tep_runs_have_52_named_channels_and_3_minute_stamps() -> None:
    d00, d00_te = load_tep("d00"), load_tep("d00_te")
    assert d00.shape == (500, 53) and d00_te.shape == (960, 53)
    assert list(d00.columns[1:]) == CHANNELS and CHANNELS[0] == "xmeas_01"
    assert CHANNELS[-1] == "xmv_11" and len(CHANNELS) == 52
    assert (d00["timestamp"].diff().dropna() == pd.Timedelta(minutes=3)).all()
    # d00.dat is stored transposed: after reading, the normal runs share channel levels
    levels = np.corrcoef(d00.iloc[:, 1:].mean(), d00_te.iloc[:, 1:].mean())[0, 1]
    assert levels > 0.999
    assert load_tep("d21_te").shape == (960, 53)
    with pytest.raises(DataError, match="unknown Tennessee Eastman run"):
        load_tep("d22_te")


def test_tep_protocol_split() -> None:
    p = load_tep_protocol()
    assert p["train"].shape == (500, 52) and p["train"].dtype == np.float32
    assert p["calib"].shape == (480, 52) and p["test_normal"].shape == (480, 52)
    np.testing.assert_array_equal(np.vstack([p["calib"], p["test_normal"]]), p["test_normal_run"])
    assert sorted(p["faults"]) == list(range(1, 22))
    assert all(v.shape == (800, 52) for v in p["faults"].values())
    np.testing.assert_array_equal(p["faults"][5], p["fault_runs"][5][160:])


def test_materialise_tep_writes_demo_set_and_never_overwrites(tmp_path: Path) -> None:
    mine = tmp_path / "data/local/test/fdc/d05_te.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own file\n")
    messages: list[str] = []
    written = materialise_tep(tmp_path, log=messages.append)
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert len(rel) == 24 + 21 and "data/local/test/fdc/d05_te.csv" not in rel
    assert "data/local/train/fdc/d00.csv" in rel and "data/local/test/fdc/d21_te.csv" in rel
    assert "data/local/calib/fdc/d00_te_calib.csv" in rel
    assert "data/local/test/fdc/d00_te_normal.csv" in rel
    assert mine.read_text() == "my own file\n"
    assert "1 existing file(s) left untouched: data/local/test/fdc/d05_te.csv" in messages[0]

    train = read_fdc(tmp_path / "data/local/train/fdc/d00.csv")
    assert train.values.shape == (500, 52) and train.channels == CHANNELS
    calib = read_fdc(tmp_path / "data/local/calib/fdc/d00_te_calib.csv")
    normal = read_fdc(tmp_path / "data/local/test/fdc/d00_te_normal.csv")
    protocol = load_tep_protocol()
    np.testing.assert_allclose(calib.values, protocol["calib"], rtol=1e-6)
    np.testing.assert_allclose(normal.values, protocol["test_normal"], rtol=1e-6)
    assert normal.timestamps[0] == np.datetime64("2000-01-02T00:00:00")  # row 480 x 3 min
    # the normal start of each fault run calibrates; the test file is the rest of the run
    pre = read_fdc(tmp_path / "data/local/calib/fdc/d07_te_pre.csv")
    test7 = read_fdc(tmp_path / "data/local/test/fdc/d07_te.csv")
    np.testing.assert_allclose(np.vstack([pre.values, test7.values]), protocol["fault_runs"][7],
                               rtol=1e-6)
    assert pre.values.shape == (96, 52) and test7.timestamps[0] == np.datetime64(
        "2000-01-01T04:48:00")
    labels = pd.read_csv(tmp_path / "data/local/test/fdc/labels.csv")
    assert len(labels) == 22
    normal_row = labels.iloc[0]
    assert normal_row["file"] == "d00_te_normal.csv" and normal_row["label"] == "normal"
    assert pd.isna(normal_row["fault_start_row"])
    assert (labels["fault_start_row"].iloc[1:] == 160 - 96).all()  # onset at 08:00
    assert labels["fault_id"].tolist() == list(range(22))
    hard = labels[labels["difficulty"] == "hard"]["fault_id"].tolist()
    assert hard == [3, 9, 15]

    before = {p: p.stat().st_mtime_ns for p in written}
    assert materialise_tep(tmp_path, log=messages.append) == []
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert "46 existing file(s)" in messages[-1]
