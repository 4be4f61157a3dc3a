"""What a stream is: the :class:`StreamTask` protocol and the helpers every stream shares.

A stream (PatchTST-SSL on FDC data, Swin-MAE-SSL on vibration scalograms, or a plugin)
owns everything that differs between data kinds: its config class, the keys that define
its model (*model args*), model construction, training and scoring data preparation, and
the breakdown of a score into named parts.  The engine, inference, pipelines and the
dashboard only talk to this protocol, so a new stream is one module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from core.config import StreamConfig, effective_config

ErrorProfile = Literal["raw", "relative"]


@dataclass
class TrainingSetup:
    """What a stream hands the training engine."""

    model: nn.Module
    train_set: Dataset
    val_set: Dataset
    model_meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoringData:
    """Windows of a set of files ready for the model, and where each window comes from."""

    dataset: Dataset
    reports: list[Any]  # DQVL reports, one per input file
    file_ids: list[str]  # (N,) file id of each window
    starts: np.ndarray  # (N,) first row / sample of each window in its file
    window: int  # window length in rows or samples
    kept: list[str]  # ids of the files that gave windows, in order
    start_times: np.ndarray | None = None  # (N,) datetime64[ns], NaT where unknown
    end_times: np.ndarray | None = None

    @classmethod
    def from_windows(
        cls, dataset: Any, reports: list[Any], window: int, kept: list[str] | None = None
    ) -> ScoringData:
        """From a window dataset that carries ``file_ids``, ``starts`` and the reader's
        ``start_times`` / ``end_times``; ``kept`` defaults to the files that gave windows."""
        file_ids = [str(f) for f in dataset.file_ids]
        return cls(
            dataset=dataset,
            reports=reports,
            file_ids=file_ids,
            starts=np.asarray(dataset.starts, dtype=np.int64),
            window=int(window),
            kept=list(dict.fromkeys(file_ids)) if kept is None else kept,
            start_times=dataset.start_times,
            end_times=dataset.end_times,
        )


@dataclass
class Breakdown:
    """A batch's per-part errors (what the window score aggregates) plus extra views."""

    parts: torch.Tensor  # (B, K): one error per channel / axis / ...
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. band errors and labels


@dataclass
class Recording:
    """A recorded file as rows in a stream's live columns (for replay)."""

    values: np.ndarray  # (N, C) float32, NaN where missing
    stamps: np.ndarray | None  # (N,) datetime64[ns], or None when the file has no time


@dataclass
class LiveInput:
    """How a stream's model sees rows that arrive one at a time (the live scorer's view).

    The live scorer cuts windows at the same starts as batch scoring (every ``stride`` rows
    from the first row) and hands ``prepare`` the raw rows, so a window scores as it
    would in a file.
    """

    columns: list[str]  # what a source delivers per row, in this order
    window: int  # rows (samples) per window
    stride: Callable[[float | None], int]  # rows between windows, from the sample period (s)
    period_s: float | None  # the configured sample period (None: measured from the stamps)
    covering_last: bool  # batch scoring adds a window that ends at a file's last row
    prepare: Callable[[np.ndarray], torch.Tensor]  # (B, window, C) raw rows -> model batch
    read_recording: Callable[[Path], Recording]  # a file as rows in ``columns`` (replay)
    steady: frozenset[str] = frozenset()  # columns constant in training: not "stuck"
    file_names: dict[str, str] = field(default_factory=dict)  # column -> its name in files


