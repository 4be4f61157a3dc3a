"""FDC DQVL: each rule fires on a file made to trigger it and stays quiet on one that is not;
bad files in a training run are dropped with a reason while good files still give windows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import FdcDqvlConfig
from core.errors import DataError
from sensor_data.dqvl_fdc import check_fdc, read_error_report
from sensor_data.dqvl_report import DqvlReport
from sensor_data.fdc import FdcTable, table_from_frame
from sensor_data.fdc_prep import prepare_fdc_training
from sensor_data.synthetic_fdc import make_fdc_frame, write_fdc_files
from streams import config_from_dict
from streams.patchtst import PatchTSTConfig

N_ROWS = 200
WINDOW = 32


def fdc_cfg(**data: object) -> PatchTSTConfig:
    """A small FDC config reading real files under the (tmp) repository root."""
    raw = {"source": "files", "path": "data/train/*", "seq_len": WINDOW, "stride": 8}
    raw.update(data)
    cfg = config_from_dict({"data": raw, "model": {"patch_len": 8}}, stream="patchtst")
    assert isinstance(cfg, PatchTSTConfig)
    return cfg


def _frame(n_rows: int = N_ROWS, n_channels: int = 4, seed: int = 0) -> pd.DataFrame:
    return make_fdc_frame(n_rows, n_channels, seed)


def _table(frame: pd.DataFrame) -> FdcTable:
    return table_from_frame(frame, "f.csv")


def _rules(report_rules: list[dict[str, str]]) -> list[str]:
    return [item["rule"] for item in report_rules]


# --------------------------------------------------------------------------- mutations
def _no_timestamp(f: pd.DataFrame) -> pd.DataFrame:
    return f.drop(columns="timestamp")


def _garbage_stamps(f: pd.DataFrame) -> pd.DataFrame:
    f = f.astype({"timestamp": str})
    f.loc[::10, "timestamp"] = "not a time"
    return f


def _one_garbage_stamp(f: pd.DataFrame) -> pd.DataFrame:
    f = f.astype({"timestamp": str})
    f.loc[5, "timestamp"] = "not a time"
    return f


def _shuffled(f: pd.DataFrame) -> pd.DataFrame:
    return f.sample(frac=1.0, random_state=0).reset_index(drop=True)


def _duplicated_stamps(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[1::10, "timestamp"] = f.loc[0::10, "timestamp"].to_numpy()
    return f


def _nan(ratio: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        values = f.iloc[:, 1:].to_numpy(copy=True)
        mask = np.random.default_rng(1).random(values.shape) < ratio
        values[mask] = np.nan
        f.iloc[:, 1:] = values
        return f

    return mutate


def _text_only(f: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": f["timestamp"], "a": "on", "b": "off"})


def _stuck(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["ch_02"] = 42.0
    return f


def _spiky(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    for col in ("ch_00", "ch_01"):
        f.loc[::10, col] += 1000.0
    return f


def _one_step(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[100:, "ch_00"] += 1000.0  # one process step: a single jump, not a noisy channel
    return f


def _with_text_column(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["state"] = "RUN"
    return f


def _mixed_text_column(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["ch_00"] = f["ch_00"].astype(str)
    f.loc[3, "ch_00"] = "n/a"  # mostly numbers: a channel with one missing value
    return f


def _all_constant(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(ch_00=1.0, ch_01=2.0, ch_02=3.0, ch_03=4.0)


def _inf_share(share: float, columns: tuple[str, ...] = ("ch_02",)):
    def mutate(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        f.loc[: int(share * len(f)) - 1, list(columns)] = np.inf
        return f

    return mutate


def _status_text(f: pd.DataFrame) -> pd.DataFrame:
    f = f.astype({"ch_01": object})
    f.loc[[3, 9, 27], "ch_01"] = "Bad"
    f.loc[[40, 41], "ch_01"] = "I/O Timeout"
    return f


def _huge(f: pd.DataFrame) -> pd.DataFrame:
    f = f.astype({"ch_03": np.float64})
    f.loc[7, "ch_03"] = 1e39  # fits float64, not float32
    return f


def _short(f: pd.DataFrame) -> pd.DataFrame:
    return f.iloc[: WINDOW - 1]


def _exactly_one_window(f: pd.DataFrame) -> pd.DataFrame:
    return f.iloc[:WINDOW]


RULE_CASES = [
    # rule, kind, triggering mutation, non-triggering mutation
    ("timestamp_missing", "fail", _no_timestamp, lambda f: f),
    ("timestamp_unparsable", "fail", _garbage_stamps, _one_garbage_stamp),
    ("timestamp_non_monotonic", "fail", _shuffled, lambda f: f),
    ("timestamp_duplicated", "fail", _duplicated_stamps, lambda f: f),
    ("missing_ratio", "fail", _nan(0.3), _nan(0.05)),
    ("missing_ratio", "warn", _nan(0.05), _nan(0.005)),
    ("no_numeric_channel", "fail", _text_only, _with_text_column),
    ("too_short", "fail", _short, _exactly_one_window),
    ("stuck_channels", "warn", _stuck, lambda f: f),
    ("step_jumps", "warn", _spiky, _one_step),
    ("non_numeric_columns", "warn", _with_text_column, _mixed_text_column),
    ("dead_file", "fail", _all_constant, _stuck),
    ("bad_channels", "warn", _inf_share(0.33), _inf_share(0.15)),
    ("bad_channels", "fail", _inf_share(0.33, ("ch_01", "ch_02")), _inf_share(0.33)),
    ("status_strings", "warn", _status_text, lambda f: f),
    ("float32_overflow", "warn", _huge, lambda f: f),
]


@pytest.mark.parametrize(
    ("rule", "kind", "bad", "good"), RULE_CASES, ids=[f"{r}-{k}" for r, k, *_ in RULE_CASES]
)
def test_each_rule_fires_only_on_its_trigger(rule, kind, bad, good) -> None:
    rules = FdcDqvlConfig()
    bad_report = check_fdc(_table(bad(_frame())), rules, WINDOW)
    good_report = check_fdc(_table(good(_frame())), rules, WINDOW)

    def listed(report: DqvlReport) -> list[str]:
        return _rules(report.hard_fails if kind == "fail" else report.warnings)

    assert rule in listed(bad_report), bad_report.reason()
    assert rule not in listed(good_report), good_report.reason()
    assert bad_report.decision == ("drop" if kind == "fail" else "keep")
    if kind == "warn":
        assert good_report.decision == "keep"


def test_clean_synthetic_file_has_no_findings_and_full_metrics() -> None:
    report = check_fdc(_table(_frame()), FdcDqvlConfig(), WINDOW)
    assert report.decision == "keep"
    assert report.hard_fails == [] and report.warnings == []
    m = report.metrics
    assert (m["n_rows"], m["n_channels"]) == (N_ROWS, 4)
    assert m["missing_ratio"] == 0.0 and m["inf_count"] == 0
    assert m["median_period_s"] == pytest.approx(1.0)
    assert m["timestamp_unparsable"] == m["timestamp_non_monotonic"] == 0
    assert m["timestamp_duplicated"] == 0
    assert m["stuck_channels"] == [] and 0.0 <= m["step_jump_ratio"] < 0.01
    json.dumps(report.to_dict(), allow_nan=False)  # plain JSON, no numpy types or NaN


def test_timestamp_not_required_means_no_fail() -> None:
    rules = FdcDqvlConfig(require_timestamp=False)
    report = check_fdc(_table(_no_timestamp(_frame())), rules, WINDOW)
    assert report.decision == "keep"
    assert report.metrics["timestamp_col"] is None


def test_inf_counts_as_missing_and_is_reported() -> None:
    f = _frame()
    f.loc[:79, "ch_01"] = np.inf  # 80 of 800 values = 10 %
    report = check_fdc(_table(f), FdcDqvlConfig(max_missing_ratio=0.05), WINDOW)
    assert report.metrics["inf_count"] == 80
    assert report.metrics["missing_ratio"] == pytest.approx(0.1)
    assert "missing_ratio" in _rules(report.hard_fails)
    assert "80 inf" in report.reason()


def test_stuck_warning_names_the_channel_and_thresholds_are_respected() -> None:
    report = check_fdc(_table(_stuck(_frame())), FdcDqvlConfig(), WINDOW)
    assert report.metrics["stuck_channels"] == ["ch_02"]
    assert "ch_02" in report.warnings[0]["message"]
    lenient = FdcDqvlConfig(max_timestamp_issue_ratio=0.6)
    shuffled = check_fdc(_table(_shuffled(_frame())), lenient, WINDOW)
    assert shuffled.decision == "keep"
    assert shuffled.metrics["timestamp_non_monotonic"] > 50


def test_dead_files_unusable_channels_and_status_text_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, class 3: an all-constant file trained, a 33 % inf channel was kept because
    only the file-wide ratio was checked, and status text became NaN without a word."""
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    train = tmp_path / "data/train"
    good = write_fdc_files(train, 2, N_ROWS, 4, seed=5)
    alone = prepare_fdc_training(fdc_cfg(), run_id="r", progress=False)
    alone_findings = {r.file_id: (r.hard_fails, r.warnings) for r in alone.reports}
    _write(train / "dead.csv", _all_constant(_frame()))
    _write(train / "inf.csv", _inf_share(0.33)(_frame(seed=3)))
    _write(train / "status.csv", _status_text(_frame(seed=4)))
    prepared = prepare_fdc_training(fdc_cfg(), run_id="r", progress=False)
    by_id = {r.file_id: r for r in prepared.reports}

    assert by_id["dead.csv"].hard_fails == [
        {"rule": "dead_file", "message": "all 4 channels constant"}
    ]
    inf = by_id["inf.csv"]
    assert inf.decision == "keep" and inf.metrics["bad_channels"] == {
        "ch_02": "33.00% NaN/inf (66 inf)"
    }
    assert _rules(inf.warnings) == ["missing_ratio", "bad_channels"]
    assert "ch_02: 33.00% NaN/inf (66 inf)" in inf.warnings[1]["message"]
    kept = ["ch_00", "ch_01", "ch_03"]  # ch_02 leaves every file, not just inf.csv
    assert prepared.scaler.channels == kept and prepared.train.n_channels == 3
    assert prepared.files == ["inf.csv", "status.csv"] + [p.name for p in good]
    for report in prepared.reports:
        if report.usable:
            assert report.metrics["channels"] == kept
            assert report.metrics["excluded_columns"]["ch_02"].startswith(
                "33.00% NaN/inf (66 inf) in inf.csv"
            )
    assert "ch_02" in prepared.scaler.excluded
    status = by_id["status.csv"]
    assert status.metrics["status_strings"] == {
        "ch_01": {"count": 5, "top": {"Bad": 3, "I/O Timeout": 2}}
    }
    assert status.warnings == [
        {
            "rule": "status_strings",
            "message": "status text read as NaN in 1 channel(s): "
            "ch_01: 5 ('Bad' x3, 'I/O Timeout' x2)",
        }
    ]
    for path in good:  # the good files' findings do not change
        assert (by_id[path.name].hard_fails, by_id[path.name].warnings) == alone_findings[path.name]


