"""Calibration (held-out normal data only) and the batch decision pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.config import ThresholdPolicy, load_decision_config
from core.errors import ConfigError, UserError
from core.io import file_sha256
from inference.calibration import (
    calibrate,
    load_thresholds,
    reference_windows,
    threshold_profile,
)
from inference.checkpoint_io import load_trained
from inference.scoring import breakdown
from pipelines.run_local_test_pipeline import main as pipeline_main
from streams import load_config
from tests.test_scoring import FDC_START_S, write_fdc, write_vib

CONTRACT_KEYS = {"schema_version", "stream", "clear", "warn", "anomaly", "method", "levels",
                 "n_windows", "effective_windows", "expected_false_alarms", "source_files",
                 "checkpoint", "created"}
SMALL = ThresholdPolicy(min_tail_windows=3)  # the fixture's calibration files are tiny


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
    policy = SMALL
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
    assert 0 < saved["clear"] < saved["warn"] < saved["anomaly"]
    assert saved["score_summary"]["fraction_above_warn"] <= 0.02
    # what the thresholds rest on and what they promise
    assert 1 <= saved["effective_windows"] <= saved["n_windows"]
    assert {saved["levels"][k]["method"] for k in ("clear", "warn", "anomaly")} <= {"rank", "tail"}
    fa = saved["expected_false_alarms"]
    assert fa["method"] == "leave-one-block-out over 5 time blocks of 1 file(s)"
    for level, target in (("warn", 0.01), ("anomaly", 0.001)):
        lo, hi = fa[level]["interval_95"]
        assert fa[level]["target"] == target and 0 <= lo <= fa[level]["estimate"] <= hi <= 1
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
    saved = calibrate(trained, cfg, "data/local/calib/vib/*.csv", SMALL,
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
        "thresholds": {"min_tail_windows": 3},
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
    # events: the file decision is the highest event level; each event names contributors
    for block in decisions["streams"].values():
        assert block["alarm"] == {"raise_k": 3, "raise_n": 5, "clear_windows": 5}
        assert block["effective"]["device"] == "cpu" and block["effective"]["amp"] == "off (CPU)"
        for f in block["files"]:
            levels = [e["level"] for e in f["events"]]
            expect = "anomaly" if "anomaly" in levels else "warn" if levels else "normal"
            assert f["decision"] == expect and f["n_events"] == len(levels)
            for e in f["events"]:
                assert e["start_window"] <= e["raised_window"] <= e["end_window"]
                assert e["contributors"] and e["peak_score"] >= block["thresholds"]["warn"]
    labelled = {f["file_id"]: f for f in fdc["files"]}
    assert labelled["normal_a.csv"]["label"] == "normal"
    assert labelled["fault_b.csv"]["label"] == "fault"
    events = pd.read_csv(out / "patchtst_events.csv")
    assert list(events.columns[:6]) == ["file", "event", "level", "start", "raised_at", "end"]
    assert len(events) == sum(f["n_events"] for f in fdc["files"])
    gate = decisions["decision_gate"]
    assert gate["normal_files"] == 1 and gate["faults"] == 1
    assert gate["checkpoints"]["patchtst"] == fdc["checkpoint_sha256"]
    assert "decision gate" in printed and "broken.csv" in printed


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
    raw["thresholds"]["warn_quantile"] = 0.98
    config.write_text(yaml.safe_dump(raw))
    assert pipeline_main(["--config", str(config), "--stream", "patchtst"]) == 0
    assert "calibrating (the threshold policy changed" in capsys.readouterr().out
    thr = json.loads((tmp_path / "calibration" / "patchtst_thresholds.json").read_text())
    assert thr["policy"]["warn_quantile"] == 0.98


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
