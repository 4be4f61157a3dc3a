"""Decide many units (each a decision config) in one run, on one process or on Ray.

A *unit* is one machine or asset: its checkpoints, thresholds and test data, i.e. a
decision config.  Every unit's streams are prepared (checkpoint checked, thresholds made
current) in the driver, then all their files are scored together by the engine, then each
unit is decided and written exactly as ``pipelines.run_local_test_pipeline`` does, into
its own output folder.  The engines give identical scores (see :mod:`pipelines.pieces`):

- ``local`` (default): this process, each stream's files in one pass;
- ``ray``: files, and chunks of long files, spread over Ray workers.

Fleet manifest (YAML)::

    output_dir: artifacts/fleet          # summary.json / summary.csv, one folder per unit
    units:
      press_01:                          # a unit is a decision config: a file...
        decision_config: configs/decision_local.yaml
        test_path: {patchtst: data/press_01/fdc/*.csv}   # ...with its own test files
      press_02:                          # ...or written inline (any decision config key)
        streams: {patchtst: {config: ..., checkpoint: ..., calibration_path: ...,
                             test_path: ...}}

A unit's decisions go to ``<output_dir>/<unit>/`` unless it sets ``output_dir``; its
thresholds stay where its decision config keeps them (``calibration_dir``), else in
``<output_dir>/<unit>/calibration``.  A CSV manifest has one row per unit and stream:
``unit,stream,config,checkpoint,calibration_path,test_path`` (default settings otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pandas as pd

import streams
from core.config import DecisionConfig, read_yaml, validate_config
from core.errors import ConfigError
from core.io import atomic_write_json, atomic_write_text
from core.layout import DecisionLayout
from core.paths import display_path, resolve_path
from engine.checkpoint import created_now
from inference.decisions import (
    StreamDecisions,
    StreamJob,
    decide_files,
    fuse,
    prepare_stream,
    write_outputs,
)
from inference.labels import read_labels
from inference.scoring import ScoredFiles, score_files
from pipelines.pieces import LocalRunner, score_in_pieces
from sensor_data.dqvl_report import write_reports

FLEET_DIR = "artifacts/fleet"
SUMMARY_SCHEMA = "1.0"
ENGINES = ("local", "ray")
CSV_COLUMNS = ("unit", "stream", "config", "checkpoint", "calibration_path", "test_path")
UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a folder name


@dataclass(frozen=True)
class Unit:
    name: str
    dcfg: DecisionConfig
    streams: list[str]  # the streams to decide, in order
    tests: dict[str, str | None]  # stream -> test glob replacing the config's (None: keep)
    layout: DecisionLayout


@dataclass
class UnitDecisions:
    unit: Unit
    results: list[StreamDecisions]
    fused: list[dict[str, Any]]
    fused_note: str
    decisions: Path
    gate: dict[str, Any]


# --------------------------------------------------------------------------- engines
class Engine(Protocol):
    device: str  # what the driver loads checkpoints on

    def score(self, jobs: list[StreamJob]) -> list[ScoredFiles]: ...


class LocalEngine(LocalRunner, contextlib.AbstractContextManager):
    """The single-process path: each stream's files scored in one pass (or, with
    ``chunk_windows``, in pieces one after another, with the same results)."""

    def __init__(self, device: str = "auto", backend: str = "torch",
                 chunk_windows: int | None = None) -> None:
        super().__init__()
        self.device, self.backend, self.chunk_windows = device, backend, chunk_windows

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def score(self, jobs: list[StreamJob]) -> list[ScoredFiles]:
        if self.chunk_windows is not None:
            return score_in_pieces(self, jobs, self.chunk_windows)
        return [score_files(j.trained, j.cfg, j.files, profile=j.profile, basis=self._basis(j))
                for j in jobs]

    def _basis(self, job: StreamJob) -> Any:
        if self.backend == "torch":
            return None
        from inference.onnx_scoring import scoring_backend  # thresholds stay in PyTorch

        return scoring_backend(job.trained, self.backend)


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help="local: this process (default); ray: spread files and chunks of "
                       "long files over Ray workers (identical results)")
    group.add_argument("--address", default=None,
                       help="Ray cluster to join (auto, host:port or ray://host:port); "
                       "default: start a local Ray instance")
    group.add_argument("--workers", type=int, default=None,
                       help="Ray workers (one CPU each; default: every CPU Ray has)")
    group.add_argument("--chunk-windows", type=int, default=None,
                       help="score long files in chunks of about this many windows (whole "
                       "scoring batches; default: whole files)")


def open_engine(args: argparse.Namespace, device: str = "auto", backend: str = "torch"
                ) -> contextlib.AbstractContextManager:
    """The engine the arguments ask for (a context manager that yields an :class:`Engine`)."""
    if backend != "torch" and args.chunk_windows is not None:
        raise ConfigError(f"--backend {backend} scores whole files only (no --chunk-windows)")
    if args.engine == "local":
        given = [f for f, v in (("--address", args.address), ("--workers", args.workers))
                 if v is not None]
        if given:
            raise ConfigError(f"{given[0]} needs --engine ray")
        return LocalEngine(device, backend, args.chunk_windows)
    if backend != "torch" or device == "cuda":
        shown = f"--backend {backend}" if backend != "torch" else "--device cuda"
        raise ConfigError(f"{shown} runs with --engine local only (Ray workers use CPUs)")
    from pipelines.ray_pool import RayEngine

    return RayEngine(args.address, args.workers, args.chunk_windows)


# --------------------------------------------------------------------------- deciding
def decide_units(units: list[Unit], engine: Engine, run_id: str, recalibrate: bool = False
                 ) -> list[UnitDecisions]:
    """Prepare every unit's streams, score all their files with ``engine``, decide and
    write each unit (only this process writes)."""
    jobs = [[prepare_stream(s, u.dcfg, u.tests.get(s), recalibrate, engine.device)
             for s in u.streams] for u in units]
    scored = iter(engine.score([j for unit_jobs in jobs for j in unit_jobs]))
    return [finish_unit(u, unit_jobs, [next(scored) for _ in unit_jobs], run_id)
            for u, unit_jobs in zip(units, jobs, strict=True)]


def finish_unit(unit: Unit, jobs: list[StreamJob], scored: list[ScoredFiles], run_id: str
                ) -> UnitDecisions:
    """Window levels, events and file decisions of each stream, fusion, then the unit's
    DQVL reports, decisions.json and tables (each written atomically)."""
    truths = read_labels([f for j in jobs for f in j.files])
    results = []
    for job, s in zip(jobs, scored, strict=True):
        results.append(decide_files(job.stream, job.trained, s, job.limits, unit.dcfg, truths))
        write_reports(s.reports, unit.layout.dqvl_dir(job.stream), run_id)
    fused, note = fuse(results)
    path, _, gate = write_outputs(results, fused, note, unit.layout, run_id, unit.dcfg)
    return UnitDecisions(unit, results, fused, note, path, gate)


# --------------------------------------------------------------------------- manifest
def load_manifest(path: str, out_dir: str | None = None) -> tuple[list[Unit], Path]:
    """The units of a YAML or CSV fleet manifest and the fleet output folder."""
    shown = display_path(resolve_path(path))
    if Path(path).suffix.lower() == ".csv":
        raw = {"units": _csv_units(path, shown)}
    else:
        raw = read_yaml(path)
    unknown = sorted(set(raw) - {"output_dir", "units"})
    if unknown:
        raise ConfigError(f"{shown}: unknown key {unknown[0]} (allowed: output_dir, units)")
    units = raw.get("units")
    if not isinstance(units, dict) or not units:
        raise ConfigError(f"{shown}: units: expected a mapping of unit id -> decision config")
    fleet_dir = out_dir or str(raw.get("output_dir") or FLEET_DIR)
    return ([_unit(str(name), body, fleet_dir, shown) for name, body in units.items()],
            resolve_path(fleet_dir))


def _csv_units(path: str, shown: str) -> dict[str, Any]:
    try:
        table = pd.read_csv(resolve_path(path), dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{shown}: not a readable CSV manifest ({exc})") from None
    if sorted(table.columns) != sorted(CSV_COLUMNS):
        raise ConfigError(f"{shown}: expected the columns {','.join(CSV_COLUMNS)}")
    units: dict[str, Any] = {}
    for row in table.to_dict("records"):
        entry = {k: row[k] for k in CSV_COLUMNS[2:]}
        units.setdefault(row["unit"], {"streams": {}})["streams"][row["stream"]] = entry
    return units


def _unit(name: str, body: Any, fleet_dir: str, shown: str) -> Unit:
    where = f"{shown}: units.{name}"
    if not UNIT_NAME.match(name):
        raise ConfigError(f"{where}: a unit id is a folder name (letters, digits, _ . -)")
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected a mapping (decision_config and/or streams)")
    body = dict(body)
    base = read_yaml(body.pop("decision_config")) if "decision_config" in body else {}
    tests = body.pop("test_path", {})
    if not isinstance(tests, dict) or not all(isinstance(v, str) for v in tests.values()):
        raise ConfigError(f"{where}: test_path: expected stream: glob")
    raw = {**base, **body}
    raw.setdefault("calibration_dir", f"{fleet_dir}/{name}/calibration")
    # a unit's own folder, never the (shared) output folder of its decision config
    raw["output_dir"] = body.get("output_dir", f"{fleet_dir}/{name}")
    dcfg = validate_config(DecisionConfig, raw, where)
    for stream in dcfg.streams:
        try:
            streams.get(stream)
        except ConfigError as exc:
            raise ConfigError(f"{where}: streams.{stream}: {exc}") from None
    unknown = [s for s in tests if s not in dcfg.streams]
    if unknown:
        raise ConfigError(f"{where}: test_path.{unknown[0]}: the unit has no such stream")
    return Unit(name, dcfg, list(dcfg.streams), dict(tests), DecisionLayout.from_config(dcfg))


# --------------------------------------------------------------------------- summary
def summary_rows(decided: list[UnitDecisions]) -> list[dict[str, Any]]:
    """One row per unit, stream and file (dropped files included)."""
    rows = []
    for d in decided:
        status = d.gate["status"]
        for r in d.results:
            rows += [{"unit": d.unit.name, "stream": r.stream, "file": f.file_id,
                      "decision": f.decision, "events": f.n_events, "max_score": f.max_score,
                      "label": f.label or "", "correct": "" if f.correct is None else f.correct,
                      "gate": status} for f in r.files]
            rows += [{"unit": d.unit.name, "stream": r.stream, "file": x["file_id"],
                      "decision": "dropped", "events": 0, "max_score": None, "label": "",
                      "correct": "", "gate": status} for x in r.dropped]
    return rows


def write_summary(decided: list[UnitDecisions], fleet_dir: Path, run_id: str
                  ) -> tuple[Path, Path]:
    """``summary.json`` (per unit: decisions file, gate, counts; then every file) and
    ``summary.csv`` (every file), written atomically."""
    rows = summary_rows(decided)
    units = {}
    for d in decided:
        mine = [r["decision"] for r in rows if r["unit"] == d.unit.name]
        units[d.unit.name] = {"decisions": display_path(d.decisions), "gate": d.gate["status"],
                              **{k: mine.count(k) for k in ("anomaly", "warn", "normal",
                                                            "dropped")}}
    summary = {"schema_version": SUMMARY_SCHEMA, "created": created_now(), "run_id": run_id,
               "units": units, "files": rows}
    table = pd.DataFrame(rows, columns=["unit", "stream", "file", "decision", "events",
                                        "max_score", "label", "correct", "gate"])
    return (atomic_write_json(fleet_dir / "summary.json", summary),
            atomic_write_text(fleet_dir / "summary.csv", table.to_csv(index=False)))


def unit_lines(decided: list[UnitDecisions]) -> Iterator[str]:
    """One line per unit: its decisions, gate and where they are."""
    for d in decided:
        files = [f.decision for r in d.results for f in r.files]
        dropped = sum(len(r.dropped) for r in d.results)
        counts = ", ".join(f"{files.count(k)} {k}" for k in ("anomaly", "warn", "normal"))
        yield (f"{d.unit.name}: {len(files)} files ({counts}; {dropped} dropped), decision "
               f"gate {d.gate['status'].upper()} -> {display_path(d.decisions)}")
