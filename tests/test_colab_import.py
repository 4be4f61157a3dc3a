"""Colab round trip: a bundle from pipelines.make_bundle imported into a fresh repository.

Both streams are trained on the tiny baseline configs under a temporary repository root
(the "Colab" side), bundled, and imported into another fresh root (the "local" side).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from core.errors import UserError
from pipelines.import_colab_bundle import import_bundle, relocate
from pipelines.validate_training_outputs import run_checklist

REPO = Path(__file__).resolve().parents[1]
CONTENT = "/content/drive/MyDrive/sensor-ssl/"
TINY = {
    "patchtst": [
        "training.epochs=1",
        "training.max_steps_per_epoch=2",
        "data.synthetic.n_files=2",
        "data.synthetic.n_rows=400",
    ],
    "swinmae": [
        "training.epochs=1",
        "training.max_steps_per_epoch=1",
        "data.synthetic.n_files=2",
        "data.synthetic.duration_sec=8",
    ],
}
PATCH_SWIN = ("configs/patchtst_ssl.yaml", "configs/swinmae_ssl.yaml")
CONFIGS = dict(zip(("patchtst", "swinmae"), PATCH_SWIN, strict=True))


def run_module(root: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "SSL_REPO_ROOT": str(root)},
        timeout=600,
    )


def fresh_root(path: Path) -> Path:
    """What a fresh checkout brings: the tracked configs and docs, no outputs."""
    shutil.copytree(REPO / "configs", path / "configs")
    shutil.copytree(REPO / "docs", path / "docs")
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the Colab-side root, its bundle zip) for a tiny run of both streams."""
    root = fresh_root(tmp_path_factory.mktemp("colab") / "repo")
    for stream, sets in TINY.items():
        args = ["--config", f"configs/{stream}_ssl.yaml"]
        args += [a for s in sets for a in ("--set", s)]
        out = run_module(root, f"trainers.train_{stream}_ssl", *args)
        assert out.returncode == 0, out.stderr[-2000:]
    configs = ("--patch-config", PATCH_SWIN[0], "--swin-config", PATCH_SWIN[1])
    out = run_module(
        root, "pipelines.make_bundle", "--repo-root", str(root), *configs, "--run-id", "colab-run"
    )
    assert out.returncode == 0, out.stderr
    return root, root / "artifacts/bundles/colab-run.zip"


def content_variant(src: Path, dst: Path) -> None:
    """The same bundle as a Colab run with outputs on Drive would store it: absolute paths
    in the configs and in each checkpoint's embedded config (manifest updated to match)."""
    to_content = (
        "data/local/train/fdc/*.csv",
        "data/local/train/vib/*.csv",
        "artifacts/scaler_fdc.json",
        "checkpoints/patchtst_ssl.pt",
        "checkpoints/swinmae_ssl.pt",
        "runs/patchtst_ssl",
        "runs/swinmae_ssl",
    )

    def config(data: dict) -> dict:
        data = json.loads(json.dumps(data))
        data["data"]["path"] = CONTENT + data["data"]["path"]
        data["logging"]["checkpoint_path"] = CONTENT + data["logging"]["checkpoint_path"]
        data["logging"]["log_dir"] = CONTENT + data["logging"]["log_dir"]
        if data["stream"] == "swinmae":
            data["cwt"]["cache_dir"] = "/content/cwt_cache"  # no known top folder: stays
        return data

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        for entry in manifest["files"]:
            name, raw = entry["path"], zin.read(entry["path"])
            if name.endswith(".yaml"):
                text = raw.decode()
                for rel in to_content:
                    text = text.replace(f": {rel}\n", f": {CONTENT}{rel}\n")
                raw = text.encode()
            elif name.endswith(".pt"):
                ckpt = torch.load(io.BytesIO(raw), weights_only=True)
                ckpt["config"] = config(ckpt["config"])
                buf = io.BytesIO()
                torch.save(ckpt, buf)
                raw = buf.getvalue()
            entry.update(sha256=sha(raw), size=len(raw))
            zout.writestr(name, raw)
        zout.writestr("manifest.json", json.dumps(manifest))


