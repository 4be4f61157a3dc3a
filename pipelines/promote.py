"""Promote a validated model into the MLflow model registry, or roll the alias back.

    python -m pipelines.promote --unit press-7 [--decision-config configs/decision_local.yaml]
        [--checklist artifacts/validation/checklist.json] [--stream patchtst] [--rollback]

Promotion is refused (exit 2, one line naming what failed) unless the validation checklist
is 7/7 with the scoring smoke run, the decision-quality gate of decisions.json passed, and
both judged the very checkpoints the decision config names (sha256).  Then each stream's
checkpoint, as logged by its tracked training run, becomes a version of the registered
model ``<unit>-<stream>`` with the alias (default ``champion``) and tags naming its
sha256, thresholds and gate.  Scoring loads it as ``models:/<unit>-<stream>@champion``
(inference.checkpoint_io).  ``--rollback`` moves the alias back to the version that held
it before.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.cli import run_main
from core.config import DecisionConfig, load_decision_config
from core.errors import UserError
from core.io import file_sha256
from core.layout import CHECKLIST, DECISION_CONFIG, DecisionLayout
from core.paths import display_path, resolve_path
from core.status import now_iso
from engine.checkpoint import load_checkpoint
from engine.tracking import (
    MODEL_DIR,
    SHA_TAG,
    Ref,
    client,
    ref_client,
    shown_uri,
    store_call,
    store_uri,
)
from inference.checkpoint_io import is_registry_uri
from pipelines.validate_training_outputs import SMOKE_SKIPPED

UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HISTORY_TAG = "ssl.{alias}_history"  # versions that held the alias, oldest first


@dataclass(frozen=True)
class Candidate:
    """One stream's checkpoint as the decision config names it."""

    stream: str
    path: Path
    sha256: str
    ref: Ref | None  # the MLflow run it was trained in


def model_name(unit: str, stream: str) -> str:
    return f"{unit}-{stream}"


def read_json(path: Path, what: str, how: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"promotion refused: no {what} at {display_path(path)} ({how})") from None
    except (OSError, ValueError):
        raise UserError(f"promotion refused: {display_path(path)} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"promotion refused: {display_path(path)} is not a {what}")
    return data


def candidate(stream: str, dcfg: DecisionConfig) -> Candidate:
    entry = dcfg.streams[stream].checkpoint
    if is_registry_uri(entry):
        raise UserError(f"promotion refused: streams.{stream}.checkpoint is {entry}; promote "
                        "a local checkpoint (the one the test pipeline decided with)")
    path = resolve_path(entry)
    ckpt = load_checkpoint(path)
    return Candidate(stream, path, file_sha256(path), ckpt.get("tracking"))


# --------------------------------------------------------------------------- the gate
def checklist_problems(checklist: dict[str, Any], cands: list[Candidate]) -> list[str]:
    failed = [f"{i['id']} {i['key']}" for i in checklist.get("items", [])
              if i.get("status") != "PASS"]
    if failed or not checklist.get("ok") or not checklist.get("items"):
        return [f"checklist FAIL: {', '.join(failed) or 'not all items passed'}"]
    problems = []
    if any(i.get("key") == "scoring_smoke" and i.get("detail") == SMOKE_SKIPPED
           for i in checklist["items"]):
        problems.append("checklist skipped the scoring smoke (validate without --skip-smoke)")
    judged = checklist.get("checkpoints") or {}
    for c in cands:
        if (judged.get(c.stream) or {}).get("sha256") != c.sha256:
            problems.append(f"the checklist did not judge this {c.stream} checkpoint "
                            f"({display_path(c.path)}); rerun the validation")
    return problems


def gate_problems(decisions: dict[str, Any], cands: list[Candidate]) -> list[str]:
    gate = decisions.get("decision_gate") or {}
    if not gate.get("ok"):
        return [f"decision gate {gate.get('status', 'missing')}: {gate.get('detail', '')}"]
    judged = gate.get("checkpoints") or {}
    return [f"the decision gate did not judge this {c.stream} checkpoint "
            f"({display_path(c.path)}); rerun the test pipeline"
            for c in cands if judged.get(c.stream) != c.sha256]


def run_problems(cands: list[Candidate]) -> list[str]:
    """Each checkpoint must be the model its tracked run logged."""
    problems = []
    for c in cands:
        if not c.ref:
            problems.append(f"{display_path(c.path)} was trained without tracking (train "
                            "it with --set tracking.enabled=true)")
            continue
        mlc, uri = ref_client(c.ref)
        with store_call(uri, f"reading run {c.ref['run_id']}"):
            logged = mlc.get_run(c.ref["run_id"]).data.tags.get(SHA_TAG)
        if logged != c.sha256:
            problems.append(f"MLflow run {c.ref['run_id']} did not log this {c.stream} "
                            "checkpoint as its model (the run did not finish, or the file "
                            "changed since)")
    return problems


def refuse_unless_ready(checklist: dict[str, Any], decisions: dict[str, Any],
                        cands: list[Candidate]) -> None:
    problems = checklist_problems(checklist, cands) + gate_problems(decisions, cands)
    problems = problems or run_problems(cands)
    if problems:
        raise UserError("promotion refused: " + "; ".join(problems))


# --------------------------------------------------------------------------- registry
def history(mlc: Any, name: str, alias: str) -> list[str]:
    tags = mlc.get_registered_model(name).tags
    text = tags.get(HISTORY_TAG.format(alias=alias), "")
    return [v for v in text.split(",") if v]


def register(mlc: Any, unit: str, c: Candidate, alias: str, decisions: dict[str, Any],
             checklist: dict[str, Any]) -> Any:
    """The candidate as a version of ``<unit>-<stream>`` (reused when that checkpoint is
    registered already), with the alias moved to it."""
    name = model_name(unit, c.stream)
    if not mlc.search_registered_models(f"name = '{name}'"):
        mlc.create_registered_model(name, tags={"ssl.unit": unit, "ssl.stream": c.stream})
    same = [v for v in mlc.search_model_versions(f"name = '{name}'")
            if v.tags.get(SHA_TAG) == c.sha256]
    stream = (decisions.get("streams") or {}).get(c.stream, {})
    gate = decisions["decision_gate"]
    version = same[0] if same else mlc.create_model_version(
        name, f"runs:/{c.ref['run_id']}/{MODEL_DIR}", run_id=c.ref["run_id"],
        tags={SHA_TAG: c.sha256, "ssl.checkpoint": display_path(c.path),
              "ssl.thresholds": json.dumps(stream.get("thresholds")),
              "ssl.decision_gate": gate.get("detail", ""),
              "ssl.checklist": f"{checklist['passed']}/{checklist['total']} "
                               f"({checklist.get('created')})",
              "ssl.unit": unit, "ssl.stream": c.stream})
    mlc.set_registered_model_alias(name, alias, version.version)
    mlc.set_model_version_tag(name, version.version, f"ssl.{alias}_since", now_iso())
    seen = history(mlc, name, alias)
    if seen[-1:] != [str(version.version)]:
        seen.append(str(version.version))
    mlc.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), ",".join(seen))
    return version


