"""Calibration (held-out normal data only) and the batch decision pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.config import FileRule, ThresholdPolicy, load_decision_config
from core.errors import ConfigError, UserError
from core.io import file_sha256
from inference.calibration import (
    calibrate,
    levels,
    load_thresholds,
    reference_windows,
    threshold_profile,
    thresholds_from_scores,
)
from inference.checkpoint_io import load_trained
from inference.decisions import file_level
from inference.scoring import breakdown
from pipelines.run_local_test_pipeline import main as pipeline_main
from streams import load_config
from tests.test_scoring import FDC_START_S, write_fdc, write_vib

CONTRACT_KEYS = {"schema_version", "stream", "warn", "anomaly", "method", "n_windows",
                 "source_files", "checkpoint", "created"}


# --------------------------------------------------------------------------- pure rules
def test_thresholds_follow_the_policy() -> None:
    scores = np.arange(1, 1001, dtype=float)
    warn, anomaly = thresholds_from_scores(scores, ThresholdPolicy())
    assert warn == pytest.approx(np.quantile(scores, 0.99))
    assert anomaly == pytest.approx(np.quantile(scores, 0.999))
    assert np.mean(scores > warn) == pytest.approx(0.01, abs=1e-3)
    policy = ThresholdPolicy(anomaly_method="max_margin", anomaly_margin=1.5)
    assert thresholds_from_scores(scores, policy)[1] == pytest.approx(1500.0)
    with pytest.raises(ValueError, match="anomaly_quantile"):
        ThresholdPolicy(warn_quantile=0.99, anomaly_quantile=0.95)


def test_levels_and_file_rule() -> None:
    lv = levels(np.array([0.5, 1.0, 1.5, 2.0, 2.5]), warn=1.0, anomaly=2.0)
    assert list(lv) == ["normal", "normal", "warn", "warn", "anomaly"]
    rule = FileRule(min_fraction=0.1, min_windows=2)
    normal = np.array(["normal"] * 40, dtype=object)
    assert file_level(normal, rule) == "normal"
    one_warn = normal.copy()
    one_warn[3] = "warn"
    assert file_level(one_warn, rule) == "normal"  # one window is not enough
    flagged = normal.copy()
    flagged[:4] = ["warn", "anomaly", "anomaly", "anomaly"]
    assert file_level(flagged, rule) == "warn"  # 4 flagged windows, only 3 anomalies (need 4)
    flagged[4] = "anomaly"
    assert file_level(flagged, rule) == "anomaly"
    assert file_level(np.array(["anomaly"]), rule) == "anomaly"  # a one-window file


# --------------------------------------------------------------------------- calibration
def test_calibration_refuses_training_files(root: Path, tmp_path: Path) -> None:
    trained = load_trained("checkpoints/patchtst_ssl.pt")
    cfg = load_config("configs/patch.yaml")
    out = tmp_path / "thr.json"
    with pytest.raises(UserError, match="train_0.csv: calibration file is also matched by the "
                                        "training data path"):
        calibrate(trained, cfg, "data/local/train/fdc/*.csv", ThresholdPolicy(), out)
    copy = tmp_path / "renamed_copy.csv"
    shutil.copy(root / "data/local/train/fdc/train_1.csv", copy)
    with pytest.raises(UserError, match="same content as training file"):
        calibrate(trained, cfg, str(copy), ThresholdPolicy(), out)
    assert not out.exists()


def test_thresholds_json_content(root: Path, tmp_path: Path) -> None:
    trained = load_trained("checkpoints/patchtst_ssl.pt")
    cfg = load_config("configs/patch.yaml")
    out = tmp_path / "patchtst_thresholds.json"
    policy = ThresholdPolicy(min_windows=10)
    result = calibrate(trained, cfg, "data/local/calib/fdc/*.csv", policy, out, progress=False)
    saved = json.loads(out.read_text())
    assert saved == result
    assert set(saved) >= CONTRACT_KEYS
    assert saved["stream"] == "patchtst"
    assert saved["source_files"] == ["data/local/calib/fdc/calib_0.csv"]
    assert saved["n_windows"] == (300 - 16) // 4 + 1
    assert saved["checkpoint"] == "checkpoints/patchtst_ssl.pt"
    assert saved["checkpoint_sha256"] == file_sha256(root / "checkpoints/patchtst_ssl.pt")
    assert saved["training_paths_excluded"] == ["data/local/train/fdc/*.csv"]
    assert saved["error_profile"] == {"mode": "raw"}  # FDC default: raw errors
    assert 0 < saved["warn"] <= saved["anomaly"] <= saved["score_summary"]["max"]
    assert saved["score_summary"]["fraction_above_warn"] <= 0.02
    assert load_thresholds(out, "patchtst")["warn"] == saved["warn"]
    with pytest.raises(UserError, match="not 'swinmae'"):
        load_thresholds(out, "swinmae")


def test_relative_scores_use_a_held_apart_profile(root: Path, tmp_path: Path) -> None:
    ids = ["a"] * 5 + ["b"] * 4
    starts = np.array([40, 0, 10, 30, 20, 0, 3, 6, 9])
    ref = reference_windows(ids, starts)
    assert list(ref) == [False, True, True, False, True, True, True, False, False]

    trained = load_trained("checkpoints/swinmae_ssl.pt")
    cfg = load_config("configs/swin.yaml")
    out = tmp_path / "swinmae_thresholds.json"
    saved = calibrate(trained, cfg, "data/local/calib/vib/*.csv", ThresholdPolicy(min_windows=10),
                      out, progress=False)
    profile = saved["error_profile"]
    assert profile["mode"] == "relative" and saved["scoring"]["error_profile"] == "relative"
    assert np.asarray(profile["values"]).shape == (3, 32)  # axes x image rows
    assert profile["n_windows"] == 15 and saved["n_windows"] == 15  # 30 windows, split in two
    values = threshold_profile(saved)
    basis = np.stack([values, 2 * values])
    scores, aux = breakdown(basis, trained.task, profile=values)
    np.testing.assert_allclose(scores, [0.0, np.log(2)], atol=1e-6)
    np.testing.assert_allclose(aux["band_errors"][1], np.log(2), atol=1e-6)


# --------------------------------------------------------------------------- pipeline
def _decision_config(root: Path, tmp_path: Path) -> Path:
    test = tmp_path / "test"
    write_fdc(test / "fdc" / "normal_a.csv", slice(1100, 1300))
    write_fdc(test / "fdc" / "fault_b.csv", slice(1300, 1500), step_channel="ch_02")
    (test / "fdc" / "broken.csv").write_text("timestamp,ch_00\nnot-a-time,abc\n")
    pd.DataFrame({"file": ["normal_a.csv", "fault_b.csv"], "label": ["normal", "fault"]}).to_csv(
        test / "fdc" / "labels.csv", index=False)
    # Vibration test files: the first one spans the end of normal_a and the start of fault_b.
    write_vib(test / "vib" / "normal_v.csv", 4.0, seed=22, start_s=FDC_START_S + 1298)
    write_vib(test / "vib" / "bearing_v.csv", 4.0, seed=23, fault="bearing")
    (test / "vib" / "no_axes.csv").write_text("a,b\n1,2\n3,4\n")
    cfg = {
        "streams": {
            "patchtst": {"config": "configs/patch.yaml",
                         "checkpoint": "checkpoints/patchtst_ssl.pt",
                         "calibration_path": "data/local/calib/fdc/*.csv",
                         "test_path": str(test / "fdc" / "*.csv"),
                         "overrides": ["data.stride=8"]},
            "swinmae": {"config": "configs/swin.yaml", "checkpoint": "checkpoints/swinmae_ssl.pt",
                        "calibration_path": "data/local/calib/vib/*.csv",
                        "test_path": str(test / "vib" / "*.csv")},
        },
        "thresholds": {"min_windows": 10},
        "calibration_dir": str(tmp_path / "calibration"),
        "output_dir": str(tmp_path / "decisions"),
    }
    path = tmp_path / "decision.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pipeline_writes_decisions_for_both_streams(root: Path, tmp_path: Path, capsys) -> None:
    config = _decision_config(root, tmp_path)
    assert pipeline_main(["--config", str(config), "--run-id", "t1"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "decisions"
    decisions = json.loads((out / "decisions.json").read_text())
    assert decisions["run_id"] == "t1" and set(decisions["streams"]) == {"patchtst", "swinmae"}

    fdc = decisions["streams"]["patchtst"]
    assert fdc["contributor_kind"] == "channel"
    assert [f["file_id"] for f in fdc["files"]] == ["fault_b.csv", "normal_a.csv"]
    assert [d["file_id"] for d in fdc["dropped"]] == ["broken.csv"]
    assert fdc["dropped"][0]["reason"]
    vib = decisions["streams"]["swinmae"]
    assert vib["contributor_kind"] == "axis"
    assert sorted(f["file_id"] for f in vib["files"]) == ["bearing_v.csv", "normal_v.csv"]
    assert [d["file_id"] for d in vib["dropped"]] == ["no_axes.csv"]

    for stream, block in decisions["streams"].items():
        thr = json.loads((tmp_path / "calibration" / f"{stream}_thresholds.json").read_text())
        assert block["thresholds"]["warn"] == pytest.approx(thr["warn"], rel=1e-5)
        warn, anomaly = thr["warn"], thr["anomaly"]
        if stream == "patchtst":  # the decision config's override data.stride=8 applies:
            # starts 0, 8, ..., 280 plus 284 so that the last row is covered too
            assert thr["n_windows"] == (300 - 16) // 8 + 2
        for f in block["files"]:
            assert f["n_windows"] == len(f["windows"]) > 0
            for w in f["windows"]:
                expect = "anomaly" if w["score"] > anomaly else "warn" if w["score"] > warn \
                    else "normal"
                assert w["level"] == expect
                assert set(w["contributions"]) <= set(
                    [f"ch_{i:02d}" for i in range(6)] if stream == "patchtst" else ["x", "y", "z"])
            assert f["n_anomaly"] == sum(w["level"] == "anomaly" for w in f["windows"])
        if stream == "swinmae":
            assert all(len(w["bands"]) >= 6 for f in block["files"] for w in f["windows"])

    windows = pd.read_csv(out / "patchtst_windows.csv")
    assert {"file", "window", "start", "end", "score", "level", "top_contributors"} <= set(
        windows.columns)
    first = windows[windows["file"] == "fault_b.csv"].iloc[0]  # rows 1300.. of the machine
    assert (first["start"], first["end"]) == ("2024-01-01T00:21:40.000", "2024-01-01T00:21:55.000")
    assert len(windows) == sum(f["n_windows"] for f in fdc["files"])
    assert "top_band" in pd.read_csv(out / "swinmae_windows.csv").columns
    summary = pd.read_csv(out / "file_summary.csv")
    dropped = summary[summary["decision"] == "dropped"]
    assert sorted(dropped["file_id"]) == ["broken.csv", "no_axes.csv"]
    assert (out / "dqvl" / "patchtst" / "summary.json").is_file()

    # Fusion: only the vibration file stamped inside the FDC files' range overlaps them.
    assert {f["swinmae_file"] for f in decisions["fused"]} == {"normal_v.csv"}
    assert {f["patchtst_file"] for f in decisions["fused"]} == {"normal_a.csv", "fault_b.csv"}
    assert all(f["decision"] in ("normal", "warn", "anomaly") for f in decisions["fused"])
    assert "correct against labels.csv" in printed and "dropped patchtst broken.csv" in printed


def test_pipeline_single_stream_and_reuses_thresholds(root: Path, tmp_path: Path,
                                                       capsys) -> None:
    config = _decision_config(root, tmp_path)
    assert pipeline_main(["--config", str(config), "--stream", "patchtst"]) == 0
    first = capsys.readouterr().out
    assert "calibrating (no thresholds yet)" in first
    assert pipeline_main(["--config", str(config), "--stream", "patchtst"]) == 0
    second = capsys.readouterr().out
    assert "calibrating" not in second
    decisions = json.loads((tmp_path / "decisions" / "decisions.json").read_text())
    assert list(decisions["streams"]) == ["patchtst"] and decisions["fused"] == []
    assert pipeline_main(["--config", str(config), "--stream", "patchtst",
                          "--recalibrate"]) == 0
    assert "calibrating (--recalibrate)" in capsys.readouterr().out
    raw = yaml.safe_load(config.read_text())
    raw["thresholds"]["warn_quantile"] = 0.95
    config.write_text(yaml.safe_dump(raw))
    assert pipeline_main(["--config", str(config), "--stream", "patchtst"]) == 0
    assert "calibrating (the threshold policy changed" in capsys.readouterr().out
    thr = json.loads((tmp_path / "calibration" / "patchtst_thresholds.json").read_text())
    assert thr["policy"]["warn_quantile"] == 0.95


def test_decision_runs_of_two_streams_share_a_folder(root: Path, tmp_path: Path, capsys) -> None:
    config = _decision_config(root, tmp_path)
    out = tmp_path / "decisions"
    assert pipeline_main(["--config", str(config), "--stream", "patchtst", "--run-id", "a"]) == 0
    fdc_windows = (out / "patchtst_windows.csv").read_bytes()
    assert pipeline_main(["--config", str(config), "--stream", "swinmae", "--run-id", "b"]) == 0
    decisions = json.loads((out / "decisions.json").read_text())
    assert {s: v["run_id"] for s, v in decisions["streams"].items()} == {
        "patchtst": "a", "swinmae": "b"}
    assert (out / "patchtst_windows.csv").read_bytes() == fdc_windows  # FDC results kept
    summary = pd.read_csv(out / "file_summary.csv")
    assert set(summary["stream"]) == {"patchtst", "swinmae"}
    assert len(summary[summary["stream"] == "patchtst"]) == 3  # two decided, one dropped


def test_decision_config_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"streams": {}, "surprise": 1}))
    with pytest.raises(ConfigError, match="surprise: unknown key"):
        load_decision_config(str(path))
    repo_cfg = load_decision_config("configs/decision_local.yaml")
    assert repo_cfg.streams["patchtst"].test_path == "data/local/test/fdc/*.csv"
    assert repo_cfg.thresholds.warn_quantile == 0.99
