"""Docs routing: one command switches prd.md / trd.md / todo.md, atomically, deleting nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = (
    "PRD.md",
    "TRD.md",
    "Todo.md",
    "PRD_local_cuda.md",
    "TRD_local_cuda.md",
    "Todo_local_cuda.md",
)
LOCAL = {
    "prd.md": "PRD_local_cuda.md",
    "trd.md": "TRD_local_cuda.md",
    "todo.md": "Todo_local_cuda.md",
}
BASELINE = {"prd.md": "PRD.md", "trd.md": "TRD.md", "todo.md": "Todo.md"}


def _copy(tmp_path: Path) -> Path:
    """A throw-away copy of the docs, the links and the switch script."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "switch_docs.py", root / "scripts" / "switch_docs.py")
    for name in DOCS:
        shutil.copy2(REPO / name, root / name)
    for name in LOCAL:
        os.symlink(os.readlink(REPO / name), root / name)
    return root


def _switch(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "switch_docs.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _links(root: Path) -> dict[str, str]:
    return {name: os.readlink(root / name) for name in LOCAL if (root / name).is_symlink()}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and not p.is_symlink()}


def test_committed_routing_is_local_and_relative() -> None:
    assert _links(REPO) == LOCAL
    for name in LOCAL:
        assert not os.path.isabs(os.readlink(REPO / name))
        assert (REPO / name).resolve().is_file()
    for name in DOCS:
        assert (REPO / name).stat().st_size > 1000, f"{name} looks empty"


def test_switch_both_ways_keeps_every_document(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    before = _snapshot(root)

    out = _switch(root, "baseline")
    assert out.returncode == 0, out.stderr
    assert _links(root) == BASELINE
    assert "docs routing: baseline" in out.stdout
    assert "prd.md -> PRD.md" in out.stdout
    assert (root / "todo.md").read_text() == (root / "Todo.md").read_text()

    out = _switch(root, "local")
    assert out.returncode == 0, out.stderr
    assert _links(root) == LOCAL
    assert (root / "trd.md").read_text() == (root / "TRD_local_cuda.md").read_text()

    assert _snapshot(root) == before  # nothing deleted or rewritten
    assert not list(root.glob(".*.tmp"))  # no temporary link left behind


def test_status_reports_without_changing(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    out = _switch(root, "--status")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == "docs routing: local"
    assert _links(root) == LOCAL
    os.remove(root / "trd.md")
    os.symlink("TRD.md", root / "trd.md")
    assert _switch(root, "--status").stdout.splitlines()[0] == "docs routing: mixed"


@pytest.mark.parametrize("breakage", ["missing_target", "regular_file"])
def test_refuses_unsafe_switch_and_changes_nothing(tmp_path: Path, breakage: str) -> None:
    root = _copy(tmp_path)
    if breakage == "missing_target":
        (root / "Todo.md").rename(root / "Todo.md.moved")
    else:
        os.remove(root / "prd.md")
        (root / "prd.md").write_text("hand-written notes\n")
    links_before = _links(root)
    out = _switch(root, "baseline")
    assert out.returncode == 2
    assert out.stderr.startswith("error: ")
    assert _links(root) == links_before
    if breakage == "regular_file":
        assert (root / "prd.md").read_text() == "hand-written notes\n"


def test_usage_error_without_a_choice(tmp_path: Path) -> None:
    out = _switch(_copy(tmp_path))
    assert out.returncode == 2
    assert "local" in out.stderr and "baseline" in out.stderr
