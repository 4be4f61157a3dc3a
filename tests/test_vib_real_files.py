"""Real vibration files that used to be handled silently wrong (issue 12), one test per class.

Each test builds its files, checks the outcome for the bad file (id, decision, rule,
message) and that the healthy file's report and windows are what they are without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DataError
from sensor_data.dqvl_report import DqvlReport
from sensor_data.synthetic_vib import make_vibration
from sensor_data.vib_prep import VibPrepared, prepare_vibration_scoring, prepare_vibration_training
from sensor_data.vibration import read_vibration
from streams.swinmae import SwinMAEConfig

FS = 1000.0
CPU = torch.device("cpu")


def _cfg(fs: float = FS, dqvl: dict | None = None, **data) -> SwinMAEConfig:
    raw = {
        "dqvl": dqvl or {},
        "data": {
            "source": "files",
            "path": "data/vib/*.csv",
            "fs": fs,
            "win_sec": 1.0,
            "win_stride_sec": 0.5,
            "val_fraction": 0.25,
            **data,
        },
        "cwt": {"freq_min": 2.0, "freq_max": fs / 4, "n_freqs": 8},
        "image": {"size": 16},
    }
    return SwinMAEConfig.model_validate(raw)


def _prep(cfg: SwinMAEConfig, progress: bool = False) -> VibPrepared:
    return prepare_vibration_training(cfg, "run", CPU, progress=progress)


def _csv(
    path: Path,
    values: np.ndarray,
    stamps: np.ndarray | None = None,
    fs: float = FS,
    end: str = "",
    rows: dict[int, str] | None = None,
) -> Path:
    """A CSV ``timestamp,x,y,z``; ``end`` closes every data line, ``rows`` replaces lines."""
    stamps = np.arange(len(values)) / fs if stamps is None else stamps
    pairs = zip(stamps, values, strict=True)
    lines = [f"{t:.6f},{x:.6f},{y:.6f},{z:.6f}{end}" for t, (x, y, z) in pairs]
    for i, line in (rows or {}).items():
        lines[i] = line
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,x,y,z\n" + "\n".join(lines) + "\n")
    return path


def _signal(seconds: float = 4.0, seed: int = 1, fs: float = FS) -> np.ndarray:
    return np.round(make_vibration(seconds, fs, seed), 6)


def _saturated(values: np.ndarray, share: float = 0.87) -> np.ndarray:
    """Axis x clipped so that ``share`` of its samples sit on the two rails."""
    out = values.copy()
    lo, hi = np.quantile(out[:, 0], [share / 2, 1 - share / 2])
    out[:, 0] = np.clip(out[:, 0], lo, hi)
    return out


def _view(rep: DqvlReport) -> tuple:
    return rep.decision, rep.hard_fails, rep.warnings, rep.metrics


def _by_id(reports: list[DqvlReport]) -> dict[str, DqvlReport]:
    return {r.file_id: r for r in reports}


def _rules(rep: DqvlReport) -> tuple[list[str], list[str]]:
    return [f["rule"] for f in rep.hard_fails], [w["rule"] for w in rep.warnings]


def _images(prep: VibPrepared, file_id: str) -> np.ndarray:
    return prep.train.images[np.array(prep.train.file_ids) == file_id]


def _same_as_alone(prep: VibPrepared, file_id: str, alone: VibPrepared) -> None:
    """The healthy file's report and windows do not depend on the other files."""
    (rep,) = alone.reports
    assert _view(_by_id(prep.reports)[file_id]) == _view(rep)
    np.testing.assert_array_equal(_images(prep, file_id), _images(alone, rep.file_id))


# --------------------------------------------------------------------------- 1. identity
def test_same_name_in_two_folders_gets_two_ids_decisions_and_reports(repo_tmp):
    good = _csv(repo_tmp / "data" / "vib" / "a" / "x.csv", _signal(seed=1))
    bad = _csv(repo_tmp / "data" / "vib" / "b" / "x.csv", _saturated(_signal(seed=2)))
    pair = _prep(_cfg(path="data/vib/**/*.csv"))

    reports = _by_id(pair.reports)
    assert set(reports) == {"data/vib/a/x.csv", "data/vib/b/x.csv"}
    assert _rules(reports["data/vib/a/x.csv"]) == ([], [])
    assert _rules(reports["data/vib/b/x.csv"])[0] == ["clipping"]
    assert pair.files == ["data/vib/a/x.csv"]
    assert set(pair.train.file_ids) | set(pair.val.file_ids) == {"data/vib/a/x.csv"}

    summary = json.loads(pair.summary_path.read_text())
    names = [f["report"] for f in summary["files"]]
    assert len(set(names)) == 2
    for entry in summary["files"]:
        written = json.loads((pair.summary_path.parent / entry["report"]).read_text())
        assert written["file_id"] == entry["file_id"]
        assert written["decision"] == reports[entry["file_id"]].decision

    scored, score_reports = prepare_vibration_scoring([good, bad], _cfg(), CPU)
    assert set(scored.file_ids) == {"data/vib/a/x.csv"}
    assert [(r.file_id, r.decision) for r in score_reports] == [
        ("data/vib/a/x.csv", "keep"),
        ("data/vib/b/x.csv", "drop"),
    ]

    alone = _prep(_cfg(path="data/vib/a/*.csv"))
    assert alone.files == ["x.csv"]  # no clash: the file name, as before
    _same_as_alone(pair, "data/vib/a/x.csv", alone)


