"""Scoring smoke: load a checkpoint safely, score real (or synthetic) windows, summarise.

    python -m inference.run_scoring_example --stream patchtst \\
        --checkpoint checkpoints/patchtst_ssl.pt --config configs/patchtst_ssl_local.yaml

The model is rebuilt from the checkpoint's model args; ``--config`` (default: the
checkpoint's own effective config) supplies the data paths and quality settings and must
agree with the checkpoint on the model.  Data: the
files of ``--data-path`` (or ``data.path`` of the config when it reads files); when none
exist, a synthetic batch from the project's generators shaped like the checkpoint's input
(for FDC: normal synthetic process data written with the checkpoint's channel names in the
scaler's units, so it goes through the same DQVL / scaler path as real files).
Exit 0 on success; one line and exit 2 for a bad checkpoint, config, scaler or data.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import streams
from core.cli import run_main
from core.config import apply_overrides, effective_config
from core.device import select_device
from core.errors import DataError
from core.layout import CALIBRATION_DIR, thresholds_path
from core.paths import display_path
from inference.alarms import LEVELS, window_levels
from inference.calibration import (
    data_files,
    load_thresholds,
    stale_reason,
    threshold_profile,
)
from inference.checkpoint_io import Trained, check_config_matches, load_trained
from inference.scoring import (
    ScoredFiles,
    contributor_names,
    parts_key,
    profile_mode,
    score_files,
)


def _data_files(args: argparse.Namespace, cfg) -> tuple[list[Path], str]:
    """Files to score and a description of where they came from (empty: use synthetic)."""
    if args.data_path:
        files = data_files(args.data_path)
        if not files:
            raise DataError(f"--data-path: no file matches {args.data_path}")
        return files, args.data_path
    globs = streams.get(cfg.stream).training_globs(cfg)
    if not globs:
        return [], "the config's data is synthetic"
    pats = ", ".join(globs)
    files = data_files(globs)
    return files, pats if files else f"no file matches {pats}"


def _summary(trained: Trained, scored: ScoredFiles, source: str) -> str:
    s = scored.scores
    cfg = trained.cfg
    info = trained.ckpt_info
    lines = [
        f"stream: {trained.stream}   checkpoint: {info['path']} (epoch {info['epoch']}, "
        f"created {info['created']})   device: {trained.device}",
        f"data: {source}; {len(scored.kept)} file(s) scored, {len(scored.dropped)} dropped",
    ]
    lines += [f"  dropped {d['file_id']}: {d['reason']}" for d in scored.dropped]
    lines.append(
        f"windows scored: {len(s)}   aggregation: {cfg.scoring.aggregation}"
        + (f" (k={cfg.scoring.top_k})" if cfg.scoring.aggregation == "topk" else "")
    )
    lines.append(f"score min / median / max: {s.min():.4g} / {np.median(s):.4g} / {s.max():.4g}")
    parts = scored.aux[parts_key(trained.task)].mean(axis=0)
    names = contributor_names(trained)
    order = np.argsort(parts)[::-1][:3]
    lines.append(
        f"top {trained.task.part_plural} (mean error): "
        + ", ".join(f"{names[i]} {parts[i]:.4g}" for i in order)
    )
    if "band_errors" in scored.aux:
        bands = scored.aux["band_errors"].mean(axis=0)
        labels = scored.aux["band_labels"]
        lines.append(
            "bands (mean error): " + ", ".join(f"{lab} {v:.3g}" for lab, v in zip(labels, bands,
                                                                                   strict=True))
        )
    worst = int(np.argmax(s))
    lines.append(
        f"highest window: {scored.file_ids[worst]} start {int(scored.starts[worst])} "
        f"score {s[worst]:.4g}"
    )
    return "\n".join(lines)


def _current_thresholds(trained: Trained, cfg, calib_dir: str) -> dict | None:
    """This checkpoint's thresholds if calibrated with the current settings, else None."""
    path = thresholds_path(calib_dir, trained.stream)
    if not path.is_file():
        return None
    try:
        thr = load_thresholds(path, trained.stream)
    except DataError:
        return None
    return None if stale_reason(thr, trained, cfg) else thr


