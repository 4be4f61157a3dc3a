"""Score pieces on Ray workers (``--engine ray``): optional, imported only when asked for.

Workers are actors (one CPU each) running :class:`pipelines.pieces.PieceScorer`, so each
loads a model once and reads a long file once for the chunks it gets.  A worker process
that dies is restarted and its pieces are retried by Ray (``max_restarts``,
``max_task_retries``); results come back to the driver, which alone writes outputs, so a
retried piece is merged once and never duplicates a file or a row.  Without ``--address``
a local Ray instance with ``--workers`` CPUs is started and shut down afterwards; with
one, the driver joins that cluster (``auto``, ``host:port`` or ``ray://host:port``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from types import TracebackType
from typing import Any

from core.errors import ConfigError, UserError
from core.paths import repo_root
from inference.decisions import StreamJob
from inference.scoring import ScoredFiles
from pipelines.pieces import Done, JobSpec, Piece, PieceScorer, score_in_pieces

INSTALL_HINT = "--engine ray needs Ray: .venv/bin/pip install 'ray==2.60.0' (pinned in " \
               "requirements.txt)"
RESTARTS = 3  # times a dead worker is restarted (and its pieces retried)
IN_FLIGHT = 2  # pieces queued per worker, so it never waits on the driver


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


class RayEngine(contextlib.AbstractContextManager):
    """A pool of scoring workers on a local Ray instance or a cluster (a context manager).

    Reuses a Ray session this process already has (and leaves it running)."""

    device = "cpu"  # workers ask Ray for CPUs only; the driver loads the same way

    def __init__(self, address: str | None = None, workers: int | None = None,
                 chunk_windows: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.address, self.workers, self.chunk_windows = address, workers, chunk_windows
        self._ray = import_ray()
        self._owned = False
        self._actors: list[Any] = []
        self.pids: list[int] = []

    def __enter__(self) -> RayEngine:
        ray = self._ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # local-first: no upload
            options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=self.workers or os.cpu_count() or 1,
                         include_dashboard=False, **options)
            self._owned = True
        n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        worker = ray.remote(num_cpus=1, max_restarts=RESTARTS,
                            max_task_retries=RESTARTS)(PieceScorer)
        try:
            self._actors = [worker.remote(str(repo_root())) for _ in range(n)]
            self.pids = ray.get([a.ready.remote() for a in self._actors])
        except BaseException:
            self.__exit__(None, None, None)  # what was started is stopped
            raise
        where = f"cluster {self.address}" if self.address else "local instance"
        print(f"ray: {n} worker(s) ready ({where})")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owned:
            self._ray.shutdown()

    def score(self, jobs: list[StreamJob]) -> list[ScoredFiles]:
        return score_in_pieces(self, jobs, self.chunk_windows)

    def run(self, specs: list[JobSpec], pieces: list[Piece], done: Done) -> None:
        """Keep every worker :data:`IN_FLIGHT` pieces busy until none is left; follow-up
        chunks of a file go first, to the worker that is free (likely it holds the file)."""
        ray = self._ray
        spec_refs = [ray.put(s) for s in specs]
        queue = deque(pieces)
        free = [a for a in self._actors for _ in range(IN_FLIGHT)]
        pending: dict[Any, tuple[Piece, Any]] = {}
        while queue or pending:
            while queue and free:
                actor, piece = free.pop(), queue.popleft()
                pending[actor.score.remote(spec_refs[piece.job], piece)] = (piece, actor)
            ready, _ = ray.wait(list(pending), num_returns=1)
            piece, actor = pending.pop(ready[0])
            free.append(actor)
            queue.extendleft(reversed(done(piece, self._get(ready[0], piece))))

    def _get(self, ref: Any, piece: Piece) -> Any:
        """A piece's result; an expected error inside a worker stays one line."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, UserError):
                raise exc.cause from None
            raise
        except ray.exceptions.RayActorError:
            raise UserError(f"a Ray worker died {RESTARTS + 1} times scoring {piece.path}; "
                            "see the Ray logs (session_latest/logs in Ray's temp dir)") from None
