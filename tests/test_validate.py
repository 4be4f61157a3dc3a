"""Validation checklist and backup bundle, on a fabricated run (no training)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from core.config import dump_yaml, effective_config
from pipelines import make_bundle as mb
from pipelines import validate_training_outputs as vt
from streams import load_config

PATCH_CFG = "configs/patchtst_ssl_local.yaml"
SWIN_CFG = "configs/swinmae_ssl_local.yaml"
CONFIGS = {"patchtst": PATCH_CFG, "swinmae": SWIN_CFG}
KEYS = [
    "checkpoints",
    "scaler",
    "tensorboard",
    "final_configs",
    "backup_bundle",
    "scoring_smoke",
    "calibration_policy",
]
POLICY_TEXT = """# Calibration split policy

## Training data
Normal-operation files under data/local/train/ that pass DQVL.

## Calibration data (normal)
Held-out normal files under data/local/calib/, never used for training.
"""


def ok_smoke(stream: str, checkpoint: str, config: str) -> list[str]:
    """A stand-in scoring CLI: passes when the checkpoint file exists under the repo root."""
    code = (
        "import os, sys, pathlib; "
        "p = pathlib.Path(os.environ['SSL_REPO_ROOT']) / sys.argv[1]; "
        "sys.exit(0 if p.is_file() else 'checkpoint missing: ' + sys.argv[1])"
    )
    return [sys.executable, "-c", code, checkpoint]


def make_fake_run(root: Path, bundle: bool = True) -> None:
    """Write every artifact a finished run leaves behind, tiny and fake, under ``root``."""
    from torch.utils.tensorboard import SummaryWriter

    (root / "configs").mkdir(parents=True, exist_ok=True)
    for stream, rel in (("patchtst", PATCH_CFG), ("swinmae", SWIN_CFG)):
        raw = {
            "stream": stream,
            "device": {"prefer_cuda": True, "amp": True},
            "training": {"epochs": 2, "lr": 0.001},
            "logging": {
                "log_dir": f"runs/{stream}_ssl",
                "checkpoint_path": f"checkpoints/{stream}_ssl.pt",
            },
        }
        (root / rel).write_text(yaml.safe_dump(raw), encoding="utf-8")
        cfg = load_config(root / rel, stream=stream)
        eff = effective_config(cfg)
        ckpt = root / cfg.logging.checkpoint_path
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "format": "ssl-anomaly-checkpoint/1",
                "stream": stream,
                "model": {"w": torch.ones(3), "b": torch.zeros(1)},
                "epoch": 2,
                "config": eff,
            },
            ckpt,
        )
        ckpt.with_suffix(".config.yaml").write_text(dump_yaml(eff), encoding="utf-8")
        with SummaryWriter(log_dir=str(root / cfg.logging.log_dir)) as writer:
            writer.add_scalar("loss/train", 1.0, 0)
        loss_dir = root / cfg.logging.loss_dir
        loss_dir.mkdir(parents=True, exist_ok=True)
        (loss_dir / f"{stream}_loss_history.csv").write_text(
            "epoch,train_loss,val_loss,lr,seconds\n1,1.0,1.2,0.001,0.5\n2,0.5,0.7,0.001,0.5\n",
            encoding="utf-8",
        )
        (loss_dir / f"{stream}_loss_curve.png").write_bytes(b"\x89PNG fake")
        dq = root / cfg.dqvl.report_dir
        dq.mkdir(parents=True, exist_ok=True)
        (dq / "summary.json").write_text(
            json.dumps(
                {
                    "schema_version": "1.0",
                    "run_id": "r",
                    "stream": stream,
                    "created": "x",
                    "counts": {"keep": 3, "drop": 1, "skipped": 0},
                    "files": [],
                }
            ),
            encoding="utf-8",
        )
    (root / "artifacts/scaler_fdc.json").write_text(
        json.dumps(
            {
                "schema_version": "1.0",
                "method": "robust",
                "center": [0.0, 1.0],
                "scale": [1.0, 2.0],
                "channel_names": ["a", "b"],
            }
        ),
        encoding="utf-8",
    )
    (root / "docs").mkdir(exist_ok=True)
    (root / vt.POLICY_DOC).write_text(POLICY_TEXT, encoding="utf-8")
    if bundle:
        mb.make_bundle(root, CONFIGS, run_id="run1")


def run(root: Path, **kw) -> dict:
    kw.setdefault("smoke_command", ok_smoke)
    return vt.run_checklist(root, CONFIGS, **kw)


@pytest.fixture()
def fake_run(tmp_path: Path) -> Path:
    make_fake_run(tmp_path)
    return tmp_path


def test_complete_run_passes_all_seven(fake_run: Path) -> None:
    result = run(fake_run)
    assert [i["key"] for i in result["items"]] == KEYS
    assert [i["id"] for i in result["items"]] == list(range(1, 8))
    assert [i["status"] for i in result["items"]] == ["PASS"] * 7, result
    assert result["passed"] == 7 and result["total"] == 7 and result["ok"] is True
    assert "2 channels" in result["items"][1]["detail"]


def _delete(rel: str):
    def act(root: Path) -> None:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return act


def _truncate_checkpoint(root: Path) -> None:
    path = root / "checkpoints/swinmae_ssl.pt"
    path.write_bytes(path.read_bytes()[:40])


def _zero_scale(root: Path) -> None:
    path = root / "artifacts/scaler_fdc.json"
    data = json.loads(path.read_text())
    data["scale"][1] = 0.0
    path.write_text(json.dumps(data))


def _drop_mask_ratio(root: Path) -> None:
    path = root / "checkpoints/patchtst_ssl.config.yaml"
    data = yaml.safe_load(path.read_text())
    del data["model"]["mask_ratio"]
    path.write_text(yaml.safe_dump(data))


def _tamper_bundle(root: Path) -> None:
    path = root / "artifacts/bundles/run1.zip"
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["artifacts/scaler_fdc.json"] = b'{"tampered": true}'
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _retrain_after_bundle(root: Path) -> None:
    path = root / "checkpoints/patchtst_ssl.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["epoch"] = 3
    torch.save(ckpt, path)


def _empty_policy_section(root: Path) -> None:
    text = POLICY_TEXT.replace(
        "Held-out normal files under data/local/calib/, never used for training.\n", ""
    )
    (root / vt.POLICY_DOC).write_text(text)


def _failing_smoke(stream: str, checkpoint: str, config: str) -> list[str]:
    if stream == "swinmae":
        return [sys.executable, "-c", "import sys; sys.exit('boom: scoring failed')"]
    return ok_smoke(stream, checkpoint, config)


BREAKAGES = [
    # (case, action, smoke, failing item keys, text the first failing item's hint must hold)
    (
        "ckpt-missing",
        _delete("checkpoints/swinmae_ssl.pt"),
        ok_smoke,
        {"checkpoints", "final_configs", "scoring_smoke"},
        "trainers.train --config configs/swinmae_ssl_local.yaml",
    ),
    (
        "ckpt-truncated",
        _truncate_checkpoint,
        ok_smoke,
        {"checkpoints", "final_configs", "backup_bundle"},
        "trainers.train --config configs/swinmae_ssl_local.yaml",
    ),
    ("scaler-bad-scale", _zero_scale, ok_smoke, {"scaler"}, "artifacts/scaler_fdc.json"),
    (
        "scaler-missing",
        _delete("artifacts/scaler_fdc.json"),
        ok_smoke,
        {"scaler"},
        "trainers.train --config configs/patchtst_ssl_local.yaml",
    ),
    (
        "tb-missing",
        _delete("runs/patchtst_ssl"),
        ok_smoke,
        {"tensorboard"},
        "trainers.train --config configs/patchtst_ssl_local.yaml",
    ),
    (
        "config-yaml-missing",
        _delete("checkpoints/patchtst_ssl.config.yaml"),
        ok_smoke,
        {"final_configs"},
        "trainers.train --config configs/patchtst_ssl_local.yaml",
    ),
    (
        "config-key-missing",
        _drop_mask_ratio,
        ok_smoke,
        {"final_configs"},
        "trainers.train --config configs/patchtst_ssl_local.yaml",
    ),
    (
        "bundle-missing",
        _delete("artifacts/bundles"),
        ok_smoke,
        {"backup_bundle"},
        "pipelines.make_bundle",
    ),
    ("bundle-tampered", _tamper_bundle, ok_smoke, {"backup_bundle"}, "pipelines.make_bundle"),
    ("bundle-stale", _retrain_after_bundle, ok_smoke, {"backup_bundle"}, "pipelines.make_bundle"),
    ("smoke-fails", lambda root: None, _failing_smoke, {"scoring_smoke"}, "-c"),
    (
        "policy-missing",
        _delete(vt.POLICY_DOC),
        ok_smoke,
        {"calibration_policy"},
        "## Calibration data (normal)",
    ),
    (
        "policy-section-empty",
        _empty_policy_section,
        ok_smoke,
        {"calibration_policy"},
        "## Training data",
    ),
]


@pytest.mark.parametrize(
    ("action", "smoke", "failing", "hint_text"),
    [b[1:] for b in BREAKAGES],
    ids=[b[0] for b in BREAKAGES],
)
def test_each_item_fails_with_its_own_hint(fake_run, action, smoke, failing, hint_text) -> None:
    action(fake_run)
    result = run(fake_run, smoke_command=smoke)
    statuses = {i["key"]: i["status"] for i in result["items"]}
    assert {k for k, s in statuses.items() if s == "FAIL"} == failing
    assert result["ok"] is False and result["passed"] == 7 - len(failing)
    first = next(i for i in result["items"] if i["status"] == "FAIL")
    assert hint_text in first["hint"]
    for item in result["items"]:
        assert bool(item["hint"]) == (item["status"] == "FAIL")
    assert str(fake_run) not in json.dumps(result)


def test_hints_are_item_specific(fake_run: Path) -> None:
    """Break everything at once: seven different hints."""
    for rel in ("checkpoints", "artifacts", "runs", vt.POLICY_DOC):
        _delete(rel)(fake_run)
    result = run(fake_run, smoke_command=_failing_smoke)
    assert [i["status"] for i in result["items"]] == ["FAIL"] * 7
    hints = [i["hint"] for i in result["items"]]
    assert len(set(hints)) == 7 and all(hints)


def test_smoke_timeout_is_a_failure(fake_run: Path) -> None:
    def slow(stream, checkpoint, config):
        return [sys.executable, "-c", "import time; time.sleep(30)"]

    item = run(fake_run, smoke_command=slow, smoke_timeout=0.5)["items"][5]
    assert item["status"] == "FAIL" and "timed out after 0.5 s" in item["detail"]


def test_skip_smoke_reports_pass_with_detail(fake_run: Path) -> None:
    def never(stream, checkpoint, config):
        raise AssertionError("smoke must not run with skip_smoke")

    item = run(fake_run, skip_smoke=True, smoke_command=never)["items"][5]
    assert item == {
        "id": 6,
        "key": "scoring_smoke",
        "title": item["title"],
        "status": "PASS",
        "detail": "skipped (--skip-smoke)",
        "hint": "",
    }


LINE = re.compile(r"^\[(v| )\] (\d)\. (.+?) — (PASS|FAIL) — (.*)$")


def _parse_console(text: str) -> list[dict]:
    items: list[dict] = []
    for line in text.splitlines():
        if m := LINE.match(line):
            items.append(
                {
                    "id": int(m[2]),
                    "title": m[3],
                    "status": m[4],
                    "detail": m[5],
                    "hint": "",
                    "mark": m[1],
                }
            )
        elif line.startswith("      hint: "):
            items[-1]["hint"] = line.removeprefix("      hint: ")
    return items


def test_cli_console_matches_json_item_for_item(fake_run, monkeypatch, capsys) -> None:
    monkeypatch.chdir(fake_run)
    monkeypatch.setenv("SSL_REPO_ROOT", str(fake_run))
    _zero_scale(fake_run)
    _delete(vt.POLICY_DOC)(fake_run)
    code = vt.main(
        [
            "--repo-root",
            ".",
            "--patch-config",
            PATCH_CFG,
            "--swin-config",
            SWIN_CFG,
            "--json-out",
            "artifacts/validation/checklist.json",
            "--skip-smoke",
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    data = json.loads((fake_run / "artifacts/validation/checklist.json").read_text())
    console = _parse_console(out)
    assert len(console) == 7 == data["total"]
    for shown, item in zip(console, data["items"], strict=True):
        assert shown["mark"] == ("v" if item["status"] == "PASS" else " ")
        assert {k: shown[k] for k in ("id", "title", "status", "detail", "hint")} == {
            k: item[k] for k in ("id", "title", "status", "detail", "hint")
        }
    assert [i["status"] for i in data["items"]].count("FAIL") == 2
    assert out.strip().splitlines()[-1].startswith("5/7 passed")
    assert str(fake_run) not in json.dumps(data)


def test_cli_exit_zero_when_all_pass(fake_run, monkeypatch, capsys) -> None:
    monkeypatch.chdir(fake_run)
    code = vt.main(
        [
            "--repo-root",
            str(fake_run),
            "--patch-config",
            PATCH_CFG,
            "--swin-config",
            SWIN_CFG,
            "--skip-smoke",
        ]
    )
    assert code == 0
    assert "7/7 passed" in capsys.readouterr().out


def test_help_documents_skip_smoke(capsys) -> None:
    with pytest.raises(SystemExit):
        vt.main(["--help"])
    assert "skipped (--skip-smoke)" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------- bundle
def test_bundle_manifest_lists_repo_relative_files_with_checksums(fake_run: Path) -> None:
    path = fake_run / "artifacts/bundles/run1.zip"
    assert mb.verify_bundle(path) == []
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    paths = {f["path"] for f in manifest["files"]}
    assert manifest["run_id"] == "run1"
    assert paths | {"manifest.json"} == names
    for expected in (
        "checkpoints/patchtst_ssl.pt",
        "checkpoints/swinmae_ssl.config.yaml",
        PATCH_CFG,
        SWIN_CFG,
        "artifacts/scaler_fdc.json",
        "artifacts/loss/swinmae_loss_history.csv",
        "artifacts/loss/patchtst_loss_curve.png",
        "artifacts/dqvl/fdc/summary.json",
        "artifacts/dqvl/vib/summary.json",
    ):
        assert expected in paths
    assert any(p.startswith("runs/swinmae_ssl/events.out.tfevents.") for p in paths)
    entry = next(f for f in manifest["files"] if f["path"] == "artifacts/scaler_fdc.json")
    raw = (fake_run / "artifacts/scaler_fdc.json").read_bytes()
    assert entry["size"] == len(raw) and entry["sha256"] == mb.hashlib.sha256(raw).hexdigest()
    assert all(not p.startswith("/") for p in paths)
    assert manifest["missing"] == []


def test_verify_detects_tampered_and_missing_members(fake_run: Path) -> None:
    path = fake_run / "artifacts/bundles/run1.zip"
    _tamper_bundle(fake_run)
    problems = mb.verify_bundle(path)
    assert problems == ["artifacts/scaler_fdc.json: checksum or size does not match the manifest"]
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if n != PATCH_CFG}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("extra.txt", b"x")
    problems = mb.verify_bundle(path)
    assert f"{PATCH_CFG}: listed in the manifest but missing from the zip" in problems
    assert "extra.txt: in the zip but not in the manifest" in problems
    path.write_bytes(b"not a zip")
    assert mb.verify_bundle(path)[0].startswith("run1.zip: not a readable zip")


def test_bundle_write_is_atomic(fake_run: Path, monkeypatch) -> None:
    path = fake_run / "artifacts/bundles/run1.zip"
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mb, "_copy_into_zip", broken)
    with pytest.raises(OSError):
        mb.make_bundle(fake_run, CONFIGS, run_id="run1")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["run1.zip"]


def test_bundle_cli_rejects_unsafe_run_id(fake_run: Path) -> None:
    from core.errors import UserError

    with pytest.raises(UserError, match="run id"):
        mb.main(
            [
                "--repo-root",
                str(fake_run),
                "--patch-config",
                PATCH_CFG,
                "--swin-config",
                SWIN_CFG,
                "--run-id",
                "../evil",
            ]
        )
