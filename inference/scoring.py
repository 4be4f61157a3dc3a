"""Deterministic anomaly scores from masked reconstruction error, with a breakdown.

A window's score must not depend on which patches a random mask happened to hide, so
scoring uses each model's *complementary* masks: a fixed set of masks that together hide
every patch (PatchTST) or every mask unit (Swin-MAE) at least once.  Each patch / pixel
error is the mean over the masks that hid it; nothing is random, so the same input gives
the same score.

The breakdown says *what* is abnormal:

- FDC: ``channel_errors`` (B, C), the mean error per channel over its patches.  The
  window score aggregates channels (``mean``, ``max`` or ``topk`` = mean of the k largest).
- Vibration: ``axis_errors`` (B, 3) for x/y/z and ``band_errors`` (B, n_bands), the mean
  error inside log-spaced frequency bands (``band_edges_hz``).  The window score
  aggregates the axes the same way.

Raw or relative (``scoring.error_profile``): raw scores are reconstruction errors.  Relative
scores compare each channel (FDC) or each axis x frequency row (vibration) with its error
on normal data (the *profile*, measured at calibration): ``|log(error / normal)|``.
Scalograms are normalised per image, so a fault that adds a strong band (bearing
resonance, looseness sub-harmonics) compresses the rest of the image and *lowers* the raw
error almost everywhere; on the synthetic benchmark raw mean error ranks such windows
below normal ones (AUROC 0), while the relative score separates all three fault types.
FDC keeps raw errors by default: on the Tennessee Eastman benchmark, dividing by the
normal profile over-weights slow, smooth channels whose error is tiny but drifts between
normal runs (many false alarms).

Which parts a score breaks into, and how, is the stream's business
(``StreamTask.breakdown``): this module only runs the model, applies the profile and
aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from core.config import ScoringConfig
from core.device import amp_settings
from streams.base import StreamTask

# A model pass: a batch of windows -> its basis errors (PyTorch by default; ONNX Runtime
# through inference.onnx_scoring.scoring_backend).
BasisFn = Callable[[torch.Tensor], torch.Tensor | np.ndarray]
BACKENDS = ("torch", "onnx")
AGGREGATIONS = ("mean", "max", "topk")
PROFILE_EPS = 1e-8  # floor of errors and profile before the log ratio
STATIC_AUX = ("band_edges_hz", "band_labels")  # the same for every batch: not stacked


# --------------------------------------------------------------------------- aggregation
def aggregate(errors: torch.Tensor, aggregation: str = "mean", top_k: int = 3) -> torch.Tensor:
    """One score per row of ``errors (B, K)``: mean, max or mean of the ``top_k`` largest."""
    if aggregation == "mean":
        return errors.mean(dim=1)
    if aggregation == "max":
        return errors.amax(dim=1)
    if aggregation == "topk":
        k = max(1, min(top_k, errors.shape[1]))
        return errors.topk(k, dim=1).values.mean(dim=1)
    raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")


# --------------------------------------------------------------------------- scoring
def profile_mode(task: StreamTask, setting: str) -> str:
    """``raw`` or ``relative`` (``auto``: the stream's own default)."""
    return task.default_error_profile if setting == "auto" else setting


def parts_key(task: StreamTask) -> str:
    """The aux key of the per-part errors: ``channel_errors``, ``axis_errors``, ..."""
    return f"{task.part_kind}_errors"


def breakdown(
    basis: torch.Tensor | np.ndarray,
    task: StreamTask,
    *,
    aggregation: str = "mean",
    top_k: int = 3,
    profile: torch.Tensor | np.ndarray | None = None,
    layout: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Window scores and breakdown from the *basis* errors of :func:`infer_score`.

    ``basis`` is the model's errors averaged over their last axis: ``(B, C)`` per channel
    (FDC) or ``(B, 3, H)`` per axis and image row (vibration).  With a normal ``profile``
    (the mean basis of normal windows, same trailing shape) errors become
    ``|log(error / normal)|``: 0 where a window looks exactly as normal, growing with the
    factor by which it is off either way.  Kept apart from the model pass so calibration
    can rescore without the model.  ``layout``: ``task.score_layout(cfg)``.
    """
    d = torch.as_tensor(basis, dtype=torch.float32)
    if profile is not None:
        ref = torch.as_tensor(profile, dtype=torch.float32, device=d.device)
        d = torch.log(d.clamp_min(PROFILE_EPS) / ref.clamp_min(PROFILE_EPS)).abs()
    result = task.breakdown(d, layout)
    aux: dict[str, Any] = {parts_key(task): result.parts.cpu().numpy(), **result.extra}
    score = aggregate(result.parts, aggregation, top_k)
    return score.cpu().numpy().astype(np.float64), aux


def infer_score(
    batch: torch.Tensor,
    model: nn.Module,
    task: StreamTask,
    *,
    aggregation: str = "mean",
    top_k: int = 3,
    layout: Any = None,
    profile: torch.Tensor | np.ndarray | None = None,
    amp: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Score a batch deterministically: ``score (B,)`` and the breakdown in ``aux``.

    ``batch`` is what the stream's dataset yields (normalised FDC windows ``(B, T, C)``,
    scalograms ``(B, 3, H, W)``).  The model's ``scoring_errors`` gives errors under its
    complementary masks; their mean over the last axis (patches, time) is the ``basis``
    kept in ``aux`` next to the breakdown (see :func:`breakdown`).  ``layout`` (e.g. the
    vibration frequency bands) comes from ``task.score_layout``; ``profile`` is the normal
    error profile for relative scores (None: raw errors).  On CUDA the forward runs under
    autocast (bf16 where supported, else fp16); errors are kept in float32.
    """
    basis = model_basis(batch, model, amp)
    score, aux = breakdown(basis, task, aggregation=aggregation, top_k=top_k,
                           profile=profile, layout=layout)
    aux["basis"] = basis.cpu().numpy()
    return score, aux


def model_basis(batch: torch.Tensor, model: nn.Module, amp: bool = True) -> torch.Tensor:
    """The model's errors under its complementary masks, averaged over the last axis."""
    model.eval()
    device = next(model.parameters()).device
    batch = batch.to(device, non_blocking=True).float()
    amp_cfg = amp_settings(device, amp)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=amp_cfg.dtype, enabled=amp_cfg.enabled),
    ):
        return model.scoring_errors(batch).float().mean(dim=-1)


