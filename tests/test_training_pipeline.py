"""One-command training pipeline and the live status file (steps faked, no training)."""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from pathlib import Path

import pytest
import yaml

from core import status as st
from core.errors import UserError
from core.layout import STATUS
from pipelines import run_local_training_pipeline as rp
from tests.test_validate import PATCH_CFG, SWIN_CFG, make_fake_run

PY = sys.executable


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _fake_steps(monkeypatch, codes: dict[str, str]) -> None:
    """Replace the named steps' commands by ``python -c CODE``; other steps stay real."""
    real = rp.build_steps

    def build(args, run_id, plans, root):
        return [rp.Step(s.name, [PY, "-c", codes[s.name]], s.nodes, s.completes)
                if s.name in codes else s for s in real(args, run_id, plans, root)]

    monkeypatch.setattr(rp, "build_steps", build)


def _trainer(stream: str, exit_code: int = 0) -> str:
    """A stand-in trainer: reports progress like the real ones, then exits."""
    return (f"import sys; from core.status import set_progress; "
            f"set_progress({stream!r}, epoch=2, epochs=2, step=4, steps=4, loss=0.25, "
            f"windows_per_s=10.0); print('{stream} epoch 2/2'); sys.exit({exit_code})")


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch) -> Path:
    make_fake_run(tmp_path, bundle=False)
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    return tmp_path


def test_dry_run_prints_commands_and_writes_nothing(repo: Path, capsys) -> None:
    before = _tree(repo)
    code = rp.main(["--dry-run", "--run-id", "r1", "--patch-config", PATCH_CFG,
                    "--swin-config", SWIN_CFG, "--validate-skip-smoke"])
    assert code == 0
    both = f"--patch-config {PATCH_CFG} --swin-config {SWIN_CFG}"
    root = str(repo)
    assert capsys.readouterr().out.splitlines() == [
        f"{PY} -m trainers.train --config {PATCH_CFG}",
        f"{PY} -m trainers.train --config {SWIN_CFG}",
        f"{PY} -m inference.run_scoring_example --stream patchtst "
        f"--checkpoint checkpoints/patchtst_ssl.pt --config {PATCH_CFG}",
        f"{PY} -m inference.run_scoring_example --stream swinmae "
        f"--checkpoint checkpoints/swinmae_ssl.pt --config {SWIN_CFG}",
        f"{PY} -m pipelines.make_bundle --repo-root {root} {both} --run-id r1",
        f"{PY} -m pipelines.validate_training_outputs --repo-root {root} {both} "
        "--json-out artifacts/validation/checklist.json --skip-smoke",
        f"{PY} -m pipelines.export_training_dashboard_state --repo-root {root} "
        f"--out training_dashboard/data/dashboard-state.json {both} --run-id r1 "
        "--persist-run-history --run-history-limit 50",
    ]
    assert _tree(repo) == before


