"""The DQVL report: one decision per file, written as JSON, plus one summary per run.

Both streams share this format so the pipeline, the dashboard and engineers read one
shape: ``decision`` is ``keep`` (usable), ``drop`` (at least one hard fail) or
``skipped`` (DQVL disabled).  Warnings never drop a file.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from core.io import atomic_write_json

SCHEMA_VERSION = "1.0"
Decision = Literal["keep", "drop", "skipped"]


@dataclass
class DqvlReport:
    file_id: str
    stream: str
    run_id: str = ""
    hard_fails: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str | None = None

    def fail(self, rule: str, message: str) -> None:
        self.hard_fails.append({"rule": rule, "message": message})

    def warn(self, rule: str, message: str) -> None:
        self.warnings.append({"rule": rule, "message": message})

    @property
    def decision(self) -> Decision:
        if self.skipped_reason is not None:
            return "skipped"
        return "drop" if self.hard_fails else "keep"

    @property
    def usable(self) -> bool:
        return self.decision != "drop"

    def reason(self) -> str:
        """One line for logs: why the file was dropped (or kept with warnings)."""
        items = self.hard_fails or self.warnings
        return "; ".join(f"{i['rule']}: {i['message']}" for i in items) or "ok"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "stream": self.stream,
            "file_id": self.file_id,
            "decision": self.decision,
            "hard_fails": self.hard_fails,
            "warnings": self.warnings,
            "metrics": self.metrics,
        }
        if self.skipped_reason is not None:
            out["skipped_reason"] = self.skipped_reason
        return out


def skipped_report(file_id: str, stream: str) -> DqvlReport:
    return DqvlReport(file_id, stream, skipped_reason="dqvl.enabled is false in the config")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _safe_name(file_id: str) -> str:
    """A report file name for ``file_id``: the id itself when it is already safe, else the
    sanitised id plus a short hash of the id, so ``a/x.csv``, ``a_x.csv`` and ``a x.csv``
    never share a report (the name is stable across runs)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", file_id).strip("._") or "file"
    if safe == file_id:
        return safe
    return f"{safe}-{hashlib.sha1(file_id.encode('utf-8')).hexdigest()[:8]}"


def _listed_reports(summary_path: Path) -> set[str]:
    """Per-file report names an existing summary lists (empty when absent or unreadable)."""
    try:
        data = json.loads(summary_path.read_text(encoding="utf-8"))
        return {str(f["report"]) for f in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def write_reports(
    reports: list[DqvlReport],
    report_dir: Path,
    run_id: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one JSON per file and ``summary.json``; returns the summary path.

    ``extra`` adds run-wide keys to the summary (the FDC channel list and exclusions).

    Per-file reports of an earlier run that this run does not list are removed after the
    new summary is in place, so the folder never holds reports its summary does not know.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    earlier = _listed_reports(report_dir / "summary.json")
    files = []
    for rep in reports:
        rep.run_id = run_id
        name = f"{_safe_name(rep.file_id)}.json"
        atomic_write_json(report_dir / name, rep.to_dict())
        files.append(
            {
                "file_id": rep.file_id,
                "decision": rep.decision,
                "report": name,
                "hard_fails": [i["rule"] for i in rep.hard_fails],
                "warnings": [i["rule"] for i in rep.warnings],
            }
        )
    counts = {d: sum(f["decision"] == d for f in files) for d in ("keep", "drop", "skipped")}
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "stream": reports[0].stream if reports else "",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": counts,
        "files": files,
        **(extra or {}),
    }
    path = atomic_write_json(report_dir / "summary.json", summary)
    for name in earlier - {f["report"] for f in files}:
        stale = report_dir / name
        if stale.parent == report_dir:  # a name from the file itself: never leave the folder
            stale.unlink(missing_ok=True)
    return path


def log_drop(report: DqvlReport, progress: bool) -> None:
    """One console line per dropped file, above any progress bar; the same for every stream."""
    if progress and not report.usable:
        tqdm.write(f"DQVL drop {report.file_id}: {report.reason()}", file=sys.stderr)


def drop_reasons(reports: list[DqvlReport], limit: int = 3) -> str:
    """The first dropped files with their reasons, then how many more: for one-line errors."""
    dropped = [r for r in reports if not r.usable]
    listed = "; ".join(f"{r.file_id} ({r.reason()})" for r in dropped[:limit])
    more = len(dropped) - limit
    return listed + (f"; and {more} more" if more > 0 else "")
