"""Dashboard state export and run history, on a fabricated run (no training)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from core import status as st
from core.errors import UserError
from core.layout import CHECKLIST
from core.paths import REPO_ROOT
from pipelines import export_training_dashboard_state as ex
from tests.test_validate import CONFIGS, PATCH_CFG, SWIN_CFG, make_fake_run

OUT = "training_dashboard/data/dashboard-state.json"


def _strings(obj: Any):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _decisions(n_windows: int) -> dict:
    windows = [
        {
            "index": i,
            "start": i * 10,
            "end": i * 10 + 96,
            "score": 0.1,
            "level": "normal",
            "contributions": {"a": 0.05, "b": 0.05},
        }
        for i in range(n_windows)
    ]
    for i in (7, 1500, 2400):
        windows[i].update(score=9.0, level="anomaly")
    return {
        "schema_version": "1.0",
        "created": "2026-01-01T00:00:00+00:00",
        "run_id": "t1",
        "streams": {
            "patchtst": {
                "checkpoint": "checkpoints/patchtst_ssl.pt",
                "thresholds": {"warn": 1.0, "anomaly": 2.0},
                "contributor_kind": "channel",
                "files": [
                    {
                        "file_id": "test_a.csv",
                        "dqvl_decision": "keep",
                        "decision": "anomaly",
                        "n_windows": n_windows,
                        "n_warn": 0,
                        "n_anomaly": 3,
                        "max_score": 9.0,
                        "windows": windows,
                    }
                ],
                "dropped": [{"file_id": "bad.csv", "reason": "header only"}],
            }
        },
        "fused": [],
    }


@pytest.fixture()
def fake_run(tmp_path: Path) -> Path:
    make_fake_run(tmp_path)
    return tmp_path


def test_state_is_schema_valid_and_has_no_machine_path(fake_run: Path, monkeypatch) -> None:
    # A data path outside the repository and a diverged (NaN) loss must not leak through.
    cfg_path = fake_run / PATCH_CFG
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"] = {"source": "files", "path": "/mnt/plant/fdc/*.csv"}
    cfg_path.write_text(yaml.safe_dump(raw))
    with open(fake_run / "artifacts/loss/swinmae_loss_history.csv", "a") as fh:
        fh.write("3,nan,,0.001,0.5\n")
    dec = fake_run / "artifacts/decisions/decisions.json"
    dec.parent.mkdir(parents=True)
    dec.write_text(json.dumps(_decisions(2500)))
    monkeypatch.setenv("SSL_REPO_ROOT", str(fake_run))
    st.reset_status("run-7")
    st.set_node("data_prep", "running", "reading", log=f"{fake_run}/artifacts/pipeline/logs/x.log")
    st.set_progress("patchtst", epoch=1, epochs=3, step=5, steps=10, loss=0.5, windows_per_s=42.0)

    code = ex.main(
        [
            "--repo-root",
            str(fake_run),
            "--out",
            OUT,
            "--patch-config",
            PATCH_CFG,
            "--swin-config",
            SWIN_CFG,
        ]
    )
    assert code == 0
    text = (fake_run / OUT).read_text()
    state = json.loads(text)
    schema = json.loads(ex.SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(state)
    assert str(fake_run) not in text and str(REPO_ROOT) not in text
    assert not [s for s in _strings(state) if s.startswith("/")]
    assert state["meta"]["repo_root"] == "." and state["meta"]["run_id"] == "run-7"
    assert state["config"]["patchtst"]["path"] == "_external/*.csv"
    assert state["config"]["swinmae"] == {
        "source": "synthetic",
        "path": "data/local/train/vib/*.csv",
        "fs": 2000.0,
        "lr": 0.001,
        "epochs": 2,
        "mask_ratio": 0.5,
        "amp": True,
    }
    assert state["config"]["patchtst"]["fs"] is None
    assert state["loss"]["swinmae"][-1] == {
        "epoch": 3,
        "train_loss": None,
        "val_loss": None,
        "lr": 0.001,
        "seconds": 0.5,
    }
    assert state["loss"]["patchtst"][1]["val_loss"] == 0.7
    nodes = {n["id"]: n for n in state["nodes"]}
    assert [n["id"] for n in state["nodes"]] == list(st.NODE_IDS)
    assert nodes["data_prep"]["status"] == "done"  # progress implies data prep finished
    assert nodes["patchtst_training"]["status"] == "running"
    assert nodes["patchtst_training"]["message"] == "epoch 1/3, loss 0.5"
    assert nodes["swinmae_training"]["status"] == "done"  # inferred: checkpoint present
    assert state["progress"]["windows_per_s"] == 42.0
    assert state["dqvl"]["swinmae"] == {"keep": 3, "drop": 1, "skipped": 0}
    arts = {a["path"]: a for a in state["artifacts"]}
    ckpt = fake_run / "checkpoints/patchtst_ssl.pt"
    assert arts["checkpoints/patchtst_ssl.pt"]["size_bytes"] == ckpt.stat().st_size
    assert arts["checkpoints/patchtst_ssl.best.pt"] == {
        "path": "checkpoints/patchtst_ssl.best.pt",
        "stream": "patchtst",
        "kind": "checkpoint_best",
        "ready": False,
        "size_bytes": None,
    }
    assert arts["runs/swinmae_ssl"]["ready"] and arts["runs/swinmae_ssl"]["kind"] == "tensorboard"
    assert arts["artifacts/bundles/run1.zip"]["ready"]
    assert state["checklist"]["total"] == 7
    f = state["test_run"]["streams"]["patchtst"]["files"][0]
    assert len(f["windows"]) == ex.WINDOW_CAP and f["windows_truncated"] is True
    assert {w["index"] for w in f["windows"] if w["level"] == "anomaly"} == {7, 1500, 2400}
    assert [w["index"] for w in f["windows"]] == sorted(w["index"] for w in f["windows"])


def test_empty_repo_exports_idle_nodes(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / PATCH_CFG).write_text("stream: patchtst\n")
    (tmp_path / SWIN_CFG).write_text("stream: swinmae\n")
    state = ex.build_state(tmp_path, "fresh", CONFIGS)
    status = {n["id"]: n["status"] for n in state["nodes"]}
    assert status == {
        "data_prep": "idle",
        "dqvl": "idle",
        "patchtst_training": "idle",
        "swinmae_training": "idle",
        "artifact_save": "idle",
        "validation_gate": "idle",
    }
    assert state["checklist"]["passed"] == 1  # only the skipped smoke passes
    preview = "not run yet; preview: 1/7 passed; failing: 1, 2, 3, 4, 5, 7"
    assert state["nodes"][-1]["message"] == preview
    assert state["loss"] == {"patchtst": [], "swinmae": []}
    assert state["dqvl"] == {"patchtst": None, "swinmae": None}
    assert not any(a["ready"] for a in state["artifacts"])
    assert state["progress"] is None and state["test_run"] is None


def test_checklist_file_is_used_and_bad_explicit_one_is_an_error(fake_run: Path) -> None:
    from pipelines.validate_training_outputs import run_checklist

    checklist = run_checklist(fake_run, CONFIGS, skip_smoke=True)
    checklist["items"][2].update(status="FAIL", hint="retrain")
    checklist.update(passed=6, ok=False)
    path = fake_run / CHECKLIST
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(checklist))
    state = ex.build_state(fake_run, "r", CONFIGS)
    assert state["checklist"] == checklist
    gate = state["nodes"][-1]
    assert gate["status"] == "fail" and gate["message"] == "6/7 passed; failing: 3"
    (fake_run / "bad.json").write_text('{"items": []}')
    with pytest.raises(UserError, match="bad.json: missing or not a validation checklist"):
        ex.build_state(fake_run, "r", CONFIGS, checklist_json="bad.json")


def test_schema_violation_is_raised_as_a_bug(fake_run: Path) -> None:
    state = ex.build_state(fake_run, "r", CONFIGS)
    state["nodes"][0]["status"] = "exploded"
    with pytest.raises(ex.StateSchemaError, match="nodes/0/status"):
        ex.validate_state(state)


@pytest.mark.parametrize("bad", ["../evil", "a/b", "index", "..", "", "x" * 129, "run id"])
def test_unsafe_run_id_is_refused(bad: str) -> None:
    with pytest.raises(UserError, match="run id"):
        st.check_run_id(bad)


def test_cli_unsafe_run_id_is_one_line_error(fake_run: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.export_training_dashboard_state",
            "--repo-root",
            str(fake_run),
            "--out",
            OUT,
            "--persist-run-history",
            "--run-id",
            "../../etc/x",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: run id '../../etc/x'")
    assert "Traceback" not in proc.stderr
    assert not (fake_run / "training_dashboard").exists()


# --------------------------------------------------------------------------- run history
def _persist_worker(args: tuple) -> str:
    state, runs_dir, limit, run_id, barrier = args
    barrier.wait(timeout=60)
    state = json.loads(json.dumps(state))
    state["meta"]["run_id"] = run_id
    state["meta"]["generated_at"] = ex.datetime.now(ex.UTC).isoformat(timespec="microseconds")
    ex.persist_run_history(state, Path(runs_dir), limit)
    return state["meta"]["generated_at"]


def _concurrent(state: dict, runs_dir: Path, limit: int, n: int = 20) -> dict[str, str]:
    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(n)
    ids = [f"run-{i:02d}" for i in range(n)]
    with ctx.Pool(n) as pool:
        stamps = pool.map(_persist_worker, [(state, str(runs_dir), limit, i, barrier) for i in ids])
    return dict(zip(ids, stamps, strict=True))


@pytest.mark.parametrize("limit", [50, 5])
def test_concurrent_exports_keep_a_valid_index(fake_run: Path, limit: int) -> None:
    state = ex.build_state(fake_run, "base", CONFIGS)
    runs_dir = fake_run / "runs_history"
    stamps = _concurrent(state, runs_dir, limit)
    index = json.loads((runs_dir / "index.json").read_text())
    listed = [r["run_id"] for r in index["runs"]]
    newest = sorted(stamps, key=lambda r: (stamps[r], r), reverse=True)[:limit]
    assert listed == newest
    on_disk = sorted(p.stem for p in runs_dir.glob("*.json") if p.name != "index.json")
    assert on_disk == sorted(newest)
    for run_id in listed:
        snap = json.loads((runs_dir / f"{run_id}.json").read_text())
        assert snap["meta"]["run_id"] == run_id
    assert index["runs"][0]["final_loss"] == {"patchtst": 0.7, "swinmae": 0.7}
    assert index["runs"][0]["passed"] == 7 and index["runs"][0]["total"] == 7


def test_history_survives_a_corrupt_index_and_caps_with_eviction(fake_run: Path) -> None:
    runs_dir = fake_run / "hist"
    for i in range(3):
        ex.persist_run_history(ex.build_state(fake_run, f"r{i}", CONFIGS), runs_dir)
    (runs_dir / "index.json").write_text('{"runs": [')  # corrupt
    ex.persist_run_history(ex.build_state(fake_run, "r3", CONFIGS), runs_dir, 3)
    index = json.loads((runs_dir / "index.json").read_text())
    assert [r["run_id"] for r in index["runs"]] == ["r3", "r2", "r1"]
    assert not (runs_dir / "r0.json").exists()
    ex.persist_run_history(ex.build_state(fake_run, "r1", CONFIGS), runs_dir, 3)
    index = json.loads((runs_dir / "index.json").read_text())
    assert [r["run_id"] for r in index["runs"]] == ["r1", "r3", "r2"]


def test_failed_write_leaves_previous_state_and_index_intact(fake_run: Path, monkeypatch) -> None:
    out = fake_run / OUT
    argv = [
        "--repo-root",
        str(fake_run),
        "--out",
        OUT,
        "--patch-config",
        PATCH_CFG,
        "--swin-config",
        SWIN_CFG,
        "--persist-run-history",
    ]
    assert ex.main([*argv, "--run-id", "old"]) == 0
    runs_dir = out.parent / "runs"
    before_index = (runs_dir / "index.json").read_bytes()

    real_replace = os.replace

    def replace_fails_for_index(src, dst):
        if Path(dst).name == "index.json":
            raise OSError("simulated crash while replacing index.json")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_fails_for_index)
    with pytest.raises(OSError, match="simulated crash"):
        ex.main([*argv, "--run-id", "new"])
    assert json.loads((runs_dir / "index.json").read_bytes()) == json.loads(before_index)
    assert not [p for p in runs_dir.iterdir() if p.suffix == ".tmp"]

    assert json.loads(out.read_bytes())["meta"]["run_id"] == "new"

    def fsync_fails(fd):
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="mid-write"):
        ex.main([*argv, "--run-id", "newer"])
    assert json.loads(out.read_bytes())["meta"]["run_id"] == "new"
    assert not [p for p in out.parent.iterdir() if p.suffix == ".tmp"]
    monkeypatch.undo()
    # The interrupted run's snapshot is picked up by the next export: nothing is lost.
    assert ex.main([*argv, "--run-id", "next"]) == 0
    index = json.loads((runs_dir / "index.json").read_text())
    assert [r["run_id"] for r in index["runs"]] == ["next", "new", "old"]


KILL_CHILD = """
import sys, json
from pathlib import Path
from core.io import atomic_write_json
from pipelines.export_training_dashboard_state import persist_run_history
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
base = {"meta": {"run_id": "", "generated_at": ""}, "loss": {"patchtst": [], "swinmae": []},
        "checklist": None, "pad": "x" * 3_000_000}
