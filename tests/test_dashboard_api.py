"""API tests for the dashboard server: read routes, uploads (and every refusal), runs,
stop, tokens. Every refusal test also checks that nothing at all was written."""

from __future__ import annotations

import io
import json
import shutil
import stat
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from core.errors import UserError
from core.status import read_status
from pipelines.export_training_dashboard_state import load_schema
from training_dashboard import server as dashboard_server
from training_dashboard.server import create_app, run_arguments
from training_dashboard.uploads import UploadLimits, UploadRejected, sanitize_name

FIXTURES = Path(__file__).parent / "fixtures" / "dashboard"
FAKE = FIXTURES / "fake_pipeline.py"
RUN_ID = "20260223T101500Z"
TOKEN = "test-token-0123456789abcdef"
CSV = b"timestamp,xmeas_1,xmeas_2\n2026-01-01T00:00:00,1.0,2.0\n2026-01-01T00:03:00,1.1,2.1\n"


def populate(root: Path) -> Path:
    """A repository root holding the fixture state and run history."""
    data = root / "training_dashboard" / "data"
    shutil.copytree(FIXTURES / "runs", data / "runs")
    shutil.copy(FIXTURES / "dashboard-state.json", data / "dashboard-state.json")
    shutil.copy(FIXTURES / "dashboard-state.json", data / "runs" / f"{RUN_ID}.json")
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (to prove a refusal wrote nothing)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def dirs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return populate(tmp_path / "repo")


@pytest.fixture
def client(repo: Path) -> Iterator[TestClient]:
    app = create_app(repo, train_cmd=[sys.executable, str(FAKE), "--mode", "quick"],
                     test_cmd=[sys.executable, str(FAKE), "--mode", "record"],
                     upload_limits=UploadLimits(max_files=3, max_file_bytes=64 * 1024,
                                                max_request_bytes=512 * 1024, max_zip_entries=4,
                                                max_zip_total_bytes=128 * 1024),
                     stop_grace_s=2.0)
    with TestClient(app) as c:
        yield c


def npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def upload(client: TestClient, files: list[tuple[str, bytes]], stream: str = "patchtst",
           target: str = "train", **kw) -> object:
    return client.post(f"/api/upload?stream={stream}&target={target}",
                       files=[("files", (name, data)) for name, data in files], **kw)


def wait_until(predicate, timeout: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# --------------------------------------------------------------------------- read routes
def test_state_runs_and_snapshots_are_served(client: TestClient) -> None:
    state = client.get("/api/state").json()
    assert state == json.loads((FIXTURES / "dashboard-state.json").read_text())
    index = client.get("/api/runs").json()
    assert [r["run_id"] for r in index["runs"]] == [RUN_ID, "20260222T163000Z", "20260221T090000Z"]
    snap = client.get("/api/runs/20260222T163000Z").json()
    assert snap["meta"]["run_id"] == "20260222T163000Z"
    assert snap["config"]["patchtst"]["lr"] == 0.0005
    assert client.get("/api/runs/20990101T000000Z").status_code == 404
    for bad in ("index", ".hidden", "a b", "..%2F..%2Fsecrets"):
        assert client.get(f"/api/runs/{bad}").status_code in (400, 404), bad


def test_run_snapshot_route_never_leaves_the_runs_folder(client: TestClient, repo: Path) -> None:
    (repo / "training_dashboard" / "data" / "secret.json").write_text('{"leak": true}')
    for bad in ("..%2Fsecret", "%2E%2E%2Fsecret", "..", "index"):
        r = client.get(f"/api/runs/{bad}")
        assert r.status_code in (400, 404), bad
        assert "leak" not in r.text


def test_empty_state_says_what_to_run(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path)) as c:
        body = c.get("/api/state").json()
        assert body["empty"] is True
        assert "make run" in body["hint"]
        assert "python -m pipelines.run_local_training_pipeline" in body["hint"]
        assert c.get("/api/runs").json() == {"schema_version": "1.0", "runs": []}
        status = c.get("/api/status").json()
        assert status["has_status"] is False and status["process"]["state"] == "idle"
        assert set(status["nodes"]) == {"data_prep", "dqvl", "patchtst_training",
                                        "swinmae_training", "artifact_save", "validation_gate"}


