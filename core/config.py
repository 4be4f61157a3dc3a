"""Config loader: YAML (safe_load) validated against a typed schema per stream.

A bad config fails fast with the dotted key, the bad value and what is allowed; unknown
keys are errors.  ``--set a.b=value`` overrides are applied before validation, so they go
through the same checks.  Paths stay repository-relative strings in the config and are
resolved with :func:`core.paths.resolve_path` where they are used.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import ConfigError
from core.paths import display_path, resolve_path

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Ratio = Annotated[float, Field(ge=0, le=1)]
PathGlobs = str | list[str]


class Section(BaseModel):
    """Base for every config section: strict keys, values checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- shared
class DeviceConfig(Section):
    prefer_cuda: bool = True
    amp: bool = True  # bf16 where supported, else fp16 + grad scaler; always off on CPU


class TrainingConfig(Section):
    epochs: PosInt = 10
    batch_size: PosInt = 32
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 0.01
    warmup_epochs: NonNegInt = 0
    grad_clip: NonNegFloat = 1.0  # 0 disables clipping
    num_workers: NonNegInt = 0
    # A step budget per epoch: each epoch then trains on a fresh random sample of windows,
    # so the time per epoch stops growing with the data (also a cap for smoke runs).
    max_steps_per_epoch: PosInt | None = None
    # Stop when the validation loss (the training loss without a validation set) has not
    # improved for this many epochs; None trains every epoch.
    early_stop_patience: PosInt | None = None


class LoggingConfig(Section):
    log_dir: str
    checkpoint_path: str
    loss_dir: str = "artifacts/loss"


class ScoringConfig(Section):
    # How per-channel (FDC) or per-axis (vibration) errors become one window score.
    aggregation: Literal["mean", "max", "topk"] = "mean"
    top_k: PosInt = 3
    batch_size: PosInt = 64
    # raw: reconstruction error as is.  relative: |log(error / normal error)| per channel
    # (FDC) or per axis and frequency row (vibration), with the normal error profile
    # measured at calibration.  Scalograms are normalised per image, so a strong fault band
    # shrinks the error everywhere else; relative errors see that change of shape.
    # auto: relative for swinmae, raw for patchtst.
    error_profile: Literal["auto", "raw", "relative"] = "auto"
    # Seconds between scored windows (FDC: turned into rows per file with its median
    # sample period), at most a quarter window so every row lies in >= 4 windows.  Scoring
    # time per day of data falls with it; detection delay grows by about 2.5x it under the
    # default alarm rule (docs/benchmarks.md).  null: the training stride (data.stride rows
    # for FDC, data.win_stride_sec for vibration).
    stride_sec: PosFloat | None = None


class TrackingConfig(Section):
    """MLflow experiment tracking and model registry; off by default, so MLflow is imported
    only when a run asks for it (engine/tracking.py)."""

    enabled: bool = False
    # null: $MLFLOW_TRACKING_URI when set, else the local SQLite store mlruns/mlflow.db
    # (artifacts under mlruns/artifacts/); e.g. http://mlflow.plant.local:5000 for a team server
    uri: Annotated[str, Field(min_length=1)] | None = None
    experiment: Annotated[str, Field(min_length=1)] = "sensor-ssl"


class DqvlBase(Section):
    enabled: bool = True
    report_dir: str


# --------------------------------------------------------------------------- FDC
class FdcSyntheticConfig(Section):
    n_files: PosInt = 3
    n_rows: PosInt = 1500
    n_channels: PosInt = 8
    seed: int = 0


# Column names that are labels, ids or row counters, not sensors: searched case-insensitively
# in each name (``data.exclude_columns``).  Whole names only, so ``fault_current`` or
# ``class_temp`` stay channels: is_anomaly, anomaly, label, fault, fault_type, class,
# target, outlier, ground_truth, y_true; id, idx, index, row, row_id, sample, sample_no,
# record, level_0 and anything ending in _id / _idx (batch_id, wafer_id).
DEFAULT_EXCLUDE_COLUMNS = (
    r"^(is[_ -]?)?(anomal(y|ies)|labels?|faults?|failure|class|target|outliers?|attack"
    r"|ground[_ -]?truth|y[_ -]?(true|label))([_ -](label|flag|type|class|code))?$"
    r"|^(id|idx|index|row|sample|record|seq)([_ -]?(id|no|num|number|index|idx))?$"
    r"|^level_\d+$|[_ -](id|idx)$"
)


