"""The demo's promise, end to end with the CPU profile: `make run`'s data, training and
decision steps in a temporary repository (the same functions, in-process).

Held-out normal files (the Tennessee Eastman normal run and every vibration normal)
must raise no alarm event, at least 16 of the 18 detectable TEP faults must be decided
anomaly, and the decision-quality gate must say so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import streams
from core.layout import DECISION_CONFIG
from engine.trainer import fit
from pipelines.run_local_test_pipeline import main as decide_main
from pipelines.run_main_job import CPU_PROFILE, decision_config, runtime_configs
from sensor_data.demo import materialise_demo
from sensor_data.tep import HARD_FAULTS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_demo_normal_files_raise_no_alarm_and_faults_are_found(demo_root: Path,
                                                                capsys) -> None:  # noqa: ANN001
    materialise_demo(demo_root)
    configs = runtime_configs(CPU_PROFILE)
    for stream, path in configs.items():
        fit(streams.load_config(path, stream=stream), run_id="demo-test")
    decisions_cfg = decision_config(configs, CPU_PROFILE)
    assert decisions_cfg != DECISION_CONFIG
    assert decide_main(["--config", decisions_cfg, "--run-id", "demo-test"]) == 0
    printed = capsys.readouterr().out

    data = json.loads((demo_root / "artifacts/decisions/decisions.json").read_text())
    files = {(s, f["file_id"]): f for s, e in data["streams"].items() for f in e["files"]}
    normals = [k for k, f in files.items() if f.get("label") == "normal"]
    assert len(normals) >= 3  # the TEP normal file and the vibration normals
    alarmed = {k: f["n_events"] for k, f in files.items() if k in normals and f["n_events"]}
    assert alarmed == {}
    detectable = [f for (s, fid), f in files.items() if s == "patchtst"
                  and f.get("label") == "fault" and int(fid[1:3]) not in HARD_FAULTS]
    assert len(detectable) == 18
    assert sum(f["decision"] == "anomaly" for f in detectable) >= 16
    for f in detectable:  # events carry the onset, and detection comes after it
        assert f["fault_start"] == "2000-01-01T08:00:00.000"
    vib_faults = [f for (s, _), f in files.items() if s == "swinmae" and f.get("label") == "fault"]
    assert vib_faults and all(f["decision"] == "anomaly" for f in vib_faults)
    gate = data["decision_gate"]
    assert gate["ok"] and gate["normal_with_events"] == [] and gate["hard_faults"] == 3
    assert "false alarms: 0 of" in printed and "decision gate PASS" in printed
