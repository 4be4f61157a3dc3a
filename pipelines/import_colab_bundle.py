"""Import a run trained elsewhere (Colab) into the local repository layout.

    python -m pipelines.import_colab_bundle BUNDLE [--repo-root .] [--force] [--dry-run]

``BUNDLE`` is a zip made by ``pipelines.make_bundle`` (or a folder with the same layout;
a wrapper folder such as ``content/drive/MyDrive/<repo>/`` in front of the layout is
ignored).  Checkpoints, loss histories and curves, TensorBoard logs, the FDC scaler, DQVL
summaries, calibration thresholds and configs land at their repository-relative places.

Why the extra care:
- A Colab run stores absolute ``/content/...`` paths in its configs, and those paths do
  not exist here.  Every absolute path in the imported YAML/JSON files and in each
  checkpoint's embedded config is cut back to the part that starts at a known top folder
  (``data/``, ``checkpoints/``, ``artifacts/``, ``runs/``, ``configs/``); one without such a
  folder is reported and left as it is.
- Nothing is half-imported: the whole bundle is checked first (entry names, manifest
  checksums, existing files), and a file that already exists with different content is
  only replaced with ``--force``.  Without it the command lists the files and writes
  nothing.  Every write is atomic.
- Afterwards a backup bundle of exactly the imported files is written to
  ``artifacts/bundles/<run_id>.zip``, so the validation checklist sees a current bundle
  even when checkpoints were rewritten.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

import streams
from core.cli import run_main
from core.errors import UserError
from core.io import atomic_torch_save, atomic_write_bytes, file_sha256
from core.layout import BUNDLE_DIR
from core.paths import display_path, repo_root, resolve_path
from core.status import check_run_id
from pipelines.make_bundle import (
    MANIFEST,
    BundlePlan,
    write_bundle,
)

# Top folders of the local layout: an absolute path is cut back to the first of these.
KNOWN_TOP = ("data", "checkpoints", "artifacts", "runs", "configs")
# Top folders whose files are imported (data files are never part of a run bundle).
IMPORTED_TOP = ("checkpoints", "artifacts", "runs", "configs")
TEXT_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_ABSOLUTE = re.compile(r"^(?:/|~|[A-Za-z]:[\\/]|\\\\)")
_SEP = re.compile(r"[\\/]+")
_S_IFMT, _S_IFLNK = 0o170000, 0o120000


# --------------------------------------------------------------------------- path rewriting
def relocate(value: str) -> str | None:
    """Repository-relative form of an absolute path, or None if it has no known top folder.

    ``/content/drive/MyDrive/repo/data/x/*.csv`` -> ``data/x/*.csv``.
    """
    if not _ABSOLUTE.match(value):
        return None
    parts = [p for p in _SEP.split(value) if p]
    for i, part in enumerate(parts):
        if part in KNOWN_TOP and i + 1 < len(parts):
            return "/".join(parts[i:])
    return None


@dataclass
class Rewrites:
    """Path rewrites of one file: (dotted key, old, new), and absolute paths left as they are."""

    done: list[tuple[str, str, str]] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)


def rewrite_paths(data: Any, rewrites: Rewrites, key: str = "") -> Any:
    """A copy of ``data`` with every absolute path string made repository-relative."""
    if isinstance(data, dict):
        return {
            k: rewrite_paths(v, rewrites, f"{key}.{k}" if key else str(k)) for k, v in data.items()
        }
    if isinstance(data, list):
        return [rewrite_paths(v, rewrites, f"{key}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str) and _ABSOLUTE.match(data):
        new = relocate(data)
        if new is None:
            rewrites.unresolved.append((key, data))
            return data
        rewrites.done.append((key, data, new))
        return new
    return data


def rewrite_yaml_text(text: str, rewrites: Rewrites) -> str:
    """Rewrite paths in YAML, keeping comments and layout where a plain replace is exact."""
    original = yaml.safe_load(text)
    updated = rewrite_paths(original, rewrites)
    if not rewrites.done:
        return text
    patched = text
    for _, old, new in rewrites.done:
        patched = patched.replace(old, new)
    try:
        if yaml.safe_load(patched) == updated:
            return patched
    except yaml.YAMLError:
        pass
    return yaml.safe_dump(updated, sort_keys=False)


def rewrite_config_bytes(name: str, raw: bytes, rewrites: Rewrites) -> bytes:
    """Rewritten YAML or JSON file content; unchanged bytes when nothing needed rewriting."""
    try:
        text = raw.decode("utf-8")
        if name.endswith(".json"):
            updated = rewrite_paths(json.loads(text), rewrites)
            out = json.dumps(updated, indent=2) + "\n"
        else:
            out = rewrite_yaml_text(text, rewrites)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"{name}: not a readable config file ({type(exc).__name__})") from None
    return out.encode("utf-8") if rewrites.done else raw


def load_checkpoint_bytes(name: str, raw: bytes) -> dict[str, Any]:
    import torch

    try:
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not torch, or refused by weights_only
        kind = type(exc).__name__
        raise UserError(f"{name}: not a readable weights-only checkpoint ({kind})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{name}: not a checkpoint written by this project")
    return ckpt


def checkpoint_rewrites(name: str, raw: bytes) -> tuple[dict[str, Any], Rewrites]:
    """The checkpoint with its embedded config rewritten, and the rewrites made."""
    ckpt = load_checkpoint_bytes(name, raw)
    rewrites = Rewrites()
    if isinstance(ckpt.get("config"), dict):
        ckpt["config"] = rewrite_paths(ckpt["config"], rewrites)
    return ckpt, rewrites


# --------------------------------------------------------------------------- bundle access
def safe_member(name: str) -> PurePosixPath:
    """The entry name as a relative path; refuses absolute, drive or ``..`` names (zip-slip)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or _ABSOLUTE.match(name) or ".." in path.parts:
        raise UserError(f"bundle entry {name!r}: unsafe path (absolute or '..'); refusing it")
    return path


def manifest_prefix(names: list[str]) -> str:
    """The folder holding the manifest when the bundle was unpacked into a wrapper folder."""
    if MANIFEST in names:
        return ""
    nested = [n for n in names if n.endswith(f"/{MANIFEST}")]
    return nested[0][: -len(MANIFEST)] if len(nested) == 1 else ""


class Bundle:
    """Read-only view of a bundle zip or folder, rebased on the folder of its manifest."""

    def __init__(self, names: list[str], read: Callable[[str], bytes], label: str) -> None:
        for name in names:
            safe_member(name)
        self._prefix = manifest_prefix(names)
        self._read = read
        self.names = [n[len(self._prefix) :] for n in names if n.startswith(self._prefix)]
        self.outside = [n for n in names if not n.startswith(self._prefix)]
        self.label = label

    def read(self, name: str) -> bytes:
        return self._read(self._prefix + name)

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.read(name)).hexdigest()

    @cached_property
    def manifest(self) -> dict[str, Any] | None:
        """The parsed manifest, or None when the bundle has none (an older Colab export)."""
        if MANIFEST not in self.names:
            return None
        try:
            data = json.loads(self.read(MANIFEST).decode("utf-8"))
            files = data["files"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            files = None
        if not isinstance(files, list) or not all(
            isinstance(e, dict)
            and isinstance(e.get("path"), str)
            and isinstance(e.get("sha256"), str)
            for e in files
        ):
            raise UserError(f"{self.label}: {MANIFEST} is not a valid bundle manifest")
        return data


@contextmanager
def open_bundle(path: Path) -> Iterator[Bundle]:
    shown = display_path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
        links = [p for p in files if p.is_symlink()]
        if links:
            raise UserError(f"{shown}: contains a symbolic link ({links[0].name}); refusing it")
        names = [p.relative_to(path).as_posix() for p in files]
        yield Bundle(names, lambda n: (path / n).read_bytes(), shown)
        return
    if not path.is_file():
        raise UserError(f"{shown}: bundle not found")
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{shown}: not a readable zip ({exc})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for info in infos:
            if (info.external_attr >> 16) & _S_IFMT == _S_IFLNK:
                raise UserError(f"{shown}: entry {info.filename!r} is a symbolic link; refusing")
        yield Bundle([i.filename for i in infos], zf.read, shown)


def verify_checksums(bundle: Bundle) -> int:
    """Check every file against the manifest (when there is one); returns files verified."""
    if bundle.manifest is None:
        return 0
    listed = {e["path"]: e["sha256"] for e in bundle.manifest["files"]}
    present = set(bundle.names) - {MANIFEST}
    problems = [f"{n}: listed in the manifest but missing" for n in sorted(listed.keys() - present)]
    problems += [f"{n}: not listed in the manifest" for n in sorted(present - listed.keys())]
    problems += [
        f"{n}: checksum does not match the manifest"
        for n in sorted(present & listed.keys())
        if bundle.sha256(n) != listed[n]
    ]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{bundle.label}: bundle does not verify: {'; '.join(problems[:3])}{more}")
    return len(listed)


# --------------------------------------------------------------------------- planning
@dataclass
class Item:
    member: str  # name inside the bundle
    dest: str  # repository-relative destination
    kind: str  # checkpoint | yaml/json | file
    status: str = "new"  # new | unchanged | overwrite
    data: bytes | None = None  # final bytes of rewritten text configs
    rewrites: Rewrites = field(default_factory=Rewrites)


@dataclass
class Plan:
    items: list[Item]
    skipped: list[str]
    verified: int
    run_id: str
    backup: str
    backup_exists: bool

    @property
    def changes(self) -> bool:
        return any(i.status != "unchanged" for i in self.items)

    @property
    def conflicts(self) -> list[str]:
        """Existing files that differ; the backup bundle only counts when something changes."""
        found = [i.dest for i in self.items if i.status == "overwrite"]
        return found + ([self.backup] if self.backup_exists and self.changes else [])


def destination(member: PurePosixPath) -> PurePosixPath | None:
    """Where a bundle entry goes: from its first known top folder on; None = not imported."""
    parts = member.parts
    for i, part in enumerate(parts[:-1]):
        if part in IMPORTED_TOP:
            dest = PurePosixPath(*parts[i:])
            is_bundle = dest.parts[:2] == tuple(BUNDLE_DIR.split("/"))
            return None if is_bundle else dest
    return None


def kind_of(dest: PurePosixPath) -> str:
    if dest.parts[0] == "checkpoints" and dest.suffix == ".pt":
        return "checkpoint"
    return "yaml/json" if dest.suffix in TEXT_CONFIG_SUFFIXES else "file"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _status(item: Item, bundle: Bundle, root: Path) -> str:
    target = root / item.dest
    if not target.exists():
        return "new"
    if item.data is not None:
        final_sha = _sha(item.data)
    elif item.rewrites.done:
        return "overwrite"  # a rewritten checkpoint never equals the file on disk byte for byte
    else:
        final_sha = bundle.sha256(item.member)
    return "unchanged" if target.is_file() and file_sha256(target) == final_sha else "overwrite"


def _bundle_run_id(bundle: Bundle, source: Path) -> str:
    """The manifest's run id, else the bundle's (sanitised) name: it names the backup zip."""
    try:
        return check_run_id(str((bundle.manifest or {}).get("run_id") or ""))
    except UserError:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", source.stem).strip("._")[:128] or "imported"


def plan_import(bundle: Bundle, source: Path, root: Path) -> Plan:
    """Everything the import would do; reads the bundle, writes nothing."""
    verified = verify_checksums(bundle)
    items, skipped, seen = [], list(bundle.outside), {}
    for name in bundle.names:
        dest = destination(safe_member(name))
        if name == MANIFEST:
            continue
        if dest is None:
            skipped.append(name)
            continue
        if str(dest) in seen:
            raise UserError(f"{bundle.label}: {seen[str(dest)]} and {name} both map to {dest}")
        seen[str(dest)] = name
        item = Item(name, dest.as_posix(), kind_of(dest))
        if item.kind == "yaml/json":
            item.data = rewrite_config_bytes(name, bundle.read(name), item.rewrites)
        elif item.kind == "checkpoint":
            item.rewrites = checkpoint_rewrites(name, bundle.read(name))[1]
        item.status = _status(item, bundle, root)
        items.append(item)
    if not items:
        raise UserError(
            f"{bundle.label}: nothing to import (no checkpoints/, artifacts/, runs/ or configs/)"
        )
    run_id = _bundle_run_id(bundle, source)
    backup = f"{BUNDLE_DIR}/{run_id}.zip"
    return Plan(items, sorted(skipped), verified, run_id, backup, (root / backup).exists())


# --------------------------------------------------------------------------- writing
def write_item(item: Item, bundle: Bundle, root: Path) -> None:
    target = root / item.dest
    if item.data is not None:
        atomic_write_bytes(target, item.data)
    elif item.kind == "checkpoint" and item.rewrites.done:
        ckpt, _ = checkpoint_rewrites(item.member, bundle.read(item.member))
        atomic_torch_save(ckpt, target)
    else:
        atomic_write_bytes(target, bundle.read(item.member))


def report_plan(plan: Plan, label: str, out: Callable[[str], None]) -> None:
    """One line per file (new / unchanged / overwrite) with its path rewrites."""
    checked = (
        f"{plan.verified} manifest checksums verified"
        if plan.verified
        else "no manifest, checksums not verified"
    )
    out(f"bundle {label} (run {plan.run_id}): {checked}")
    for item in plan.items:
        out(f"  {item.status:9} {item.dest} ({item.kind})")
        for key, old, new in item.rewrites.done:
            out(f"              {key}: {old} -> {new}")
        for key, value in item.rewrites.unresolved:
            out(
                f"              warning: {key}: {value} stays absolute (no "
                f"{'/, '.join(KNOWN_TOP)}/ folder in it); set it with --set or edit the file"
            )
    for name in plan.skipped:
        out(f"  skipped   {name} (outside the local layout)")


def stream_configs(plan: Plan) -> dict[str, str]:
    """Imported run configs by stream (not the effective copies beside the checkpoints)."""
    found: dict[str, list[str]] = {}
    for item in plan.items:
        dest = PurePosixPath(item.dest)
        if (
            item.data is None
            or dest.suffix not in (".yaml", ".yml")
            or dest.parts[0] == "checkpoints"
        ):
            continue
        try:
            stream = (yaml.safe_load(item.data) or {}).get("stream")
        except (yaml.YAMLError, AttributeError):
            continue
        found.setdefault(str(stream), []).append(item.dest)
    return {s: paths[0] for s, paths in found.items() if len(paths) == 1}


def next_step(plan: Plan, root: Path) -> str | None:
    """The checklist command for the imported run, when every stream's config is
    unambiguous."""
    configs = stream_configs(plan)
    if not set(streams.names()) <= configs.keys():
        return None
    where = "." if root == Path.cwd().resolve() else str(root)
    flags = " ".join(f"--{t.cli_flag}-config {configs[t.name]}" for t in streams.tasks())
    return f"next: python -m pipelines.validate_training_outputs --repo-root {where} {flags}"


def import_bundle(
    source: Path,
    root: Path,
    force: bool = False,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
) -> Plan:
    """Import ``source`` into ``root``; raises UserError (writing nothing) on any refusal."""
    with open_bundle(source) as bundle:
        plan = plan_import(bundle, source, root)
        report_plan(plan, bundle.label, out)
        if plan.conflicts and not force:
            for path in plan.conflicts:
                print(f"exists: {path}", file=sys.stderr)
            raise UserError(
                f"{len(plan.conflicts)} existing file(s) would be overwritten (listed above); "
                "nothing was written. Rerun with --force to replace them"
            )
        if dry_run:
            out(f"dry run: nothing written (backup bundle would be {plan.backup})")
            return plan
        for item in plan.items:
            if item.status != "unchanged":
                write_item(item, bundle, root)
    if not plan.changes and plan.backup_exists:
        out("already imported: every file is unchanged")
        return plan
    files = [root / item.dest for item in plan.items]
    write_bundle(root, BundlePlan(files=files), plan.run_id, root / plan.backup)
    changed = sum(i.status != "unchanged" for i in plan.items)
    out(f"imported {changed} file(s) into {display_path(root)}; backup bundle {plan.backup}")
    hint = next_step(plan, root)
    if hint:
        out(hint)
    return plan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.import_colab_bundle",
        description="Import a bundle (zip from pipelines.make_bundle, or a folder) trained on "
        "Colab or another machine into the local layout; absolute /content/... paths in its "
        "configs and checkpoints become repository-relative.",
    )
    parser.add_argument("bundle", help="bundle zip or folder (relative to --repo-root)")
    parser.add_argument(
        "--repo-root",
        default=None,
        help="repository root to import into (default: this repository)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace existing files that differ (default: refuse, write nothing)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be imported and rewritten; write nothing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.repo_root).resolve() if args.repo_root else repo_root()
    import_bundle(resolve_path(args.bundle, root), root, args.force, args.dry_run)
    return 0


if __name__ == "__main__":
    run_main(main)
