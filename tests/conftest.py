"""Shared fixtures: every test that writes outputs gets its own repository root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point core.paths.repo_root() (and subprocesses) at an empty temporary root."""
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """Tiny trained checkpoints of both streams, built once per session."""
    from tests.test_scoring import tiny_models

    return tiny_models(tmp_path_factory)


@pytest.fixture
def root(tiny, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny models' repository root, active for core.paths."""
    monkeypatch.setenv("SSL_REPO_ROOT", str(tiny.root))
    return tiny.root


@pytest.fixture
def run_root(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the tiny models' repository, active for core.paths (for tests that
    write into the repository: data prep, calibration, decisions, archives)."""
    root = tmp_path / "repo"
    shutil.copytree(tiny.root, root)
    monkeypatch.setenv("SSL_REPO_ROOT", str(root))
    return root


ONNX_CHECKPOINTS = {"patchtst": "checkpoints/patchtst_ssl.pt",
                    "swinmae": "checkpoints/swinmae_ssl.pt"}
ONNX_CONFIGS = {"patchtst": "configs/patch.yaml", "swinmae": "configs/swin.yaml"}


@pytest.fixture(scope="session")
def onnx_graphs(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both tiny checkpoints exported once per session through the CLI: stream -> .onnx
    (its sidecar .json beside it); the export takes seconds, the tests share it."""
    from inference.export_onnx import main as export_main

    out_dir = tmp_path_factory.mktemp("onnx")
    paths = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_REPO_ROOT", str(tiny.root))
        for stream, checkpoint in ONNX_CHECKPOINTS.items():
            paths[stream] = out_dir / f"{stream}.onnx"
            assert export_main(["--stream", stream, "--checkpoint", checkpoint, "--config",
                                ONNX_CONFIGS[stream], "--out", str(paths[stream])]) == 0
    return paths
