"""Thresholds that the calibration data can actually support, with their uncertainty.

Why not plain quantiles: windows overlap (a 64-row window scored every 2 rows shares 62
rows with its neighbour), so 1,000 calibration windows may hold only a few dozen
independent observations, and the 0.999 quantile of them is just the largest excursion of
one file.  So:

- the **effective sample size** ``m`` of each file's score series is ``n / (1 + 2 sum rho_k)``
  over the initial positive autocorrelations (Geyer's initial positive sequence), summed
  over files;
- a level with exceedance target ``p`` is a **finite-sample rank** (the split-conformal
  order statistic ``ceil((m + 1)(1 - p))`` of ``m``, mapped to the window scores) when
  ``m >= 1/p - 1``; otherwise a **fitted tail**: a generalised Pareto distribution over
  the scores above a base quantile that leaves ``min_tail_windows`` effective windows in
  the tail (peaks over threshold, as in SPOT, Siffer et al., KDD 2017).  A negative
  shape (a bounded tail) is not trusted from so few points: it is clamped to 0, an
  exponential tail, which extrapolates more cautiously; and a fitted level is never below
  the empirical quantile at the same level;
- when even the tail has too few effective windows, calibration refuses and says how
  much more normal data it needs;
- ``clear < warn < anomaly`` is enforced, never assumed;
- the expected false-alarm rate of each level is measured **out of sample**: leave one
  calibration file out (or one of five time blocks when there are fewer than three
  files), refit, count exceedances on the held-out part; the interval is a Wilson 95 %
  interval on the effective number of held-out windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from core.config import ThresholdPolicy
from core.errors import DataError

LEVEL_TARGETS = (("clear", "clear_quantile"), ("warn", "warn_quantile"),
                 ("anomaly", "anomaly_quantile"))
TAIL_BASE_MAX = 0.5  # the tail's base quantile is never below the median
FOLD_BLOCKS = 5
STEADY_FACTOR = 4  # below this many times the minimum, say that the thresholds are shaky


# --------------------------------------------------------------------------- sample size
def effective_size(scores: np.ndarray) -> float:
    """Effective number of independent values in one autocorrelated series."""
    x = np.asarray(scores, dtype=np.float64)
    n = len(x)
    if n < 4:
        return float(n)
    x = x - x.mean()
    var = float(x @ x)
    if var <= 0:
        return float(n)  # a constant series has no autocorrelation to estimate
    total = 0.0
    for lag in range(1, n // 2):
        rho = float(x[:-lag] @ x[lag:]) / var
        if rho <= 0:
            break
        total += rho
    return float(min(n, max(1.0, n / (1.0 + 2.0 * total))))


def group_slices(groups: Sequence[Any]) -> list[np.ndarray]:
    """Indices of each group (file), in first-seen order; values inside keep their order."""
    arr = np.asarray(groups, dtype=object)
    return [np.flatnonzero(arr == g) for g in dict.fromkeys(groups)]


def total_effective_size(scores: np.ndarray, groups: Sequence[Any]) -> float:
    return float(sum(effective_size(scores[idx]) for idx in group_slices(groups)))


# --------------------------------------------------------------------------- one level
@dataclass(frozen=True)
class LevelFit:
    value: float
    method: str  # "rank" or "tail"
    detail: dict[str, Any]


def needed_for_tail(policy: ThresholdPolicy) -> float:
    """Effective windows a tail fit needs (its base never goes below the median)."""
    return policy.min_tail_windows / TAIL_BASE_MAX


def rank_level(scores: np.ndarray, p: float, m: float) -> float | None:
    """Split-conformal rank on ``m`` effective values, or None when ``m`` cannot support p."""
    q = math.ceil((m + 1.0) * (1.0 - p)) / m
    if q > 1.0:
        return None
    return float(np.quantile(scores, q, method="higher"))


def tail_level(scores: np.ndarray, p: float, m: float, min_tail: int) -> LevelFit:
    """Peaks-over-threshold estimate of the ``1 - p`` quantile (shape clamped at >= 0)."""
    base_p = float(min(TAIL_BASE_MAX, max(min_tail / m, 2.0 * p)))
    u = float(np.quantile(scores, 1.0 - base_p))
    excess = scores[scores > u] - u
    if len(excess) < 3 or float(excess.max()) <= 0:
        return LevelFit(u, "tail", {"base": u, "base_p": base_p, "shape": 0.0, "scale": 0.0})
    shape, _, scale = stats.genpareto.fit(excess, floc=0.0)
    if not np.isfinite(shape) or shape < 0:
        shape, scale = 0.0, float(excess.mean())
    shape = float(shape)
    ratio = p / base_p
    if shape < 1e-9:
        value = u - scale * math.log(ratio)
    else:
        value = u + scale / shape * (ratio ** (-shape) - 1.0)
    # Never below what the data already shows at that level.
    value = max(value, float(np.quantile(scores, 1.0 - p)))
    return LevelFit(float(value), "tail", {"base": u, "base_p": base_p, "shape": shape,
                                           "scale": float(scale)})


def fit_level(scores: np.ndarray, p: float, m: float, policy: ThresholdPolicy) -> LevelFit:
    if policy.method != "tail":
        value = rank_level(scores, p, m)
        if value is not None:
            return LevelFit(value, "rank", {"effective_windows": m})
        if policy.method == "rank":
            raise DataError(f"calibration: a rank threshold at exceedance {p:g} needs "
                            f"{math.ceil(1 / p - 1)} effective windows, have {m:.0f}")
    return tail_level(scores, p, m, policy.min_tail_windows)


# --------------------------------------------------------------------------- all levels
def fit_thresholds(scores: np.ndarray, groups: Sequence[Any], policy: ThresholdPolicy,
                   what: str = "calibration", warn_little_data: bool = True
                   ) -> dict[str, LevelFit]:
    """``clear`` < ``warn`` < ``anomaly`` from normal window scores grouped by file;
    ``warn_little_data`` prints when they rest on little data (off for refits)."""
    s = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(s)
    s, groups = s[keep], list(np.asarray(groups, dtype=object)[keep])
    if s.size == 0:
        raise DataError(f"{what}: no finite window score")
    m = total_effective_size(s, groups)
    need = needed_for_tail(policy)
    if m < need:
        raise DataError(shortfall_message(what, len(s), len(group_slices(groups)), m, need))
    if warn_little_data and m < STEADY_FACTOR * need:
        shaky = shortfall_message(what, len(s), len(group_slices(groups)), m,
                                  STEADY_FACTOR * need, "steady thresholds")
        print(f"warning: {shaky}")
    fits = {name: fit_level(s, 1.0 - getattr(policy, key), m, policy)
            for name, key in LEVEL_TARGETS}
    return ordered(fits, s)


def shortfall_message(what: str, n: int, n_files: int, m: float, need: float,
                      goal: str = "the thresholds") -> str:
    more = math.ceil((need - m) * n / max(m, 1e-9))
    return (f"{what}: {n} windows from {n_files} file(s) hold only {m:.1f} effective "
            f"independent windows (neighbouring windows overlap); {goal} need at "
            f"least {need:.0f}: add normal data worth about {more} more windows at this "
            f"stride (roughly {need / max(m, 1e-9):.1f}x what there is), e.g. more "
            "held-out normal files or longer ones")


def ordered(fits: dict[str, LevelFit], scores: np.ndarray) -> dict[str, LevelFit]:
    """Make ``clear < warn < anomaly`` hold strictly (ties of flat scores, a rank that
    lands on the same value), nudging the higher level up by a small gap."""
    spread = float(np.quantile(scores, 0.95) - np.quantile(scores, 0.5))
    gap = max(0.05 * spread, 1e-6 * max(1.0, abs(float(np.median(scores)))))
    out, floor = {}, -math.inf
    for name, _ in LEVEL_TARGETS:
        fit = fits[name]
        if fit.value <= floor:
            fit = LevelFit(floor + gap, fit.method, {**fit.detail, "raised_to_keep_order": True})
        out[name] = fit
        floor = fit.value
    return out


# --------------------------------------------------------------------------- out of sample
def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (``n`` may be an effective count)."""
    if n <= 0:
        return 0.0, 1.0
    phat = k / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def folds(groups: Sequence[Any], n_blocks: int = FOLD_BLOCKS) -> tuple[list[np.ndarray], str]:
    """Held-out units: files when there are at least three, else contiguous time blocks."""
    per_file = group_slices(groups)
    if len(per_file) >= 3:
        return per_file, f"leave-one-file-out over {len(per_file)} files"
    order = np.concatenate(per_file)
    return ([b for b in np.array_split(order, n_blocks) if len(b)],
            f"leave-one-block-out over {n_blocks} time blocks of {len(per_file)} file(s)")


