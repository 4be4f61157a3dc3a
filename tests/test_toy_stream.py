"""A third stream in one file: registered as a plugin, then run through the product's CLIs.

The stream below (a linear autoencoder over 4-channel CSV windows) is everything a new
data kind has to write.  The test installs it the way a user would, through an entry point
in the group ``sensor_ssl.streams`` (a ``.dist-info`` folder on ``PYTHONPATH`` stands in
for ``pip install``), and then trains, scores, calibrates, decides and exports the
dashboard state with the same commands as the built-in streams, with no edit elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from core.config import DqvlBase, LoggingConfig, Section, StreamConfig
from core.io import atomic_write_text
from core.paths import display_path, resolve_path
from sensor_data.dqvl_report import DqvlReport, write_reports
from sensor_data.timestamps import parse_timestamps
from streams.base import Breakdown, ScoringData, TrainingSetup, pick_model_args, section_args

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ("a", "b", "c", "d")
LOADINGS = np.array([1.0, 2.0, -1.0, 0.5])


# --------------------------------------------------------------------------- the stream
class ToyData(Section):
    path: str = "data/toy/train/*.csv"
    window: int = 16
    stride: int = 8


class ToyModelConfig(Section):
    hidden: int = 1


class ToyConfig(StreamConfig):
    stream: Literal["toy"] = "toy"
    data: ToyData = ToyData()
    model: ToyModelConfig = ToyModelConfig()
    dqvl: DqvlBase = DqvlBase(report_dir="artifacts/dqvl/toy")
    logging: LoggingConfig = LoggingConfig(log_dir="runs/toy", checkpoint_path="checkpoints/toy.pt")


class ToyAutoencoder(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.encode, self.decode = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((self.decode(self.encode(x)) - x) ** 2).mean()}

    def scoring_errors(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` squared errors: the score breaks into channels, averaged over time."""
        return ((self.decode(self.encode(x)) - x) ** 2).transpose(1, 2)


class ToyWindows(Dataset):
    def __init__(self, windows: np.ndarray) -> None:
        self.windows = torch.from_numpy(windows.astype(np.float32))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.windows[i]


def _read(cfg: ToyConfig, sources: Sequence[Any]):
    """Windows, their file ids, starts and times, and one DQVL report per file."""
    windows, ids, starts, begin, end, reports = [], [], [], [], [], []
    w, s = cfg.data.window, cfg.data.stride
    for path in sources:
        fid = display_path(path)
        frame = pd.read_csv(path)
        report = DqvlReport(fid, "toy")
        reports.append(report)
        if len(frame) < w:
            report.fail("too_short", f"{len(frame)} rows < window {w}")
            continue
        values = frame[list(CHANNELS)].to_numpy(np.float64)
        stamps = parse_timestamps(frame["timestamp"])
        for k in range(0, len(frame) - w + 1, s):
            windows.append(values[k:k + w])
            ids.append(fid)
            starts.append(k)
            begin.append(stamps[k])
            end.append(stamps[k + w - 1])
    arr = np.stack(windows) if windows else np.zeros((0, w, len(CHANNELS)))
    return arr, ids, np.asarray(starts, np.int64), np.asarray(begin), np.asarray(end), reports


class ToyTask:
    name = "toy"
    title = "toy"
    config_class = ToyConfig
    part_kind = "channel"
    part_plural = "channels"
    default_error_profile = "raw"
    default_config = local_config = "configs/toy.yaml"
    cli_flag = "toy"
    data_folder = "toy"
    file_suffixes = (".csv",)

    def model_args(self, cfg: ToyConfig) -> dict[str, Any]:
        return pick_model_args(cfg, ("model", "data.window"))

    def build_model(self, model_args: dict[str, Any], model_meta: dict[str, Any]) -> nn.Module:
        return ToyAutoencoder(len(CHANNELS), **section_args(model_args, "model"))

    def training_globs(self, cfg: ToyConfig) -> list[str]:
        return [cfg.data.path]

    def prepare_training(self, cfg: ToyConfig, device: torch.device, run_id: str
                         ) -> TrainingSetup:
        files = sorted(resolve_path(".").glob(cfg.data.path))
        windows, _, _, _, _, reports = _read(cfg, files)
        write_reports(reports, resolve_path(cfg.dqvl.report_dir), run_id)
        cut = int(len(windows) * 0.8)
        meta = {"channels": list(CHANNELS)}
        return TrainingSetup(self.build_model(self.model_args(cfg), meta),
                             ToyWindows(windows[:cut]), ToyWindows(windows[cut:]), meta)

    def prepare_scoring(self, cfg: ToyConfig, model_meta: dict[str, Any],
                        sources: Sequence[Any], device: torch.device) -> ScoringData:
        windows, ids, starts, begin, end, reports = _read(cfg, sources)
        return ScoringData(ToyWindows(windows), reports, ids, starts, cfg.data.window,
                           list(dict.fromkeys(ids)), begin, end)

    def score_layout(self, cfg: ToyConfig) -> None:
        return None

    def breakdown(self, errors: torch.Tensor, layout: Any = None) -> Breakdown:
        return Breakdown(parts=errors)

    def part_names(self, model_meta: dict[str, Any]) -> list[str]:
        return list(model_meta["channels"])

    def synthetic_scoring_input(self, cfg: ToyConfig, model_meta: dict[str, Any],
                                n_windows: int, folder: Path) -> list[Path]:
        rows = cfg.data.window + (n_windows - 1) * cfg.data.stride
        return [write_toy_csv(folder / "synthetic.csv", rows, seed=0)]

    def extra_artifacts(self, cfg: ToyConfig) -> list[tuple[str, str]]:
        return []


