"""MLflow tracking and the model registry against the real local store (SQLite, no server).

One tiny FDC model is trained with tracking on (then resumed into the same run); its run,
params, per-epoch metrics and artifacts are found in the store; calibration and validation
attach to that run; promotion is refused after a failing checklist and granted after a
passing one; the champion loads back by ``models:/`` URI and scores like the local file,
with its registered scaler.  Tracking off (the default) never imports MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from core.cli import run_main
from core.config import ThresholdPolicy
from core.errors import UserError
from core.io import atomic_write_json, file_sha256
from core.layout import CHECKLIST, thresholds_path
from engine.checkpoint import load_checkpoint
from engine.tracking import local_uri
from engine.trainer import fit
from inference.calibration import calibrate, stale_reason
from inference.checkpoint_io import check_config_matches, load_trained
from inference.scoring import score_files
from pipelines import promote
from pipelines import validate_training_outputs as vt
from streams import load_config
from tests.test_scoring import write_fdc

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/patch.yaml"
CKPT = "checkpoints/patchtst_ssl.pt"
URI = "models:/unit1-patchtst@champion"
POLICY = ThresholdPolicy(min_tail_windows=3)


def _train(epochs: int, resume: bool = False, run_id: str = "t") -> dict:
    cfg = load_config(CONFIG, ["tracking.enabled=true", f"training.epochs={epochs}"])
    fit(cfg, resume=resume, run_id=run_id)
    return load_checkpoint(Path(os.environ["SSL_REPO_ROOT"]) / CKPT)["tracking"]


def _decision_config(root: Path) -> Path:
    path = root / "configs" / "decision.yaml"
    path.write_text(yaml.safe_dump({"streams": {"patchtst": {
        "config": CONFIG, "checkpoint": CKPT, "calibration_path": "data/local/calib/fdc/*.csv",
        "test_path": "data/local/test/fdc/*.csv"}}, "thresholds": {"min_tail_windows": 3}}))
    return path


def _validate(root: Path) -> dict:
    """The real checklist (a stub scoring smoke keeps it fast), written as ``main`` does."""
    from pipelines.make_bundle import make_bundle

    (root / "docs").mkdir(exist_ok=True)
    (root / vt.POLICY_DOC).write_text((REPO / vt.POLICY_DOC).read_text())
    make_bundle(root, {"patchtst": CONFIG}, run_id="t")
    checklist = vt.run_checklist(root, {"patchtst": CONFIG},
                                 smoke_command=lambda *_: [sys.executable, "-c", "pass"])
    atomic_write_json(root / CHECKLIST, checklist)
    vt.attach_checklist(checklist)
    return checklist


def _decisions(root: Path, sha: str, thresholds: dict) -> None:
    """decisions.json as the test pipeline writes it, with a passing gate for ``sha``."""
    gate = {"ok": True, "status": "pass", "detail": "1/1 normal files without alarm events",
            "checkpoints": {"patchtst": sha}}
    atomic_write_json(root / "artifacts/decisions/decisions.json", {
        "streams": {"patchtst": {"checkpoint_sha256": sha, "thresholds": {
            k: thresholds[k] for k in ("clear", "warn", "anomaly")}}},
        "decision_gate": gate})


def _promote(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        run_main(promote.main, ["--unit", "unit1", "--decision-config",
                                "configs/decision.yaml", *args])
    return exit_.value.code


def test_tracked_run_promote_and_load_by_uri(run_root: Path, monkeypatch, capsys) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = _train(epochs=1)
    ref = _train(epochs=2, resume=True)
    assert ref == first and ref["uri"] is None  # resume continued the run, local store
    mlc = mlflow.MlflowClient(local_uri())
    run = mlc.get_run(ref["run_id"])
    assert run.info.status == "FINISHED"
    assert (run_root / "mlruns/mlflow.db").is_file()
    assert run.data.params["training.epochs"] == "1"  # params are immutable: the change is a tag
    assert run.data.tags["resumed.training.epochs"] == "2"
    assert run.data.params["model.d_model"] == "16" and run.data.params["tracking.enabled"]
    for key in ("train_loss", "val_loss", "lr"):
        assert [m.step for m in mlc.get_metric_history(ref["run_id"], key)] == [1, 2], key
    model = {a.path for a in mlc.list_artifacts(ref["run_id"], "model")}
    assert model == {"model/patchtst_ssl.pt", "model/scaler_fdc.json", "model/MLmodel"}
    loss = {a.path for a in mlc.list_artifacts(ref["run_id"], "loss")}
    assert loss == {"loss/patchtst_loss_curve.png", "loss/patchtst_loss_history.csv"}
    local = mlc.download_artifacts(ref["run_id"], "model/MLmodel", str(run_root / "dl"))
    signature = yaml.safe_load(Path(local).read_text())["signature"]
    assert json.loads(signature["inputs"])[0]["tensor-spec"]["shape"] == [-1, 16, 6]
    sha = file_sha256(run_root / CKPT)
    assert run.data.tags["ssl.checkpoint_sha256"] == sha

    # calibration and validation attach to the same run
    trained = load_trained(CKPT)
    cfg = load_config(CONFIG)
    thr = calibrate(trained, cfg, "data/local/calib/fdc/*.csv", POLICY,
                    thresholds_path("artifacts/calibration", "patchtst"), progress=False)
    checklist = _validate(run_root)
    assert checklist["ok"], checklist["items"]
    run = mlc.get_run(ref["run_id"])
    assert run.data.metrics["calibration/warn"] == pytest.approx(thr["warn"])
    assert run.data.metrics["validation/passed"] == 7
    attached = {a.path for a in mlc.list_artifacts(ref["run_id"], "calibration")}
    assert attached == {"calibration/patchtst_thresholds.json"}
    assert mlc.list_artifacts(ref["run_id"], "validation")[0].path == \
        "validation/checklist.json"

    # promotion: refused after a failing checklist, granted after a passing one
    _decision_config(run_root)
    _decisions(run_root, sha, thr)
    failing = {**checklist, "ok": False, "passed": 6, "items": [
        {**i, "status": "FAIL"} if i["key"] == "backup_bundle" else i
        for i in checklist["items"]]}
    atomic_write_json(run_root / CHECKLIST, failing)
    capsys.readouterr()
    assert _promote() == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: promotion refused: checklist FAIL: 5 backup_bundle", err
    assert not mlc.search_registered_models("name = 'unit1-patchtst'")
    atomic_write_json(run_root / CHECKLIST, checklist)
    assert _promote() == 0
    assert "models:/unit1-patchtst@champion -> version 1" in capsys.readouterr().out
    version = mlc.get_model_version_by_alias("unit1-patchtst", "champion")
    assert version.tags["ssl.checkpoint_sha256"] == sha and version.run_id == ref["run_id"]

    # the champion by URI scores like the local checkpoint, with its registered scaler,
    # and the thresholds calibrated for the local file hold for it
    test_file = write_fdc(run_root / "data/local/test/fdc/unit.csv", slice(1100, 1400))
    local_scores = score_files(trained, cfg, [test_file], progress=False).scores
    scaler = run_root / "artifacts/scaler_fdc.json"
    retrained = json.loads(scaler.read_text())  # a later local run rewrites the scaler
    retrained["center"] = [c + 1.0 for c in retrained["center"]]
    scaler.write_text(json.dumps(retrained))
    champion = load_trained(URI, expected_stream="patchtst")
    scoring_cfg = load_config(CONFIG)
    check_config_matches(champion, scoring_cfg, CONFIG)
    assert scoring_cfg.data.scaler_path == "artifacts/registry/unit1-patchtst/v1/scaler_fdc.json"
    assert champion.ckpt_info["sha256"] == sha
    assert champion.ckpt_info["registry"]["version"] == "1"
    assert stale_reason(thr, champion, scoring_cfg) is None
    np.testing.assert_array_equal(
        score_files(champion, scoring_cfg, [test_file], progress=False).scores, local_scores)
    assert not np.allclose(score_files(trained, cfg, [test_file], progress=False).scores,
                           local_scores)  # the local path does see the new scaler

    # rollback: refused with one version, then back to version 1 after a second promotion
    assert _promote("--rollback") == 2
    assert "no earlier version" in capsys.readouterr().err
    scaler.write_text(json.dumps({**retrained, "center": [c - 1.0 for c in retrained["center"]]}))
    _train(epochs=1, run_id="t2")  # a fresh run: a new MLflow run and checkpoint
    sha2 = file_sha256(run_root / CKPT)
    assert _promote() == 2  # the checklist and the gate judged the old checkpoint
    assert "did not judge this patchtst checkpoint" in capsys.readouterr().err
    _validate(run_root)
    _decisions(run_root, sha2, thr)
    assert _promote() == 0
    assert mlc.get_model_version_by_alias("unit1-patchtst", "champion").version == 2
    assert _promote("--rollback") == 0
    assert mlc.get_model_version_by_alias("unit1-patchtst", "champion").version == 1
    assert load_trained(URI).ckpt_info["sha256"] == sha


def test_missing_mlflow_is_one_clear_line(repo_tmp: Path, monkeypatch) -> None:
    from tests.test_engine import _toy_config
    from tests.toy_task import build_setup

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    cfg = load_config(_toy_config(repo_tmp, epochs=1), ["tracking.enabled=true"])
    with pytest.raises(UserError, match=r"MLflow is not installed: pip install mlflow-skinny"):
        fit(cfg, build_setup, run_id="t")
    assert not (repo_tmp / "checkpoints").exists()  # refused before anything is written


def test_tracking_off_never_imports_mlflow(repo_tmp: Path) -> None:
    from tests.test_engine import _env, _toy_config

    config = _toy_config(repo_tmp, epochs=1)
    code = (
        "import sys\n"
        "from engine.trainer import fit\n"
        "import inference.calibration, inference.checkpoint_io, pipelines.promote\n"
        "import pipelines.validate_training_outputs\n"
        "from streams import load_config\n"
        "from tests.toy_task import build_setup\n"
        f"fit(load_config({str(config)!r}), build_setup, run_id='t')\n"
        "from inference.checkpoint_io import load_trained\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(repo_tmp),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_torchrun_logs_one_run_from_rank_zero(repo_tmp: Path, monkeypatch) -> None:
    import mlflow

    from tests.test_engine import _env, _toy_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "tests.toy_task", "--config", str(_toy_config(repo_tmp, epochs=2)),
           "--set", "tracking.enabled=true"]
    env = {k: v for k, v in _env(repo_tmp).items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    mlc = mlflow.MlflowClient(local_uri())
    runs = mlc.search_runs([mlc.get_experiment_by_name("sensor-ssl").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in mlc.get_metric_history(runs[0].info.run_id, "train_loss")] == [1, 2]