# --------------------------------------------------------------------------- 2. sampling rate
def test_rounded_stamps_keep_their_rate_while_wrong_rates_and_gaps_drop(repo_tmp):
    fs, n = 64.0, 640
    folder = repo_tmp / "data" / "vib"
    rounded = np.round(np.arange(n) / fs, 3)  # whole milliseconds: steps of 15 and 16 ms
    _csv(folder / "a_rounded.csv", _signal(10.0, 1, fs), rounded)
    _csv(folder / "b_half_rate.csv", _signal(10.0, 2, fs), np.arange(n) / 32.0)
    gapped = np.arange(n) / fs
    gapped[320:] += 2.0  # 2 s without samples in a 12 s recording
    _csv(folder / "c_gap.csv", _signal(10.0, 3, fs), gapped)

    for resample in (False, True):
        prep = _prep(_cfg(fs, resample={"enabled": resample}))
        reports = _by_id(prep.reports)
        ok = reports["a_rounded.csv"]
        assert _rules(ok) == ([], [])
        assert ok.metrics["observed_fs"] == pytest.approx(fs, rel=1e-4)
        assert ok.metrics["observed_fs_median_step"] == pytest.approx(62.5)
        assert ok.metrics["n_samples_after_resample"] == n  # never resampled
        assert ok.metrics["gap_s"] == 0.0
        half = reports["b_half_rate.csv"]
        assert half.metrics["observed_fs"] == pytest.approx(32.0)
        assert _rules(half) == (([], ["fs_mismatch"]) if resample else (["fs_mismatch"], []))
        gap = reports["c_gap.csv"]
        assert _rules(gap) == (["gaps"], [])
        assert gap.metrics["observed_fs"] == pytest.approx(fs)  # a gap is not a rate error
        assert gap.metrics["gap_s"] == pytest.approx(2.0, abs=1 / fs)
        assert "2 s of the 11.98 s recording (16.69%) have no samples" in gap.reason()

    alone = _prep(_cfg(fs, path="data/vib/a_*.csv"))
    _same_as_alone(prep, "a_rounded.csv", alone)


# --------------------------------------------------------------------------- 3. saturation
def test_saturated_and_dead_files_are_dropped_with_their_own_reason(repo_tmp):
    folder = repo_tmp / "data" / "vib"
    good = _csv(folder / "a_good.csv", _signal(seed=1))
    clipped = _csv(folder / "b_clipped.csv", _saturated(_signal(seed=2)))
    dead = _csv(folder / "c_dead.csv", np.tile([0.5, -0.25, 1.0], (4000, 1)))

    prep = _prep(_cfg())
    reports = _by_id(prep.reports)
    assert _rules(reports["b_clipped.csv"])[0] == ["clipping"]
    assert reports["b_clipped.csv"].reason() == (
        "clipping: axis x: 87.00% of samples sit at the min/max value (max 5.00%): "
        "the sensor saturated"
    )
    assert _rules(reports["c_dead.csv"]) == (["dead_file"], [])
    assert "x=0.5, y=-0.25, z=1" in reports["c_dead.csv"].reason()
    assert prep.files == ["a_good.csv"]

    unchecked = _by_id(_prep(_cfg(dqvl={"enabled": False})).reports)
    assert unchecked["a_good.csv"].decision == unchecked["b_clipped.csv"].decision == "skipped"
    assert unchecked["c_dead.csv"].decision == "drop"  # never usable, DQVL on or off
    assert _rules(unchecked["c_dead.csv"]) == (["dead_file"], [])

    # Scoring flags the saturated file: no window, a drop report with the reason.
    scored, score_reports = prepare_vibration_scoring([good, clipped, dead], _cfg(), CPU)
    assert set(scored.file_ids) == {"a_good.csv"}
    dropped = {r.file_id: r.reason() for r in score_reports if not r.usable}
    assert dropped == {
        "b_clipped.csv": reports["b_clipped.csv"].reason(),
        "c_dead.csv": reports["c_dead.csv"].reason(),
    }

    _same_as_alone(prep, "a_good.csv", _prep(_cfg(path="data/vib/a_*.csv")))


