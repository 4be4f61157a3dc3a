"""Back-scoring in chunks: interrupted after some chunks, a rerun scores only the missing
ones, and the merged result equals one pass (events that span chunks included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.paths import display_path
from pipelines.backscore import main as backscore_main
from pipelines.pieces import PieceScorer
from pipelines.run_local_test_pipeline import main as pipeline_main
from tests.test_scoring import FDC_START_S, write_fdc, write_vib

VOLATILE = {"created", "run_id"}  # what two runs of the same decisions may differ in
# low quantiles, so the tiny models' test files raise events (what must match too)
EVENTFUL = {"min_tail_windows": 3, "clear_quantile": 0.6, "warn_quantile": 0.8,
            "anomaly_quantile": 0.9}


def _stable(obj: object) -> object:
    """JSON content without run ids and creation times."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def outputs(folder: Path) -> dict[str, object]:
    """Every output file below ``folder``: JSON without volatile keys, other files' text;
    the folder's own name is replaced, so two output folders compare equal."""
    out: dict[str, object] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_text().replace(display_path(folder), "<out>")
        out[path.relative_to(folder).as_posix()] = (
            _stable(json.loads(text)) if path.suffix == ".json" else text)
    return out


def _history(root: Path) -> Path:
    """One long FDC file with a step fault in its second half, a short one, and a long
    vibration recording beside them."""
    hist = root / "history"
    write_fdc(hist / "fdc" / "month_1.csv", slice(0, 1700), step_channel="ch_01")
    write_fdc(hist / "fdc" / "month_2.csv", slice(1100, 1300))
    write_vib(hist / "vib" / "vib.csv", 20.0, seed=40, start_s=FDC_START_S + 600)
    config = root / "configs" / "history.yaml"
    config.write_text(yaml.safe_dump({
        "streams": {
            "patchtst": {"config": "configs/patch.yaml",
                         "checkpoint": "checkpoints/patchtst_ssl.pt",
                         "calibration_path": "data/local/calib/fdc/*.csv",
                         "test_path": "history/fdc/*.csv"},
            "swinmae": {"config": "configs/swin.yaml", "checkpoint": "checkpoints/swinmae_ssl.pt",
                        "calibration_path": "data/local/calib/vib/*.csv",
                        "test_path": "history/vib/*.csv"}},
        "thresholds": EVENTFUL, "calibration_dir": "calibration"}))
    return config


def test_interrupted_backscore_resumes_and_equals_one_pass(run_root: Path, monkeypatch
                                                           ) -> None:
    config = _history(run_root)
    assert pipeline_main(["--config", str(config), "--out-dir", "one_pass"]) == 0
    expected = outputs(run_root / "one_pass")
    decided = json.loads((run_root / "one_pass" / "decisions.json").read_text())
    assert sum(f["n_events"] for s in decided["streams"].values() for f in s["files"]) > 0

    scored: list[tuple[str, int]] = []
    real = PieceScorer.score

    def crash_after_three(self, spec, piece):
        if len(scored) == 3:
            raise KeyboardInterrupt  # Ctrl-C / a crash in the middle of the history
        scored.append((Path(piece.path).name, piece.lo))
        return real(self, spec, piece)

    args = ["--config", str(config), "--out-dir", "resumed", "--state-dir", "state",
            "--chunk-windows", "100"]  # 128 windows: month_1 (422 windows) in 4 chunks
    monkeypatch.setattr(PieceScorer, "score", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        backscore_main(args)
    chunks = sorted((run_root / "state").rglob("*.npz"))
    assert len(chunks) == 3 and not (run_root / "resumed" / "decisions.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in chunks}

    first = list(scored)
    scored.clear()
    monkeypatch.setattr(PieceScorer, "score",
                        lambda self, spec, piece: scored.append((Path(piece.path).name,
                                                                 piece.lo))
                        or real(self, spec, piece))
    assert backscore_main(args) == 0
    assert not set(first) & set(scored)  # nothing finished was scored again
    assert sorted(first + scored) == sorted(
        [("month_1.csv", lo) for lo in (0, 128, 256, 384)] + [("month_2.csv", 0),
                                                               ("vib.csv", 0)])
    assert {p: p.stat().st_mtime_ns for p in chunks} == stamps
    assert outputs(run_root / "resumed") == expected

    scored.clear()  # everything is there: a rerun only decides again
    assert backscore_main([*args[:3], "resumed_again", *args[4:]]) == 0
    assert scored == []
    assert outputs(run_root / "resumed_again") == expected
