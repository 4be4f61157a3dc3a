"""Shared fixtures: every test that writes outputs gets its own repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point core.paths.repo_root() (and subprocesses) at an empty temporary root."""
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    return tmp_path
