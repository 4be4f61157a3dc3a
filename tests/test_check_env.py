"""Environment check: rows, statuses and the exit code follow what is missing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines import check_env as ce


def _rows(out: str) -> dict[str, dict]:
    return {r["check"]: r for r in json.loads(out)["rows"]}


def test_real_environment_passes(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    assert ce.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["check"]: r for r in data["rows"]}
    assert data["ok"] is True
    for name in (
        "python",
        "torch",
        "cuda available",
        "device",
        "amp dtypes",
        "timm",
        "PyWavelets (pywt)",
        "fastapi",
        "write checkpoints/",
        "write runs/",
    ):
        assert name in rows
    assert all(r["status"] in ("OK", "WARN") for r in rows.values())
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoints", "artifacts", "runs"}
    assert all(not any((tmp_path / d).iterdir()) for d in ce.WRITABLE_DIRS)  # probes removed


def test_missing_package_fails_with_exit_1(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    monkeypatch.setattr(
        ce,
        "REQUIRED_PACKAGES",
        {**ce.REQUIRED_PACKAGES, "no_such_package_x1": "no_such_package_x1"},
    )
    assert ce.main([]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("no_such_package_x1"))
    assert "FAIL" in line and "not importable (ModuleNotFoundError" in line
    assert out.strip().splitlines()[-1].startswith("environment NOT ready: 1 FAIL")


def test_unwritable_folder_fails(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    (tmp_path / "runs").write_text("a file where a folder should be")
    assert ce.main(["--json"]) == 1
    row = _rows(capsys.readouterr().out)["write runs/"]
    assert row["status"] == "FAIL" and row["detail"].startswith("not writable")


def test_old_python_fails(tmp_path: Path) -> None:
    rows = ce.run_checks(tmp_path, {}, python_version=(3, 10, 12))
    assert rows[0] == ce.Row("python", "FAIL", "3.10.12; 3.11 or newer is required")


def test_torch_missing_is_a_failure(tmp_path: Path) -> None:
    def importer(name: str):
        raise ImportError(f"No module named {name!r}")

    rows = ce.run_checks(tmp_path, {"numpy": "numpy"}, importer=importer)
    by_name = {r.check: r for r in rows}
    assert by_name["torch"].status == "FAIL" and by_name["numpy"].status == "FAIL"


def _fake_torch(cuda: bool, bf16: bool = True, cuda_build: str | None = "12.4"):
    props = SimpleNamespace(total_memory=80 * 2**30, major=9, minor=0)
    return SimpleNamespace(
        __version__="2.14.1+cu124",
        version=SimpleNamespace(cuda=cuda_build),
        cuda=SimpleNamespace(
            is_available=lambda: cuda,
            device_count=lambda: 2,
            get_device_properties=lambda i: props,
            get_device_name=lambda i: "NVIDIA H100",
            is_bf16_supported=lambda: bf16,
        ),
    )


@pytest.mark.parametrize(
    ("cuda", "bf16", "build", "expect"),
    [
        (
            True,
            True,
            "12.4",
            {
                "cuda available": ("OK", "True (2 device(s))"),
                "device": ("OK", "NVIDIA H100, 80.0 GiB, compute capability 9.0"),
                "amp dtypes": ("OK", "bf16 supported (used), fp16 supported"),
            },
        ),
        (
            True,
            False,
            "12.4",
            {"amp dtypes": ("WARN", "bf16 not supported; fp16 with a grad scaler is used")},
        ),
        (
            False,
            False,
            None,
            {
                "torch": ("OK", "2.14.1+cu124 (CPU-only build)"),
                "cuda available": (
                    "WARN",
                    "False (CPU-only torch build); the CPU profile is used (slower, AMP off)",
                ),
            },
        ),
    ],
)
def test_torch_rows(cuda: bool, bf16: bool, build, expect: dict) -> None:
    rows = {r.check: (r.status, r.detail) for r in ce.check_torch(_fake_torch(cuda, bf16, build))}
    for name, value in expect.items():
        assert rows[name] == value