TASK = ToyTask()


# --------------------------------------------------------------------------- data
def write_toy_csv(path: Path, rows: int, seed: int, fault_from: int | None = None) -> Path:
    """One latent factor drives the four channels; a fault breaks channel c's loading."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, 1))
    values = latent * LOADINGS + 0.05 * rng.standard_normal((rows, 4))
    if fault_from is not None:
        values[fault_from:, 2] = 3.0 * rng.standard_normal(rows - fault_from)
    frame = pd.DataFrame(values, columns=list(CHANNELS))
    frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=rows, freq="s"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, frame.to_csv(index=False))


def _plugin_path(tmp: Path) -> Path:
    """A ``.dist-info`` with the entry point, as ``pip install`` of a plugin would leave."""
    site = tmp / "site"
    info = site / "toy_stream_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-stream-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[sensor_ssl.streams]\n"
                                           "toy = tests.test_toy_stream:TASK\n")
    return site


def _cli(root: Path, site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SSL_REPO_ROOT": str(root), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    out = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{argv[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


# --------------------------------------------------------------------------- the test
def test_third_stream_runs_through_every_cli(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for i in range(3):
        write_toy_csv(root / f"data/toy/train/train_{i}.csv", 400, seed=i)
    for i in range(2):
        write_toy_csv(root / f"data/toy/calib/calib_{i}.csv", 300, seed=10 + i)
    write_toy_csv(root / "data/toy/test/normal.csv", 300, seed=20)
    write_toy_csv(root / "data/toy/test/faulty.csv", 300, seed=21, fault_from=100)
    config = {"stream": "toy", "device": {"prefer_cuda": False},
              "training": {"epochs": 12, "batch_size": 16, "lr": 0.05}}
    (root / "configs").mkdir()
    (root / "configs/toy.yaml").write_text(yaml.safe_dump(config))
    decision = {"streams": {"toy": {"config": "configs/toy.yaml",
                                    "checkpoint": "checkpoints/toy.pt",
                                    "calibration_path": "data/toy/calib/*.csv",
                                    "test_path": "data/toy/test/*.csv"}},
                "thresholds": {"min_tail_windows": 3}}
    (root / "configs/decision.yaml").write_text(yaml.safe_dump(decision))
    site = _plugin_path(tmp_path)

    # --help lists the plugin wherever a CLI offers a choice of streams.
    assert "toy" in _cli(root, site, "pipelines.run_local_test_pipeline", "--help").stdout

    trained = _cli(root, site, "trainers.train", "--config", "configs/toy.yaml")
    assert "[toy] done: 12 epochs" in trained.stdout
    assert (root / "checkpoints/toy.pt").is_file()
    assert json.loads((root / "artifacts/dqvl/toy/summary.json").read_text())["counts"] == {
        "keep": 3, "drop": 0, "skipped": 0}

    scored = _cli(root, site, "inference.run_scoring_example", "--checkpoint",
                  "checkpoints/toy.pt", "--data-path", "data/toy/test/*.csv")
    assert "stream: toy" in scored.stdout, scored.stdout
    assert "top channels (mean error): c " in scored.stdout, scored.stdout

    _cli(root, site, "pipelines.run_local_test_pipeline", "--stream", "toy",
         "--config", "configs/decision.yaml")
    thresholds = json.loads((root / "artifacts/calibration/toy_thresholds.json").read_text())
    assert thresholds["n_windows"] >= 10 and thresholds["anomaly"] >= thresholds["warn"]
    decided = json.loads((root / "artifacts/decisions/decisions.json").read_text())
    files = {f["file_id"]: f for f in decided["streams"]["toy"]["files"]}
    assert files["data/toy/test/normal.csv"]["decision"] == "normal"
    faulty = files["data/toy/test/faulty.csv"]
    assert faulty["decision"] == "anomaly"
    flagged = [w for w in faulty["windows"] if w["level"] == "anomaly"]
    assert flagged and all(max(w["contributions"], key=w["contributions"].get) == "c"
                           for w in flagged)
    assert faulty["windows"][0]["start"] == "2026-01-01T00:00:00.000"  # the reader's time

    _cli(root, site, "pipelines.export_training_dashboard_state", "--repo-root", str(root),
         "--stream-config", "configs/toy.yaml")
    state = json.loads((root / "training_dashboard/data/dashboard-state.json").read_text())
    assert [r["epoch"] for r in state["loss"]["toy"]] == list(range(1, 13))
    assert state["dqvl"]["toy"]["keep"] == 3
    assert {a["kind"] for a in state["artifacts"] if a["stream"] == "toy" and a["ready"]} >= {
        "checkpoint", "loss_history", "loss_curve", "calibration"}
    assert state["test_run"]["streams"]["toy"]["files"]