i = 0
while True:
    base["meta"].update(run_id=f"k{i}", generated_at=f"2030-01-01T00:00:{i:06d}")
    persist_run_history(base, runs, 3)
    atomic_write_json(out, base)
    print(i, flush=True)
    i += 1
"""


def test_killed_writer_leaves_parseable_state_and_history(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "state.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(runs), str(out)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(3):  # let it finish a few rounds, then kill it mid-write
        assert proc.stdout.readline().strip() != ""
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    index = json.loads((runs / "index.json").read_text())
    assert 1 <= len(index["runs"]) <= 3
    for entry in index["runs"]:
        assert json.loads((runs / f"{entry['run_id']}.json").read_text())["pad"]
    assert json.loads(out.read_text())["meta"]["run_id"].startswith("k")
    # The lock died with the process: the next export proceeds at once.
    state = {
        "meta": {"run_id": "after", "generated_at": "2031-01-01T00:00:00"},
        "loss": {"patchtst": [], "swinmae": []},
        "checklist": None,
    }
    index = ex.persist_run_history(state, runs, 3)
    assert index["runs"][0]["run_id"] == "after" and len(index["runs"]) == 3


def test_cap_windows_keeps_flagged_and_order() -> None:
    windows = [{"index": i, "score": float(i % 7), "level": "normal"} for i in range(100)]
    for i in (3, 50, 99):
        windows[i]["level"] = "warn"
    kept = ex.cap_windows(windows, cap=10)
    idx = [w["index"] for w in kept]
    assert len(kept) == 10 and {3, 50, 99} <= set(idx) and idx == sorted(idx)
    assert ex.cap_windows(windows[:5], cap=10) == windows[:5]