def _levels_line(scored: ScoredFiles, thresholds: dict | None, profile, trained: Trained,
                 cfg) -> str:
    if thresholds is None:
        note = (" (this stream scores relative to a normal error profile once calibrated)"
                if profile_mode(trained.task, cfg.scoring.error_profile) == "relative" else "")
        return f"scores: raw reconstruction error; no current calibration{note}"
    lv = window_levels(scored.scores, float(thresholds["warn"]), float(thresholds["anomaly"]))
    kind = "relative to the normal error profile" if profile is not None else "raw error"
    counts = ", ".join(f"{name} {int(np.sum(lv == name))}" for name in LEVELS)
    return (f"scores: {kind}; levels with warn={thresholds['warn']:.4g}, "
            f"anomaly={thresholds['anomaly']:.4g}: {counts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.run_scoring_example",
        description="Load a checkpoint safely (weights_only) and score a batch of windows.",
    )
    parser.add_argument("--stream", choices=streams.names(),
                        help="refuse a checkpoint of another stream (default: any)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint path (repo-relative)")
    parser.add_argument("--config", default=None,
                        help="stream config YAML (repo-relative) for data paths and quality "
                        "settings; must match the checkpoint on the model (default: the "
                        "checkpoint's own effective config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--data-path", default=None,
                        help="glob of files to score (default: data.path of the config)")
    parser.add_argument("--max-windows", type=int, default=256,
                        help="windows scored, spread evenly over the data (default 256)")
    parser.add_argument("--max-files", type=int, default=8, help="files read (default 8)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--calibration-dir", default=CALIBRATION_DIR,
                        help="thresholds of this checkpoint, when present, add levels and the "
                        f"normal error profile (default: {CALIBRATION_DIR})")
    args = parser.parse_args(argv)
    if args.max_windows < 1 or args.max_files < 1:
        parser.error("--max-windows and --max-files must be >= 1")

    trained = load_trained(args.checkpoint, expected_stream=args.stream)
    if args.config:
        cfg = streams.load_config(args.config, args.overrides, stream=trained.stream)
        shown = display_path(args.config)
    else:  # the checkpoint's own effective config
        raw = apply_overrides(effective_config(trained.cfg), args.overrides)
        shown = f"{trained.ckpt_info['path']} (embedded config)"
        cfg = streams.config_from_dict(raw, trained.stream, shown)
    check_config_matches(trained, cfg, shown)
    trained.device = (select_device(cfg.device.prefer_cuda) if args.device == "auto"
                      else select_device(args.device == "cuda"))
    trained.model.to(trained.device)

    thresholds = _current_thresholds(trained, cfg, args.calibration_dir)
    profile = threshold_profile(thresholds) if thresholds else None
    files, source = _data_files(args, cfg)
    files = files[: args.max_files]
    with tempfile.TemporaryDirectory(prefix="scoring_example_") as tmp:
        inputs: list = files
        if not files:
            inputs = trained.task.synthetic_scoring_input(cfg, trained.model_meta,
                                                           args.max_windows, Path(tmp))
            source = f"synthetic normal batch ({source})"
        scored = score_files(trained, cfg, inputs, progress=False, max_windows=args.max_windows,
                             profile=profile)
    if len(scored.scores) == 0:
        reasons = "; ".join(f"{d['file_id']}: {d['reason']}" for d in scored.dropped)
        raise DataError(f"no window could be scored from {source}: {reasons or 'no windows'}")
    print(_summary(trained, scored, source))
    print(_levels_line(scored, thresholds, profile, trained, cfg))
    return 0


if __name__ == "__main__":
    run_main(main)
