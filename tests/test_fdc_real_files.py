"""Acceptance for issue 12: a real-looking plant historian export trains with defaults.

The export is what broke silently before: an unnamed first column with ISO stamps, ~100
tags of which some sit still with rare moves (IQR ~0), some carry historian status text,
some are heavy-tailed, one is dead and one mostly empty, plus a label column and a record
counter, over three files.  PatchTST trains on it with the default data, DQVL and scaler
settings (only the model and epochs are tiny); the loss falls, the label and the counter
are no channels, and the reports and the scaler name every excluded or floored channel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import streams
from sensor_data.fdc import EXCLUDED_BY_NAME, EXCLUDED_COUNTER
from tests.test_scoring import PATCH_CFG

N_ROWS = 600
N_FILES = 3
STATUS = ("Bad", "Inp OutRange", "Scan Timeout", "I/O Timeout")
NORMAL = [f"FIC-{100 + i}.PV" for i in range(80)]
STILL = [f"XV-{200 + i}.POS" for i in range(8)]  # a valve at its stop, rarely moving
TEXT = [f"TI-{300 + i}.PV" for i in range(5)]  # numbers with historian status strings
TAILED = [f"PDI-{400 + i}.PV" for i in range(5)]
DEAD, EMPTY = "AI-500.PV", "AI-501.PV"
TAGS = NORMAL + STILL + TEXT + TAILED + [DEAD, EMPTY]


def _export(k: int, rng: np.random.Generator) -> pd.DataFrame:
    """File ``k`` of the export: shared slow process factors plus per-tag noise."""
    t = np.arange(N_ROWS)
    factors = np.column_stack([np.sin(2 * np.pi * t / p + k) for p in (97.0, 151.0, 233.0)])
    loadings = rng.normal(size=(3, len(NORMAL) + len(TEXT)))
    process = factors @ loadings + 0.2 * rng.standard_normal((N_ROWS, loadings.shape[1]))
    columns = dict(zip(NORMAL + TEXT, (process * 5 + rng.uniform(10, 500, 85)).T, strict=True))
    for tag in STILL:
        columns[tag] = np.where(rng.random(N_ROWS) < 0.03, rng.uniform(5, 40, N_ROWS), 0.0)
    for tag in TAILED:
        columns[tag] = 50 + rng.standard_t(1.5, N_ROWS)
    columns[DEAD] = np.full(N_ROWS, 12.5)
    columns[EMPTY] = np.where(rng.random(N_ROWS) < 0.6, np.nan, rng.normal(size=N_ROWS))
    for tag in TEXT:
        columns[tag] = columns[tag].astype(object)
        columns[tag][rng.choice(N_ROWS, 12, replace=False)] = rng.choice(STATUS, 12)
    columns["is_anomaly"] = (rng.random(N_ROWS) < 0.05).astype(int)
    columns["RecNo"] = k * N_ROWS + t + 1  # the historian's record counter
    start = pd.Timestamp("2024-03-01") + pd.Timedelta(hours=2 * k)
    stamps = pd.date_range(start, periods=N_ROWS, freq="10s").strftime("%Y-%m-%dT%H:%M:%S")
    return pd.DataFrame({c: columns[c] for c in TAGS + ["is_anomaly", "RecNo"]}, index=stamps)


def test_a_real_looking_historian_export_trains_with_defaults(
    repo_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.trainer import fit

    rng = np.random.default_rng(12)
    folder = repo_tmp / "data/local/train/fdc"
    folder.mkdir(parents=True)
    for k in range(N_FILES):
        _export(k, rng).to_csv(folder / f"historian_{k}.csv")  # first header field empty
    raw = {**PATCH_CFG, "training": {**PATCH_CFG["training"], "epochs": 4}}
    config = repo_tmp / "configs/patch.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(raw))

    result = fit(streams.load_config(config), run_id="real")

    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    channels = NORMAL + STILL + TEXT + TAILED  # the dead and the empty tag are left out
    scaler = json.loads((repo_tmp / "artifacts/scaler_fdc.json").read_text())
    assert scaler["channel_names"] == channels
    excluded = scaler["excluded_columns"]
    assert excluded["is_anomaly"] == EXCLUDED_BY_NAME
    assert excluded["RecNo"] == EXCLUDED_COUNTER
    assert excluded[DEAD] == "constant over the training rows of every kept file"
    assert excluded[EMPTY].endswith(
        "NaN/inf (0 inf) in historian_0.csv, limit dqvl.max_channel_missing_ratio=0.2"
    )
    assert set(excluded) == {"is_anomaly", "RecNo", DEAD, EMPTY}
    assert scaler["floored"] == dict.fromkeys(STILL, "std")  # IQR and MAD are 0
    assert scaler["clip_z"] == 20.0 and scaler["clipped_train_values"]
    assert set(scaler["clipped_train_values"]) <= set(TAILED)
    err = capsys.readouterr().err
    assert f"FDC channels: {len(channels)} used, 4 column(s) excluded: " in err
    assert "FDC scaler: 8 channel(s) with ~0 spread, scale floored" in err

    dqvl = repo_tmp / "artifacts/dqvl/fdc"
    summary = json.loads((dqvl / "summary.json").read_text())
    assert summary["counts"] == {"keep": N_FILES, "drop": 0, "skipped": 0}
    assert summary["channels"] == channels and summary["excluded_columns"] == excluded
    for k in range(N_FILES):
        report = json.loads((dqvl / f"historian_{k}.csv.json").read_text())
        metrics = report["metrics"]
        assert metrics["timestamp_col"] == "Unnamed: 0"
        assert metrics["timestamp_unparsable"] == 0 and metrics["timestamp_non_monotonic"] == 0
        assert metrics["channels"] == channels and metrics["excluded_columns"] == excluded
        assert set(metrics["status_strings"]) == set(TEXT)
        assert all(s["count"] == 12 and set(s["top"]) <= set(STATUS)
                   for s in metrics["status_strings"].values())
        assert EMPTY in metrics["bad_channels"]
        rules = {w["rule"] for w in report["warnings"]}
        assert {"status_strings", "bad_channels"} <= rules
