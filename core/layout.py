"""Where every artifact lives: one place that names each path, used by writers and readers.

A stream run's files follow from its effective config (``logging``, ``dqvl``); the shared
folders (calibration, decisions, bundles, validation, pipeline status, dashboard state
and run history) have one default each and are overridable where a config says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import DecisionConfig, StreamConfig, load_decision_config
from core.paths import resolve_path

CALIBRATION_DIR = "artifacts/calibration"
DECISIONS_DIR = "artifacts/decisions"
BUNDLE_DIR = "artifacts/bundles"
CHECKLIST = "artifacts/validation/checklist.json"
PIPELINE_DIR = "artifacts/pipeline"
STATUS = f"{PIPELINE_DIR}/status.json"
RUNTIME_CONFIG_DIR = "artifacts/runtime_configs"
DASHBOARD_STATE = "training_dashboard/data/dashboard-state.json"
RUN_HISTORY_DIR = "training_dashboard/data/runs"
DECISION_CONFIG = "configs/decision_local.yaml"
DECISIONS_FILE = "decisions.json"
FILE_SUMMARY = "file_summary.csv"


@dataclass(frozen=True)
class RunLayout:
    """Every path one stream's training run writes, named once."""

    stream: str
    checkpoint: Path
    best: Path  # best validation loss so far
    config_yaml: Path  # the effective config beside the checkpoint
    history_csv: Path
    curve_png: Path
    log_dir: Path  # TensorBoard
    dqvl_dir: Path

    @classmethod
    def from_config(cls, cfg: StreamConfig, root: Path | None = None) -> RunLayout:
        ckpt = resolve_path(cfg.logging.checkpoint_path, root)
        loss_dir = resolve_path(cfg.logging.loss_dir, root)
        name = run_name(cfg.stream, ckpt)
        return cls(
            stream=cfg.stream,
            checkpoint=ckpt,
            best=ckpt.with_name(f"{ckpt.stem}.best{ckpt.suffix}"),
            config_yaml=ckpt.with_name(f"{ckpt.stem}.config.yaml"),
            history_csv=loss_dir / f"{name}_loss_history.csv",
            curve_png=loss_dir / f"{name}_loss_curve.png",
            log_dir=resolve_path(cfg.logging.log_dir, root),
            dqvl_dir=resolve_path(cfg.dqvl.report_dir, root),
        )

    @property
    def dqvl_summary(self) -> Path:
        return self.dqvl_dir / "summary.json"


def run_name(stream: str, checkpoint: Path) -> str:
    """What names a run's loss files: the stream for its default checkpoint
    (``checkpoints/patchtst_ssl.pt`` -> ``patchtst``, the seed's fixed paths), else the
    stream and the checkpoint's stem, so runs into other checkpoints keep their own."""
    stem = Path(checkpoint).stem
    return stream if stem == f"{stream}_ssl" else f"{stream}_{stem}"


def thresholds_path(calibration_dir: str | Path, stream: str, root: Path | None = None) -> Path:
    """``<calibration_dir>/<stream>_thresholds.json``."""
    return resolve_path(calibration_dir, root) / f"{stream}_thresholds.json"


@dataclass(frozen=True)
class DecisionLayout:
    """The files a decision run writes: thresholds in the calibration folder, decisions,
    window and file tables in the output folder (both set by the decision config)."""

    out_dir: Path
    calibration_dir: Path

    @classmethod
    def from_config(cls, dcfg: DecisionConfig | None = None, root: Path | None = None
                    ) -> DecisionLayout:
        dcfg = dcfg or DecisionConfig(streams={})
        return cls(resolve_path(dcfg.output_dir, root), resolve_path(dcfg.calibration_dir, root))

    @classmethod
    def from_file(cls, path: str | None, root: Path | None = None) -> DecisionLayout:
        """From a decision config file; None: ``DECISION_CONFIG`` when it exists, else the
        default folders."""
        chosen = path or (DECISION_CONFIG if resolve_path(DECISION_CONFIG, root).is_file()
                          else None)
        if chosen is None:
            return cls.from_config(None, root)
        return cls.from_config(load_decision_config(resolve_path(chosen, root)), root)

    def thresholds(self, stream: str) -> Path:
        return thresholds_path(self.calibration_dir, stream)

    @property
    def decisions(self) -> Path:
        return self.out_dir / DECISIONS_FILE

    @property
    def file_summary(self) -> Path:
        return self.out_dir / FILE_SUMMARY

    def windows_csv(self, stream: str) -> Path:
        return self.out_dir / f"{stream}_windows.csv"

    def events_csv(self, stream: str) -> Path:
        return self.out_dir / f"{stream}_events.csv"

    def dqvl_dir(self, stream: str) -> Path:
        return self.out_dir / "dqvl" / stream


def event_files(log_dir: Path) -> list[Path]:
    """Non-empty TensorBoard event files anywhere under ``log_dir``."""
    if not log_dir.is_dir():
        return []
    found = log_dir.rglob("events.out.tfevents.*")
    return sorted(p for p in found if p.is_file() and p.stat().st_size > 0)