class StreamTask(Protocol):
    """One stream: registered under :attr:`name` (``streams.get(name)``)."""

    name: str  # the ``stream:`` value of its configs
    title: str  # what its data is, for messages ("FDC", "vibration")
    config_class: type[StreamConfig]
    part_kind: str  # what a score breaks into ("channel", "axis")
    part_plural: str  # "channels", "axes"
    default_error_profile: ErrorProfile
    default_config: str  # the trainer's config when none is named
    local_config: str  # the config ``make run`` trains with (pipelines' default)
    cli_flag: str  # pipelines take ``--<cli_flag>-config``
    data_folder: str  # data/local/<split>/<data_folder>, dashboard uploads
    file_suffixes: tuple[str, ...]

    def model_args(self, cfg: StreamConfig) -> dict[str, Any]:
        """Dotted config keys -> values that define the model and what it sees."""
        ...

    def build_model(self, model_args: dict[str, Any], model_meta: dict[str, Any]) -> nn.Module:
        ...

    def training_globs(self, cfg: StreamConfig) -> list[str]:
        """Repository-relative globs of the files training reads ([] for synthetic data);
        calibration refuses these files (held-out normal data only)."""
        ...

    def prepare_training(
        self, cfg: StreamConfig, device: torch.device, run_id: str
    ) -> TrainingSetup:
        ...

    def prepare_scoring(
        self,
        cfg: StreamConfig,
        model_meta: dict[str, Any],
        sources: Sequence[Any],
        device: torch.device,
    ) -> ScoringData:
        """Read, check (DQVL) and window files; dropped files are reported, never fatal."""
        ...

    def score_layout(self, cfg: StreamConfig) -> Any:
        """What :meth:`breakdown` needs beyond the errors (e.g. frequency bands), or None."""
        ...

    def breakdown(self, errors: torch.Tensor, layout: Any = None) -> Breakdown:
        """Per-part errors from the model's basis errors (its errors averaged over the last
        axis); ``layout`` comes from :meth:`score_layout`."""
        ...

    def part_names(self, model_meta: dict[str, Any]) -> list[str]:
        ...

    def synthetic_scoring_input(
        self, cfg: StreamConfig, model_meta: dict[str, Any], n_windows: int, folder: Path
    ) -> list[Any]:
        """Sources for :meth:`prepare_scoring` holding about ``n_windows`` normal windows,
        for a scoring smoke without data (files may be written into ``folder``)."""
        ...

    def extra_artifacts(self, cfg: StreamConfig) -> list[tuple[str, str]]:
        """``(repo-relative path, kind)`` of artifacts beyond the common run layout."""
        ...

    def live_input(
        self, cfg: StreamConfig, model_meta: dict[str, Any], device: torch.device
    ) -> LiveInput:
        """Columns, window geometry and preparation for scoring rows as they arrive."""
        ...


# --------------------------------------------------------------------------- model args
def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def pick_model_args(
    cfg: StreamConfig, keys: Iterable[str], ignored: Iterable[str] = ()
) -> dict[str, Any]:
    """The leaves under each dotted key of the effective config (sections are flattened)."""
    data = effective_config(cfg)
    out: dict[str, Any] = {}
    for key in keys:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.update(_flatten(node, key))
    skip = set(ignored)
    return {k: v for k, v in out.items() if k not in skip}


def trained_model_args(
    task: StreamTask, ckpt: Mapping[str, Any], embedded: Callable[[], StreamConfig]
) -> Any:
    """The model args a checkpoint was trained with: its stored ``model_args``, or for a file
    from before those were stored what its embedded config gives (``embedded()`` parses it,
    called only then).

    A stream may declare ``legacy_model_args`` (optional): model keys added after checkpoints
    existed, mapped to the value such older files were trained with.
    """
    legacy: Mapping[str, Any] = getattr(task, "legacy_model_args", {})
    stored = ckpt.get("model_args")
    if not stored:
        raw = ckpt.get("config")
        derived = task.model_args(embedded())
        derived.update({k: v for k, v in legacy.items() if not _has_key(raw, k)})
        return derived
    if not isinstance(stored, dict):
        return stored  # the caller refuses it
    return {**legacy, **stored}


def _has_key(raw: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def model_args_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``key: checkpoint=X, config=Y`` for every model-defining key that differs."""
    return [
        f"{key}: checkpoint={stored.get(key)!r}, config={given.get(key)!r}"
        for key in sorted(set(stored) | set(given))
        if stored.get(key) != given.get(key)
    ]


def file_globs(data: Any) -> list[str]:
    """``data.path`` as a list when ``data.source`` is ``files`` (the built-in layout)."""
    if data.source != "files":
        return []
    return [data.path] if isinstance(data.path, str) else list(data.path)


def section_args(model_args: dict[str, Any], section: str) -> dict[str, Any]:
    """``{"model.d_model": 64, ...}`` -> ``{"d_model": 64, ...}`` for one section."""
    prefix = f"{section}."
    return {k[len(prefix):]: v for k, v in model_args.items() if k.startswith(prefix)}
