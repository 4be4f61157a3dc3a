"""Vibration DQVL: each rule fires on data that breaks it and stays quiet on good data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.config import VibDqvlConfig
from sensor_data.dqvl_vib import check_vibration, read_error_report
from sensor_data.synthetic_vib import make_vibration, write_vibration_csv
from sensor_data.timestamps import measure_fs
from sensor_data.vibration import VibTable, read_vibration

FS = 1000.0
WIN = 1000


def _signal(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    return make_vibration(seconds, FS, seed)


def _table(values: np.ndarray, fs_observed: float | None = None, **kw) -> VibTable:
    stamps = None if fs_observed is None else np.arange(len(values)) / fs_observed
    return VibTable("f.csv", values, timestamps=stamps, observed_fs=measure_fs(stamps), **kw)


def _check(
    table: VibTable,
    rules: VibDqvlConfig | None = None,
    fs: float | None = FS,
    resample: bool = False,
):
    return check_vibration(table, rules or VibDqvlConfig(), fs, WIN, resample)


def _rules(rep) -> tuple[set[str], set[str]]:
    return {f["rule"] for f in rep.hard_fails}, {w["rule"] for w in rep.warnings}


def test_good_file_is_kept_without_findings_and_metrics_are_json_safe():
    values = _signal()
    rep = _check(_table(values, FS))
    assert rep.decision == "keep"
    assert rep.hard_fails == [] and rep.warnings == []
    m = rep.metrics
    assert m["n_samples"] == 3000
    assert m["duration_s"] == pytest.approx(3.0)
    assert m["observed_fs"] == pytest.approx(FS)
    assert m["nan_ratio"] == 0.0
    expected_rms = values.astype(np.float64).std(axis=0)
    assert [m["rms"][a] for a in "xyz"] == pytest.approx(expected_rms, rel=1e-4)
    assert max(m["clip_ratio"].values()) < 0.01
    assert max(m["flat_ratio"].values()) < 0.01
    json.dumps(rep.to_dict(), allow_nan=False)  # strict JSON, no NaN


def test_missing_axis(tmp_path):
    values = _signal()
    path = tmp_path / "two_axes.csv"
    path.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in values[:, :2]) + "\n")
    table = read_vibration(path)
    assert table.missing_axes == ["z"]
    assert np.isnan(table.values[:, 2]).all()
    fails, _ = _rules(_check(table))
    assert fails == {"missing_axis"}  # the NaN z column is not double-counted as nan_ratio
    assert "missing_axis" not in _rules(_check(_table(values)))[0]


def test_missing_metadata_when_no_fs_and_no_timestamps():
    values = _signal()
    assert "missing_metadata" in _rules(_check(_table(values), fs=None))[0]
    rep = _check(_table(values, FS), fs=None)  # timestamps give the rate
    assert rep.decision == "keep"
    assert rep.metrics["duration_s"] == pytest.approx(3.0)


def test_nan_ratio_threshold():
    values = _signal()
    heavy = values.copy()
    heavy[::20, 1] = np.nan  # 5 % of y -> 1.7 % over all axes > 1 %
    rep = _check(_table(heavy))
    assert "nan_ratio" in _rules(rep)[0]
    assert rep.metrics["nan_ratio"] == pytest.approx(1 / 60, rel=1e-3)
    light = values.copy()
    light[::500, 0] = np.inf  # infinite values count too, but 0.07 % is within the limit
    rep = _check(_table(light))
    assert rep.decision == "keep"
    assert rep.metrics["nan_ratio"] == pytest.approx(6 / 9000)


@pytest.mark.parametrize(
    ("observed", "resample", "fails", "warns"),
    [
        (500.0, False, {"fs_mismatch"}, set()),
        (500.0, True, set(), {"fs_mismatch"}),
        (1010.0, False, set(), set()),  # 1 % is within the 2 % tolerance
    ],
)
def test_fs_mismatch_depends_on_resampling(observed, resample, fails, warns):
    # 3000 samples at 500 Hz are 6 s: 6000 samples after resampling to 1000 Hz.
    rep = _check(_table(_signal(), observed), resample=resample)
    got_fails, got_warns = _rules(rep)
    assert got_fails == fails
    assert got_warns == warns
    if resample:
        assert rep.metrics["n_samples_after_resample"] == 6000


def test_too_short_counts_samples_after_resampling():
    assert "too_short" in _rules(_check(_table(_signal(0.9))))[0]
    assert "too_short" not in _rules(_check(_table(_signal(1.0))))[0]
    # 700 samples at 500 Hz become 1400 at 1000 Hz: enough for one window once resampled.
    short_slow = _table(_signal(0.7), 500.0)
    assert _check(short_slow, resample=True).decision == "keep"
    assert "too_short" in _rules(_check(short_slow, resample=False))[0]


def test_flat_line_fail_and_warning():
    values = _signal()
    dead = values.copy()
    dead[:, 2] = 0.0
    rep = _check(_table(dead))
    assert _rules(rep)[0] == {"flat_line"}
    assert "axis z" in rep.reason()
    assert rep.metrics["flat_ratio"]["z"] == 1.0
    assert rep.metrics["clip_ratio"]["z"] == 0.0  # a constant axis has no rails to clip at
    partly = values.copy()
    partly[:900, 0] = 0.25  # 30 % stuck
    fails, warns = _rules(_check(_table(partly)))
    assert fails == set() and warns == {"flat_line"}


def test_clipping_warning():
    values = _signal()
    clipped = values.copy()
    lo, hi = np.quantile(clipped[:, 0], [0.02, 0.98])
    clipped[:, 0] = np.clip(clipped[:, 0], lo, hi)  # ~4 % of samples on the rails
    rep = _check(_table(clipped))
    assert rep.decision == "keep"
    assert _rules(rep)[1] == {"clipping"}
    assert rep.metrics["clip_ratio"]["x"] == pytest.approx(0.04, abs=0.002)
    assert rep.metrics["clip_ratio"]["y"] < 0.01
    lo, hi = np.quantile(values[:, 0], [0.05, 0.95])
    clipped[:, 0] = np.clip(values[:, 0], lo, hi)  # ~10 % on the rails: saturated
    assert _rules(_check(_table(clipped)))[0] == {"clipping"}
    assert _check(_table(clipped), VibDqvlConfig(max_clip_ratio=0.2)).decision == "keep"


def test_rms_range_warning_only_when_configured():
    values = _signal()
    assert _rules(_check(_table(values), VibDqvlConfig(rms_max=0.1)))[1] == {"rms_range"}
    assert _rules(_check(_table(values), VibDqvlConfig(rms_min=5.0)))[1] == {"rms_range"}
    assert _rules(_check(_table(values), VibDqvlConfig(rms_min=0.01, rms_max=10.0)))[1] == set()


def test_broken_timestamps_fail():
    values = _signal()
    shuffled = _table(values, FS)
    rng = np.random.default_rng(0)
    shuffled.timestamps = rng.permutation(shuffled.timestamps)
    shuffled.observed_fs = measure_fs(shuffled.timestamps)
    rep = _check(shuffled)
    assert "timestamps" in _rules(rep)[0]
    assert rep.metrics["timestamp_issue_ratio"] > 0.3
    few_dupes = _table(values, FS)
    few_dupes.timestamps[10] = few_dupes.timestamps[9]  # one duplicated stamp: a warning
    rep = _check(few_dupes)
    assert rep.decision == "keep" and "timestamps" in _rules(rep)[1]
    assert rep.metrics["gap_s"] == 0.0  # the long step after a duplicate is no gap


def _gapped(stamps: np.ndarray) -> VibTable:
    return VibTable("f.csv", _signal(), timestamps=stamps, observed_fs=measure_fs(stamps))


def test_short_gap_warns_long_gap_fails_and_rate_ignores_both():
    stamps = np.arange(3000) / FS
    stamps[1500:] += 0.01  # 10 samples missing in 3 s: 0.33 %
    rep = _check(_gapped(stamps))
    assert rep.decision == "keep" and _rules(rep)[1] == {"gaps"}
    assert rep.metrics["gap_s"] == pytest.approx(0.01)
    stamps[2000:] += 0.5
    rep = _check(_gapped(stamps))
    assert _rules(rep)[0] == {"gaps"}
    assert rep.metrics["observed_fs"] == pytest.approx(FS)  # a gap is not a rate error
    assert rep.metrics["gap_ratio"] == pytest.approx(0.51 / 3.509, rel=1e-3)


def test_observed_fs_from_numeric_and_datetime_timestamps(tmp_path):
    values = _signal(2.0)
    numeric = tmp_path / "numeric.csv"
    write_vibration_csv(numeric, values, 1250.0)
    assert read_vibration(numeric).observed_fs == pytest.approx(1250.0, rel=1e-6)
    dated = tmp_path / "dated.csv"
    stamps = np.datetime64("2024-05-01T10:00:00", "ns") + np.arange(len(values)) * np.timedelta64(
        2, "ms"
    )
    lines = [
        f"{np.datetime_as_string(t)},{a:.3f},{b:.3f},{c:.3f}"
        for t, (a, b, c) in zip(stamps, values, strict=True)
    ]
    dated.write_text("Time,X,Y,Z\n" + "\n".join(lines) + "\n")
    table = read_vibration(dated)
    assert table.timestamps.dtype == np.dtype("datetime64[ns]")
    assert table.observed_fs == pytest.approx(500.0)
    assert table.source_columns == {"x": "X", "y": "Y", "z": "Z", "timestamp": "Time"}


def test_read_error_report_is_a_drop():
    rep = read_error_report("bad.csv", "bad.csv: empty file")
    assert rep.decision == "drop"
    assert rep.stream == "swinmae"
    assert rep.hard_fails == [{"rule": "read_error", "message": "bad.csv: empty file"}]
