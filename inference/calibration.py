"""Decision thresholds per stream from held-out NORMAL calibration files.

Why held-out: a model reconstructs its own training windows better than new normal data,
so thresholds taken from training windows would be too low and raise false alarms on
every new file.  Calibration therefore refuses any file that is also training data (same
path, or the same bytes under another name) — see docs/calibration_split_policy.md.

Levels (false-alarm targets per window on normal data): ``clear`` (hysteresis: where an
alarm event ends), ``warn`` and ``anomaly`` at ``clear_quantile`` < ``warn_quantile`` <
``anomaly_quantile``, each a finite-sample rank or a fitted tail depending on the effective
sample size, with an out-of-sample false-alarm estimate and interval
(inference/threshold_fit.py).  Too little normal data is refused with how much more is needed.

Relative scores (``scoring.error_profile``, the vibration default) need the normal error
profile: it comes from the first half (by time) of each calibration file's windows and the
thresholds from the second half, so no window sets both.

A window's level is ``anomaly`` if its score is above ``anomaly``, else ``warn`` if above
``warn``, else ``normal``; alarm events follow from the levels (inference/alarms.py).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import streams
from core.config import AlarmRule, StreamConfig, ThresholdPolicy
from core.errors import DataError, UserError
from core.io import atomic_write_json, file_sha256
from core.paths import display_path, resolve_path
from engine.archive import archive_note, move_into, run_archive
from engine.checkpoint import created_now
from engine.tracking import attach_results
from inference.alarms import find_events
from inference.checkpoint_io import Trained
from inference.scoring import ScoredFiles, breakdown, profile_mode, score_files
from inference.threshold_fit import (
    fit_thresholds,
    group_slices,
    out_of_sample,
    total_effective_size,
)
from sensor_data.files import LABELS_FILE

SCHEMA_VERSION = "2.0"  # 2.0: clear level, effective size, held-out false alarms


# --------------------------------------------------------------------------- thresholds
def describe(policy: ThresholdPolicy) -> str:
    return (f"clear/warn/anomaly at exceedance targets {1 - policy.clear_quantile:g}/"
            f"{1 - policy.warn_quantile:g}/{1 - policy.anomaly_quantile:g} per normal window; "
            f"method {policy.method} (rank when the effective sample size supports it, else "
            f"a generalised Pareto tail with >= {policy.min_tail_windows} effective windows)")


def window_step_seconds(scored: ScoredFiles) -> float | None:
    """Median time between consecutive window ends (None without timestamps)."""
    if scored.end_times is None:
        return None
    steps = []
    for idx in group_slices(scored.file_ids):
        t = scored.end_times[idx]
        if len(t) > 1 and not np.isnat(t).any():
            steps.append(np.diff(t).astype("timedelta64[ms]").astype(np.float64) / 1000.0)
    return float(np.median(np.concatenate(steps))) if steps else None


def event_counter(rule: AlarmRule | None) -> Any:
    if rule is None:
        return None
    return lambda s, thr: len(find_events(s, thr["warn"], thr["anomaly"], thr["clear"], rule))


# --------------------------------------------------------------------------- split policy
def expand_globs(patterns: str | Sequence[str]) -> list[Path]:
    """Files matched by repository-relative glob(s), resolved and sorted."""
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    found = {
        Path(p).resolve()
        for pat in pats
        for p in glob.glob(str(resolve_path(pat)), recursive=True)
        if Path(p).is_file()
    }
    return sorted(found)


def training_patterns(*cfgs: StreamConfig) -> list[str]:
    """Training globs of every config that reads files (a synthetic source has none)."""
    out: list[str] = []
    for cfg in cfgs:
        paths = streams.get(cfg.stream).training_globs(cfg)
        out.extend(p for p in paths if p not in out)
    return out


def check_held_out(calib_files: Sequence[Path], train_patterns: Sequence[str]) -> None:
    """UserError if a calibration file is also training data (same path or same bytes)."""
    train_files = expand_globs(list(train_patterns)) if train_patterns else []
    train_set = set(train_files)
    by_size: dict[int, list[Path]] = {}
    for p in train_files:
        by_size.setdefault(p.stat().st_size, []).append(p)
    shown_globs = ", ".join(train_patterns)
    for f in calib_files:
        path = Path(f).resolve()
        if path in train_set:
            raise UserError(
                f"{display_path(path)}: calibration file is also matched by the training "
                f"data path ({shown_globs}); calibration must use held-out normal files"
            )
        same_size = by_size.get(path.stat().st_size, [])
        if same_size:
            digest = file_sha256(path)
            twin = next((t for t in same_size if file_sha256(t) == digest), None)
            if twin is not None:
                raise UserError(
                    f"{display_path(path)}: calibration file has the same content as training "
                    f"file {display_path(twin)}; calibration must use held-out normal files"
                )


# --------------------------------------------------------------------------- calibrate
PROFILE_SPLIT = (
    "normal error profile from the first half (by time) of each calibration file's windows; "
    "thresholds from the second half"
)


def scoring_key(cfg: StreamConfig) -> dict[str, Any]:
    """The scoring settings thresholds depend on (a change makes them stale)."""
    return {
        "aggregation": cfg.scoring.aggregation,
        "top_k": cfg.scoring.top_k,
        "error_profile": profile_mode(streams.get(cfg.stream), cfg.scoring.error_profile),
    }


def reference_windows(file_ids: Sequence[str], starts: np.ndarray) -> np.ndarray:
    """True for windows in the first half (by start) of their file.

    Relative scores need a normal error profile; taking it from the first half of each
    calibration file and the thresholds from the second half keeps the windows that set
    the profile out of the quantiles.
    """
    ids = np.asarray(file_ids, dtype=object)
    ref = np.zeros(len(ids), dtype=bool)
    for fid in dict.fromkeys(file_ids):
        idx = np.flatnonzero(ids == fid)
        order = idx[np.argsort(np.asarray(starts)[idx], kind="stable")]
        ref[order[: (len(order) + 1) // 2]] = True
    return ref


def calibrate(
    trained: Trained,
    cfg: StreamConfig,
    calib_patterns: str | Sequence[str],
    policy: ThresholdPolicy,
    out_path: Path,
    progress: bool = True,
    alarm: AlarmRule | None = None,
) -> dict[str, Any]:
    """Score held-out normal files, derive thresholds and write them as JSON (atomically).

    ``cfg`` supplies data and DQVL settings (it must match the checkpoint on the model);
    the training globs of both ``cfg`` and the checkpoint's own config are excluded.
    ``alarm``: the event rule, so the held-out estimate also counts false-alarm events.
    """
    pats = [calib_patterns] if isinstance(calib_patterns, str) else list(calib_patterns)
    files = data_files(pats)
    if not files:
        raise DataError(f"calibration: no file matches {', '.join(pats)}")
    check_held_out(files, training_patterns(trained.cfg, cfg))
    scored = score_files(trained, cfg, files, progress=progress)
    mode = profile_mode(trained.task, cfg.scoring.error_profile)
    s, used = scored.scores, np.ones(len(scored.scores), dtype=bool)
    profile: dict[str, Any] = {"mode": mode}
    if mode == "relative":
        ref = reference_windows(scored.file_ids, scored.starts)
        if ref.any():
            values = scored.aux["basis"][ref].mean(axis=0)
            s, _ = breakdown(scored.aux["basis"][~ref], trained.task,
                             aggregation=cfg.scoring.aggregation, top_k=cfg.scoring.top_k,
                             profile=values)
            used = ~ref
            profile.update(values=values.tolist(), n_windows=int(ref.sum()), split=PROFILE_SPLIT)
    groups = list(np.asarray(scored.file_ids, dtype=object)[used])
    where = f"calibration of {trained.stream} on {', '.join(pats)}"
    fits = fit_thresholds(s, groups, policy, where)
    step = window_step_seconds(scored)
    held_out = out_of_sample(s, groups, policy, event_counter(alarm))
    if step and held_out["held_out_windows"]:
        hours = held_out["held_out_windows"] * step / 3600.0
        held_out["held_out_hours"] = round(hours, 2)
        if "held_out_events" in held_out:
            held_out["events_per_24h"] = round(held_out["held_out_events"] * 24.0 / hours, 3)
    result = {
        "schema_version": SCHEMA_VERSION,
        "stream": trained.stream,
        **{name: fit.value for name, fit in fits.items()},
        "method": describe(policy),
        "levels": {name: {"method": fit.method, **fit.detail} for name, fit in fits.items()},
        "n_windows": int(len(s)),
        "n_files": len(group_slices(groups)),
        "effective_windows": round(total_effective_size(s, groups), 1),
        "window_step_s": step,
        "expected_false_alarms": held_out,
        "source_files": [
            display_path(p) for p in files if {p.name, display_path(p)} & set(scored.kept)
        ],
        "dropped_files": scored.dropped,
        "calibration_inputs": file_hashes(files),
        "training_paths_excluded": training_patterns(trained.cfg, cfg),
        "checkpoint": trained.ckpt_info["path"],
        "checkpoint_sha256": trained.ckpt_info["sha256"],
        "checkpoint_created": trained.ckpt_info["created"],
        "checkpoint_run_id": trained.ckpt_info["run_id"],
        "scoring": scoring_key(cfg),
        "error_profile": profile,
        "policy": policy.model_dump(),
        "alarm": alarm.model_dump() if alarm else None,
        "score_summary": {
            "min": float(s.min()),
            "median": float(np.median(s)),
            "max": float(s.max()),
            "fraction_above_warn": float(np.mean(s > fits["warn"].value)),
            "fraction_above_anomaly": float(np.mean(s > fits["anomaly"].value)),
        },
        "created": created_now(),
    }
    _archive_other_model(out_path, trained)
    atomic_write_json(out_path, result)
    _attach(trained, result, out_path)
    return result


def _attach(trained: Trained, result: dict[str, Any], out_path: Path) -> None:
    """The thresholds join the MLflow run the checkpoint was trained in (when tracked)."""
    held_out = result["expected_false_alarms"].get("anomaly") or {}
    attach_results(
        trained.ckpt_info.get("tracking"),
        {f"calibration/{Path(out_path).name}": result},
        {f"calibration/{k}": result[k] for k in ("clear", "warn", "anomaly", "n_windows",
                                                 "effective_windows")}
        | {"calibration/held_out_false_alarm_rate": held_out.get("estimate")},
        {"ssl.calibrated_sha256": trained.ckpt_info["sha256"]},
    )


def _archive_other_model(out_path: Path, trained: Trained) -> None:
    """Thresholds another checkpoint was calibrated with move to that model's archive."""
    try:
        old = json.loads(Path(out_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(old, dict) or old.get("checkpoint_sha256") == trained.ckpt_info["sha256"]:
        return
    sha = str(old.get("checkpoint_sha256") or "")[:12] or "unknown"
    dest = run_archive(trained.stream, old.get("checkpoint_run_id"), f"checkpoint-{sha}")
    move_into(dest, [out_path])
    print(archive_note(f"the thresholds of {old.get('checkpoint', 'another checkpoint')}",
                       dest))


REQUIRED = ("stream", "clear", "warn", "anomaly", "checkpoint_sha256", "scoring")


def load_thresholds(path: Path, stream: str) -> dict[str, Any]:
    """Read and check a thresholds JSON written by :func:`calibrate`."""
    shown = display_path(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{shown}: thresholds not found (run calibration)") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{shown}: thresholds file is not valid JSON") from None
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED):
        raise DataError(f"{shown}: not a thresholds file (needs {', '.join(REQUIRED)})")
    if data["stream"] != stream:
        raise DataError(f"{shown}: thresholds are for stream {data['stream']!r}, not {stream!r}")
    try:
        values = [float(data[k]) for k in ("clear", "warn", "anomaly")]
    except (TypeError, ValueError):
        raise DataError(f"{shown}: clear/warn/anomaly must be numbers") from None
    if not (np.isfinite(values).all() and values[0] < values[1] < values[2]):
        raise DataError(f"{shown}: need finite thresholds with clear < warn < anomaly")
    return data


def data_files(patterns: str | Sequence[str]) -> list[Path]:
    """Data files the globs match: every file but the ground-truth tables (labels.csv)."""
    return [p for p in expand_globs(patterns) if p.name != LABELS_FILE]


def file_hashes(files: Sequence[Path]) -> dict[str, str]:
    """Repository-relative path -> sha256 (what the thresholds were fitted on)."""
    return {display_path(p): file_sha256(p) for p in files}


def stale_reason(thresholds: dict[str, Any], trained: Trained, cfg: StreamConfig,
                 calib_patterns: str | Sequence[str] | None = None,
                 policy: ThresholdPolicy | None = None, alarm: AlarmRule | None = None,
                 ) -> str | None:
    """Why saved thresholds no longer fit this checkpoint, scoring setup and, when given,
    calibration files, threshold policy and alarm rule (None: they do)."""
    if thresholds.get("checkpoint_sha256") != trained.ckpt_info["sha256"]:
        return "the checkpoint changed since calibration"
    if thresholds.get("scoring") != scoring_key(cfg):
        return "the scoring settings changed since calibration"
    if policy is not None and thresholds.get("policy") != policy.model_dump():
        return "the threshold policy changed since calibration"
    if alarm is not None and thresholds.get("alarm") != alarm.model_dump():
        return "the alarm rule changed since calibration"
    if calib_patterns is not None and thresholds.get("calibration_inputs") != file_hashes(
            data_files(calib_patterns)):
        return "the calibration files changed since calibration"
    return None


def threshold_profile(thresholds: dict[str, Any]) -> np.ndarray | None:
    """The normal error profile stored with relative-score thresholds (None for raw)."""
    profile = thresholds.get("error_profile") or {}
    if profile.get("mode") != "relative":
        return None
    return np.asarray(profile["values"], dtype=np.float32)