def test_dry_run_with_overrides_and_skips(repo: Path, capsys) -> None:
    before = _tree(repo)
    code = rp.main(["--dry-run", "--run-id", "r2", "--swin-data-path", "data/mine/*.csv",
                    "--set-swin", "training.epochs=1", "--skip-patchtst", "--skip-scoring",
                    "--skip-validate", "--no-persist-run-history"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    runtime = "artifacts/runtime_configs/r2/swinmae_ssl_local.yaml"
    assert lines[0] == (f"# would write {runtime} (swinmae: training.epochs=1; "
                        "data.source=files; data.path=data/mine/*.csv)")
    assert lines[1] == f"{PY} -m trainers.train --config {runtime}"
    assert [ln.split()[2] for ln in lines[2:]] == ["pipelines.make_bundle",
                                                  "pipelines.export_training_dashboard_state"]
    assert "--persist-run-history" not in lines[-1]
    assert _tree(repo) == before


def test_bad_override_fails_before_anything_runs(repo: Path) -> None:
    with pytest.raises(UserError, match=r"training\.lr"):
        rp.main(["--dry-run", "--set-patch", "training.lr=-1"])
    with pytest.raises(UserError, match="run id"):
        rp.main(["--dry-run", "--run-id", "a/../b"])


def test_full_chain_success_marks_every_node_done(repo: Path, monkeypatch, capsys) -> None:
    _fake_steps(monkeypatch, {"train_patchtst": _trainer("patchtst"),
                              "train_swinmae": _trainer("swinmae"),
                              "score_patchtst": "print('smoke ok')",
                              "score_swinmae": "print('smoke ok')"})
    code = rp.main(["--run-id", "ok1", "--validate-skip-smoke"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "pipeline ok1: all 7 step(s) passed" in out
    logs = repo / rp.LOG_DIR
    assert sorted(p.stem for p in logs.glob("*.log")) == sorted(
        ["train_patchtst", "train_swinmae", "score_patchtst", "score_swinmae", "bundle",
         "validate", "export"])
    assert "swinmae epoch 2/2" in (logs / "train_swinmae.log").read_text()
    status = st.read_status(repo)
    assert status["run_id"] == "ok1"
    assert {n: v["status"] for n, v in status["nodes"].items()} == dict.fromkeys(
        st.NODE_IDS, "done")
    assert status["progress"]["stream"] == "swinmae"
    checklist = json.loads((repo / "artifacts/validation/checklist.json").read_text())
    assert checklist["ok"] is True
    state = json.loads((repo / "training_dashboard/data/dashboard-state.json").read_text())
    assert state["meta"]["run_id"] == "ok1" and state["checklist"] == checklist
    index = json.loads((repo / "training_dashboard/data/runs/index.json").read_text())
    assert [r["run_id"] for r in index["runs"]] == ["ok1"]
    assert (repo / "artifacts/bundles/ok1.zip").is_file()


def test_failing_step_stops_chain_marks_fail_and_still_exports(
    repo: Path, monkeypatch, capsys
) -> None:
    marker = repo / "score_ran"
    _fake_steps(monkeypatch, {"train_patchtst": _trainer("patchtst"),
                              "train_swinmae": _trainer("swinmae", exit_code=3),
                              "score_patchtst": f"open({str(marker)!r}, 'w')",
                              "score_swinmae": f"open({str(marker)!r}, 'w')"})
    code = rp.main(["--run-id", "bad1"])
    captured = capsys.readouterr()
    assert code == 1
    log_rel = "artifacts/pipeline/logs/train_swinmae.log"
    assert f"error: step 'train_swinmae' failed (exit 3); see {log_rel}" in captured.err
    assert "FAILED at step 'train_swinmae'" in captured.err
    assert not marker.exists()
    assert not (repo / "artifacts/bundles").exists()
    assert not (repo / rp.LOG_DIR / "validate.log").exists()
    nodes = st.read_status(repo)["nodes"]
    assert nodes["swinmae_training"]["status"] == "fail"
    assert nodes["swinmae_training"]["message"] == f"train_swinmae failed (exit 3); log: {log_rel}"
    assert nodes["patchtst_training"]["status"] == "done"
    assert nodes["validation_gate"]["status"] == "idle"
    state = json.loads((repo / "training_dashboard/data/dashboard-state.json").read_text())
    shown = {n["id"]: n["status"] for n in state["nodes"]}
    assert shown["swinmae_training"] == "fail" and shown["patchtst_training"] == "done"
    assert state["meta"]["run_id"] == "bad1"
    index = json.loads((repo / "training_dashboard/data/runs/index.json").read_text())
    assert index["runs"][0]["run_id"] == "bad1"


def test_runtime_config_written_user_yaml_untouched(repo: Path, monkeypatch) -> None:
    user_yaml = (repo / PATCH_CFG).read_bytes()
    seen: list[list[str]] = []
    real = rp.build_steps

    def build(args, run_id, plans, root):
        steps = real(args, run_id, plans, root)
        seen.extend(s.argv for s in steps)
        return [rp.Step(s.name, [PY, "-c", "pass"], s.nodes, s.completes) for s in steps]

    monkeypatch.setattr(rp, "build_steps", build)
    code = rp.main(["--run-id", "rt", "--patch-data-path", "data/plant/*.parquet",
                    "--set-patch", "training.epochs=1", "--skip-swinmae"])
    assert code == 0
    assert (repo / PATCH_CFG).read_bytes() == user_yaml
    runtime = repo / "artifacts/runtime_configs/rt/patchtst_ssl_local.yaml"
    raw = yaml.safe_load(runtime.read_text())
    assert raw["data"] == {"source": "files", "path": "data/plant/*.parquet"}
    assert raw["training"]["epochs"] == 1
    rel = "artifacts/runtime_configs/rt/patchtst_ssl_local.yaml"
    assert seen[0] == [PY, "-m", "trainers.train", "--config", rel]
    assert all(rel in argv for argv in seen if "--patch-config" in argv)


# --------------------------------------------------------------------------- status helper
def _mark(args: tuple[str, str]) -> None:
    root, node = args
    for i in range(5):
        st.set_node(node, "running" if i < 4 else "done", f"{node} {i}", root=Path(root))


def test_concurrent_status_updates_are_not_lost(tmp_path: Path) -> None:
    st.reset_status("c1", tmp_path)
    with mp.get_context("fork").Pool(len(st.NODE_IDS)) as pool:
        pool.map(_mark, [(str(tmp_path), n) for n in st.NODE_IDS])
    data = st.read_status(tmp_path)
    assert data["run_id"] == "c1"
    assert {n: (v["status"], v["message"]) for n, v in data["nodes"].items()} == {
        n: ("done", f"{n} 4") for n in st.NODE_IDS}


def test_status_rejects_unknown_values_and_nan_loss(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown node"):
        st.set_node("training", "done", root=tmp_path)
    with pytest.raises(ValueError, match="unknown status"):
        st.set_node("dqvl", "ok", root=tmp_path)
    st.set_progress("patchtst", 1, 5, loss=float("nan"), root=tmp_path)
    text = (tmp_path / STATUS).read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["progress"]["loss"] is None
    assert data["nodes"]["patchtst_training"]["message"] == "epoch 1/5, loss n/a"


def test_status_write_failure_only_warns(tmp_path: Path) -> None:
    (tmp_path / "artifacts").write_text("not a folder")
    with pytest.warns(UserWarning, match="could not update"):
        assert st.set_progress("swinmae", 1, 2, loss=0.1, root=tmp_path) is None