def test_scoring_names_an_unusable_model_channel_and_ignores_excluded_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's channels are fixed at scoring: a bad one is a warning (its missing values
    read as the centre), too many bad ones drop the file; training's exclusions are no
    channel mismatch."""
    from sensor_data.fdc_prep import prepare_fdc_scoring

    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    write_fdc_files(tmp_path / "data/train", 2, N_ROWS, 4, seed=5)
    _write(tmp_path / "data/train/inf.csv", _inf_share(0.33)(_frame(seed=3)))
    cfg = fdc_cfg()
    scaler = prepare_fdc_training(cfg, run_id="r", progress=False).scaler
    assert scaler.channels == ["ch_00", "ch_01", "ch_03"]
    test = tmp_path / "data/test"
    _write(test / "one_bad.csv", _inf_share(0.4, ("ch_01",))(_frame(seed=8)))
    _write(test / "many_bad.csv", _inf_share(0.4, ("ch_00", "ch_01"))(_frame(seed=8)))
    _write(test / "clean.csv", _frame(seed=8))
    paths = [test / "one_bad.csv", test / "many_bad.csv", test / "clean.csv"]
    windows, reports = prepare_fdc_scoring(paths, scaler, cfg, WINDOW, stride=16)

    one, many, clean = reports
    assert one.decision == "keep" and _rules(one.warnings) == ["missing_ratio", "bad_channels"]
    assert "ch_01: 40.00% NaN/inf (80 inf)" in one.warnings[1]["message"]
    assert one.metrics["excluded_columns"]["ch_02"].startswith("excluded in training: 33.00%")
    assert _rules(many.hard_fails) == ["bad_channels"] and many.decision == "drop"
    assert clean.decision == "keep" and clean.warnings == []
    assert windows.files == ["one_bad.csv", "clean.csv"]
    start = windows.files.index("one_bad.csv")
    assert (windows.arrays[start][:80, 1] == 0.0).all()  # the missing values: the centre


def test_read_error_report_is_a_drop() -> None:
    report = read_error_report("x.csv", "x.csv: empty file (0 bytes)")
    assert report.decision == "drop"
    assert report.hard_fails == [{"rule": "unreadable", "message": "x.csv: empty file (0 bytes)"}]
    assert report.stream == "patchtst"


# --------------------------------------------------------------------------- in a run
def _write(path: Path, content: bytes | pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    else:
        path.write_bytes(content)


BAD_FILES: dict[str, tuple[bytes | pd.DataFrame, str]] = {
    "empty.csv": (b"", "unreadable"),
    "header_only.csv": (b"timestamp,a,b\n", "unreadable"),
    "text_only.csv": (_text_only(_frame()), "no_numeric_channel"),
    "all_nan.csv": (_nan(1.0)(_frame()), "missing_ratio"),
    "shuffled.csv": (_shuffled(_frame()), "timestamp_non_monotonic"),
    "duplicated.csv": (_duplicated_stamps(_frame()), "timestamp_duplicated"),
    "garbage.csv": (np.random.default_rng(0).bytes(4000), "unreadable"),
    "latin1.csv": ("temp\u00e9rature,time\n1,2024-01-01\n".encode("latin-1"), "unreadable"),
    "inf.csv": (_frame().assign(ch_01=np.inf, ch_02=-np.inf), "missing_ratio"),
    "notes.txt": (b"hello", "unreadable"),
}


def test_bad_files_are_dropped_with_reasons_while_good_files_give_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    good = write_fdc_files(tmp_path / "data/train", 2, N_ROWS, 4, seed=5)
    for name, (content, _) in BAD_FILES.items():
        _write(tmp_path / "data/train" / name, content)

    prepared = prepare_fdc_training(fdc_cfg(), run_id="run1", progress=False)

    by_id = {r.file_id: r for r in prepared.reports}
    assert len(by_id) == len(BAD_FILES) + 2
    for name, (_, rule) in BAD_FILES.items():
        assert by_id[name].decision == "drop", name
        assert rule in _rules(by_id[name].hard_fails), (name, by_id[name].reason())
        assert by_id[name].hard_fails[0]["message"]
    assert prepared.files == [p.name for p in good]
    assert len(prepared.train) > 0 and len(prepared.val) > 0
    assert set(prepared.train.file_ids) == {p.name for p in good}
    assert "empty file" in by_id["empty.csv"].reason()
    assert "header only" in by_id["header_only.csv"].reason()
    assert "UTF-8" in by_id["latin1.csv"].reason()
    assert "unsupported file type" in by_id["notes.txt"].reason()

    summary = json.loads(prepared.summary_path.read_text())
    assert prepared.summary_path == tmp_path / "artifacts/dqvl/fdc/summary.json"
    assert summary["counts"] == {"keep": 2, "drop": len(BAD_FILES), "skipped": 0}
    saved = json.loads((tmp_path / "artifacts/dqvl/fdc/garbage.csv.json").read_text())
    assert saved["decision"] == "drop" and saved["run_id"] == "run1"


def test_the_rate_is_measured_over_the_span_and_compared_with_data_fs() -> None:
    frame = _frame()  # one row a second
    cfg = fdc_cfg(fs=10.0)
    off = check_fdc(_table(frame), cfg.dqvl, WINDOW, cfg.data.fs)
    assert off.metrics["observed_fs"] == pytest.approx(1.0)
    assert _rules(off.warnings) == ["fs_mismatch"] and off.usable  # rows, not seconds: a warning
    assert "observed 1 Hz" in off.warnings[0]["message"]
    matching = check_fdc(_table(frame), cfg.dqvl, WINDOW, 1.0)
    assert "fs_mismatch" not in _rules(matching.warnings)
    assert "fs_mismatch" not in _rules(check_fdc(_table(frame), cfg.dqvl, WINDOW).warnings)


def test_all_files_dropped_is_a_clear_error_naming_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    _write(tmp_path / "data/train/empty.csv", b"")
    _write(tmp_path / "data/train/short.csv", _short(_frame()))
    with pytest.raises(DataError, match=r"all 2 files were dropped by DQVL: .*empty\.csv "
                       r"\(.*\); .*short\.csv \(too_short: .*\); see .*summary\.json"):
        prepare_fdc_training(fdc_cfg(), run_id="r", progress=False)
    assert (tmp_path / "artifacts/dqvl/fdc/summary.json").is_file()


def test_channel_mismatch_against_first_usable_file_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    write_fdc_files(tmp_path / "data/train", 1, N_ROWS, 4, seed=0)
    _write(tmp_path / "data/train/z_other.csv", _frame(n_channels=5))
    reordered = _frame(seed=9)[["ch_03", "timestamp", "ch_01", "ch_00", "ch_02"]]
    _write(tmp_path / "data/train/y_reordered.csv", reordered)
    prepared = prepare_fdc_training(fdc_cfg(), run_id="r", progress=False)
    by_id = {r.file_id: r for r in prepared.reports}
    assert _rules(by_id["z_other.csv"].hard_fails) == ["channel_mismatch"]
    assert "extra ch_04" in by_id["z_other.csv"].reason()
    assert by_id["y_reordered.csv"].decision == "keep"
    assert prepared.files == ["synthetic_000.csv", "y_reordered.csv"]
    assert prepared.scaler.channels == ["ch_00", "ch_01", "ch_02", "ch_03"]


def test_dqvl_disabled_gives_skipped_reports_and_still_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    write_fdc_files(tmp_path / "data/train", 1, N_ROWS, 4, seed=0)
    _write(tmp_path / "data/train/shuffled.csv", _shuffled(_frame()))
    cfg = fdc_cfg()
    cfg.dqvl.enabled = False
    prepared = prepare_fdc_training(cfg, run_id="r", progress=False)
    assert [r.decision for r in prepared.reports] == ["skipped", "skipped"]
    assert "enabled is false" in prepared.reports[0].to_dict()["skipped_reason"]
    assert len(prepared.files) == 2 and len(prepared.train) > 0
