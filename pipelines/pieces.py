"""Score a stream's files in pieces (a whole file, or a window range of a long one), merge.

A piece is pure work: it reads its file, scores its windows and returns plain numpy
results; whoever runs it (this process, a Ray worker, a resumable back-scoring run) never
writes an output file, so a retried piece can never duplicate one.  The first piece of a
file says how many windows the file has; the rest of a long file follows in chunks of
whole scoring batches.  Because :func:`inference.scoring.group_batches` batches each file
on its own, the merged pieces equal, bit for bit, what :func:`inference.scoring.score_files`
gives for all files in one pass, and the same decision rules run on them once.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from core.errors import CheckpointError, ConfigError
from core.paths import resolve_path
from inference.checkpoint_io import load_trained
from inference.decisions import StreamJob
from inference.scoring import STATIC_AUX, ScoredFiles, score_prepared
from sensor_data.files import file_ids

MODEL_CACHE = 4  # models one worker keeps loaded (a fleet has one per unit and stream)


@dataclass(frozen=True)
class JobSpec:
    """What a worker needs to score a job's files: picklable, small, no loaded model."""

    stream: str
    checkpoint: str
    sha256: str
    device: str
    cfg: Any
    profile: np.ndarray | None

    @classmethod
    def of(cls, job: StreamJob) -> JobSpec:
        """The file the driver loaded (a registry URI's download too), and its cfg, in
        which the driver already set what a registered version pins."""
        info = job.trained.ckpt_info
        return cls(job.stream, str(resolve_path(info["path"])), info["sha256"],
                   job.trained.device.type, job.cfg, job.profile)

    @property
    def model_key(self) -> tuple[str, str, str]:
        return self.checkpoint, self.sha256, self.device


@dataclass(frozen=True)
class Piece:
    """Windows ``lo`` up to ``hi`` (None: the file's end) of file ``file`` of job ``job``."""

    job: int
    file: int
    path: str
    lo: int = 0
    hi: int | None = None


@dataclass
class PieceResult:
    n_windows: int  # windows in the whole file
    scored: ScoredFiles  # this piece's windows; kept / dropped / reports of the whole file


def chunk_size(chunk_windows: int | None, batch_size: int) -> int | None:
    """Windows per piece rounded up to whole batches (None: whole files), so a chunk's
    batches are the batches of the one-pass run."""
    if chunk_windows is None:
        return None
    if chunk_windows < 1:
        raise ConfigError(f"--chunk-windows must be at least 1, got {chunk_windows}")
    return -(-chunk_windows // batch_size) * batch_size


def first_pieces(jobs: list[StreamJob], chunk_windows: int | None) -> list[Piece]:
    """The first piece of every file of every job (file ids must not depend on the set)."""
    out = []
    for j, job in enumerate(jobs):
        names = [Path(f).name for f in job.files]
        if file_ids(job.files) != names:
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"[{job.stream}] two test files are called {dup}: scoring in "
                              "pieces needs unique file names")
        size = chunk_size(chunk_windows, job.cfg.scoring.batch_size)
        out += [Piece(j, i, str(f), 0, size) for i, f in enumerate(job.files)]
    return out


def rest_pieces(first: Piece, n_windows: int) -> list[Piece]:
    """The chunks of a file after its first piece."""
    if first.hi is None:
        return []
    size = first.hi - first.lo
    return [Piece(first.job, first.file, first.path, lo, lo + size)
            for lo in range(first.hi, n_windows, size)]


