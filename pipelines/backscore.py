"""Back-score a long history (months of one unit) in chunks, resumable after a crash.

    python -m pipelines.backscore [--config configs/decision_local.yaml]
        [--stream NAME|dual] [--data-path STREAM=GLOB] [--chunk-windows 4096]
        [--state-dir DIR] [--out-dir DIR] [--recalibrate] [--run-id ID]
        [--engine ray [--address ...] [--workers N]]

The history (many files, or one long file) is scored in chunks: whole files, long files
split into window ranges of whole scoring batches (:mod:`pipelines.pieces`).  Each
finished chunk is written atomically to the state folder (``<state-dir>/<stream>/``, one
``.npz`` per chunk: its presence is the done marker), so a rerun after a crash or Ctrl-C
scores only the chunks that are missing.  A chunk's name covers the checkpoint, the
scoring settings, the thresholds' normal profile, the chunk size and the file's size and
modification time: change any and the chunk is scored afresh.  When every chunk is
there, they are merged and decided once, exactly as ``pipelines.run_local_test_pipeline``
decides the same files in one pass (events that span chunks included).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import streams
from core.cli import run_main
from core.config import load_decision_config
from core.errors import ConfigError
from core.io import atomic_write_bytes
from core.layout import DecisionLayout
from core.paths import display_path, resolve_path
from core.status import new_run_id
from inference.decisions import StreamJob, prepare_stream
from inference.scoring import ScoredFiles
from pipelines.fleet import Unit, add_engine_args, finish_unit, open_engine, unit_lines
from pipelines.pieces import JobSpec, Piece, PieceResult, Runner, first_pieces, merge, rest_pieces
from pipelines.run_local_test_pipeline import ALL, add_data_args, data_overrides
from sensor_data.dqvl_report import DqvlReport

DEFAULT_CHUNK = 4096  # windows per chunk (rounded up to whole scoring batches)
STATE_DIR = "artifacts/backscore"


# --------------------------------------------------------------------------- chunk store
class ChunkStore:
    """Finished chunks of one stream's job, one atomically written ``.npz`` each."""

    def __init__(self, folder: Path, job: StreamJob, chunk: int) -> None:
        self.folder = folder
        profile = b"" if job.profile is None else np.ascontiguousarray(job.profile).tobytes()
        self._settings = hashlib.sha256(b"|".join([
            job.trained.ckpt_info["sha256"].encode(), job.cfg.model_dump_json().encode(),
            profile, str(chunk).encode()])).hexdigest()

    def path(self, piece: Piece) -> Path:
        src = Path(piece.path)
        stat = src.stat()
        key = hashlib.sha256(f"{self._settings}|{src.resolve()}|{stat.st_size}|"
                             f"{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.folder / f"{src.stem}-{key}" / f"{piece.lo:010d}.npz"

    def has(self, piece: Piece) -> bool:
        return self.path(piece).is_file()

    def save(self, piece: Piece, result: PieceResult) -> None:
        s = result.scored
        arrays = {"scores": s.scores, "starts": s.starts}
        arrays |= {f"times_{k}": v for k, v in (("start", s.start_times), ("end", s.end_times))
                   if v is not None}
        arrays |= {f"aux_{k}": np.asarray(v) for k, v in s.aux.items()}
        meta = {"n_windows": result.n_windows, "file_id": s.file_ids[0] if s.file_ids else None,
                "window": s.window, "kept": s.kept, "dropped": s.dropped,
                "reports": [dataclasses.asdict(r) for r in s.reports],
                "lists": [k for k, v in s.aux.items() if isinstance(v, list)]}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
        atomic_write_bytes(self.path(piece), buf.getvalue())

    def load(self, piece: Piece) -> PieceResult:
        with np.load(self.path(piece), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            aux: dict[str, Any] = {}
            for name in (n for n in z.files if n.startswith("aux_")):
                key = name.removeprefix("aux_")
                aux[key] = z[name].tolist() if key in meta["lists"] else z[name]
            scores = z["scores"]
            scored = ScoredFiles(
                scores=scores, aux=aux, file_ids=[meta["file_id"]] * len(scores),
                starts=z["starts"], window=meta["window"], kept=meta["kept"],
                dropped=meta["dropped"], reports=[DqvlReport(**r) for r in meta["reports"]],
                start_times=z["times_start"] if "times_start" in z.files else None,
                end_times=z["times_end"] if "times_end" in z.files else None)
        return PieceResult(meta["n_windows"], scored)


# --------------------------------------------------------------------------- running
def backscore(jobs: list[StreamJob], stores: list[ChunkStore], runner: Runner,
              chunk_windows: int) -> list[ScoredFiles]:
    """Score the chunks the stores lack (with progress), then merge every job's chunks."""
    firsts = first_pieces(jobs, chunk_windows)
    known = firsts + [p for f in firsts if stores[f.job].has(f)
                      for p in rest_pieces(f, stores[f.job].load(f).n_windows)]
    todo = [p for p in known if not stores[p.job].has(p)]
    bar = tqdm(total=len(known), initial=len(known) - len(todo), unit="chunk",
               desc="back-scoring")

    def done(piece: Piece, result: PieceResult) -> list[Piece]:
        stores[piece.job].save(piece, result)
        bar.update()
        if piece.lo != 0:
            return []
        more = rest_pieces(piece, result.n_windows)
        known.extend(more)
        bar.total = len(known)
        bar.refresh()
        return [p for p in more if not stores[p.job].has(p)]

    try:
        runner.run([JobSpec.of(j) for j in jobs], todo, done)
    finally:
        bar.close()
    return [merge([(p, stores[j].load(p)) for p in known if p.job == j])
            for j in range(len(jobs))]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.backscore",
        description="Score a long history in chunks (resumable: finished chunks are kept "
        "and skipped on a rerun), then decide it as one pass would.",
    )
    parser.add_argument("--config", default="configs/decision_local.yaml")
    parser.add_argument("--stream", choices=(*streams.names(), ALL), default=ALL)
    add_data_args(parser)  # the history's files (default: the config's test files)
    parser.add_argument("--state-dir", default=STATE_DIR,
                        help="finished chunks, one folder per stream")
    parser.add_argument("--out-dir", default=None, help="default: output_dir of the config")
    parser.add_argument("--recalibrate", action="store_true")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="--engine local only (Ray workers score on CPUs)")
    add_engine_args(parser)
    parser.set_defaults(chunk_windows=DEFAULT_CHUNK)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dcfg = load_decision_config(args.config)
    wanted = list(dcfg.streams) if args.stream == ALL else [args.stream]
    if missing := [s for s in wanted if s not in dcfg.streams]:
        raise ConfigError(f"{args.config}: streams.{missing[0]} is not configured")
    layout = DecisionLayout.from_config(dcfg)
    if args.out_dir:
        layout = replace(layout, out_dir=resolve_path(args.out_dir))
    unit = Unit(Path(args.config).stem, dcfg, wanted, data_overrides(args), layout)
    run_id = args.run_id or new_run_id()
    state = resolve_path(args.state_dir)
    with open_engine(args, args.device) as engine:
        jobs = [prepare_stream(s, dcfg, unit.tests.get(s), args.recalibrate, engine.device)
                for s in wanted]
        stores = [ChunkStore(state / j.stream, j, args.chunk_windows) for j in jobs]
        scored = backscore(jobs, stores, engine, args.chunk_windows)
    decided = finish_unit(unit, jobs, scored, run_id)
    print(f"chunks: {display_path(state)}")
    print(next(unit_lines([decided])))
    return 0


if __name__ == "__main__":
    run_main(main)