# --------------------------------------------------------------------------- 4. console
def test_drops_are_printed_and_all_dropped_names_each_file(repo_tmp, capsys):
    folder = repo_tmp / "data" / "vib"
    _csv(folder / "a_good.csv", _signal(seed=1))
    _csv(folder / "b_clipped.csv", _saturated(_signal(seed=2)))
    prep = _prep(_cfg(), progress=True)
    drops = [line for line in capsys.readouterr().err.splitlines() if "DQVL drop" in line]
    assert drops == [f"DQVL drop b_clipped.csv: {_by_id(prep.reports)['b_clipped.csv'].reason()}"]

    for name in ("a_good.csv", "b_clipped.csv"):
        (folder / name).unlink()
    for i in range(5):
        (folder / f"empty_{i}.csv").write_text("")
    with pytest.raises(DataError) as err:
        _prep(_cfg())
    message = str(err.value)
    assert message.startswith(
        "every vibration file was dropped by DQVL: "
        "empty_0.csv (read_error: data/vib/empty_0.csv: empty file); "
        "empty_1.csv (read_error: data/vib/empty_1.csv: empty file); "
        "empty_2.csv (read_error: data/vib/empty_2.csv: empty file); and 2 more; see "
    )
    assert message.endswith("artifacts/dqvl/vib/summary.json") and "\n" not in message


def test_empty_validation_split_warns_what_to_change(repo_tmp, capsys):
    _csv(repo_tmp / "data" / "vib" / "a.csv", _signal(4.0))
    prep = _prep(_cfg(val_fraction=0.0))
    assert len(prep.val) == 0 and len(prep.train) == 7
    err = capsys.readouterr().err
    assert "no vibration validation window" in err
    assert "val_loss will be nan" in err
    assert "set data.val_fraction to at least 0.25 (longest kept file: 4000 samples)" in err
    _prep(_cfg())
    assert "validation window" not in capsys.readouterr().err


# --------------------------------------------------------------------------- 5. parsing
def test_trailing_commas_ragged_rows_and_overflow_never_shift_or_hide(repo_tmp):
    folder = repo_tmp / "data" / "vib"
    values = _signal(seed=1)
    _csv(folder / "a_good.csv", values)
    trailing = read_vibration(_csv(folder / "b_trailing.csv", _signal(seed=2), end=","))
    np.testing.assert_allclose(trailing.values, _signal(seed=2), atol=1e-6)
    assert trailing.observed_fs == pytest.approx(FS)

    short, long = "0.100000,1.0,2.0", "0.200000,1.0,2.0,3.0,4.0"
    _csv(folder / "c_ragged.csv", _signal(seed=3), rows={100: short, 200: long})
    ragged = read_vibration(folder / "c_ragged.csv")
    assert np.isnan(ragged.values[[100, 200]]).all()
    keep = np.setdiff1d(np.arange(4000), [100, 200])
    np.testing.assert_allclose(ragged.values[keep], _signal(seed=3)[keep], atol=1e-6)
    many = {i: f"{i / FS:.6f},1.0,2.0" for i in range(0, 4000, 50)}  # 2 % of the rows
    _csv(folder / "d_ragged_many.csv", _signal(seed=4), rows=many)

    overflow = _signal(seed=5).astype(np.float64)
    overflow[50, 0] = 1e39
    _csv(folder / "e_overflow.csv", overflow)
    npy = _signal(seed=6).astype(np.float64)
    npy[::25] = 1e300  # 4 % of every axis
    np.save(folder / "f_overflow.npy", npy)

    prep = _prep(_cfg(path=["data/vib/*.csv", "data/vib/*.npy"]))
    reports = _by_id(prep.reports)
    assert _view(reports["b_trailing.csv"])[:3] == ("keep", [], [])
    assert _rules(reports["c_ragged.csv"]) == ([], ["ragged_rows"])
    assert reports["c_ragged.csv"].reason() == (
        "ragged_rows: 2 rows do not match the header, first data row 101 "
        "(3 fields where the header has 4); treated as missing samples"
    )
    assert reports["c_ragged.csv"].metrics["nan_ratio"] == 0.0
    assert _rules(reports["d_ragged_many.csv"]) == (["ragged_rows"], [])
    assert "80 rows do not match the header" in reports["d_ragged_many.csv"].reason()
    assert _rules(reports["e_overflow.csv"]) == ([], ["overflow"])
    assert reports["e_overflow.csv"].reason() == (
        "overflow: axis x: 1 values overflow float32 (beyond ±3.4e+38), first in data row "
        "51; treated as missing samples"
    )
    assert reports["e_overflow.csv"].metrics["overflow_values"] == {"x": 1}
    assert reports["e_overflow.csv"].metrics["nan_ratio"] == 0.0
    npy = reports["f_overflow.npy"]
    assert _rules(npy)[0] == ["overflow"] * 3 and "nan_ratio" not in npy.reason()

    _same_as_alone(prep, "a_good.csv", _prep(_cfg(path="data/vib/a_*.csv")))