def out_of_sample(
    scores: np.ndarray, groups: Sequence[Any], policy: ThresholdPolicy,
    count_events: Callable[[np.ndarray, dict[str, float]], int] | None = None,
) -> dict[str, Any]:
    """Held-out exceedance rate of warn and anomaly (and events, when ``count_events`` is
    given) with refitted thresholds; folds that cannot be refitted are reported, not used."""
    s = np.asarray(scores, dtype=np.float64)
    units, how = folds(groups)
    g = np.asarray(groups, dtype=object)
    hits = {"warn": 0, "anomaly": 0}
    held, held_eff, events, skipped = 0, 0.0, 0, 0
    for idx in units:
        rest = np.setdiff1d(np.arange(len(s)), idx)
        try:
            fit = fit_thresholds(s[rest], list(g[rest]), policy, "fold",
                                 warn_little_data=False)
        except DataError:
            skipped += 1
            continue
        part = s[idx]
        for level in hits:
            hits[level] += int(np.sum(part > fit[level].value))
        held += len(idx)
        held_eff += total_effective_size(part, list(g[idx]))
        if count_events is not None:
            events += sum(count_events(s[sub], {k: v.value for k, v in fit.items()})
                          for sub in (idx[g[idx] == f] for f in dict.fromkeys(g[idx])))
    out: dict[str, Any] = {"method": how, "folds": len(units), "folds_skipped": skipped,
                           "held_out_windows": held,
                           "held_out_effective_windows": round(held_eff, 1)}
    for level, key in (("warn", "warn_quantile"), ("anomaly", "anomaly_quantile")):
        rate = hits[level] / held if held else None
        lo, hi = wilson(rate * held_eff, held_eff) if rate is not None else (None, None)
        out[level] = {"target": round(1.0 - getattr(policy, key), 6), "estimate": rate,
                      "interval_95": [lo, hi], "held_out_exceedances": hits[level]}
    if count_events is not None:
        out["held_out_events"] = events
    return out