class FdcDataConfig(Section):
    source: Literal["synthetic", "files"] = "synthetic"
    path: PathGlobs = "data/local/train/fdc/*.csv"
    # default: a column named timestamp/time (any case), else an unnamed first column
    # ("Unnamed: 0", an empty header) that holds dates
    timestamp_col: str | None = None
    channels: list[str] | None = None  # default: every other column; a list is used as is
    channel_regex: str | None = None
    # Not sensors, left out unless listed in data.channels: names matching this regular
    # expression (null or "" keeps every name) and, with exclude_counters, integer columns
    # that only count up (row numbers, pandas' "Unnamed: 0" index).
    exclude_columns: str | None = DEFAULT_EXCLUDE_COLUMNS
    exclude_counters: bool = True
    fs: PosFloat | None = None  # samples per second, informational for FDC
    seq_len: Annotated[int, Field(ge=2)] = 96
    stride: PosInt = 16
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2
    normalization: Literal["robust", "zscore"] = "robust"
    scale_clip: PosFloat | None = 20.0  # |scaled value| bound, saved with the scaler; null: none
    scaler_path: str = "artifacts/scaler_fdc.json"
    synthetic: FdcSyntheticConfig = FdcSyntheticConfig()

    @field_validator("exclude_columns")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression ({exc})") from None
        return value


class FdcDqvlConfig(DqvlBase):
    report_dir: str = "artifacts/dqvl/fdc"
    require_timestamp: bool = True
    max_timestamp_issue_ratio: Ratio = 0.01  # unparsable, backwards or duplicated stamps
    max_missing_ratio: Ratio = 0.2
    warn_missing_ratio: Ratio = 0.02
    stuck_rel_std: NonNegFloat = 1e-6
    step_jump_sigma: PosFloat = 8.0
    warn_step_jump_ratio: Ratio = 0.01
    # One channel with more NaN/inf than this is unusable: left out of training (in every
    # file), a warning naming it at scoring.
    max_channel_missing_ratio: Ratio = 0.2
    max_bad_channel_fraction: Ratio = 0.25  # more unusable channels than this drops the file
    max_ragged_ratio: Ratio = 0.01  # CSV rows with another field count than the header
    fs_tolerance: Ratio = 0.02  # observed rate vs data.fs (when set): warning beyond it


class PatchTSTModelConfig(Section):
    patch_len: PosInt = 16
    d_model: PosInt = 64
    n_heads: PosInt = 4
    n_layers: PosInt = 2
    d_ff: PosInt = 128
    dropout: Ratio = 0.0
    mask_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.4
    # The decoder's cross-attention reads the encoded patches as they are (no key/value
    # projection) and has no feed-forward block after it: since 2026-12-02, a training step at
    # mask 0.6 ~1.2x faster, detection on the TEP tuning split the same (docs/benchmarks.md).
    # Checkpoints from before these keys existed were trained with both on and load that way.
    decoder_mlp: bool = False
    decoder_kv_proj: bool = False

    @model_validator(mode="after")
    def _heads_divide(self) -> PatchTSTModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        return self


# --------------------------------------------------------------------------- vibration
class VibSyntheticConfig(Section):
    n_files: PosInt = 3
    duration_sec: PosFloat = 20.0
    seed: int = 0


class ResampleConfig(Section):
    enabled: bool = False  # deterministic polyphase resampling to data.fs when observed fs differs


class VibDataConfig(Section):
    source: Literal["synthetic", "files"] = "synthetic"
    path: PathGlobs = "data/local/train/vib/*.csv"
    fs: PosFloat = 2000.0
    timestamp_col: str | None = None
    axes: dict[Literal["x", "y", "z"], str] | None = None  # column mapping, e.g. {x: acc_1}
    win_sec: PosFloat = 1.0
    win_stride_sec: PosFloat = 0.5
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2
    resample: ResampleConfig = ResampleConfig()
    synthetic: VibSyntheticConfig = VibSyntheticConfig()