def rollback(mlc: Any, name: str, alias: str) -> str:
    """Move ``alias`` to the version that held it before the current one."""
    current = str(mlc.get_model_version_by_alias(name, alias).version)
    seen = history(mlc, name, alias)
    while seen and seen[-1] == current:
        seen.pop()
    if not seen:
        raise UserError(f"rollback refused: {name}@{alias} (version {current}) has no earlier "
                        "version to go back to")
    mlc.set_registered_model_alias(name, alias, seen[-1])
    mlc.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), ",".join(seen))
    mlc.set_model_version_tag(name, current, f"ssl.{alias}_rolled_back", now_iso())
    return seen[-1]


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.promote",
        description="Register the decided checkpoints as <unit>-<stream> in the MLflow model "
        "registry with an alias (default champion), only when the validation checklist and "
        "the decision-quality gate passed for those checkpoints; --rollback moves the alias "
        "back. Exit 2 with one line when refused.")
    parser.add_argument("--unit", required=True, help="the unit (machine, asset) the models "
                        "watch; registered names are <unit>-<stream>")
    parser.add_argument("--decision-config", default=DECISION_CONFIG,
                        help="decision config naming each stream's checkpoint (default: "
                        "%(default)s)")
    parser.add_argument("--checklist", default=CHECKLIST,
                        help="validation checklist JSON (default: %(default)s)")
    parser.add_argument("--stream", action="append", dest="streams",
                        help="promote only this stream (repeatable; default: every stream of "
                        "the decision config)")
    parser.add_argument("--alias", default="champion", help="registry alias (default: "
                        "%(default)s)")
    parser.add_argument("--rollback", action="store_true", help="move the alias back to the "
                        "previous version instead of promoting")
    return parser


def selected_streams(args: argparse.Namespace, dcfg: DecisionConfig) -> list[str]:
    names = args.streams or list(dcfg.streams)
    unknown = [s for s in names if s not in dcfg.streams]
    if unknown:
        raise UserError(f"--stream {', '.join(unknown)}: not in the decision config (it has "
                        f"{', '.join(dcfg.streams)})")
    return names


def promote(args: argparse.Namespace, dcfg: DecisionConfig, names: list[str]) -> None:
    cands = [candidate(s, dcfg) for s in names]
    checklist = read_json(resolve_path(args.checklist), "validation checklist",
                          "python -m pipelines.validate_training_outputs ... --json-out "
                          f"{CHECKLIST}")
    decisions = read_json(DecisionLayout.from_config(dcfg).decisions, "decisions",
                          "python -m pipelines.run_local_test_pipeline")
    refuse_unless_ready(checklist, decisions, cands)
    for c in cands:
        mlc, uri = ref_client(c.ref)
        name = model_name(args.unit, c.stream)
        with store_call(uri, f"registering {name}"):
            version = register(mlc, args.unit, c, args.alias, decisions, checklist)
        print(f"[{c.stream}] models:/{name}@{args.alias} -> version {version.version} "
              f"(checkpoint sha256 {c.sha256[:12]}, run {c.ref['run_id']}, "
              f"{shown_uri(uri)})")


def roll_back(args: argparse.Namespace, names: list[str]) -> None:
    uri = store_uri()
    mlc = client(uri)
    for stream in names:
        name = model_name(args.unit, stream)
        with store_call(uri, f"rolling back {name}@{args.alias}"):
            version = rollback(mlc, name, args.alias)
        print(f"[{stream}] models:/{name}@{args.alias} -> version {version} (rolled back)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not UNIT.match(args.unit):
        raise UserError(f"--unit {args.unit!r}: use letters, digits, '.', '_' and '-'")
    dcfg = load_decision_config(args.decision_config)
    names = selected_streams(args, dcfg)
    if args.rollback:
        roll_back(args, names)
    else:
        promote(args, dcfg, names)
    return 0


if __name__ == "__main__":
    run_main(main)