def score_batch(
    batch: torch.Tensor, trained: Any, scoring: ScoringConfig, layout: Any = None,
    profile: np.ndarray | None = None, basis: BasisFn | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`infer_score` with a checkpoint's settings, or with another model pass
    (``basis``, e.g. ONNX Runtime) in front of the same breakdown."""
    if basis is None:
        return infer_score(batch, trained.model, trained.task, aggregation=scoring.aggregation,
                           top_k=scoring.top_k, layout=layout, profile=profile,
                           amp=trained.cfg.device.amp)
    errors = basis(batch)
    score, aux = breakdown(errors, trained.task, aggregation=scoring.aggregation,
                           top_k=scoring.top_k, profile=profile, layout=layout)
    aux["basis"] = np.asarray(errors.cpu() if isinstance(errors, torch.Tensor) else errors)
    return score, aux


# --------------------------------------------------------------------------- datasets
def group_batches(groups: Sequence[Hashable], size: int) -> list[list[int]]:
    """Batches of consecutive item indices, at most ``size`` long, that never span two
    groups.  Why: a model's float rounding may depend on what else is in its batch, so
    batching each file on its own makes a window's score depend on its file only; a file
    scored alone, or a chunk of it that starts at a multiple of ``size``, then gives
    bit-identical scores (what the Ray and back-scoring paths rely on)."""
    out: list[list[int]] = []
    for _, run in groupby(range(len(groups)), key=groups.__getitem__):
        items = list(run)
        out += [items[i : i + size] for i in range(0, len(items), size)]
    return out


def score_windows(
    dataset: Dataset,
    trained: Any,
    batch_size: int | None = None,
    progress: bool = True,
    scoring: ScoringConfig | None = None,
    profile: np.ndarray | None = None,
    basis: BasisFn | None = None,
    groups: Sequence[Hashable] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Score every item of ``dataset`` in order: ``scores (N,)`` and stacked aux arrays.

    Aggregation, top-k and batch size come from ``scoring`` (default: the checkpoint
    config's ``scoring`` section); scoring settings never change the model, so a run
    config may choose them freely.  ``profile``: normal error profile for relative scores;
    ``basis``: another model pass (see :func:`score_batch`); ``groups``: the group (file)
    of each item, so that no batch mixes two (see :func:`group_batches`).
    """
    sc = scoring or trained.cfg.scoring
    keys = [None] * len(dataset) if groups is None else groups
    loader = DataLoader(dataset, batch_sampler=group_batches(keys, batch_size or sc.batch_size))
    task = trained.task
    layout = task.score_layout(trained.cfg)
    scores: list[np.ndarray] = []
    stacked: dict[str, list[np.ndarray]] = {}
    static: dict[str, Any] = {}
    for batch in tqdm(loader, desc=f"scoring {trained.stream}", unit="batch", disable=not progress,
                      leave=False):
        s, aux = score_batch(batch, trained, sc, layout, profile, basis)
        scores.append(s)
        for key, value in aux.items():
            if key in STATIC_AUX:
                static[key] = value
            else:
                stacked.setdefault(key, []).append(value)
    out: dict[str, Any] = {k: np.concatenate(v) for k, v in stacked.items()}
    out.update(static)
    total = np.concatenate(scores) if scores else np.empty(0)
    return total, out


def contributor_names(trained: Any) -> list[str]:
    """Names of the parts a score is made of (FDC channels, the axes x, y, z, ...)."""
    return trained.task.part_names(trained.model_meta)


# --------------------------------------------------------------------------- files
@dataclass
class ScoredFiles:
    """Window scores of a set of files plus where each window comes from."""

    scores: np.ndarray  # (N,)
    aux: dict[str, Any]  # stacked breakdown arrays (see infer_score)
    file_ids: list[str]  # (N,) file id of each window
    starts: np.ndarray  # (N,) first row / sample of each window in its file
    window: int  # window length in rows (FDC) or samples at data.fs (vibration)
    kept: list[str]  # ids of files that were scored, in order
    dropped: list[dict[str, str]]  # [{"file_id", "reason"}] for files DQVL or reading dropped
    reports: list[Any]  # DQVL reports, one per input file
    start_times: np.ndarray | None = None  # (N,) datetime64[ns] from the reader, NaT unknown
    end_times: np.ndarray | None = None


def _spread(n: int, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` items spread evenly over ``n`` (all when no limit)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def score_files(
    trained: Any,
    cfg: Any,
    paths: Sequence[Any],
    progress: bool = True,
    max_windows: int | None = None,
    profile: np.ndarray | None = None,
    basis: BasisFn | None = None,
) -> ScoredFiles:
    """Read, check (DQVL), window and score files with a loaded checkpoint.

    ``cfg`` gives data, DQVL and scoring settings (checked against the checkpoint's model
    by the caller); the stream reads and windows them (``StreamTask.prepare_scoring``).
    Dropped files are listed with their reason, never fatal here.
    ``max_windows`` scores only that many windows, spread evenly over all of them;
    ``profile`` is the normal error profile for relative scores (None: raw errors);
    ``basis`` another model pass (None: the checkpoint's model in PyTorch).
    """
    data = trained.task.prepare_scoring(cfg, trained.model_meta, list(paths), trained.device)
    pick = _spread(len(data.dataset), max_windows)
    return score_prepared(trained, cfg, data, pick, progress, profile, basis)


def score_prepared(
    trained: Any,
    cfg: Any,
    data: Any,
    pick: np.ndarray,
    progress: bool = False,
    profile: np.ndarray | None = None,
    basis: BasisFn | None = None,
) -> ScoredFiles:
    """Score the windows ``pick`` (ascending indices) of prepared files (``ScoringData``),
    each file batched on its own; kept apart from reading so a worker can score chunks of
    a file it read once."""
    dataset = data.dataset
    subset = dataset if len(pick) == len(dataset) else Subset(dataset, pick.tolist())
    file_ids = [data.file_ids[i] for i in pick]
    scores, aux = score_windows(subset, trained, progress=progress, scoring=cfg.scoring,
                                profile=profile, basis=basis, groups=file_ids)
    dropped = [{"file_id": r.file_id, "reason": r.reason()} for r in data.reports
               if not r.usable]
    return ScoredFiles(
        scores=scores,
        aux=aux,
        file_ids=file_ids,
        starts=np.asarray(data.starts, dtype=np.int64)[pick],
        window=int(data.window),
        kept=data.kept,
        dropped=dropped,
        reports=list(data.reports),
        start_times=None if data.start_times is None else data.start_times[pick],
        end_times=None if data.end_times is None else data.end_times[pick],
    )