# --------------------------------------------------------------------------- round trip
def test_round_trip_then_checklist_passes_7_of_7(trained, tmp_path: Path) -> None:
    colab, bundle = trained
    local = fresh_root(tmp_path / "local")
    lines: list[str] = []
    import_bundle(bundle, local, out=lines.append)
    assert "  new       checkpoints/swinmae_ssl.pt (checkpoint)" in lines
    assert "  unchanged configs/patchtst_ssl.yaml (yaml/json)" in lines
    assert lines[-1] == (
        f"next: python -m pipelines.validate_training_outputs --repo-root {local} "
        "--patch-config configs/patchtst_ssl.yaml --swin-config configs/swinmae_ssl.yaml"
    )
    for rel in (
        "checkpoints/patchtst_ssl.pt",
        "checkpoints/swinmae_ssl.pt",
        "artifacts/scaler_fdc.json",
        "artifacts/loss/swinmae_loss_history.csv",
        "artifacts/loss/patchtst_loss_curve.png",
        "artifacts/dqvl/vib/summary.json",
    ):
        assert (local / rel).read_bytes() == (colab / rel).read_bytes(), rel
    assert list((local / "runs/swinmae_ssl").glob("events.out.tfevents.*"))
    assert (local / "artifacts/bundles/colab-run.zip").is_file()

    result = run_checklist(local, CONFIGS)  # scoring smoke included
    assert [i["status"] for i in result["items"]] == ["PASS"] * 7, result["items"]
    smoke = next(i for i in result["items"] if i["key"] == "scoring_smoke")
    assert smoke["detail"] == "patchtst: passed; swinmae: passed"


def test_content_paths_become_repo_relative(trained, tmp_path: Path) -> None:
    _, bundle = trained
    variant = tmp_path / "colab_content.zip"
    content_variant(bundle, variant)
    local = fresh_root(tmp_path / "local")
    lines: list[str] = []
    import_bundle(variant, local, out=lines.append)
    text = "\n".join(lines)
    assert f"data.path: {CONTENT}data/local/train/fdc/*.csv -> data/local/train/fdc/*.csv" in text
    assert "warning: cwt.cache_dir: /content/cwt_cache stays absolute" in text
    # configs/ lost their /content prefix and now equal the tracked files byte for byte
    assert "unchanged configs/patchtst_ssl.yaml" in text

    side = yaml.safe_load((local / "checkpoints/patchtst_ssl.config.yaml").read_text())
    assert side["data"]["path"] == "data/local/train/fdc/*.csv"
    assert side["logging"]["checkpoint_path"] == "checkpoints/patchtst_ssl.pt"
    for stream in ("patchtst", "swinmae"):
        for name in (f"{stream}_ssl.pt", f"{stream}_ssl.best.pt"):
            cfg = torch.load(local / "checkpoints" / name, weights_only=True)["config"]
            assert cfg["logging"]["log_dir"] == f"runs/{stream}_ssl"
            assert not cfg["data"]["path"].startswith("/")
    swin = torch.load(local / "checkpoints/swinmae_ssl.pt", weights_only=True)["config"]
    assert swin["cwt"]["cache_dir"] == "/content/cwt_cache"
    for path in (local / "checkpoints").glob("*.yaml"):
        assert "/content/drive" not in path.read_text(), path.name

    # items 1-5 pass: the backup bundle was re-packed from the rewritten checkpoints
    result = run_checklist(local, CONFIGS, skip_smoke=True)
    assert [i["status"] for i in result["items"]] == ["PASS"] * 7, result["items"]


