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

Image rows and frequencies: the CWT has one row per analysis frequency
(``dsp.cwt.frequencies``: log-spaced, row 0 = ``freq_max``, last row = ``freq_min``) and is
resized to ``image.size`` rows (bilinear, align_corners=False, when upsampling; area
averaging when downsampling), so image row ``i`` is centred on CWT row
``(i + 0.5) * n_freqs / size - 0.5``.  ``dsp.cwt.image_row_frequencies`` applies that map
(interpolating log-frequency); each image row then goes to the band holding its centre
frequency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from core.config import ScoringConfig
from core.device import amp_settings
from dsp.cwt import CwtSpec, image_row_frequencies

AGGREGATIONS = ("mean", "max", "topk")
AXES = ("x", "y", "z")
DEFAULT_N_BANDS = 8
PROFILE_EPS = 1e-8  # floor of errors and profile before the log ratio


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


# --------------------------------------------------------------------------- bands
def _fmt_hz(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


@dataclass(frozen=True)
class BandLayout:
    """Log-spaced frequency bands and the image rows that fall in each."""

    edges_hz: np.ndarray  # (n_bands + 1,)
    row_band: np.ndarray  # (H,) band index of each image row
    unit: str = "Hz"  # "rows" for the fallback without known frequencies

    @classmethod
    def from_spec(cls, spec: CwtSpec, n_bands: int = DEFAULT_N_BANDS) -> BandLayout:
        """Bands log-spaced over ``freq_min..freq_max``; rows go by their centre frequency."""
        rows = image_row_frequencies(spec)
        n_bands = max(1, min(n_bands, spec.image_size))
        edges = np.geomspace(spec.freq_min, spec.freq_max, n_bands + 1)
        band = np.clip(np.searchsorted(edges, rows, side="right") - 1, 0, n_bands - 1)
        return cls(edges, band)

    @property
    def labels(self) -> list[str]:
        e = self.edges_hz
        return [f"{_fmt_hz(e[i])}-{_fmt_hz(e[i + 1])} {self.unit}" for i in range(len(e) - 1)]

    def band_errors(self, row_errors: torch.Tensor) -> torch.Tensor:
        """``row_errors (B, H)`` -> mean error per band ``(B, n_bands)`` (0 for an empty band)."""
        n_bands = len(self.edges_hz) - 1
        onehot = torch.zeros(row_errors.shape[1], n_bands, device=row_errors.device)
        onehot[torch.arange(row_errors.shape[1]), torch.as_tensor(self.row_band)] = 1.0
        return (row_errors @ onehot) / onehot.sum(dim=0).clamp_min(1.0)


# --------------------------------------------------------------------------- scoring
def profile_mode(stream: str, setting: str) -> str:
    """``raw`` or ``relative`` for a stream (``auto``: relative for vibration only)."""
    if setting != "auto":
        return setting
    return "relative" if stream == "swinmae" else "raw"


def breakdown(
    basis: torch.Tensor | np.ndarray,
    stream: str,
    *,
    aggregation: str = "mean",
    top_k: int = 3,
    profile: torch.Tensor | np.ndarray | None = None,
    bands: BandLayout | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Window scores and breakdown from the *basis* errors of :func:`infer_score`.

    ``basis`` is ``(B, C)`` per-channel errors (FDC) or ``(B, 3, H)`` per-axis, per-row
    errors averaged over time (vibration).  With a normal ``profile`` (the mean basis of
    normal windows, same trailing shape) errors become ``|log(error / normal)|``: 0 where
    a window looks exactly as normal, growing with the factor by which it is off either
    way.  Kept separate from the model pass so calibration can rescore without the model.
    """
    d = torch.as_tensor(basis, dtype=torch.float32)
    if profile is not None:
        ref = torch.as_tensor(profile, dtype=torch.float32, device=d.device)
        d = torch.log(d.clamp_min(PROFILE_EPS) / ref.clamp_min(PROFILE_EPS)).abs()
    aux: dict[str, Any] = {}
    if stream == "patchtst":
        parts = d
        aux["channel_errors"] = parts.cpu().numpy()
    else:
        parts = d.mean(dim=2)  # (B, 3): the axes' mean over frequency rows
        layout = bands or _row_groups(d.shape[2])
        aux["axis_errors"] = parts.cpu().numpy()
        aux["band_errors"] = layout.band_errors(d.mean(dim=1)).cpu().numpy()
        aux["band_edges_hz"] = layout.edges_hz
        aux["band_labels"] = layout.labels
    score = aggregate(parts, aggregation, top_k)
    return score.cpu().numpy().astype(np.float64), aux


def infer_score(
    batch: torch.Tensor,
    model: nn.Module,
    stream: str,
    *,
    aggregation: str = "mean",
    top_k: int = 3,
    return_recon: bool = False,
    bands: BandLayout | None = None,
    profile: torch.Tensor | np.ndarray | None = None,
    amp: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Score a batch deterministically: ``score (B,)`` and the breakdown in ``aux``.

    ``batch`` is ``(B, T, C)`` normalised FDC windows for ``patchtst`` or ``(B, 3, H, W)``
    scalograms for ``swinmae``.  ``aux`` holds ``basis`` (the raw errors the breakdown is
    made from, see :func:`breakdown`) and the breakdown: ``channel_errors`` or
    ``axis_errors``, ``band_errors``, ``band_edges_hz`` and ``band_labels``.  ``bands``
    (vibration) maps image rows to frequency bands; without it the rows are split into
    equal groups labelled by row range.  ``profile``: the normal error profile for
    relative scores (None: raw errors).  ``return_recon`` adds ``recon`` (the
    reconstruction under the first complementary mask) for plotting.  On CUDA the forward
    runs under autocast (bf16 where supported, else fp16); errors are kept in float32.
    """
    if stream not in ("patchtst", "swinmae"):
        raise ValueError(f"unknown stream {stream!r}")
    model.eval()
    device = next(model.parameters()).device
    batch = batch.to(device, non_blocking=True).float()
    amp_cfg = amp_settings(device, amp)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=amp_cfg.dtype, enabled=amp_cfg.enabled),
    ):
        errors = model.scoring_errors(batch).float()
        # FDC (B, C, N) -> mean over patches; vibration (B, 3, H, W) -> mean over time.
        basis = errors.mean(dim=-1)
        if return_recon:
            lead = (batch.shape[0], batch.shape[2]) if stream == "patchtst" else (batch.shape[0],)
            mask = model.complementary_masks(*lead, device)[0]
            recon = model(batch, mask)["recon"].float().cpu().numpy()
    score, aux = breakdown(basis, stream, aggregation=aggregation, top_k=top_k,
                           profile=profile, bands=bands)
    aux["basis"] = basis.cpu().numpy()
    if return_recon:
        aux["recon"] = recon
    return score, aux