class VibDqvlConfig(DqvlBase):
    report_dir: str = "artifacts/dqvl/vib"
    max_nan_ratio: Ratio = 0.01  # also the limit for values that overflow float32
    max_ragged_ratio: Ratio = 0.01  # CSV rows with another field count than the header
    fs_tolerance: Ratio = 0.02  # relative difference between observed and configured fs
    max_gap_ratio: Ratio = 0.01  # share of the recorded time that timestamp gaps leave empty
    warn_clip_ratio: Ratio = 0.01
    max_clip_ratio: Ratio = 0.05  # samples at an axis' min/max: above it, saturated, dropped
    warn_flat_ratio: Ratio = 0.2
    max_flat_ratio: Ratio = 0.95
    rms_min: NonNegFloat | None = None
    rms_max: PosFloat | None = None


class CwtConfig(Section):
    wavelet: Literal["morlet"] = "morlet"
    freq_min: PosFloat = 5.0
    freq_max: PosFloat = 1000.0
    n_freqs: PosInt = 64
    log1p: bool = True
    normalization: Literal["robust", "zscore", "minmax"] = "robust"
    cache_dir: str = "artifacts/cache/cwt"

    @model_validator(mode="after")
    def _freq_order(self) -> CwtConfig:
        if self.freq_min >= self.freq_max:
            raise ValueError(f"freq_min ({self.freq_min}) must be < freq_max ({self.freq_max})")
        return self


class ImageConfig(Section):
    size: Annotated[int, Field(ge=16)] = 64


class SwinMAEModelConfig(Section):
    name: str = "swin_tiny_patch4_window7_224"  # timm architecture; weights never downloaded
    patch_size: PosInt = 4
    window_size: PosInt = 4
    embed_dim: PosInt = 32
    depths: list[PosInt] = [2, 2]
    num_heads: list[PosInt] = [2, 4]
    decoder_dim: PosInt = 64
    mask_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5

    @model_validator(mode="after")
    def _stage_lists(self) -> SwinMAEModelConfig:
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have the same length")
        return self


# --------------------------------------------------------------------------- streams
class StreamConfig(Section):
    """What every stream's config has; each stream module subclasses it (``streams/``).

    ``stream`` names the registered stream (see ``streams.names()``); the subclass narrows
    it to its own name and adds its data, DQVL and model sections.
    """

    stream: str
    seed: int = 42
    deterministic: bool = False
    device: DeviceConfig = DeviceConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    tracking: TrackingConfig = TrackingConfig()
    logging: LoggingConfig
    dqvl: DqvlBase


S = TypeVar("S", bound=BaseModel)


# --------------------------------------------------------------------------- decisions
Quantile = Annotated[float, Field(gt=0.5, lt=1)]
GlobList = str | list[str]


class ThresholdPolicy(Section):
    """How normal calibration scores become ``clear`` < ``warn`` < ``anomaly`` thresholds.

    Each quantile is a false-alarm target per window on normal data (0.999: one window in
    a thousand).  Neighbouring windows overlap, so what limits the quantiles is the
    effective sample size, not the window count (see inference/calibration.py).
    """

    clear_quantile: Quantile = 0.95
    warn_quantile: Quantile = 0.99
    anomaly_quantile: Quantile = 0.999
    method: Literal["auto", "rank", "tail"] = "auto"
    # The tail fit needs at least this many effective calibration windows over its base.
    min_tail_windows: Annotated[int, Field(ge=3)] = 4

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdPolicy:
        if not self.clear_quantile < self.warn_quantile < self.anomaly_quantile:
            raise ValueError(
                f"need clear_quantile ({self.clear_quantile}) < warn_quantile "
                f"({self.warn_quantile}) < anomaly_quantile ({self.anomaly_quantile})"
            )
        return self


class AlarmRule(Section):
    """When window levels become an alarm event, and when it clears (persistence and
    hysteresis, as alarm-management practice asks: one noisy window is not an alarm)."""

    raise_k: Annotated[int, Field(ge=1)] = 3
    raise_n: Annotated[int, Field(ge=1)] = 5
    clear_windows: Annotated[int, Field(ge=1)] = 5

    @model_validator(mode="after")
    def _k_of_n(self) -> AlarmRule:
        if self.raise_k > self.raise_n:
            raise ValueError(f"raise_k ({self.raise_k}) must be <= raise_n ({self.raise_n})")
        return self


class DecisionGate(Section):
    """Decision quality for promotion: held-out normal files raise no alarm event and
    at least this share of the labelled faults not marked ``hard`` is decided anomaly."""

    min_detected_fraction: Annotated[float, Field(ge=0, le=1)] = 0.85


class StreamEntry(Section):
    config: str
    checkpoint: str
    calibration_path: GlobList
    test_path: GlobList
    # --set style overrides of the stream config for scoring, e.g. ["data.stride=4"]
    overrides: list[str] = []


