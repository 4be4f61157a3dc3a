"""Local dashboard server: the web UI, a read API over the exported state, live status
over server-sent events (the pipeline run and the live scorer's streams), uploads into
``data/local/`` and one pipeline run at a time.

Run it from the repository root::

    python -m training_dashboard.server --host 127.0.0.1 --port 8765

It binds to loopback by default. A non-loopback bind needs a token (``--token`` or
``SSL_DASHBOARD_TOKEN``); every ``/api`` call then needs ``Authorization: Bearer <token>``
(or ``?token=`` for EventSource). The page reads the token from ``#token=...`` in its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware.trustedhost import TrustedHostMiddleware

import streams
from core import status as pipeline_status
from core.cli import run_main
from core.errors import UserError
from core.paths import REPO_ROOT, display_path, repo_root
from training_dashboard.uploads import UploadLimits, UploadRejected, save_upload

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
STATE_REL = "training_dashboard/data/dashboard-state.json"
RUNS_REL = "training_dashboard/data/runs"
LAYOUT_REL = "training_dashboard/data/dashboard-layout.json"
RUN_LOG_REL = "artifacts/pipeline/logs/dashboard_run.log"
LIVE_REL = "artifacts/live"  # where ``python -m inference.live`` writes <stream>/status.json
LIVE_STALE_S = 10.0  # a scorer rewrites status.json every ~0.5 s; silence this long is news
LIVE_MAX_BYTES = 8 * 1024 * 1024  # a status file this large is not the scorer's
LOG_TAIL_LINES = 50
TOKEN_ENV = "SSL_DASHBOARD_TOKEN"
MIN_TOKEN_LENGTH = 16
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
EMPTY_HINT = (
    "No dashboard state yet. Run `make run` (the whole demo job), or train with "
    "`python -m pipelines.run_local_training_pipeline`, which exports "
    f"{STATE_REL} at the end (or export it yourself with "
    "`python -m pipelines.export_training_dashboard_state --repo-root . "
    f"--out {STATE_REL} --persist-run-history`)."
)


def default_train_cmd() -> list[str]:
    return [sys.executable, "-m", "pipelines.run_local_training_pipeline"]


def default_test_cmd() -> list[str]:
    return [sys.executable, "-m", "pipelines.run_local_test_pipeline"]


BOTH = "both"  # a test run over every stream


class TrainOptions(BaseModel):
    """Options the UI may pass to a training run; anything else is refused."""

    model_config = ConfigDict(extra="forbid")
    skip_patchtst: StrictBool = False
    skip_swinmae: StrictBool = False
    epochs: StrictInt | None = Field(default=None, ge=1, le=10000)


class ScoreOptions(BaseModel):
    """Options the UI may pass to a test (scoring/decision) run."""

    model_config = ConfigDict(extra="forbid")
    stream: str = BOTH  # a registered stream name, or every stream

    @field_validator("stream")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != BOTH and value not in streams.names():
            raise ValueError(f"must be {BOTH} or one of {', '.join(streams.names())}")
        return value


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["train", "test"]
    options: dict[str, Any] = Field(default_factory=dict)


def run_arguments(kind: str, options: dict[str, Any]) -> list[str]:
    """Validated UI options mapped to pipeline flags (never a shell string)."""
    try:
        if kind == "test":
            test = ScoreOptions.model_validate(options)
            return [] if test.stream == BOTH else ["--stream", test.stream]
        train = TrainOptions.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise HTTPException(400, f"options.{where}: {err['msg']}") from exc
    if train.skip_patchtst and train.skip_swinmae:
        raise HTTPException(400, "both streams skipped: nothing to train")
    args: list[str] = []
    for task in streams.tasks():
        if getattr(train, f"skip_{task.name}", False):
            args.append(f"--skip-{task.name}")
        elif train.epochs is not None:
            args += [f"--set-{task.cli_flag}", f"training.epochs={train.epochs}"]
    return args


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log, read from its end (logs can be large)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 64 * 1024, 0))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.replace("\r", "\n").splitlines()[-lines:] if text else []


@dataclass
class RunManager:
    """The one pipeline process the dashboard may run, in its own process group."""

    root: Path
    train_cmd: list[str]
    test_cmd: list[str]
    grace_s: float = 5.0
    _proc: subprocess.Popen[bytes] | None = None
    _info: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log_path(self) -> Path:
        return self.root / RUN_LOG_REL

    def _env(self) -> dict[str, str]:
        """Outputs go to ``root`` while the code is imported from this repository."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", SSL_REPO_ROOT=str(self.root))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def start(self, kind: str, options: dict[str, Any]) -> dict[str, Any]:
        cmd = (self.train_cmd if kind == "train" else self.test_cmd) + run_arguments(kind, options)
        with self._lock:
            self._reap()
            if self._active():
                raise HTTPException(
                    409,
                    f"a {self._info['kind']} run is already running (pid {self._proc.pid}, "
                    f"started {self._info['started_at']}); stop it first",
                )
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("w", encoding="utf-8") as log:
                log.write(f"# {pipeline_status.now_iso()} dashboard {kind} run: ")
                log.write(shlex.join(cmd) + "\n")
                log.flush()
                self._proc = subprocess.Popen(
                    cmd,
                    cwd=self.root,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._info = {
                "kind": kind,
                "pid": self._proc.pid,
                "command": cmd,
                "started_at": pipeline_status.now_iso(),
                "ended_at": None,
                "exit_code": None,
                "stopped_by_user": False,
            }
            return self._snapshot()

    def stop(self, message: str = "stopped by user") -> dict[str, Any]:
        """SIGTERM the whole group, SIGKILL after the grace period, mark the node failed."""
        with self._lock:
            proc = self._proc
            if proc is None or not self._active():
                self._reap()
                raise HTTPException(409, "nothing is running")
            self._info["stopped_by_user"] = True
            for sig, wait_s in ((signal.SIGTERM, self.grace_s), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait_s
                while time.monotonic() < deadline and _group_alive(proc.pid):
                    proc.poll()
                    time.sleep(0.05)
                if not _group_alive(proc.pid):
                    break
            proc.wait(timeout=5)
            self._reap()
            self._log_note(f"{message} (process group {proc.pid} ended)")
            _fail_running_nodes(self.root, message)
            return self._snapshot()

    def _active(self) -> bool:
        """The run's leader, or anything it left behind in its process group, still runs."""
        proc = self._proc
        return proc is not None and (proc.poll() is None or _group_alive(proc.pid))

    def _reap(self) -> None:
        """Record the exit of a finished run once; a crash marks its running node failed."""
        proc = self._proc
        if proc is None or self._info.get("ended_at") or proc.poll() is None:
            return
        self._info["exit_code"] = proc.returncode
        self._info["ended_at"] = pipeline_status.now_iso()
        if not self._info["stopped_by_user"]:
            self._log_note(f"run exited with code {proc.returncode}")
        if proc.returncode != 0 and not self._info["stopped_by_user"]:
            _fail_running_nodes(
                self.root,
                f"run exited with code {proc.returncode}; see {RUN_LOG_REL}",
            )

    def _log_note(self, text: str) -> None:
        """Append the dashboard's own note (stop, exit code) to the run log the page tails."""
        try:
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(f"# {pipeline_status.now_iso()} {text}\n")
        except OSError:
            pass

    def _snapshot(self) -> dict[str, Any]:
        return {"state": "running" if self._active() else "idle", **self._info}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._reap()
            return self._snapshot()

    def is_running(self) -> bool:
        return self.snapshot()["state"] == "running"


def _fail_running_nodes(root: Path, message: str) -> None:
    """Mark the nodes a killed or crashed run left ``running`` as ``fail``."""
    current = pipeline_status.read_status(root)
    if current is None:
        return
    running = [n for n, v in current["nodes"].items() if v.get("status") == "running"]
    if not running and current.get("stage") in pipeline_status.NODE_IDS:
        stage = current["stage"]
        running = [stage] if current["nodes"].get(stage, {}).get("status") != "done" else []
    for node in running:
        if node in pipeline_status.NODE_IDS:
            pipeline_status.set_node(node, "fail", message, root=root)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HTTPException(503, f"{path.name} is unreadable: {exc}") from exc


def _is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token_guard(token: str | None) -> Callable[[Request], None]:
    """Require the token (header or ``?token=``) on every API route when one is set."""

    def guard(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else None
        given = given or request.query_params.get("token")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or invalid token", {"WWW-Authenticate": "Bearer"})

    return guard


class StatusSource:
    """Builds the live status payload: status.json, the run process and the log tail."""

    def __init__(self, root: Path, runner: RunManager) -> None:
        self.root = root
        self.runner = runner

    def _log_file(self, status: dict[str, Any] | None) -> Path | None:
        """The newer of the dashboard run log and the log the pipeline reports."""
        candidates = [self.runner.log_path]
        reported = (status or {}).get("log")
        if isinstance(reported, str) and reported:
            path = (self.root / reported).resolve()
            if path.is_relative_to(self.root.resolve()):
                candidates.append(path)
        existing = [p for p in candidates if p.is_file()]
        return max(existing, key=lambda p: p.stat().st_mtime) if existing else None

    def payload(self) -> dict[str, Any]:
        status = pipeline_status.read_status(self.root)
        log = self._log_file(status)
        return {
            **(status or pipeline_status.empty_status()),
            "has_status": status is not None,
            "process": self.runner.snapshot(),
            "log_file": display_path(log, self.root) if log else None,
            "log_tail": read_log_tail(log) if log else [],
        }


def resolve_live_dir(root: Path, live_dir: str) -> Path:
    """``live_dir`` under the repository root; a path leading out of it is refused."""
    path = (root / live_dir).resolve()
    if not path.is_relative_to(root):
        raise UserError(f"live dir {live_dir!r} is outside the repository root {root}")
    return path


def _age_s(stamp: Any, fallback_mtime: float) -> float:
    """Seconds since an ISO ``updated`` stamp (UTC when it names no zone), else the mtime."""
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return time.time() - fallback_mtime
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return time.time() - when.timestamp()


class LiveStatusFiles:
    """The live scorer's ``<live_dir>/<stream>/status.json`` files, read defensively.

    The scorer may be mid-write (it replaces the file atomically, but a copy or an older
    writer may not), absent, or gone: an unreadable file is skipped, never an error.
    """

    def __init__(self, root: Path, live_dir: Path) -> None:
        self.root = root
        self.dir = live_dir

    def _files(self) -> list[tuple[str, Path]]:
        """(stream, status file) for every stream folder with a safe name inside the dir."""
        try:
            folders = sorted(p for p in self.dir.iterdir() if _STREAM_RE.fullmatch(p.name))
        except OSError:
            return []
        files = [(p.name, p / "status.json") for p in folders]
        return [(name, f) for name, f in files
                if f.is_file() and f.resolve().is_relative_to(self.dir)]

    def signature(self) -> tuple[tuple[str, int, int, bool], ...]:
        """Changes when a file is rewritten, appears or vanishes, or falls silent (stale)."""
        sig = []
        for name, path in self._files():
            try:
                st = path.stat()
            except OSError:
                continue
            silent = time.time() - st.st_mtime > LIVE_STALE_S
            sig.append((name, st.st_mtime_ns, st.st_size, silent))
        return tuple(sig)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            st = path.stat()
            if st.st_size > LIVE_MAX_BYTES:
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        age = _age_s(data.get("updated"), st.st_mtime)
        return {**data, "stale": data.get("state") != "running" or age > LIVE_STALE_S,
                "file": display_path(path, self.root)}

    def payload(self) -> dict[str, Any]:
        streams_ = {name: self._read(path) for name, path in self._files()}
        return {"live_dir": display_path(self.dir, self.root),
                "streams": {k: v for k, v in streams_.items() if v is not None}}


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(
    request: Request, root: Path, source: StatusSource, live: LiveStatusFiles, poll_s: float,
    heartbeat_s: float,
) -> AsyncIterator[str]:
    """Send ``status`` / ``state`` / ``runs`` / ``live`` events when they change, heartbeats
    between. ``live`` carries the whole /api/live payload, so the page needs no request."""
    last: dict[str, Any] = {}
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        current = {
            "status": await asyncio.to_thread(source.payload),
            "state": _file_signature(root / STATE_REL),
            "runs": _file_signature(root / RUNS_REL / "index.json"),
            "live": live.signature(),
        }
        for name, value in current.items():
            if name not in last or last[name] != value:
                last[name] = value
                last_sent = time.monotonic()
                if name == "live":
                    yield _sse(name, await asyncio.to_thread(live.payload))
                else:
                    yield _sse(name, value if name == "status" else {"changed": True})
        if time.monotonic() - last_sent >= heartbeat_s:
            last_sent = time.monotonic()
            yield ": heartbeat\n\n"
        await asyncio.sleep(poll_s)


def create_app(
    repo_root: Path,
    token: str | None = None,
    train_cmd: Sequence[str] | None = None,
    test_cmd: Sequence[str] | None = None,
    upload_limits: UploadLimits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    poll_s: float = 1.0,
    heartbeat_s: float = 15.0,
    stop_grace_s: float = 5.0,
    live_dir: str = LIVE_REL,
) -> FastAPI:
    """The dashboard app for ``repo_root``; run commands and limits are injectable for tests.

    ``train_cmd`` / ``test_cmd`` are argument lists; the validated run options are appended
    as flags. ``allowed_hosts`` restricts the Host header (the CLI sets loopback names on a
    loopback bind, which stops DNS-rebinding pages from reaching the API). ``live_dir`` is
    where the live scorer writes, repository-relative; one outside ``repo_root`` is refused.
    """
    root = Path(repo_root).resolve()
    limits = upload_limits or UploadLimits()
    runner = RunManager(
        root,
        list(train_cmd or default_train_cmd()),
        list(test_cmd or default_test_cmd()),
        grace_s=stop_grace_s,
    )
    source = StatusSource(root, runner)
    live = LiveStatusFiles(root, resolve_live_dir(root, live_dir))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if runner.is_running():
            await run_in_threadpool(runner.stop, "stopped: dashboard server shut down")

    app = FastAPI(title="SSL anomaly training dashboard", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.runner = runner
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def refuse_cross_origin(request: Request, call_next: Callable[..., Any]) -> Any:
        """A browser page from another origin must not post uploads or start runs."""
        origin = request.headers.get("origin")
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and origin and urlsplit(origin).netloc != request.headers.get("host", ""):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        return await call_next(request)

    api = APIRouter(prefix="/api", dependencies=[Depends(_token_guard(token))])

    @api.get("/state")
    def get_state() -> Any:
        state = _read_json(root / STATE_REL)
        return state if state is not None else {"empty": True, "hint": EMPTY_HINT}

    @api.get("/layout")
    def get_layout() -> Any:
        for path in (root / LAYOUT_REL, PACKAGE_DIR / "data" / "dashboard-layout.json"):
            layout = _read_json(path)
            if layout is not None:
                return layout
        raise HTTPException(404, f"{LAYOUT_REL} not found; the page lays out the state's nodes")

    @api.get("/runs")
    def get_runs() -> Any:
        index = _read_json(root / RUNS_REL / "index.json")
        return index if index is not None else {"schema_version": "1.0", "runs": []}

    @api.get("/runs/{run_id}")
    def get_run(run_id: str) -> Any:
        if not _RUN_ID_RE.fullmatch(run_id) or run_id == "index":
            raise HTTPException(400, "invalid run id (use A-Z a-z 0-9 . _ -)")
        snapshot = _read_json(root / RUNS_REL / f"{run_id}.json")
        if snapshot is None:
            raise HTTPException(404, f"unknown run id '{run_id}'")
        return snapshot

    @api.get("/status")
    def get_status() -> Any:
        return source.payload()

    @api.get("/live")
    def get_live() -> Any:
        return live.payload()

    @api.get("/events")
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            event_stream(request, root, source, live, poll_s, heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @api.post("/upload")
    async def upload(request: Request, stream: str, target: str) -> Any:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise HTTPException(411, "uploads need a Content-Length header")
        if int(length) > limits.max_request_bytes:
            raise HTTPException(413, "upload larger than the request size limit")
        # One file over the limit is parsed so the refusal names our limit; more than that
        # and the multipart parser itself stops reading.
        form = await request.form(max_files=limits.max_files + 1, max_fields=8)
        try:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            saved = await run_in_threadpool(
                save_upload,
                [(f.filename or "", f.file) for f in files],
                root,
                stream,
                target,
                limits,
            )
        except UploadRejected as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        finally:
            await form.close()
        return {"saved": [display_path(p, root) for p in saved], "stream": stream,
                "target": target}

    @api.post("/run")
    def start_run(body: RunRequest) -> Any:
        return runner.start(body.kind, body.options)

    @api.post("/stop")
    def stop_run() -> Any:
        return {"process": runner.stop(), "status": source.payload()}

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--repo-root", default=None, help="repository root (default: this repo)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"API token (default ${TOKEN_ENV}); required off loopback")
    parser.add_argument("--live-dir", default=LIVE_REL,
                        help="folder the live scorer (python -m inference.live) writes "
                             "<stream>/status.json into, relative to the repository root; "
                             f"shown on the Live tab (default {LIVE_REL})")
    args = parser.parse_args(argv)
    root = Path(args.repo_root).resolve() if args.repo_root else repo_root()
    loopback = _is_loopback(args.host)
    if not loopback and not args.token:
        raise UserError(
            f"refusing to listen on {args.host} without a token: pass --token or set "
            f"{TOKEN_ENV} (or bind to 127.0.0.1)"
        )
    if args.token and len(args.token) < MIN_TOKEN_LENGTH:
        raise UserError(
            f"token too short (need {MIN_TOKEN_LENGTH}+ characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    import uvicorn

    # Host-header check on IPv4/localhost loopback binds (DNS rebinding); IPv6 Host
    # headers carry brackets that the middleware does not parse, so they are not limited.
    hosts = [*LOOPBACK_HOSTS, args.host] if loopback and ":" not in args.host else None
    app = create_app(root, args.token, allowed_hosts=hosts, live_dir=args.live_dir)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    fragment = f"#token={args.token}" if args.token else ""
    print(f"dashboard: http://{shown_host}:{args.port}/{fragment}  (Ctrl-C stops it)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=3)
    return 0


if __name__ == "__main__":
    run_main(main)
