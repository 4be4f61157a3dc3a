"""A newer model never destroys an older model's thresholds or decisions: they move to that
model's archive folder (artifacts/archive/<stream>/<run id>/)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from core.config import ThresholdPolicy
from inference.calibration import calibrate
from inference.checkpoint_io import load_trained
from pipelines.run_local_test_pipeline import main as pipeline_main
from streams import load_config

CKPT = "checkpoints/patchtst_ssl.pt"


def _resave_as(root: Path, run_id: str) -> None:
    """The same weights saved as another run: another checkpoint file (another sha256)."""
    ckpt = torch.load(root / CKPT, weights_only=True)
    ckpt["run_id"] = run_id
    torch.save(ckpt, root / CKPT)


def test_thresholds_of_another_checkpoint_are_archived(run_root: Path, capsys) -> None:
    cfg = load_config("configs/patch.yaml")
    out = run_root / "artifacts/calibration/patchtst_thresholds.json"
    policy = ThresholdPolicy(min_tail_windows=3)
    first = calibrate(load_trained(CKPT), cfg, "data/local/calib/fdc/*.csv", policy, out,
                      progress=False)
    again = calibrate(load_trained(CKPT), cfg, "data/local/calib/fdc/*.csv", policy, out,
                      progress=False)  # the same model: replaced in place
    assert again["checkpoint_sha256"] == first["checkpoint_sha256"]
    assert not (run_root / "artifacts/archive").exists()
    _resave_as(run_root, "second")
    calibrate(load_trained(CKPT), cfg, "data/local/calib/fdc/*.csv", policy, out, progress=False)
    kept = (run_root / "artifacts/archive/patchtst" / first["checkpoint_run_id"]
            / "artifacts/calibration/patchtst_thresholds.json")
    assert json.loads(kept.read_text())["checkpoint_sha256"] == first["checkpoint_sha256"]
    assert json.loads(out.read_text())["checkpoint_run_id"] == "second"
    assert "replacing the thresholds of checkpoints/patchtst_ssl.pt" in capsys.readouterr().out


def test_decisions_of_another_checkpoint_are_archived(run_root: Path, capsys) -> None:
    decision = {"streams": {"patchtst": {
        "config": "configs/patch.yaml", "checkpoint": CKPT,
        "calibration_path": "data/local/calib/fdc/*.csv",
        "test_path": "data/local/train/fdc/train_0.csv"}},
        "thresholds": {"min_tail_windows": 3}}
    (run_root / "configs/decision.yaml").write_text(yaml.safe_dump(decision))
    argv = ["--config", "configs/decision.yaml", "--stream", "patchtst"]
    out = run_root / "artifacts/decisions"
    assert pipeline_main([*argv, "--run-id", "d1"]) == 0
    first = json.loads((out / "decisions.json").read_text())["streams"]["patchtst"]
    windows = (out / "patchtst_windows.csv").read_bytes()
    _resave_as(run_root, "second")
    assert pipeline_main([*argv, "--run-id", "d2"]) == 0
    kept = run_root / "artifacts/archive/patchtst" / first["checkpoint_run_id"] / \
        "artifacts/decisions"
    assert (kept / "patchtst_windows.csv").read_bytes() == windows
    assert json.loads((kept / "patchtst_decisions.json").read_text())["run_id"] == "d1"
    now = json.loads((out / "decisions.json").read_text())["streams"]["patchtst"]
    assert now["run_id"] == "d2" and now["checkpoint_run_id"] == "second"
    assert "replacing the patchtst decisions of checkpoints/patchtst_ssl.pt" in \
        capsys.readouterr().out