class DecisionConfig(Section):
    """``configs/decision_local.yaml``: which checkpoints decide on which test files."""

    streams: dict[str, StreamEntry]  # keyed by registered stream name
    thresholds: ThresholdPolicy = ThresholdPolicy()
    alarm: AlarmRule = AlarmRule()
    decision_gate: DecisionGate = DecisionGate()
    top_contributors: Annotated[int, Field(ge=1)] = 5
    calibration_dir: str = "artifacts/calibration"
    output_dir: str = "artifacts/decisions"


# --------------------------------------------------------------------------- loading
def _allowed_keys(schema: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names allowed at ``loc`` (the parent of an unknown key)."""
    model: Any = schema
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def _field_key(schema: type[BaseModel], loc: Sequence[Any]) -> str:
    """The dotted config key of an error location, without union members or list indices."""
    model: Any = schema
    parts = []
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            break
        parts.append(str(part))
        model = field.annotation
    return ".".join(parts)


def _mapping_hint(key: str, got: Any) -> str | None:
    """A quoting hint when YAML read ``text: more`` as a one-entry mapping."""
    if not (isinstance(got, dict) and len(got) == 1):
        return None
    name, rest = next(iter(got.items()))
    if isinstance(rest, dict | list):
        return None
    text = f"{name}:" if rest is None else f"{name}: {rest}"
    return f"YAML reads a value with ': ' as a mapping; quote it: {override_arg(key, text)}"


def _format_errors(err: ValidationError, schema: type[BaseModel], source: str) -> str:
    lines = []
    hints: dict[str, None] = {}  # ordered and without repeats (a union gives several errors)
    for e in err.errors():
        loc = list(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, loc[:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
            continue
        msg = e["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        got = e.get("input")
        if e["type"] == "value_error" or isinstance(got, dict):
            lines.append(msg if key == "<root>" else f"{key}: {msg}")
        else:
            lines.append(f"{key}: {msg}, got {got!r}")
        if e["type"] != "value_error" and (hint := _mapping_hint(_field_key(schema, loc), got)):
            hints[hint] = None
    return f"{source}: invalid config: " + "; ".join([*lines, *hints])


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def override_arg(key: str, value: str) -> str:
    """The shell-ready ``--set`` argument that sets ``key`` to the string ``value``.

    Why: a value YAML would read as something else (``Time: UTC`` is a mapping, ``01``
    a number) needs YAML quotes, and spaces or quotes need shell quotes around it all.
    """
    try:
        plain = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain = False
    text = value if plain else json.dumps(value, ensure_ascii=False)
    return f"--set {shlex.quote(f'{key}={text}')}"


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key.sub=value``; the value is YAML-typed (``3`` -> int, ``[1,2]`` -> list)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key.sub=value")
    try:
        return key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        hint = f"; to set it as text, quote it: {override_arg(key, value.strip())}"
        raise ConfigError(
            f"--set {key}: value is not valid YAML ({type(exc).__name__}){hint}"
        ) from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(out, key, value)
    return out


def validate_config(schema: type[S], raw: Any, source: str = "<config>") -> S:
    """Validate a raw mapping into ``schema``; errors become one ConfigError line."""
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise ConfigError(f"{source}: expected a mapping at the top level, got {kind}")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, schema, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    resolved = resolve_path(path)
    shown = display_path(resolved)
    if not resolved.is_file():
        raise ConfigError(f"{shown}: config file not found")
    try:
        raw = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: config is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{shown}: invalid YAML{where}") from None
    return raw if raw is not None else {}


def load_decision_config(path: str | Path) -> DecisionConfig:
    """Read and validate a decision config (stream names are checked where it is used)."""
    shown = display_path(resolve_path(path))
    return validate_config(DecisionConfig, read_yaml(path), f"{shown} (decision config)")


def effective_config(cfg: StreamConfig) -> dict[str, Any]:
    """The merged, validated config as plain data (stored beside and inside checkpoints)."""
    return cfg.model_dump(mode="json")


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


# --------------------------------------------------------------------------- CLI glue
def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    parser.add_argument(
        "--config",
        default=default_config,
        required=default_config is None,
        help="YAML config, relative to the repository root"
        + (f" (default: {default_config})" if default_config else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=3 (repeatable, YAML-typed)",
    )
