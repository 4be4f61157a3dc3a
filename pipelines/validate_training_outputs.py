"""Post-training validation checklist: is this run complete and safe to promote?

Seven items, each PASS/FAIL with a one-line detail and, on FAIL, the command that fixes
it.  The console checklist and the ``--json-out`` file carry the same items, statuses,
details and hints.  Exit 1 when any item fails.

    python -m pipelines.validate_training_outputs --repo-root . \\
        --patch-config configs/patchtst_ssl_local.yaml \\
        --swin-config configs/swinmae_ssl_local.yaml --json-out artifacts/validation/checklist.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import streams
from core.cli import run_main
from core.config import StreamConfig, effective_config
from core.errors import CheckpointError, UserError
from core.io import atomic_write_json, file_sha256
from core.layout import BUNDLE_DIR, RunLayout, event_files
from core.paths import REPO_ROOT, repo_rel, resolve_path
from core.status import now_iso
from engine.tracking import attach_results
from pipelines.make_bundle import read_manifest, verify_bundle

SCHEMA_VERSION = "1.0"
POLICY_DOC = "docs/calibration_split_policy.md"
# Headings the calibration split policy must have (case-insensitive), each with text below.
POLICY_SECTIONS = ("Training data", "Calibration data (normal)")
SMOKE_SKIPPED = "skipped (--skip-smoke)"
SCORING_MODULE = "inference.run_scoring_example"
DEFAULT_SMOKE_TIMEOUT_S = 600.0
# Key fields every final config must carry: name -> dotted key in the effective config.
KEY_FIELDS: dict[str, str] = {
    "source": "data.source",
    "path": "data.path",
    "fs": "data.fs",
    "lr": "training.lr",
    "epochs": "training.epochs",
    "mask_ratio": "model.mask_ratio",
    "amp": "device.amp",
}

SmokeCommand = Callable[[str, str, str], list[str]]


def default_smoke_command(stream: str, checkpoint: str, config: str) -> list[str]:
    """The scoring CLI as an argument list (never a shell string)."""
    return [sys.executable, "-m", SCORING_MODULE, "--stream", stream,
            "--checkpoint", checkpoint, "--config", config]


@dataclass
class Context:
    root: Path
    config_paths: dict[str, str]
    configs: dict[str, StreamConfig]
    skip_smoke: bool = False
    smoke_command: SmokeCommand = default_smoke_command
    smoke_timeout: float = DEFAULT_SMOKE_TIMEOUT_S
    checkpoints: dict[str, dict[str, Any] | str] = field(default_factory=dict)

    @property
    def streams(self) -> list[str]:
        return list(self.configs)

    def rel(self, path: Path) -> str:
        return repo_rel(path, self.root)

    def run(self, stream: str) -> RunLayout:
        return RunLayout.from_config(self.configs[stream], self.root)

    def checkpoint_path(self, stream: str) -> Path:
        return self.run(stream).checkpoint

    def train_hint(self, names: list[str], why: str) -> str:
        """Retrain command(s) for the streams ``names``, then what the rerun rewrites."""
        if not names:
            return ""
        cmds = " && ".join(
            f"python -m trainers.train --config {self.config_paths[s]}" for s in names
        )
        return f"{cmds}  ({why})"

    def load_checkpoint(self, stream: str) -> dict[str, Any] | str:
        """The checkpoint dict, or the reason it cannot be used (cached: loaded once)."""
        if stream not in self.checkpoints:
            self.checkpoints[stream] = _load_checkpoint(self.checkpoint_path(stream), stream)
        return self.checkpoints[stream]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    hint: str = ""


def _load_checkpoint(path: Path, stream: str) -> dict[str, Any] | str:
    from engine.checkpoint import load_checkpoint  # torch import only when needed

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        return str(exc)
    if ckpt.get("stream") != stream:
        return f"checkpoint is for stream {ckpt.get('stream')!r}, expected {stream!r}"
    model = ckpt.get("model")
    if not isinstance(model, dict) or not model:
        return "checkpoint has an empty model state"
    return ckpt


# --------------------------------------------------------------------------- items
def check_checkpoints(ctx: Context) -> Outcome:
    details, failing = [], []
    for stream in ctx.streams:
        ckpt = ctx.load_checkpoint(stream)
        if isinstance(ckpt, str):
            failing.append(stream)
            details.append(f"{stream}: {ckpt}")
        else:
            details.append(
                f"{stream}: {ctx.rel(ctx.checkpoint_path(stream))} "
                f"({len(ckpt['model'])} tensors, epoch {ckpt.get('epoch', '?')})"
            )
    return Outcome(
        not failing, "; ".join(details), ctx.train_hint(failing, "writes the checkpoint")
    )


def _scaler_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    missing = [k for k in ("method", "center", "scale", "channel_names") if k not in data]
    if missing:
        return f"missing keys: {', '.join(missing)}"
    names, center, scale = data["channel_names"], data["center"], data["scale"]
    if not isinstance(data["method"], str) or not data["method"]:
        return "method must be a non-empty string"
    if not isinstance(names, list) or not names:
        return "channel_names must be a non-empty list"
    for key, values in (("center", center), ("scale", scale)):
        if not isinstance(values, list) or len(values) != len(names):
            return f"{key} must be a list with one value per channel ({len(names)})"
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            return f"{key} has non-finite or non-numeric values"
    if any(v <= 0 for v in scale):
        return "scale has values <= 0"
    return None


def _check_one_scaler(ctx: Context, stream: str, path: Path) -> Outcome:
    hint = ctx.train_hint([stream], f"rewrites {ctx.rel(path)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Outcome(False, f"{ctx.rel(path)}: not found", hint)
    except (OSError, ValueError) as exc:
        return Outcome(False, f"{ctx.rel(path)}: not valid JSON ({type(exc).__name__})", hint)
    problem = _scaler_problem(data)
    if problem:
        return Outcome(False, f"{ctx.rel(path)}: {problem}", hint)
    return Outcome(
        True, f"{ctx.rel(path)}: {data['method']}, {len(data['channel_names'])} channels"
    )


def check_scaler(ctx: Context) -> Outcome:
    """Every scaler a stream writes (the FDC stream's robust / z-score scaler)."""
    outcomes = [
        _check_one_scaler(ctx, stream, resolve_path(path, ctx.root))
        for stream in ctx.streams
        for path, kind in streams.get(stream).extra_artifacts(ctx.configs[stream])
        if kind == "scaler"
    ]
    if not outcomes:
        return Outcome(True, "no stream of this run uses a scaler")
    return Outcome(all(o.ok for o in outcomes), "; ".join(o.detail for o in outcomes),
                   " && ".join(o.hint for o in outcomes if o.hint))


def check_tensorboard(ctx: Context) -> Outcome:
    details, failing = [], []
    for stream in ctx.streams:
        log_dir = ctx.run(stream).log_dir
        events = event_files(log_dir)
        if not events:
            failing.append(stream)
        details.append(f"{stream}: {len(events)} event file(s) in {ctx.rel(log_dir)}")
    hint = ctx.train_hint(failing, "writes TensorBoard logs to logging.log_dir")
    return Outcome(not failing, "; ".join(details), hint)


def _dotted(data: Any, dotted: str) -> tuple[bool, Any]:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _key_field_problems(cfg: Any, stream: str) -> list[str]:
    """Missing or implausible key fields in an effective config (plain dict)."""
    problems = []
    for dotted in KEY_FIELDS.values():
        present, value = _dotted(cfg, dotted)
        if not present:
            problems.append(f"{dotted} missing")
        elif value is None and _optional(stream, dotted):
            continue  # e.g. data.fs of FDC is informational: the key must exist, may be null
        elif value is None or value == "" or value == []:
            problems.append(f"{dotted} empty")
    return problems


def _optional(stream: str, dotted: str) -> bool:
    """Whether the stream's schema defaults ``dotted`` to None (then None is a value)."""
    defaults = effective_config(streams.get(stream).config_class())
    return _dotted(defaults, dotted) == (True, None)


def config_highlights(cfg: Any) -> dict[str, Any]:
    """The key fields of an effective config (None where absent)."""
    return {name: _dotted(cfg, dotted)[1] for name, dotted in KEY_FIELDS.items()}


def _final_config_problems(ctx: Context, stream: str) -> list[str]:
    ckpt = ctx.load_checkpoint(stream)
    if isinstance(ckpt, str):
        embedded, problems = None, [f"checkpoint unusable ({ckpt})"]
    else:
        embedded = ckpt.get("config")
        problems = [f"embedded config: {p}" for p in _key_field_problems(embedded, stream)]
    side = ctx.run(stream).config_yaml
    try:
        beside = yaml.safe_load(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [*problems, f"{ctx.rel(side)} not found"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [*problems, f"{ctx.rel(side)} unreadable ({type(exc).__name__})"]
    problems += [f"{ctx.rel(side)}: {p}" for p in _key_field_problems(beside, stream)]
    if not problems:
        a, b = config_highlights(embedded), config_highlights(beside)
        differ = [k for k in KEY_FIELDS if a[k] != b[k]]
        if differ:
            problems.append(f"embedded config and {ctx.rel(side)} differ on {', '.join(differ)}")
    return problems


def check_final_configs(ctx: Context) -> Outcome:
    details, failing = [], []
    for stream in ctx.streams:
        problems = _final_config_problems(ctx, stream)
        if problems:
            failing.append(stream)
            details.append(f"{stream}: " + ", ".join(problems))
        else:
            details.append(f"{stream}: {', '.join(KEY_FIELDS)} present")
    hint = ctx.train_hint(failing, "embeds the effective config, writes <checkpoint>.config.yaml")
    return Outcome(not failing, "; ".join(details), hint)


def latest_bundle(root: Path) -> Path | None:
    bundles = sorted(
        (p for p in (root / BUNDLE_DIR).glob("*.zip") if p.is_file()),
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    return bundles[-1] if bundles else None


def _bundle_problems(ctx: Context, bundle: Path) -> list[str]:
    problems = verify_bundle(bundle)
    if problems:
        return problems
    with zipfile.ZipFile(bundle) as zf:
        listed = {e["path"]: e["sha256"] for e in read_manifest(zf)["files"]}
    for stream in ctx.streams:
        ckpt = ctx.checkpoint_path(stream)
        name = ctx.rel(ckpt)
        if name not in listed:
            problems.append(f"no {stream} checkpoint ({name}) in the bundle")
        elif ckpt.is_file() and file_sha256(ckpt) != listed[name]:
            problems.append(f"{name} changed since the bundle was made (stale bundle)")
    return problems


def check_backup_bundle(ctx: Context) -> Outcome:
    hint = "python -m pipelines.make_bundle --repo-root . " + " ".join(
        f"--{streams.get(s).cli_flag}-config {path}" for s, path in ctx.config_paths.items())
    bundle = latest_bundle(ctx.root)
    if bundle is None:
        return Outcome(False, f"no bundle (*.zip) under {BUNDLE_DIR}/", hint)
    problems = _bundle_problems(ctx, bundle)
    if problems:
        return Outcome(False, f"{ctx.rel(bundle)}: " + "; ".join(problems[:3]), hint)
    return Outcome(True, f"{ctx.rel(bundle)}: manifest checksums verify, both checkpoints current")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def _run_smoke(ctx: Context, stream: str) -> tuple[bool, str, list[str]]:
    cfg = ctx.configs[stream]
    argv = ctx.smoke_command(stream, cfg.logging.checkpoint_path, ctx.config_paths[stream])
    env = {**os.environ, "SSL_REPO_ROOT": str(ctx.root), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(
            argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=ctx.smoke_timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {ctx.smoke_timeout:g} s", argv
    except OSError as exc:
        return False, f"could not start ({exc.strerror or exc})", argv
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}", argv
    return True, "passed", argv


def _shown_command(argv: list[str]) -> str:
    shown = ["python" if a == sys.executable else a for a in argv]
    return shlex.join(shown)


def check_scoring_smoke(ctx: Context) -> Outcome:
    if ctx.skip_smoke:
        return Outcome(True, SMOKE_SKIPPED)
    details, hints = [], []
    for stream in ctx.streams:
        ok, detail, argv = _run_smoke(ctx, stream)
        details.append(f"{stream}: {detail}")
        if not ok:
            hints.append(_shown_command(argv))
    return Outcome(not hints, "; ".join(details), " && ".join(hints))


def _policy_missing_sections(text: str) -> list[str]:
    """Required sections that are absent or have no text under their heading."""
    missing = []
    for title in POLICY_SECTIONS:
        pattern = rf"^#{{1,6}}[ \t]+{re.escape(title)}[ \t]*#*[ \t]*$\n(.*?)(?=^#{{1,6}}[ \t]|\Z)"
        match = re.search(pattern, text, flags=re.IGNORECASE | re.MULTILINE | re.DOTALL)
        if not match or not match.group(1).strip():
            missing.append(title)
    return missing


def check_calibration_policy(ctx: Context) -> Outcome:
    path = ctx.root / POLICY_DOC
    sections = " and ".join(f"'## {t}'" for t in POLICY_SECTIONS)
    hint = f"write {POLICY_DOC} with sections {sections}, each stating its selection criteria"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Outcome(False, f"{POLICY_DOC}: not found", hint)
    except (OSError, UnicodeDecodeError) as exc:
        return Outcome(False, f"{POLICY_DOC}: unreadable ({type(exc).__name__})", hint)
    missing = _policy_missing_sections(text)
    if missing:
        detail = f"{POLICY_DOC}: missing or empty section(s): {', '.join(missing)}"
        return Outcome(False, detail, hint)
    return Outcome(True, f"{POLICY_DOC}: states {', '.join(POLICY_SECTIONS)}")


ITEMS: tuple[tuple[str, str, Callable[[Context], Outcome]], ...] = (
    ("checkpoints", "Checkpoints for both streams exist and load", check_checkpoints),
    ("scaler", "FDC scaler artifact is valid", check_scaler),
    ("tensorboard", "TensorBoard event files for both streams", check_tensorboard),
    ("final_configs", "Final configs carry the key fields", check_final_configs),
    ("backup_bundle", "Backup bundle of the run exists and verifies", check_backup_bundle),
    ("scoring_smoke", "Scoring smoke passes for both streams", check_scoring_smoke),
    ("calibration_policy", "Calibration split policy is documented", check_calibration_policy),
)


# --------------------------------------------------------------------------- run / report
def run_checklist(
    root: Path,
    config_paths: dict[str, str] | None = None,
    skip_smoke: bool = False,
    smoke_command: SmokeCommand = default_smoke_command,
    smoke_timeout: float = DEFAULT_SMOKE_TIMEOUT_S,
) -> dict[str, Any]:
    """Run the seven checks; returns the checklist object written by ``--json-out``."""
    root = Path(root).resolve()
    paths = config_paths or streams.local_config_paths()
    configs = streams.load_stream_configs(paths, root)
    ctx = Context(root, paths, configs, skip_smoke, smoke_command, smoke_timeout)
    def tidy(text: str) -> str:
        """One line, with paths under the repository shown repository-relative (hints are
        run from the repository root, like every command of the product)."""
        return " ".join(text.replace(f"{root}{os.sep}", "").replace(str(root), ".").split())

    items = []
    for index, (key, title, check) in enumerate(ITEMS, start=1):
        out = check(ctx)
        items.append({
            "id": index,
            "key": key,
            "title": title,
            "status": "PASS" if out.ok else "FAIL",
            "detail": tidy(out.detail),
            "hint": "" if out.ok else tidy(out.hint),
        })
    passed = sum(i["status"] == "PASS" for i in items)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": now_iso(),
        "passed": passed,
        "total": len(items),
        "ok": passed == len(items),
        "items": items,
        "checkpoints": checkpoint_identities(ctx),
    }


def checkpoint_identities(ctx: Context) -> dict[str, dict[str, Any]]:
    """Which checkpoints the checklist judged (sha256, None when missing) and the MLflow run
    each was trained in: promotion (pipelines.promote) needs the checklist to speak for the
    very checkpoints it registers."""
    out = {}
    for stream in ctx.streams:
        path = ctx.checkpoint_path(stream)
        ckpt = ctx.load_checkpoint(stream)
        out[stream] = {
            "path": ctx.rel(path),
            "sha256": file_sha256(path) if path.is_file() else None,
            "tracking": ckpt.get("tracking") if isinstance(ckpt, dict) else None,
        }
    return out


def attach_checklist(checklist: dict[str, Any]) -> None:
    """The checklist joins the MLflow run of each checkpoint it judged (when tracked)."""
    for entry in checklist["checkpoints"].values():
        attach_results(entry["tracking"], {"validation/checklist.json": checklist},
                       {"validation/passed": checklist["passed"],
                        "validation/total": checklist["total"]},
                       {"ssl.validation_ok": str(checklist["ok"]).lower()})


def format_checklist(checklist: dict[str, Any]) -> str:
    lines = []
    for item in checklist["items"]:
        mark = "v" if item["status"] == "PASS" else " "
        head = f"[{mark}] {item['id']}. {item['title']}"
        lines.append(f"{head} — {item['status']} — {item['detail']}")
        if item["status"] == "FAIL":
            lines.append(f"      hint: {item['hint']}")
    verdict = "all checks passed" if checklist["ok"] else "validation FAILED"
    lines.append(f"{checklist['passed']}/{checklist['total']} passed — {verdict}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.validate_training_outputs",
        description=(
            "Post-training checklist: 1 checkpoints, 2 FDC scaler, 3 TensorBoard logs, "
            "4 final config key fields, 5 backup bundle, 6 scoring smoke, 7 calibration split "
            "policy. Exit 1 when any item fails."
        ),
    )
    parser.add_argument("--repo-root", default=".", help="repository root; config paths and the "
                        "paths inside the configs are resolved against it (default: .)")
    streams.add_stream_config_args(parser)
    parser.add_argument("--json-out", help="also write the checklist as JSON (atomic), e.g. "
                        "artifacts/validation/checklist.json (relative to --repo-root)")
    parser.add_argument("--skip-smoke", action="store_true", help="do not run the scoring smoke; "
                        f"item 6 is then reported as PASS with detail '{SMOKE_SKIPPED}'")
    parser.add_argument("--smoke-timeout", type=float, default=DEFAULT_SMOKE_TIMEOUT_S,
                        help="seconds allowed per scoring smoke run (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke_timeout <= 0:
        raise UserError(f"--smoke-timeout must be > 0, got {args.smoke_timeout}")
    root = Path(args.repo_root).resolve()
    checklist = run_checklist(root, streams.stream_config_paths(args, root), args.skip_smoke,
                              smoke_timeout=args.smoke_timeout)
    print(format_checklist(checklist))
    if args.json_out:
        atomic_write_json(resolve_path(args.json_out, root), checklist)
    attach_checklist(checklist)
    return 0 if checklist["ok"] else 1


if __name__ == "__main__":
    run_main(main)
