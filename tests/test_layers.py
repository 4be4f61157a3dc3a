"""The layer contract (pyproject.toml, import-linter) holds and catches an upward import."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = REPO / ".venv/bin/lint-imports"
PACKAGES = ("training_dashboard", "pipelines", "trainers", "inference", "engine", "streams",
            "sensor_data", "dsp", "models", "core")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)


def _copy(tmp: Path) -> Path:
    root = tmp / "repo"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_layers_kept_and_an_engine_import_of_pipelines_breaks_them(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    ok = _lint(root)
    assert ok.returncode == 0 and "1 kept, 0 broken" in ok.stdout, ok.stdout + ok.stderr
    with (root / "engine/loss_log.py").open("a") as fh:
        fh.write("\nimport pipelines  # noqa: E402,F401\n")
    broken = _lint(root)
    assert broken.returncode == 1
    assert "engine.loss_log -> pipelines" in broken.stdout