def test_layout_page_and_static_files(client: TestClient) -> None:
    layout = client.get("/api/layout").json()
    assert [n["id"] for n in layout["nodes"]][:2] == ["data_prep", "dqvl"]
    assert len(layout["nodes"]) == 6 and all("x" in n and "y" in n for n in layout["nodes"])
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert "access-control-allow-origin" not in {k.lower() for k in page.headers}


def test_fixture_states_conform_to_the_exporter_schema() -> None:
    validator = Draft202012Validator(load_schema())
    for path in [FIXTURES / "dashboard-state.json", *sorted((FIXTURES / "runs").glob("2*.json"))]:
        errors = [e.message for e in validator.iter_errors(json.loads(path.read_text()))]
        assert errors == [], path.name
    state = json.loads((FIXTURES / "dashboard-state.json").read_text())
    assert state["checklist"] == json.loads((FIXTURES / "checklist.json").read_text())


# --------------------------------------------------------------------------- uploads: accepted
def test_upload_csv_lands_in_the_stream_folder(client: TestClient, repo: Path) -> None:
    r = upload(client, [("fab 1 run.csv", CSV)])
    assert r.status_code == 200, r.text
    assert r.json()["saved"] == ["data/local/train/fdc/fab_1_run.csv"]
    assert (repo / "data/local/train/fdc/fab_1_run.csv").read_bytes() == CSV
    assert not list((repo / "data/local/train").glob(".upload-*"))


def test_upload_parquet_npy_and_flattened_zip(client: TestClient, repo: Path) -> None:
    buf = io.BytesIO()
    pd.DataFrame({"timestamp": [1, 2], "a": [0.1, 0.2]}).to_parquet(buf)
    assert upload(client, [("p.parquet", buf.getvalue())], target="test").status_code == 200
    assert (repo / "data/local/test/fdc/p.parquet").read_bytes() == buf.getvalue()
    vib = npy_bytes(np.zeros((64, 3), dtype=np.float32))
    archive = zip_bytes([("pump/a/x.csv", b"x,y,z\n0,0,1\n"), ("pump/b.npy", vib), ("pump/", b"")])
    r = upload(client, [("v.npy", vib), ("batch.zip", archive)], stream="swinmae")
    assert r.status_code == 200, r.text
    assert sorted(r.json()["saved"]) == ["data/local/train/vib/b.npy", "data/local/train/vib/v.npy",
                                         "data/local/train/vib/x.csv"]
    assert (repo / "data/local/train/vib/b.npy").read_bytes() == vib
    assert sorted(p.name for p in (repo / "data/local/train/vib").iterdir()) == ["b.npy", "v.npy",
                                                                                "x.csv"]


# --------------------------------------------------------------------------- uploads: refused
PICKLED = npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True)
GOOD_NPY = npy_bytes(np.ones((8, 3)))