# --------------------------------------------------------------------------- scoring
class PieceScorer:
    """Scores pieces; keeps the last few models and the last prepared file, so a worker
    loads each model once and reads a long file once for consecutive chunks.  The body of
    every Ray worker, and the in-process scorer of back-scoring."""

    def __init__(self, repo_root: str | None = None) -> None:
        if repo_root is not None:  # a Ray worker resolves repo paths as the driver does
            os.environ["SSL_REPO_ROOT"] = repo_root
        self._models: OrderedDict[Hashable, Any] = OrderedDict()
        self._prepared: tuple[Hashable, Any] | None = None

    def ready(self) -> int:
        """The worker's process id, once it is up."""
        return os.getpid()

    def score(self, spec: JobSpec, piece: Piece) -> PieceResult:
        trained = self._model(spec)
        data = self._prepare(spec, trained, piece.path)
        n = len(data.dataset)
        pick = np.arange(min(piece.lo, n), n if piece.hi is None else min(piece.hi, n))
        scored = score_prepared(trained, spec.cfg, data, pick, profile=spec.profile)
        return PieceResult(n, scored)

    def _model(self, spec: JobSpec) -> Any:
        key = spec.model_key
        if key not in self._models:
            trained = load_trained(spec.checkpoint, expected_stream=spec.stream,
                                   device=torch.device(spec.device))
            if trained.ckpt_info["sha256"] != spec.sha256:
                raise CheckpointError(f"{spec.checkpoint}: changed while scoring "
                                      "(another sha256 than the driver loaded)")
            self._models[key] = trained
            while len(self._models) > MODEL_CACHE:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return self._models[key]

    def _prepare(self, spec: JobSpec, trained: Any, path: str) -> Any:
        key = (spec.model_key, spec.cfg.model_dump_json(), path)
        if self._prepared is None or self._prepared[0] != key:
            data = trained.task.prepare_scoring(spec.cfg, trained.model_meta, [Path(path)],
                                                trained.device)
            self._prepared = (key, data)
        return self._prepared[1]


Done = Callable[[Piece, PieceResult], list[Piece]]


class Runner(Protocol):
    """Runs pieces; ``done`` gets each result (in any order) and returns follow-up pieces."""

    def run(self, specs: list[JobSpec], pieces: list[Piece], done: Done) -> None: ...


class LocalRunner:
    """Pieces one after another in this process."""

    def __init__(self) -> None:
        self.scorer = PieceScorer()

    def run(self, specs: list[JobSpec], pieces: list[Piece], done: Done) -> None:
        queue = deque(pieces)
        while queue:
            piece = queue.popleft()
            queue.extendleft(reversed(done(piece, self.scorer.score(specs[piece.job], piece))))


# --------------------------------------------------------------------------- merging
def merge(parts: list[tuple[Piece, PieceResult]]) -> ScoredFiles:
    """One job's pieces as one :class:`ScoredFiles`, in file and window order; files, DQVL
    reports and drops come from each file's first piece (the others repeat them)."""
    parts = sorted(parts, key=lambda pr: (pr[0].file, pr[0].lo))
    scored = [r.scored for _, r in parts]
    firsts = [r.scored for p, r in parts if p.lo == 0]
    with_windows = [s for s in scored if len(s.scores)]
    aux: dict[str, Any] = {}
    for s in with_windows:
        aux.update({k: v for k, v in s.aux.items() if k in STATIC_AUX})
    for key in (with_windows[0].aux if with_windows else {}):
        if key not in STATIC_AUX:
            aux[key] = np.concatenate([s.aux[key] for s in with_windows])
    return ScoredFiles(
        scores=np.concatenate([s.scores for s in scored]) if scored else np.empty(0),
        aux=aux,
        file_ids=[fid for s in scored for fid in s.file_ids],
        starts=np.concatenate([s.starts for s in scored]).astype(np.int64) if scored
        else np.empty(0, dtype=np.int64),
        window=scored[0].window if scored else 0,
        kept=[fid for s in firsts for fid in s.kept],
        dropped=[d for s in firsts for d in s.dropped],
        reports=[r for s in firsts for r in s.reports],
        start_times=_times([s.start_times for s in scored]),
        end_times=_times([s.end_times for s in scored]),
    )


def _times(parts: list[np.ndarray | None]) -> np.ndarray | None:
    if not parts or any(p is None for p in parts):
        return None
    return np.concatenate(parts)


def score_in_pieces(runner: Runner, jobs: list[StreamJob], chunk_windows: int | None
                    ) -> list[ScoredFiles]:
    """Every job's files scored in pieces by ``runner``, merged per job."""
    results: dict[int, list[tuple[Piece, PieceResult]]] = {j: [] for j in range(len(jobs))}

    def done(piece: Piece, result: PieceResult) -> list[Piece]:
        results[piece.job].append((piece, result))
        return rest_pieces(piece, result.n_windows) if piece.lo == 0 else []

    runner.run([JobSpec.of(j) for j in jobs], first_pieces(jobs, chunk_windows), done)
    return [merge(results[j]) for j in range(len(jobs))]
