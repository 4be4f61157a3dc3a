"""The TEP benchmark's protocol without training: metric helpers on hand-made score series,
and the default (tuning) run never reading the sealed test split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_tep_detection as bench
from core.config import AlarmRule, load_decision_config

RULE = AlarmRule(raise_k=3, raise_n=5, clear_windows=5)
LEVELS = {"clear": 0.3, "warn": 0.5, "anomaly": 0.8}


def fault_series(n_windows: int = 100, first: int = 63, onset: int = 100) -> bench.Series:
    return bench.Series("d01_te", np.zeros((first + n_windows, 52), np.float32), first, onset)


def scores_with(spans: list[tuple[int, int]], n: int = 100) -> np.ndarray:
    s = np.zeros(n)
    for lo, hi in spans:
        s[lo:hi] = 1.0
    return s


def test_delay_counts_minutes_from_the_onset_row_to_the_raised_window() -> None:
    series = fault_series()  # window i ends at row 63 + i; onset row 100 = window 37
    assert series.onset_index == 37
    events = bench.alarm_events(scores_with([(40, 100)]), LEVELS, RULE)
    assert [(e.level, e.raised, e.open) for e in events] == [("anomaly", 42, True)]
    assert bench.delay_minutes(events, series) == (63 + 42 - 100) * 3.0 == 15.0
    assert bench.coverage(events, series.onset_index, 100) == pytest.approx(58 / 63)
    assert bench.exceed_rate(scores_with([(40, 100)])[37:], LEVELS["anomaly"]) == (
        pytest.approx(60 / 63))


def test_event_raised_before_the_onset_is_a_false_alarm_not_a_detection() -> None:
    series = fault_series()
    events = bench.alarm_events(scores_with([(10, 15), (34, 40)]), LEVELS, RULE)
    assert [e.raised for e in events] == [12, 36]
    assert [e.raised for e in bench.false_alarms(events, series.onset_index)] == [12, 36]
    assert bench.detections(events, series.onset_index) == []
    assert math.isinf(bench.delay_minutes(events, series))
    assert bench.coverage(events, series.onset_index, 100) == 0.0
    # the onset window itself can raise: delay 0 minutes from row 100 (window 37)
    events = bench.alarm_events(scores_with([(35, 100)]), LEVELS, RULE)
    assert bench.delay_minutes(events, series) == 0.0


def test_tuning_fault_delay_is_measured_from_row_zero_of_the_file() -> None:
    series = bench.Series("d05", np.zeros((480, 52), np.float32), 63, onset=0)
    assert series.onset_index == 0
    events = bench.alarm_events(scores_with([(0, 417)], 417), LEVELS, RULE)
    assert bench.delay_minutes(events, series) == (63 + 2) * 3.0


def test_strided_windows_keep_delays_and_hours_in_rows_of_the_run() -> None:
    series = bench.Series("d01_te", np.zeros((163, 52), np.float32), 63, onset=100, stride=4)
    assert series.ends.tolist() == list(range(63, 163, 4)) and series.n_windows == 25
    assert series.onset_index == 10 and series.row(10) == 103  # first window ending >= 100
    assert series.hours == pytest.approx(25 * 4 * 3 / 60)
    events = bench.alarm_events(scores_with([(10, 25)], 25), LEVELS, RULE)
    assert [e.raised for e in events] == [12]
    assert bench.delay_minutes(events, series) == (63 + 12 * 4 - 100) * 3.0


def test_events_per_24h_and_median_delay_arithmetic() -> None:
    assert bench.events_per_day(2, 48.0) == pytest.approx(1.0)
    assert bench.Series("d00_te", np.zeros((1023, 52)), 63).hours == pytest.approx(48.0)
    assert bench.events_per_day(3, 125.85) == pytest.approx(3 / 125.85 * 24)
    assert bench.median_delay([10.0, math.inf, 30.0]) == 30.0  # a miss counts as latest
    assert bench.spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert math.isinf(bench.spread([1.0, math.inf])["mean"])


def fake_tep(seen: list[str]):
    """Stand-in for load_tep_array: records names; refuses every sealed test run; d00_te
    holds its row number (so a leak of rows >= 480 shows) plus noise; faults are shifted."""
    rng = np.random.default_rng(0)

    def load(name: str) -> np.ndarray:
        seen.append(name)
        if name == "d00":
            return rng.normal(size=(500, 52))
        if name == "d00_te":
            rows = rng.normal(size=(960, 52))
            rows[:, 0] = np.arange(960) * 1e-3
            return rows
        fault = rng.normal(size=(480 if not name.endswith("_te") else 960, 52))
        fault[:, 1:] += 4.0 * (int(name[1:3]) not in bench.HARD_FAULTS)
        return fault

    return load


def test_tuning_split_holds_no_test_row(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(bench, "load_tep_array", fake_tep(seen))
    split = bench.load_tuning_split(63)
    assert sorted(set(seen)) == sorted({"d00", "d00_te"} | {f"d{f:02d}" for f in range(1, 22)})
    d00_te = [*split.calib, *split.normal]
    assert [(s.first, len(s.rows)) for s in d00_te] == [(63, 240), (240, 480)]
    assert max(float(s.rows[:, 0].max()) for s in d00_te) < 480e-3
    assert all(s.onset == 0 and s.first == 63 and len(s.rows) == 480
               for s in split.faults.values())


@pytest.mark.parametrize("final", [False, True])
def test_default_run_never_loads_the_test_split(
    final: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(bench, "load_tep_array", fake_tep(seen))
    if not final:
        monkeypatch.setattr(bench, "load_test_split",
                            lambda context, stride=1: pytest.fail("sealed"))
    longest: list[int] = []

    def fake_model(args, seed, split, out_dir):  # no training: mean |z| of the last row
        def score(series: bench.Series) -> np.ndarray:
            if series.name == "d00_te":
                longest.append(len(series.rows))
            return np.abs(series.rows[series.first:]).mean(axis=1) + 1e-3 * seed
        return score

    monkeypatch.setattr(bench, "train_seed", fake_model)
    argv = ["--seeds", "0", "1", "--out-dir", str(tmp_path)] + (["--final"] if final else [])
    assert bench.main(argv) == 0
    sealed = {f"d{f:02d}_te" for f in range(1, 22)}
    assert bool(sealed & set(seen)) is final
    assert max(longest) == (960 if final else 480)
    name = "final" if final else "tuning"
    result = json.loads((tmp_path / f"results_{name}.json").read_text())
    assert result["split"] == name
    assert result["normal_windows"] == (480 + 21 * 97 if final else 240)
    assert result["decision"]["alarm"] == load_decision_config(
        bench.DECISION_CONFIG).alarm.model_dump()
    ours = result["ours"]
    assert len(ours["per_seed"]) == 2 and ours["summary"]["fdr_18"]["mean"] > 0.9
    for key in ("ours", "pca_t2", "pca_spe"):
        assert key in result