def _row_groups(height: int, n_bands: int = DEFAULT_N_BANDS) -> BandLayout:
    """Fallback when no frequencies are known: equal row groups, edges in row units."""
    n_bands = max(1, min(n_bands, height))
    edges = np.linspace(0, height, n_bands + 1)
    band = np.minimum((np.arange(height) * n_bands) // height, n_bands - 1)
    return BandLayout(edges, band, unit="rows")


# --------------------------------------------------------------------------- datasets
def band_layout_for(trained: Any) -> BandLayout | None:
    """The vibration band layout of a loaded checkpoint (None for FDC)."""
    if trained.stream != "swinmae":
        return None
    return BandLayout.from_spec(CwtSpec.from_config(trained.cfg))


def score_windows(
    dataset: Dataset,
    trained: Any,
    batch_size: int | None = None,
    progress: bool = True,
    scoring: ScoringConfig | None = None,
    profile: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Score every item of ``dataset`` in order: ``scores (N,)`` and stacked aux arrays.

    Aggregation, top-k and batch size come from ``scoring`` (default: the checkpoint
    config's ``scoring`` section); scoring settings never change the model, so a run
    config may choose them freely.  ``profile``: normal error profile for relative scores.
    """
    sc = scoring or trained.cfg.scoring
    loader = DataLoader(dataset, batch_size=batch_size or sc.batch_size, shuffle=False)
    bands = band_layout_for(trained)
    scores: list[np.ndarray] = []
    stacked: dict[str, list[np.ndarray]] = {}
    static: dict[str, Any] = {}
    for batch in tqdm(loader, desc=f"scoring {trained.stream}", unit="batch", disable=not progress,
                      leave=False):
        s, aux = infer_score(batch, trained.model, trained.stream, aggregation=sc.aggregation,
                             top_k=sc.top_k, bands=bands, profile=profile,
                             amp=trained.cfg.device.amp)
        scores.append(s)
        for key, value in aux.items():
            if key in ("band_edges_hz", "band_labels"):
                static[key] = value
            else:
                stacked.setdefault(key, []).append(value)
    out: dict[str, Any] = {k: np.concatenate(v) for k, v in stacked.items()}
    out.update(static)
    total = np.concatenate(scores) if scores else np.empty(0)
    return total, out


def contributor_names(trained: Any) -> list[str]:
    """Names of the parts a score is made of: FDC channels or the axes x, y, z."""
    if trained.stream == "patchtst":
        return [str(c) for c in trained.model_meta.get("channels", [])]
    return list(AXES)


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
) -> ScoredFiles:
    """Read, check (DQVL), window and score files with a loaded checkpoint.

    ``cfg`` gives data, DQVL and scoring settings (checked against the checkpoint's model
    by the caller).  FDC
    files are normalised with the training scaler (``cfg.data.scaler_path``) whose
    channels must be the checkpoint's; vibration windows become scalograms on the
    checkpoint's device.  Dropped files are listed with their reason, never fatal here.
    ``max_windows`` scores only that many windows, spread evenly over all of them;
    ``profile`` is the normal error profile for relative scores (None: raw errors).
    """
    if trained.stream == "patchtst":
        from inference.checkpoint_io import load_fdc_scaler
        from sensor_data.fdc_prep import prepare_fdc_scoring

        scaler = load_fdc_scaler(trained, cfg)
        window = trained.cfg.data.seq_len
        dataset, reports = prepare_fdc_scoring(list(paths), scaler, cfg, window, cfg.data.stride)
        file_ids = [str(f) for f in dataset.file_ids]
        kept = list(dataset.files)
    else:
        from sensor_data.vib_prep import prepare_vibration_scoring, window_geometry

        dataset, reports = prepare_vibration_scoring(list(paths), cfg, trained.device)
        window = window_geometry(cfg)[0]
        file_ids = list(dataset.file_ids)
        kept = list(dict.fromkeys(file_ids))
    pick = _spread(len(dataset), max_windows)
    subset = dataset if len(pick) == len(dataset) else Subset(dataset, pick.tolist())
    scores, aux = score_windows(subset, trained, progress=progress, scoring=cfg.scoring,
                                profile=profile)
    dropped = [{"file_id": r.file_id, "reason": r.reason()} for r in reports if not r.usable]
    return ScoredFiles(
        scores=scores,
        aux=aux,
        file_ids=[file_ids[i] for i in pick],
        starts=np.asarray(dataset.starts, dtype=np.int64)[pick],
        window=int(window),
        kept=kept,
        dropped=dropped,
        reports=list(reports),
    )