@pytest.mark.parametrize(
    ("name", "data", "stream", "code", "fragment"),
    [
        ("../../x.csv", CSV, "patchtst", 400, "folders"),
        ("..\\..\\x.csv", CSV, "patchtst", 400, "folders"),
        ("sub\\x.csv", CSV, "patchtst", 400, "folders"),
        ("C:x.csv", CSV, "patchtst", 400, "drive"),
        (".hidden.csv", CSV, "patchtst", 400, "hidden"),
        ("..", CSV, "patchtst", 400, "hidden"),
        ("tool.exe", b"MZ\x90\x00\x03", "patchtst", 415, "not accepted"),
        ("noext", CSV, "patchtst", 415, "not accepted"),
        ("binary.csv", b"a,b\n\x00\x01\x02\x03", "patchtst", 400, "binary"),
        ("latin1.csv", "temp,druck\n1,\xe4\n".encode("latin-1"), "patchtst", 400, "UTF-8"),
        ("one_column.csv", b"12.5\n13.0\n", "patchtst", 400, "header"),
        ("fake.parquet", CSV, "patchtst", 400, "Parquet"),
        ("vib.npy", GOOD_NPY, "patchtst", 415, "not accepted"),
        ("pickled.npy", PICKLED, "swinmae", 400, "pickle"),
        ("truncated.npy", GOOD_NPY[:-20], "swinmae", 400, "truncated"),
        ("text.npy", CSV, "swinmae", 400, "NPY"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_written(
    client: TestClient, repo: Path, name: str, data: bytes, stream: str, code: int, fragment: str
) -> None:
    before, before_dirs = tree(repo.parent), dirs(repo.parent)
    r = upload(client, [("ok.csv", CSV), (name, data)] if stream == "patchtst" else [(name, data)],
               stream=stream)
    assert r.status_code == code, r.text
    assert fragment in r.json()["detail"]
    assert tree(repo.parent) == before
    assert dirs(repo.parent) == before_dirs


def test_absolute_upload_name_is_refused(client: TestClient, repo: Path) -> None:
    outside = repo.parent / "outside" / "x.csv"
    before = tree(repo.parent)
    r = upload(client, [(str(outside), CSV)])
    assert r.status_code == 400
    assert not outside.exists() and tree(repo.parent) == before


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entries", "code", "fragment"),
    [
        ([("ok.csv", CSV), ("../../evil.csv", CSV)], 400, "zip-slip"),
        ([("a/../../evil.csv", CSV)], 400, "zip-slip"),
        ([("/abs/evil.csv", CSV)], 400, "absolute"),
        ([("dir\\evil.csv", CSV)], 400, "Windows"),
        ([(_symlink_info("link.csv"), b"/etc/passwd")], 400, "symbolic link"),
        ([("inner.zip", zip_bytes([("a.csv", CSV)]))], 415, "not accepted"),
        ([("run.exe", b"MZ")], 415, "not accepted"),
        ([(f"f{i}.csv", CSV) for i in range(5)], 413, "entries"),
        ([("a.csv", CSV), ("b/a.csv", CSV)], 400, "twice"),
        ([("big.csv", b"a,b\n" + b"1,2\n" * 30000)], 413, "limit"),
        ([(".hidden.csv", CSV)], 400, "hidden"),
        ([("__MACOSX/._x.csv", b"\x00\x05")], 400, "no data files"),
    ],
)
def test_bad_archives_are_refused_and_nothing_is_written(
    client: TestClient, repo: Path, entries: list, code: int, fragment: str
) -> None:
    before, before_dirs = tree(repo.parent), dirs(repo.parent)
    r = upload(client, [("batch.zip", zip_bytes(entries))])
    assert r.status_code == code, r.text
    assert fragment in r.json()["detail"]
    assert tree(repo.parent) == before
    assert dirs(repo.parent) == before_dirs


def test_zip_bomb_is_refused_by_declared_size(client: TestClient, repo: Path) -> None:
    bomb = zip_bytes([(f"z{i}.csv", b"a,b\n" + b"0" * 60_000) for i in range(3)])
    assert len(bomb) < 4096  # tiny on the wire, 180 KB unpacked (limit 128 KB)
    before = tree(repo.parent)
    r = upload(client, [("bomb.zip", bomb)])
    assert r.status_code == 413 and "unpacks to" in r.json()["detail"]
    assert tree(repo.parent) == before


def test_limits_on_file_size_count_and_request(client: TestClient, repo: Path) -> None:
    before = tree(repo.parent)
    big = b"a,b\n" + b"1,2\n" * 20000  # 80 KB > 64 KB per file
    r = upload(client, [("big.csv", big)])
    assert r.status_code == 413 and "size limit" in r.json()["detail"]
    r = upload(client, [(f"f{i}.csv", CSV) for i in range(4)])
    assert r.status_code == 413 and "more than the limit of 3" in r.json()["detail"]
    r = upload(client, [("huge.csv", b"a,b\n" + b"1,2\n" * 140_000)])
    assert r.status_code == 413 and "request size limit" in r.json()["detail"]
    r = upload(client, [])
    assert r.status_code == 400
    assert tree(repo.parent) == before


def test_existing_files_are_never_overwritten(client: TestClient, repo: Path) -> None:
    assert upload(client, [("run.csv", CSV)]).status_code == 200
    before = tree(repo.parent)
    r = upload(client, [("new.csv", CSV), ("run.csv", b"a,b\n9,9\n")])
    assert r.status_code == 409 and "run.csv" in r.json()["detail"]
    assert tree(repo.parent) == before
    assert (repo / "data/local/train/fdc/run.csv").read_bytes() == CSV


def test_duplicate_names_and_bad_stream_or_target(client: TestClient, repo: Path) -> None:
    before = tree(repo.parent)
    assert upload(client, [("a.csv", CSV), ("a.csv", CSV)]).status_code == 400
    r = upload(client, [("a.csv", CSV)], stream="../../etc")
    assert r.status_code == 400 and "unknown stream" in r.json()["detail"]
    r = upload(client, [("a.csv", CSV)], target="..")
    assert r.status_code == 400 and "unknown target" in r.json()["detail"]
    assert tree(repo.parent) == before


def test_sanitize_name_rules() -> None:
    assert sanitize_name("run 1 (copy).csv") == "run_1_copy_.csv"
    assert sanitize_name("Tag-ä.csv") == "Tag-_.csv"
    for bad in ("", "a/b.csv", "C:\\x.csv", "C:x.csv", ".env", "x\x00.csv", "y" * 130 + ".csv"):
        with pytest.raises(UploadRejected):
            sanitize_name(bad)


# --------------------------------------------------------------------------- security
def test_token_is_required_on_every_api_route(repo: Path) -> None:
    with TestClient(create_app(repo, token=TOKEN)) as c:
        before = tree(repo)
        for method, path in [("get", "/api/state"), ("get", "/api/runs"),
                             ("get", f"/api/runs/{RUN_ID}"), ("get", "/api/status"),
                             ("get", "/api/layout"), ("get", "/api/events"),
                             ("post", "/api/stop")]:
            assert getattr(c, method)(path).status_code == 401, path
            bad = {"Authorization": "Bearer wrong-token-0123456789"}
            assert getattr(c, method)(path, headers=bad).status_code == 401, path
        r = c.post("/api/run", json={"kind": "train"})
        assert r.status_code == 401
        r = upload(c, [("a.csv", CSV)])
        assert r.status_code == 401 and r.json()["detail"] == "missing or invalid token"
        assert tree(repo) == before
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/api/state", headers=good).json()["meta"]["run_id"] == RUN_ID
        assert c.get(f"/api/state?token={TOKEN}").status_code == 200
        assert upload(c, [("a.csv", CSV)], headers=good).status_code == 200
        assert c.get("/").status_code == 200  # the page itself is public; it sends the token


def test_cross_origin_posts_and_foreign_hosts_are_refused(repo: Path) -> None:
    app = create_app(repo, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        before = tree(repo)
        r = upload(c, [("a.csv", CSV)], headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post("/api/run", json={"kind": "train"}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        assert c.get("/api/state", headers={"Host": "evil.example"}).status_code == 400
        assert tree(repo) == before
        same = {"Origin": "http://127.0.0.1:8765"}
        assert upload(c, [("a.csv", CSV)], headers=same).status_code == 200


def test_cli_refuses_public_bind_without_a_strong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dashboard_server.TOKEN_ENV, raising=False)
    with pytest.raises(UserError, match="without a token"):
        dashboard_server.main(["--host", "0.0.0.0", "--port", "1"])
    with pytest.raises(UserError, match="too short"):
        dashboard_server.main(["--host", "0.0.0.0", "--port", "1", "--token", "short"])
    monkeypatch.setenv(dashboard_server.TOKEN_ENV, "short2")
    with pytest.raises(UserError, match="too short"):
        dashboard_server.main(["--host", "192.168.1.5", "--port", "1"])
    assert dashboard_server._is_loopback("127.0.0.1") and dashboard_server._is_loopback("::1")
    assert dashboard_server._is_loopback("localhost")
    assert not dashboard_server._is_loopback("0.0.0.0")
    assert not dashboard_server._is_loopback("10.0.0.1")


# --------------------------------------------------------------------------- runs
def _argv(repo: Path) -> dict:
    return json.loads((repo / "artifacts/pipeline/fake_argv.json").read_text())


def _wait_idle(client: TestClient) -> dict:
    wait_until(lambda: client.get("/api/status").json()["process"]["state"] == "idle")
    return client.get("/api/status").json()


def test_training_run_maps_options_to_flags_and_finishes(client: TestClient, repo: Path) -> None:
    r = client.post("/api/run", json={"kind": "train",
                                      "options": {"skip_swinmae": True, "epochs": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "running" and r.json()["kind"] == "train"
    status = _wait_idle(client)
    assert status["process"]["exit_code"] == 0
    assert _argv(repo)["extra"] == ["--set-patch", "training.epochs=2", "--skip-swinmae"]
    assert all(n["status"] == "done" for n in status["nodes"].values())
    assert status["run_id"] == "fake-quick"
    assert status["log_file"] == "artifacts/pipeline/logs/dashboard_run.log"
    assert "fake pipeline done" in status["log_tail"]
    assert status["log_tail"][0].startswith("# ") and "dashboard train run" in status["log_tail"][0]
    assert client.get("/api/state").json()["meta"]["run_id"] == "fake-quick"


def test_test_run_passes_the_stream(client: TestClient, repo: Path) -> None:
    assert client.post("/api/run", json={"kind": "test", "options": {"stream": "swinmae"}}).json()
    _wait_idle(client)
    assert _argv(repo)["extra"] == ["--stream", "swinmae"]
    assert client.post("/api/run", json={"kind": "test"}).status_code == 200
    _wait_idle(client)
    assert _argv(repo)["extra"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "train", "options": {"epochs": 0}}, 400),
        ({"kind": "train", "options": {"epochs": "3; rm -rf /"}}, 400),
        ({"kind": "train", "options": {"epochs": 2.5}}, 400),
        ({"kind": "train", "options": {"skip_patchtst": "yes"}}, 400),
        ({"kind": "train", "options": {"extra_args": ["--evil"]}}, 400),
        ({"kind": "train", "options": {"skip_patchtst": True, "skip_swinmae": True}}, 400),
        ({"kind": "test", "options": {"stream": "all; reboot"}}, 400),
        ({"kind": "shell", "options": {}}, 422),
        ({"kind": "train", "cmd": "sh"}, 422),
    ],
)
def test_bad_run_requests_start_nothing(client: TestClient, repo: Path, body: dict,
                                        code: int) -> None:
    r = client.post("/api/run", json=body)
    assert r.status_code == code, r.text
    assert client.get("/api/status").json()["process"]["state"] == "idle"
    assert not (repo / "artifacts/pipeline/fake_argv.json").exists()


def test_one_run_at_a_time_and_stop_kills_the_process_group(repo: Path) -> None:
    app = create_app(repo, train_cmd=[sys.executable, str(FAKE), "--mode", "long"],
                     stop_grace_s=2.0)
    with TestClient(app) as c:
        first = c.post("/api/run", json={"kind": "train"}).json()
        pid_file = repo / "artifacts/pipeline/fake_child.pid"
        wait_until(pid_file.exists)
        child = int(pid_file.read_text())
        second = c.post("/api/run", json={"kind": "test"})
        assert second.status_code == 409
        assert "already running" in second.json()["detail"] and str(first["pid"]) in \
            second.json()["detail"]
        assert alive(first["pid"]) and alive(child)
        r = c.post("/api/stop")
        assert r.status_code == 200
        body = r.json()
        assert body["process"]["state"] == "idle" and body["process"]["stopped_by_user"]
        assert not alive(first["pid"]) and not alive(child)
        assert not dashboard_server._group_alive(first["pid"])
        node = body["status"]["nodes"]["patchtst_training"]
        assert node["status"] == "fail" and node["message"] == "stopped by user"
        assert read_status(repo)["nodes"]["patchtst_training"]["message"] == "stopped by user"
        again = c.post("/api/stop")
        assert again.status_code == 409 and again.json()["detail"] == "nothing is running"


def test_processes_left_behind_by_a_run_count_as_running(repo: Path) -> None:
    app = create_app(repo, train_cmd=[sys.executable, str(FAKE), "--mode", "orphan"],
                     stop_grace_s=2.0)
    with TestClient(app) as c:
        leader = c.post("/api/run", json={"kind": "train"}).json()["pid"]
        pid_file = repo / "artifacts/pipeline/fake_child.pid"
        wait_until(lambda: pid_file.exists() and not alive(leader))
        child = int(pid_file.read_text())
        process = c.get("/api/status").json()["process"]
        assert process["exit_code"] == 0 and process["state"] == "running" and alive(child)
        assert c.post("/api/run", json={"kind": "train"}).status_code == 409
        assert c.post("/api/stop").json()["process"]["state"] == "idle"
        assert not alive(child)


def test_run_flags_are_accepted_by_the_real_pipelines(capsys: pytest.CaptureFixture) -> None:
    from pipelines import run_local_test_pipeline, run_local_training_pipeline

    parser = run_local_training_pipeline.build_parser()
    args = parser.parse_args(run_arguments("train", {"skip_swinmae": True, "epochs": 4}))
    assert args.skip_swinmae and not args.skip_patchtst
    assert args.set_patch == ["training.epochs=4"] and args.set_swin == []
    args = parser.parse_args(run_arguments("train", {"epochs": 2}))
    assert args.set_patch == args.set_swin == ["training.epochs=2"]
    for stream in ("patchtst", "swinmae", "both"):
        with pytest.raises(SystemExit) as exc:  # --help exits 0 only after valid earlier flags
            run_local_test_pipeline.main([*run_arguments("test", {"stream": stream}), "--help"])
        assert exc.value.code == 0
    assert "--stream" in capsys.readouterr().out


def test_stop_with_nothing_running(client: TestClient) -> None:
    r = client.post("/api/stop")
    assert r.status_code == 409 and r.json()["detail"] == "nothing is running"


def test_crashed_run_marks_its_running_node_failed(repo: Path) -> None:
    app = create_app(repo, train_cmd=[sys.executable, str(FAKE), "--mode", "crash"])
    with TestClient(app) as c:
        assert c.post("/api/run", json={"kind": "train"}).status_code == 200
        status = _wait_idle(c)
        assert status["process"]["exit_code"] == 3 and not status["process"]["stopped_by_user"]
        dqvl = status["nodes"]["dqvl"]
        assert dqvl["status"] == "fail" and "exited with code 3" in dqvl["message"]
        assert "fake pipeline: simulated failure" in status["log_tail"]


def test_log_tail_is_the_last_50_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(500)))
    tail = dashboard_server.read_log_tail(log)
    assert tail == [f"line {i}" for i in range(450, 500)]
    assert dashboard_server.read_log_tail(tmp_path / "missing.log") == []
