"""What every registered stream must do, tested the same way for each (as timm tests every
registered model): build, forward, loss, deterministic scoring, breakdown names,
checkpoint round trip and the model-args mismatch message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import streams
from core.errors import CheckpointError
from engine.checkpoint import load_checkpoint
from inference.calibration import expand_globs
from inference.checkpoint_io import check_config_matches, load_trained
from inference.scoring import aggregate, infer_score, parts_key
from streams import load_config

REPO = Path(__file__).resolve().parents[1]
# The tiny session models (tests/test_scoring.py): config and checkpoint per stream.
TINY = {"patchtst": ("configs/patch.yaml", "checkpoints/patchtst_ssl.pt"),
        "swinmae": ("configs/swin.yaml", "checkpoints/swinmae_ssl.pt")}
CPU = torch.device("cpu")


def test_every_builtin_stream_is_registered() -> None:
    assert set(TINY) <= set(streams.names())
    for name in streams.names():
        task = streams.get(name)
        assert task.name == name and task.config_class().stream == name


@pytest.mark.parametrize("name", streams.names())
def test_stream_contract(name: str, run_root: Path) -> None:
    task = streams.get(name)
    config, checkpoint = TINY[name]
    cfg = load_config(config, stream=name)
    assert isinstance(cfg, task.config_class)

    # build, forward, loss: the training data path hands the engine a model and windows
    setup = task.prepare_training(cfg, CPU, "contract")
    batch = torch.stack([setup.train_set[i] for i in range(4)])
    torch.manual_seed(0)
    loss = setup.model(batch)["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in setup.model.parameters())

    # checkpoint round trip: model args stored, the model rebuilt from them alone
    ckpt = load_checkpoint(run_root / checkpoint)
    assert ckpt["model_args"] == task.model_args(cfg)
    trained = load_trained(checkpoint, expected_stream=name)
    rebuilt = task.build_model(ckpt["model_args"], ckpt["model_meta"])
    rebuilt.load_state_dict(ckpt["model"], strict=True)

    # scoring data: one window per row of file ids, starts and times
    files = expand_globs(task.training_globs(cfg))
    data = task.prepare_scoring(cfg, trained.model_meta, files, CPU)
    n = len(data.dataset)
    assert n > 0 and len(data.file_ids) == len(data.starts) == n
    assert data.start_times is not None and len(data.start_times) == len(data.end_times) == n
    assert not np.isnat(data.start_times).any()
    assert (data.end_times > data.start_times).all()
    assert set(data.kept) == set(data.file_ids)

    # deterministic scores, the same from the rebuilt model, broken into named parts
    batch = torch.stack([data.dataset[i] for i in range(min(n, 6))])
    layout = task.score_layout(cfg)
    s1, aux1 = infer_score(batch, trained.model, task, layout=layout)
    s2, _ = infer_score(batch.clone(), trained.model, task, layout=layout)
    s3, _ = infer_score(batch, rebuilt, task, layout=layout)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(s1, s3, rtol=1e-6)
    parts = aux1[parts_key(task)]
    assert parts.shape == (len(batch), len(task.part_names(trained.model_meta)))
    np.testing.assert_allclose(s1, aggregate(torch.from_numpy(parts)).numpy(), rtol=1e-5)

    # a config that changes the model is refused with every differing key and both values
    key = sorted(trained.model_args)[0]
    trained.model_args[key] = "other"
    with pytest.raises(CheckpointError) as info:
        check_config_matches(trained, cfg, config)
    assert f"{key}: checkpoint='other', config={task.model_args(cfg)[key]!r}" in str(info.value)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_resume_with_a_model_change_fails_before_writing(run_root: Path) -> None:
    before = _snapshot(run_root)
    env = {**os.environ, "SSL_REPO_ROOT": str(run_root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "trainers.train_patchtst_ssl", "--config", "configs/patch.yaml",
         "--resume", "--set", "data.seq_len=32"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "checkpoints/patchtst_ssl.pt: cannot resume" in lines[0]
    assert "data.seq_len: checkpoint=16, config=32" in lines[0]
    assert _snapshot(run_root) == before  # scaler, DQVL reports, checkpoint: untouched
