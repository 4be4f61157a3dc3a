"""Threshold fitting that states what it promises, and alarm events (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import AlarmRule, ThresholdPolicy
from core.errors import DataError
from inference.alarms import file_decision, find_events, window_levels
from inference.threshold_fit import (
    effective_size,
    fit_thresholds,
    out_of_sample,
    total_effective_size,
    wilson,
)


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + np.sqrt(1 - phi**2) * rng.normal()
    return x


# --------------------------------------------------------------------------- sample size
def test_effective_size_counts_independent_blocks() -> None:
    iid = np.random.default_rng(0).normal(size=4000)
    assert effective_size(iid) == pytest.approx(4000, rel=0.1)
    # AR(1) with phi 0.9: n (1 - phi) / (1 + phi) ~ 4000 / 19 ~ 210
    assert 120 < effective_size(ar1(4000, 0.9, 1)) < 330
    assert effective_size(np.ones(50)) == 50.0
    two_files = np.r_[iid[:2000], iid[2000:]]
    assert total_effective_size(two_files, ["a"] * 2000 + ["b"] * 2000) == pytest.approx(
        effective_size(iid[:2000]) + effective_size(iid[2000:]))


# --------------------------------------------------------------------------- levels
def test_little_data_warns_that_thresholds_are_shaky(capsys) -> None:  # noqa: ANN001
    scores = np.exp(0.3 * ar1(300, 0.9, 9))
    fit_thresholds(scores, ["f"] * 300, ThresholdPolicy(), "calibration of y")
    assert "warning: calibration of y" in capsys.readouterr().out


def test_enough_independent_data_gives_finite_sample_ranks() -> None:
    scores = np.random.default_rng(2).exponential(size=20000)
    fits = fit_thresholds(scores, ["f"] * len(scores), ThresholdPolicy())
    assert {f.method for f in fits.values()} == {"rank"}
    assert fits["warn"].value == pytest.approx(np.quantile(scores, 0.99), rel=0.02)
    assert fits["anomaly"].value == pytest.approx(np.quantile(scores, 0.999), rel=0.05)
    assert np.mean(scores > fits["anomaly"].value) <= 0.001


def test_overlapping_windows_get_a_fitted_tail_not_a_raw_quantile() -> None:
    # 1500 windows, but strongly autocorrelated: far fewer than 1000 effective values, so the
    # 0.999 quantile cannot be a rank; the tail fit extrapolates beyond the largest score.
    scores = np.exp(0.3 * ar1(1500, 0.95, 3))
    fits = fit_thresholds(scores, ["f"] * len(scores), ThresholdPolicy())
    assert fits["anomaly"].method == "tail" and fits["warn"].method == "tail"
    assert fits["clear"].value < fits["warn"].value < fits["anomaly"].value
    assert fits["anomaly"].detail["shape"] >= 0  # a bounded tail is never trusted
    assert fits["anomaly"].value > np.quantile(scores, 0.999)


def test_too_little_data_is_refused_with_how_much_more() -> None:
    scores = np.exp(0.3 * ar1(40, 0.97, 4))
    assert effective_size(scores) < 8
    with pytest.raises(DataError, match=r"effective independent windows.*need at least 8: add "
                                        r"normal data worth about \d+ more windows"):
        fit_thresholds(scores, ["f"] * 40, ThresholdPolicy(), "calibration of x")
    with pytest.raises(DataError, match="rank threshold at exceedance 0.001 needs 999"):
        fit_thresholds(np.random.default_rng(5).normal(size=300), ["f"] * 300,
                       ThresholdPolicy(method="rank"))


@pytest.mark.parametrize("scores", [
    np.full(200, 0.7),                              # flat
    np.r_[np.zeros(190), np.ones(10)],              # two values
    np.random.default_rng(6).normal(size=40),       # small
    np.r_[np.random.default_rng(7).normal(size=300), [50.0]],  # one huge excursion
])
def test_levels_are_strictly_ordered(scores: np.ndarray) -> None:
    fits = fit_thresholds(scores, ["f"] * len(scores), ThresholdPolicy(min_tail_windows=3))
    assert fits["clear"].value < fits["warn"].value < fits["anomaly"].value


def test_out_of_sample_false_alarms_have_an_interval() -> None:
    rng = np.random.default_rng(8)
    scores = rng.exponential(size=9000)
    groups = ["a"] * 3000 + ["b"] * 3000 + ["c"] * 3000
    est = out_of_sample(scores, groups, ThresholdPolicy())
    assert est["method"] == "leave-one-file-out over 3 files" and est["folds_skipped"] == 0
    warn = est["warn"]
    assert warn["target"] == 0.01
    lo, hi = warn["interval_95"]
    assert lo < warn["estimate"] < hi and lo < 0.01 < hi
    one_file = out_of_sample(scores[:3000], ["a"] * 3000, ThresholdPolicy())
    assert one_file["method"].startswith("leave-one-block-out over 5 time blocks")
    assert wilson(0, 100)[0] == 0.0 and 0 < wilson(0, 100)[1] < 0.05


# --------------------------------------------------------------------------- events
RULE = AlarmRule(raise_k=3, raise_n=5, clear_windows=4)
WARN, ANOM, CLEAR = 1.0, 2.0, 0.5


def test_one_noisy_window_is_not_an_alarm() -> None:
    s = np.full(50, 0.2)
    s[[5, 20, 21]] = 3.0  # isolated spikes: never 3 of 5
    assert find_events(s, WARN, ANOM, CLEAR, RULE) == []
    assert file_decision([]) == "normal"
    assert list(window_levels(np.array([0.2, 1.5, 2.5]), WARN, ANOM)) == [
        "normal", "warn", "anomaly"]


def test_persistence_raises_and_hysteresis_clears() -> None:
    s = np.full(60, 0.2)
    s[10:13] = 1.5     # 3 windows over warn: raised at window 12
    s[13:16] = 0.8     # below warn but above clear: the event stays open (hysteresis)
    s[16:20] = 2.5     # over anomaly for 4 windows: escalates
    (event,) = find_events(s, WARN, ANOM, CLEAR, RULE)
    assert (event.start, event.raised, event.end, event.level) == (10, 12, 19, "anomaly")
    assert not event.open
    s[40:] = 1.5       # a second event still running at the end of the file
    events = find_events(s, WARN, ANOM, CLEAR, RULE)
    assert len(events) == 2 and events[1].open and events[1].level == "warn"
    assert events[1].raised == 42 and events[1].end == 59
    assert file_decision(events) == "anomaly"


def test_alarm_rule_is_validated() -> None:
    with pytest.raises(ValueError, match="raise_k"):
        AlarmRule(raise_k=6, raise_n=5)
    with pytest.raises(ValueError, match="clear_quantile"):
        ThresholdPolicy(clear_quantile=0.995)


# --------------------------------------------------------------------------- decision gate
def _file(fid: str, label: str, decision: str, raised: list[str], onset: str | None = None,
          difficulty: str | None = None) -> dict:
    f = {"file_id": fid, "label": label, "decision": decision, "n_events": len(raised),
         "events": [{"raised_at": r} for r in raised]}
    if onset:
        f["fault_start"] = onset
    if difficulty:
        f["difficulty"] = difficulty
    return f


def test_decision_gate_counts_false_alarms_first() -> None:
    from core.config import DecisionGate
    from inference.decision_gate import decision_gate

    onset = "2000-01-01T08:00:00.000"
    files = [_file("normal.csv", "normal", "normal", []),
             _file("f1.csv", "fault", "anomaly", ["2000-01-01T08:30:00.000"], onset),
             _file("f2.csv", "fault", "anomaly", ["2000-01-01T09:00:00.000"], onset),
             _file("hard.csv", "fault", "normal", [], onset, "hard")]
    gate = decision_gate({"s": {"files": files, "checkpoint_sha256": "abc"}}, DecisionGate())
    assert gate["ok"] and gate["status"] == "pass" and gate["hard_faults"] == 1
    assert gate["faults"] == 2 and gate["faults_detected"] == 2 and gate["checkpoints"] == {
        "s": "abc"}
    # an alarm before the onset is a false alarm, even though the file is decided anomaly
    files[1]["events"].insert(0, {"raised_at": "2000-01-01T07:00:00.000"})
    gate = decision_gate({"s": {"files": files}}, DecisionGate())
    assert not gate["ok"] and gate["early_alarms"] == ["s:f1.csv"]
    files[1]["events"].pop(0)
    files[0].update(n_events=1, decision="warn")  # the normal file alarms
    gate = decision_gate({"s": {"files": files}}, DecisionGate())
    assert not gate["ok"] and gate["normal_with_events"] == ["s:normal.csv"]
    files[0].update(n_events=0, decision="normal")
    files[2]["decision"] = "warn"  # 1 of 2 detected < 85 %
    gate = decision_gate({"s": {"files": files}}, DecisionGate())
    assert not gate["ok"] and gate["missed"] == ["s:f2.csv"]
    assert decision_gate({"s": {"files": [_file("x", "", "normal", [])]}},
                         DecisionGate())["status"] == "no_labels"
