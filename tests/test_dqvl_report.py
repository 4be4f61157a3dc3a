"""DQVL report folders: the summary and the per-file reports always agree."""

from __future__ import annotations

import json
from pathlib import Path

from sensor_data.dqvl_report import DqvlReport, write_reports


def test_reports_of_an_earlier_run_are_not_left_behind(tmp_path: Path) -> None:
    write_reports([DqvlReport("data/a.csv", "patchtst"), DqvlReport("data/b.csv", "patchtst")],
                  tmp_path, "run1")
    a, b = _report_name(tmp_path, "data/a.csv"), _report_name(tmp_path, "data/b.csv")
    assert {p.name for p in tmp_path.glob("*.json")} == {"summary.json", a, b}
    write_reports([DqvlReport("data/b.csv", "patchtst")], tmp_path, "run2")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [f["file_id"] for f in summary["files"]] == ["data/b.csv"]
    assert {p.name for p in tmp_path.glob("*.json")} == {"summary.json", b}
    (tmp_path / "notes.json").write_text("{}")  # a file the summary never listed stays
    write_reports([DqvlReport("data/c.csv", "patchtst")], tmp_path, "run3")
    c = _report_name(tmp_path, "data/c.csv")
    assert {p.name for p in tmp_path.glob("*.json")} == {"summary.json", c, "notes.json"}


def _report_name(folder: Path, file_id: str) -> str:
    summary = json.loads((folder / "summary.json").read_text())
    return next(f["report"] for f in summary["files"] if f["file_id"] == file_id)


def test_ids_that_sanitise_alike_get_their_own_reports(tmp_path: Path) -> None:
    ids = ["data/vib/a/x.csv", "data/vib/a_x.csv", "data/vib/a x.csv", "plain.csv"]
    write_reports([DqvlReport(i, "swinmae") for i in ids], tmp_path, "r")
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = [f["report"] for f in summary["files"]]
    assert len(set(names)) == 4 and "plain.csv.json" in names
    for entry in summary["files"]:
        assert json.loads((tmp_path / entry["report"]).read_text())["file_id"] == entry["file_id"]
