"""The exporter's handling of the decision layer's fields in decisions.json: alarm events,
labels, effective settings and the decision gate pass through to the dashboard state, the
gate is marked stale when a checkpoint is not the one it judged, and capping keeps every
window of an event."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.io import file_sha256
from pipelines import export_training_dashboard_state as ex
from tests.test_validate import CONFIGS, make_fake_run

FIXTURE = Path(__file__).parent / "fixtures" / "dashboard" / "dashboard-state.json"
DECISIONS = "artifacts/decisions/decisions.json"
EXPORTED_ONLY = ("stale", "stale_reason")


def decisions_from_fixture(root: Path) -> dict[str, Any]:
    """The fixture's test run as the decision layer writes it: no exporter-only gate fields,
    and the gate's checkpoint hashes those of the fake run's checkpoints."""
    data = json.loads(FIXTURE.read_text())["test_run"]
    gate = data["decision_gate"]
    for key in EXPORTED_ONLY:
        del gate[key]
    gate["checkpoints"] = {s: file_sha256(root / f"checkpoints/{s}_ssl.pt") for s in CONFIGS}
    return data


def write_decisions(root: Path, data: dict[str, Any], after_checkpoints_s: float = 10.0) -> Path:
    """decisions.json, dated ``after_checkpoints_s`` after the newest checkpoint."""
    path = root / DECISIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    newest = max((root / f"checkpoints/{s}_ssl.pt").stat().st_mtime for s in CONFIGS)
    os.utime(path, (newest + after_checkpoints_s, newest + after_checkpoints_s))
    return path


def export(root: Path) -> dict[str, Any]:
    return ex.build_state(root, "t1", CONFIGS)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    make_fake_run(root)
    return root


@pytest.fixture
def run(fake_run: Path, tmp_path: Path) -> Path:
    """A private copy of the fake run (tests change its checkpoints)."""
    root = tmp_path / "run"
    shutil.copytree(fake_run, root)
    return root


def test_events_labels_settings_and_gate_pass_through(run: Path) -> None:
    data = decisions_from_fixture(run)
    write_decisions(run, data)
    test_run = export(run)["test_run"]
    gate = test_run["decision_gate"]
    assert gate == {**data["decision_gate"], "stale": False, "stale_reason": None}
    for name, stream in data["streams"].items():
        out = test_run["streams"][name]
        for key in ("thresholds", "alarm", "effective"):
            assert out[key] == stream[key], (name, key)
        assert out["files"] == stream["files"], name
    fault = test_run["streams"]["patchtst"]["files"][1]
    assert fault["label"] == "fault" and fault["fault_start"] == "2026-02-20T11:36:00"
    assert [e["level"] for e in fault["events"]] == ["warn", "anomaly"]
    assert fault["first_alarm"] == fault["events"][0]["raised_at"]
    hard = test_run["streams"]["patchtst"]["files"][2]
    assert hard["difficulty"] == "hard" and hard["correct"] is False
    assert test_run["streams"]["swinmae"]["files"][1]["events"][0]["bands"]


def test_decisions_without_the_new_fields_still_load(run: Path) -> None:
    data = decisions_from_fixture(run)
    del data["decision_gate"]
    for stream in data["streams"].values():
        for key in ("alarm", "effective"):
            del stream[key]
        del stream["thresholds"]["clear"]
        for f in stream["files"]:
            for key in ("label", "difficulty", "correct", "fault_start", "events", "n_events",
                        "first_alarm"):
                f.pop(key, None)
    write_decisions(run, data)
    test_run = export(run)["test_run"]
    assert "decision_gate" not in test_run
    assert test_run["streams"]["patchtst"]["files"] == data["streams"]["patchtst"]["files"]


def _retrain_patchtst(root: Path, same_bytes: bool) -> None:
    """Rewrite the PatchTST checkpoint (its bytes, or only its time) after the decisions."""
    ckpt = root / "checkpoints/patchtst_ssl.pt"
    if not same_bytes:
        ckpt.write_bytes(ckpt.read_bytes() + b"retrained")
    later = (root / DECISIONS).stat().st_mtime + 60
    os.utime(ckpt, (later, later))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda root: _retrain_patchtst(root, same_bytes=False), "patchtst checkpoint changed"),
        (lambda root: _retrain_patchtst(root, same_bytes=True),
         "patchtst checkpoint newer than the decisions"),
        (lambda root: (root / "checkpoints/swinmae_ssl.pt").unlink(),
         "swinmae checkpoint missing"),
    ],
    ids=["other-bytes", "newer-file", "missing"],
)
def test_gate_is_stale_when_a_checkpoint_is_not_the_judged_one(run: Path, change,  # noqa: ANN001
                                                               reason: str) -> None:
    write_decisions(run, decisions_from_fixture(run))
    change(run)
    gate = export(run)["test_run"]["decision_gate"]
    assert gate["stale"] is True and gate["stale_reason"] == reason
    assert gate["ok"] is True  # the gate's own verdict is kept; stale says it is out of date


def test_changed_bytes_are_stale_even_when_decisions_look_newer(run: Path) -> None:
    data = decisions_from_fixture(run)
    data["decision_gate"]["checkpoints"]["swinmae"] = "0" * 64
    write_decisions(run, data, after_checkpoints_s=3600)
    gate = export(run)["test_run"]["decision_gate"]
    assert gate["stale_reason"] == "swinmae checkpoint changed"


def test_an_unknown_recorded_hash_falls_back_to_the_file_time(run: Path) -> None:
    data = decisions_from_fixture(run)
    data["decision_gate"]["checkpoints"]["patchtst"] = None  # an entry kept from an old run
    write_decisions(run, data)
    assert export(run)["test_run"]["decision_gate"]["stale"] is False
    _retrain_patchtst(run, same_bytes=False)
    gate = export(run)["test_run"]["decision_gate"]
    assert gate["stale_reason"] == "patchtst checkpoint newer than the decisions"


def test_malformed_gate_is_dropped_and_the_test_run_kept(run: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    data = decisions_from_fixture(run)
    data["decision_gate"]["status"] = "maybe"
    write_decisions(run, data)
    test_run = export(run)["test_run"]
    assert test_run is not None and "decision_gate" not in test_run
    assert "decision_gate does not match" in capsys.readouterr().err


def _windows(n: int) -> list[dict[str, Any]]:
    return [{"index": i, "score": 0.1, "level": "normal"} for i in range(n)]


def test_cap_windows_keeps_every_window_of_an_event() -> None:
    windows = _windows(5000)
    for i in range(4000, 4100):
        windows[i].update(level="anomaly", score=5.0)
    # An event may hold quiet (normal) windows before it clears: they stay too.
    events = [{"start_window": 100, "end_window": 160}, {"start_window": 3990, "end_window": 4105}]
    kept = ex.cap_windows(copy.deepcopy(windows), cap=1000, events=events)
    idx = [w["index"] for w in kept]
    assert len(kept) == 1000 and idx == sorted(idx)
    assert set(range(100, 161)) | set(range(3990, 4106)) <= set(idx)


def test_cap_windows_keeps_events_even_past_the_cap() -> None:
    windows = _windows(3000)
    windows[2900].update(level="warn", score=2.0)
    kept = ex.cap_windows(windows, cap=100, events=[{"start_window": 0, "end_window": 149}])
    assert [w["index"] for w in kept] == list(range(150))  # the event wins over the cap