# --------------------------------------------------------------------------- refusals
def test_refuses_to_overwrite_without_force(trained, tmp_path: Path) -> None:
    _, bundle = trained
    local = fresh_root(tmp_path / "local")
    (local / "checkpoints").mkdir()
    (local / "checkpoints/patchtst_ssl.pt").write_bytes(b"an older run")
    before = tree(local)

    out = run_module(local, "pipelines.import_colab_bundle", str(bundle), "--repo-root", str(local))
    assert out.returncode == 2
    assert "exists: checkpoints/patchtst_ssl.pt" in out.stderr
    assert "1 existing file(s) would be overwritten" in out.stderr
    assert "nothing was written" in out.stderr
    assert tree(local) == before
    with pytest.raises(UserError, match="would be overwritten"):
        import_bundle(bundle, local, dry_run=True, out=lambda _: None)
    assert tree(local) == before

    lines: list[str] = []
    import_bundle(bundle, local, force=True, out=lines.append)
    assert "  overwrite checkpoints/patchtst_ssl.pt (checkpoint)" in lines
    with zipfile.ZipFile(bundle) as zf:
        assert (local / "checkpoints/patchtst_ssl.pt").read_bytes() == zf.read(
            "checkpoints/patchtst_ssl.pt"
        )


def test_dry_run_writes_nothing_and_reimport_is_a_no_op(trained, tmp_path: Path) -> None:
    _, bundle = trained
    local = fresh_root(tmp_path / "local")
    before = tree(local)
    lines: list[str] = []
    import_bundle(bundle, local, dry_run=True, out=lines.append)
    assert tree(local) == before
    assert any(line.startswith("  new       checkpoints/patchtst_ssl.pt") for line in lines)

    import_bundle(bundle, local, out=lines.append)
    after = tree(local)
    lines.clear()
    import_bundle(bundle, local, out=lines.append)  # same bundle again: nothing to do
    assert tree(local) == after
    assert lines[-1] == "already imported: every file is unchanged"


@pytest.mark.parametrize(
    "bad", ["../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "checkpoints/../../evil.txt"]
)
def test_zip_slip_entries_are_refused(tmp_path: Path, bad: str) -> None:
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("checkpoints/ok.config.yaml", "a: 1\n")
        zf.writestr(bad, "owned")
    local = tmp_path / "deep" / "local"
    local.mkdir(parents=True)
    with pytest.raises(UserError, match="unsafe path"):
        import_bundle(zpath, local, out=lambda _: None)
    assert list(local.rglob("*")) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("checkpoints/patchtst_ssl.pt")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="symbolic link"):
        import_bundle(zpath, tmp_path / "local", out=lambda _: None)


def test_tampered_bundle_fails_checksum(trained, tmp_path: Path) -> None:
    _, bundle = trained
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(tampered, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "artifacts/loss/patchtst_loss_history.csv":
                data += b"99,0,0,0,0\n"
            zout.writestr(name, data)
    local = fresh_root(tmp_path / "local")
    before = tree(local)
    with pytest.raises(UserError, match="patchtst_loss_history.csv: checksum does not match"):
        import_bundle(tampered, local, out=lambda _: None)
    assert tree(local) == before


def test_unzipped_folder_inside_a_wrapper_folder(trained, tmp_path: Path) -> None:
    """A bundle unzipped into Downloads/<name>/ imports from the parent folder too."""
    _, bundle = trained
    downloads = tmp_path / "Downloads"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(downloads / "colab-run")
    (downloads / "notes.txt").write_text("not part of the bundle")
    local = fresh_root(tmp_path / "local")
    lines: list[str] = []
    plan = import_bundle(downloads, local, out=lines.append)
    assert plan.verified > 10
    assert "  skipped   notes.txt (outside the local layout)" in lines
    assert (local / "checkpoints/swinmae_ssl.pt").read_bytes() == (
        downloads / "colab-run/checkpoints/swinmae_ssl.pt"
    ).read_bytes()


# --------------------------------------------------------------------------- rewriting rule
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/content/drive/MyDrive/sensor-ssl/data/x/*.csv", "data/x/*.csv"),
        ("/content/checkpoints/patchtst_ssl.pt", "checkpoints/patchtst_ssl.pt"),
        ("/home/me/work/repo/runs/swinmae_ssl", "runs/swinmae_ssl"),
        ("C:\\Users\\me\\repo\\artifacts\\scaler_fdc.json", "artifacts/scaler_fdc.json"),
        ("/content/sample_data/x.csv", None),  # no known top folder
        ("/content/data", None),  # a top folder with nothing below it
        ("data/local/train/fdc/*.csv", None),  # already relative
        ("robust", None),
    ],
)
def test_relocate(value: str, expected: str | None) -> None:
    assert relocate(value) == expected
