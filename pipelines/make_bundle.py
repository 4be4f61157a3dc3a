"""Backup bundle of one training run: a zip of every artifact needed to restore or audit it.

The zip holds the checkpoints (+ the effective config beside each), the configs, the FDC
scaler, loss histories and curves, DQVL summaries, TensorBoard event files and calibration
thresholds when present, plus ``manifest.json`` with a sha256 and size per file, so a
copy can be verified anywhere with :func:`verify_bundle`.  Paths inside are
repository-relative; the zip is written atomically.

    python -m pipelines.make_bundle --repo-root . \\
        --patch-config configs/patchtst_ssl_local.yaml --swin-config configs/swinmae_ssl_local.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import streams
from core.cli import run_main
from core.config import StreamConfig
from core.errors import UserError
from core.io import atomic_write_with
from core.layout import BUNDLE_DIR, CALIBRATION_DIR, RunLayout, event_files, thresholds_path
from core.paths import repo_rel, resolve_path
from core.status import check_run_id, new_run_id, now_iso

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "1.0"
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- collect
@dataclass
class BundlePlan:
    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def want(self, path: Path, root: Path, required: bool = True) -> None:
        if path.is_file():
            if path not in self.files:
                self.files.append(path)
        elif required:
            self.missing.append(repo_rel(path, root))


def plan_bundle(root: Path, configs: dict[str, tuple[str, StreamConfig]]) -> BundlePlan:
    """Which files go into the bundle; absent required ones are listed as missing."""
    plan = BundlePlan()
    for stream, (config_path, cfg) in configs.items():
        run = RunLayout.from_config(cfg, root)
        plan.want(resolve_path(config_path, root), root)
        for path in (run.checkpoint, run.config_yaml):
            plan.want(path, root)
        plan.want(run.best, root, required=False)
        for path in (run.history_csv, run.curve_png, run.dqvl_summary):
            plan.want(path, root)
        plan.want(thresholds_path(CALIBRATION_DIR, stream, root), root, required=False)
        events = event_files(run.log_dir)
        if not events:
            plan.missing.append(f"{repo_rel(run.log_dir, root)}/events.out.tfevents.*")
        for ev in events:
            plan.want(ev, root)
        for path, _kind in streams.get(stream).extra_artifacts(cfg):
            plan.want(resolve_path(path, root), root)
    return plan


# --------------------------------------------------------------------------- write / verify
def _copy_into_zip(zf: zipfile.ZipFile, src: Path, arcname: str) -> dict[str, Any]:
    """Stream one file into the zip, hashing exactly the bytes that were stored."""
    digest = hashlib.sha256()
    size = 0
    info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as fh, zf.open(info, "w", force_zip64=True) as out:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return {"path": arcname, "sha256": digest.hexdigest(), "size": size}


def write_bundle(root: Path, plan: BundlePlan, run_id: str, out: Path) -> dict[str, Any]:
    """Write the zip atomically; returns the manifest."""
    if not plan.files:
        raise UserError("nothing to bundle: no run artifacts found (train a stream first)")
    arcnames = [repo_rel(p, root) for p in plan.files]
    if len(set(arcnames)) != len(arcnames):
        raise UserError(
            "two bundled files map to the same name; move external configs into the repository"
        )
    manifest: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA,
        "run_id": run_id,
        "created": now_iso(),
        "files": [],
        "missing": sorted(plan.missing),
    }

    def write(fh: IO[bytes]) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for src, arc in zip(plan.files, arcnames, strict=True):
                manifest["files"].append(_copy_into_zip(zf, src, arc))
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")

    atomic_write_with(out, write)
    return manifest


def _unsafe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or "\\" in name or ":" in name


def read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    return json.loads(zf.read(MANIFEST).decode("utf-8"))


def verify_bundle(path: str | Path) -> list[str]:
    """Problems found in a bundle (empty list = intact): missing manifest, a file whose
    checksum or size differs, a listed file absent, an unlisted file, an unsafe name."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"{path.name}: not a readable zip ({exc})"]
    problems: list[str] = []
    with zf:
        names = set(zf.namelist())
        try:
            manifest = read_manifest(zf)
            entries = manifest["files"]
            listed = {e["path"]: e for e in entries}
        except (KeyError, TypeError, ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            return [f"{path.name}: {MANIFEST} missing or invalid ({type(exc).__name__})"]
        for name in sorted(names | set(listed)):
            if _unsafe_name(name):
                problems.append(f"{name}: unsafe path in bundle")
            elif name == MANIFEST:
                continue
            elif name not in listed:
                problems.append(f"{name}: in the zip but not in the manifest")
            elif name not in names:
                problems.append(f"{name}: listed in the manifest but missing from the zip")
            else:
                problems.extend(_check_member(zf, listed[name]))
    return problems


def _check_member(zf: zipfile.ZipFile, entry: dict[str, Any]) -> list[str]:
    digest = hashlib.sha256()
    size = 0
    try:
        with zf.open(entry["path"]) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, KeyError) as exc:  # CRC errors surface as BadZipFile
        return [f"{entry.get('path')}: unreadable ({exc})"]
    if digest.hexdigest() != entry.get("sha256") or size != entry.get("size"):
        return [f"{entry['path']}: checksum or size does not match the manifest"]
    return []


# --------------------------------------------------------------------------- CLI
def make_bundle(
    root: Path,
    config_paths: dict[str, str] | None = None,
    run_id: str | None = None,
    out: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Bundle the runs of ``config_paths`` (stream -> config; default: every stream's
    ``make run`` config)."""
    run_id = check_run_id(run_id or new_run_id())
    paths = config_paths or streams.local_config_paths()
    loaded = streams.load_stream_configs(paths, root)
    configs = {s: (paths[s], loaded[s]) for s in paths}
    target = resolve_path(out or f"{BUNDLE_DIR}/{run_id}.zip", root)
    manifest = write_bundle(root, plan_bundle(root, configs), run_id, target)
    return target, manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.make_bundle",
        description="Zip a training run's artifacts with a sha256 manifest (artifacts/bundles/).",
    )
    parser.add_argument("--repo-root", default=".", help="repository root (default: .)")
    streams.add_stream_config_args(parser)
    parser.add_argument("--run-id", help="bundle name (default: UTC timestamp)")
    parser.add_argument("--out", help=f"zip path (default: {BUNDLE_DIR}/<run_id>.zip)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.repo_root).resolve()
    paths = streams.stream_config_paths(args, root)
    target, manifest = make_bundle(root, paths, args.run_id, args.out)
    total = sum(f["size"] for f in manifest["files"])
    print(f"bundle: {repo_rel(target, root)} ({len(manifest['files'])} files, {total} bytes)")
    for missing in manifest["missing"]:
        print(f"  not found (not bundled): {missing}")
    return 0


if __name__ == "__main__":
    run_main(main)
