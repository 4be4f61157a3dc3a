"""Shared training engine: artifacts, resume after SIGKILL, DDP under torchrun."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from engine.checkpoint import load_checkpoint
from engine.trainer import fit, lr_factor
from streams import load_config
from tests.toy_task import build_setup

REPO = Path(__file__).resolve().parents[1]


def _toy_config(root: Path, epochs: int) -> Path:
    raw = yaml.safe_load((REPO / "configs/patchtst_ssl.yaml").read_text())
    raw["training"].update(epochs=epochs, batch_size=16, warmup_epochs=1, lr=0.03)
    raw["device"]["prefer_cuda"] = False
    path = root / "toy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _history(root: Path) -> list[dict[str, str]]:
    with open(root / "artifacts/loss/patchtst_loss_history.csv") as fh:
        return list(csv.DictReader(fh))


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SSL_REPO_ROOT": str(root), "OMP_NUM_THREADS": "1", **extra}


def test_lr_schedule_warms_up_then_decays() -> None:
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.1)
    assert lr_factor(55, 10, 100) < 1.0


def test_fit_writes_every_artifact(repo_tmp: Path) -> None:
    cfg = load_config(_toy_config(repo_tmp, epochs=3))
    result = fit(cfg, build_setup, run_id="t1")
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    rows = _history(repo_tmp)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "lr", "seconds"}
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    png = repo_tmp / "artifacts/loss/patchtst_loss_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((repo_tmp / "runs/patchtst_ssl").glob("events.out.tfevents.*"))
    ckpt = load_checkpoint(repo_tmp / "checkpoints/patchtst_ssl.pt")
    assert ckpt["epoch"] == 3 and ckpt["stream"] == "patchtst"
    assert ckpt["config"]["training"]["epochs"] == 3
    assert ckpt["model_meta"] == {"toy": True}
    assert "torch" in ckpt["versions"] and ckpt["rng"]["torch"].dtype == torch.uint8
    assert (repo_tmp / "checkpoints/patchtst_ssl.best.pt").is_file()
    saved = yaml.safe_load((repo_tmp / "checkpoints/patchtst_ssl.config.yaml").read_text())
    assert saved == ckpt["config"]
    assert not list(repo_tmp.rglob("*.tmp"))


def test_resume_continues_without_gap_or_duplicate(repo_tmp: Path) -> None:
    cfg_path = _toy_config(repo_tmp, epochs=2)
    fit(load_config(cfg_path), build_setup, run_id="a")
    more = load_config(cfg_path, ["training.epochs=4"])
    fit(more, build_setup, resume=True, run_id="b")
    assert [int(r["epoch"]) for r in _history(repo_tmp)] == [1, 2, 3, 4]
    assert load_checkpoint(repo_tmp / "checkpoints/patchtst_ssl.pt")["epoch"] == 4


def test_sigkill_mid_epoch_then_resume(repo_tmp: Path) -> None:
    cfg_path = _toy_config(repo_tmp, epochs=4)
    cmd = [sys.executable, "-m", "tests.toy_task", "--config", str(cfg_path)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(repo_tmp, TOY_SLEEP="0.01"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    ckpt = repo_tmp / "checkpoints/patchtst_ssl.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    assert ckpt.exists(), "first epoch never finished"
    time.sleep(0.5)  # well inside epoch 2 (an epoch takes ~1.3 s of sleeps)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = load_checkpoint(ckpt)["epoch"]
    assert 1 <= done_before < 4
    # What was written before the kill is whole: the CSV parses and matches the checkpoint.
    assert [int(r["epoch"]) for r in _history(repo_tmp)] in (
        list(range(1, done_before + 1)),
        list(range(1, done_before)),
    )
    out = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=_env(repo_tmp), capture_output=True, text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resumed from checkpoints/patchtst_ssl.pt after epoch {done_before}" in out.stdout
    assert [int(r["epoch"]) for r in _history(repo_tmp)] == [1, 2, 3, 4]
    assert load_checkpoint(ckpt)["epoch"] == 4


def test_torchrun_two_processes_on_cpu(repo_tmp: Path) -> None:
    cfg_path = _toy_config(repo_tmp, epochs=2)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--standalone", "-m", "tests.toy_task", "--config", str(cfg_path),
    ]
    out = subprocess.run(cmd, cwd=REPO, env=_env(repo_tmp), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "world_size=2" in out.stdout
    assert [int(r["epoch"]) for r in _history(repo_tmp)] == [1, 2]
    assert load_checkpoint(repo_tmp / "checkpoints/patchtst_ssl.pt")["epoch"] == 2


class _NanFirstSteps(torch.nn.Module):
    """The toy autoencoder whose first two training losses are NaN (a bad batch under AMP)."""

    def __init__(self) -> None:
        super().__init__()
        from tests.toy_task import ToyAutoencoder

        self.inner = ToyAutoencoder()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = self.inner(x)["loss"]
        if self.training:
            self.calls += 1
            if self.calls <= 2:
                loss = loss * float("nan")
        return {"loss": loss}


def test_non_finite_loss_is_skipped_before_the_optimizer_step(repo_tmp: Path) -> None:
    from streams.base import TrainingSetup
    from tests.toy_task import ToyWindows

    model = _NanFirstSteps()

    def build(cfg, device, run_id):
        return TrainingSetup(model, ToyWindows(96, 0), ToyWindows(32, 1), {"toy": True})

    result = fit(load_config(_toy_config(repo_tmp, epochs=2)), build, run_id="nan")
    assert model.calls > 2
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN update applied
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"])
               for r in result.history)


def test_runs_into_other_checkpoints_keep_their_loss_history(repo_tmp: Path) -> None:
    cfg_path = _toy_config(repo_tmp, epochs=1)
    fit(load_config(cfg_path), build_setup, run_id="a")
    fit(load_config(cfg_path, ["logging.checkpoint_path=checkpoints/other.pt"]), build_setup,
        run_id="b")
    loss = repo_tmp / "artifacts/loss"
    assert (loss / "patchtst_loss_history.csv").is_file()  # the seed's fixed path, run a
    assert (loss / "patchtst_other_loss_history.csv").is_file()  # run b beside it


def test_a_fresh_run_archives_the_run_it_replaces(repo_tmp: Path, capsys) -> None:
    cfg_path = _toy_config(repo_tmp, epochs=1)
    fit(load_config(cfg_path), build_setup, run_id="first")
    first = (repo_tmp / "checkpoints/patchtst_ssl.pt").read_bytes()
    fit(load_config(cfg_path), build_setup, run_id="second")
    assert "replacing the run at checkpoints/patchtst_ssl.pt" in capsys.readouterr().out
    kept = repo_tmp / "artifacts/archive/patchtst/first"
    assert (kept / "checkpoints/patchtst_ssl.pt").read_bytes() == first
    assert (kept / "artifacts/loss/patchtst_loss_history.csv").is_file()
    assert list((kept / "runs/patchtst_ssl").glob("events.out.tfevents.*"))
    assert load_checkpoint(repo_tmp / "checkpoints/patchtst_ssl.pt")["run_id"] == "second"


class _RisingLoss(torch.nn.Module):
    """A loss that grows with every training step, as with a blown-up input scaling."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += self.training
        return {"loss": self.w.sum() * 0 + float(self.calls)}


def test_a_loss_that_does_not_fall_is_said_loudly(repo_tmp: Path, capsys) -> None:
    from engine.loss_log import loss_trend_warning
    from streams.base import TrainingSetup
    from tests.toy_task import ToyWindows

    def build(cfg, device, run_id):
        return TrainingSetup(_RisingLoss(), ToyWindows(96, 0), ToyWindows(0, 1), {})

    result = fit(load_config(_toy_config(repo_tmp, epochs=2)), build, run_id="rise")
    printed = capsys.readouterr().out
    assert result.warning and result.warning.startswith("training loss did not fall")
    assert f"WARNING: {result.warning}" in printed
    assert "WARNING: no validation windows" in printed  # the empty split is said too
    assert (repo_tmp / "artifacts/loss/patchtst_loss_curve.png").is_file()
    falling = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}]
    assert loss_trend_warning(falling) is None
    assert loss_trend_warning(falling[:1]) is None


def test_early_stop_when_the_validation_loss_stops_improving(repo_tmp: Path, capsys,
                                                              monkeypatch) -> None:  # noqa: ANN001
    from engine import trainer

    losses = iter([1.0, 0.8, 0.9, 0.85, 0.81, 0.5, 0.4])  # best at epoch 2, then 3 worse
    monkeypatch.setattr(trainer._Trainer, "_validate", lambda self, model, loader: next(losses))
    cfg_path = _toy_config(repo_tmp, epochs=7)
    cfg = load_config(cfg_path, ["training.early_stop_patience=3"])
    result = fit(cfg, build_setup, run_id="es")
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    assert result.best_val_loss == pytest.approx(0.8)
    assert "early stop after epoch 5" in capsys.readouterr().out
    assert [int(r["epoch"]) for r in _history(repo_tmp)] == [1, 2, 3, 4, 5]  # artifacts written
    ckpt = load_checkpoint(repo_tmp / "checkpoints/patchtst_ssl.pt")
    assert ckpt["stale_epochs"] == 3
    assert load_checkpoint(repo_tmp / "checkpoints/patchtst_ssl.best.pt")["epoch"] == 2
    # a resumed run that has already stopped trains no further
    again = fit(cfg, build_setup, resume=True, run_id="es2")
    assert [r["epoch"] for r in again.history] == [1, 2, 3, 4, 5]
