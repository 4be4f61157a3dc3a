"""The dashboard's Live tab: /api/live over the live scorer's status files, the ``live``
server-sent event, and the page following a stream into an alarm without reloading.

The status documents are built here from the format documented in
``inference/live/__init__.py`` (what ``python -m inference.live`` writes), with the
thresholds and 52 FDC channels of the local configs.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from core.errors import UserError
from tests import test_dashboard_browser as browser_tests
from tests.test_dashboard_api import populate
from tests.test_dashboard_browser import VIEWPORT, eventually, open_page, serve
from training_dashboard import server as dashboard_server
from training_dashboard.server import create_app

browser = browser_tests.browser  # the fixtures of the other browser tests, shared
shots = browser_tests.shots

CHANNELS = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]
AXES = ["x", "y", "z"]
THRESHOLDS = {"clear": 0.8, "warn": 1.0, "anomaly": 1.5}
T0 = datetime(2026, 3, 2, 6, 0)
STEP = timedelta(minutes=3)  # one FDC window end per stride of rows
VIB_STRIDE = 2048  # vibration has no time stamps: stamps are sample numbers
RECENT = 120


# --------------------------------------------------------------------------- documents
def now_iso(ago_s: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat(timespec="milliseconds")


def level(score: float) -> str:
    return ("anomaly" if score >= THRESHOLDS["anomaly"]
            else "warn" if score >= THRESHOLDS["warn"] else "normal")


def fdc_end(window: int) -> str:
    return (T0 + window * STEP).isoformat(timespec="milliseconds")


def vib_end(window: int) -> int:
    return (window + 1) * VIB_STRIDE


def normal_scores(n: int, base: float = 0.45) -> list[float]:
    """Deterministic scores well under the clear threshold."""
    return [round(base + 0.12 * math.sin(i / 3.0) + 0.05 * math.cos(i * 1.7), 4)
            for i in range(n)]


def contributors(top: dict[str, float], parts: list[str]) -> dict[str, float]:
    """Every part's mean error, the faulty ones given, largest first (as the scorer sorts)."""
    errors = {p: round(0.3 + 0.01 * (i % 7), 4) for i, p in enumerate(parts)} | top
    return dict(sorted(errors.items(), key=lambda kv: -kv[1]))


def process_event(event_id: int, lvl: str, start_w: int, raised_w: int, end_w: int,
                  peak: float, top: dict[str, float]) -> dict[str, Any]:
    """An open EventRecord (inference.decisions) on the FDC stream."""
    return {"id": event_id, "level": lvl, "start": fdc_end(start_w),
            "raised_at": fdc_end(raised_w), "end": fdc_end(end_w), "start_window": start_w,
            "raised_window": raised_w, "end_window": end_w, "n_windows": end_w - start_w + 1,
            "duration_s": (end_w - start_w) * STEP.total_seconds(), "peak_score": peak,
            "peak_window": end_w, "open": True, "contributors": contributors(top, CHANNELS),
            "bands": None}


def event_line(kind: str, transition: str, event: dict[str, Any]) -> dict[str, Any]:
    """One events.jsonl line."""
    return {"kind": kind, "transition": transition, "stream": "patchtst", "written": now_iso(),
            "event": event}


def status_doc(scores: list[float], *, stream: str = "patchtst", title: str = "FDC",
               part_kind: str = "channel", end: Callable[[int], Any] = fdc_end,
               open_events: list[dict[str, Any]] | None = None,
               open_dq: list[dict[str, Any]] | None = None,
               recent_events: list[dict[str, Any]] | None = None,
               state: str = "running", updated: str | None = None) -> dict[str, Any]:
    """A status.json as the live scorer writes it, its windows scored ``scores``."""
    recent = [{"window": w, "end": end(w), "score": s, "level": level(s)}
              for w, s in enumerate(scores)][-RECENT:]
    events = open_events or []
    current = max((e["level"] for e in events), key=["warn", "anomaly"].index, default="normal")
    return {
        "schema_version": "1.0", "stream": stream, "title": title, "part_kind": part_kind,
        "updated": updated or now_iso(), "state": state,
        "source": {"kind": "replay", "detail": f"data/local/test/{stream}/line_3.csv x60",
                   "connected": True},
        "checkpoint": f"artifacts/models/{stream}/best.pt", "thresholds": THRESHOLDS,
        "rows": len(scores) * 10 + 90, "windows": len(scores), "level": current,
        "last": recent[-1] if recent else None, "recent": recent, "open_events": events,
        "open_dq": open_dq or [], "recent_events": recent_events or [],
    }


def vibration_doc() -> dict[str, Any]:
    return status_doc(normal_scores(300, base=0.35), stream="swinmae", title="vibration",
                      part_kind="axis", end=vib_end)


FAULT_TOP = {"xmeas_9": 4.83, "xmv_10": 3.12, "xmeas_21": 2.2}
FLATLINE = {"id": "dq-1", "check": "flatline", "channels": ["xmeas_7", "xmeas_8"],
            "detail": "xmeas_7, xmeas_8 constant for 120 rows", "start": fdc_end(141),
            "end": fdc_end(149), "open": True}


def fdc_steps() -> list[dict[str, Any]]:
    """The FDC stream from normal operation into a warn event escalating to anomaly."""
    normal = normal_scores(130)
    warn_scores = normal + [0.9, 1.12, 1.2, 1.31, 1.28, 1.35]
    warn = process_event(1, "warn", 131, 132, 135, 1.35, {"xmeas_9": 1.9, "xmv_10": 1.4})
    fault_scores = warn_scores + [1.62, 1.9, 2.3, 2.45, 2.38, 2.6, 2.52, 2.7, 2.66, 2.81]
    anomaly = process_event(1, "anomaly", 131, 132, 145, 2.81, FAULT_TOP)
    raised = event_line("process", "raised", warn)
    return [
        status_doc(normal),
        status_doc(warn_scores, open_events=[warn], recent_events=[raised]),
        status_doc(fault_scores, open_events=[anomaly], open_dq=[FLATLINE], recent_events=[
            raised, event_line("data_quality", "raised", FLATLINE),
            event_line("process", "escalated", anomaly)]),
    ]


def write_status(root: Path, stream: str, doc: dict[str, Any]) -> Path:
    """Atomically, as the scorer does: a reader never sees half a file."""
    path = root / "artifacts" / "live" / stream / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- API
@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path)) as c:
        yield c


def test_no_live_folder_means_no_streams(client: TestClient) -> None:
    r = client.get("/api/live")
    assert r.status_code == 200
    assert r.json() == {"live_dir": "artifacts/live", "streams": {}}


def test_both_streams_with_their_stale_flags(tmp_path: Path, client: TestClient) -> None:
    fdc = fdc_steps()[-1]
    write_status(tmp_path, "patchtst", fdc)
    write_status(tmp_path, "swinmae", vibration_doc() | {"updated": now_iso(ago_s=60)})
    streams = client.get("/api/live").json()["streams"]
    assert sorted(streams) == ["patchtst", "swinmae"]
    assert streams["patchtst"]["stale"] is False
    assert streams["patchtst"]["file"] == "artifacts/live/patchtst/status.json"
    assert streams["patchtst"]["open_events"][0]["contributors"] == fdc["open_events"][0][
        "contributors"]
    assert streams["swinmae"]["stale"] is True  # running, but silent for a minute


@pytest.mark.parametrize(("state", "ago_s", "stale"), [
    ("running", 1, False), ("running", 30, True), ("finished", 0, True), ("waiting", 0, True),
])
def test_stale_means_silent_or_not_running(tmp_path: Path, client: TestClient, state: str,
                                           ago_s: float, stale: bool) -> None:
    write_status(tmp_path, "patchtst", status_doc(normal_scores(10), state=state,
                                                  updated=now_iso(ago_s)))
    assert client.get("/api/live").json()["streams"]["patchtst"]["stale"] is stale


def test_unreadable_status_files_are_skipped(tmp_path: Path, client: TestClient) -> None:
    write_status(tmp_path, "patchtst", status_doc(normal_scores(10)))
    live = tmp_path / "artifacts" / "live"
    (live / "swinmae").mkdir()
    (live / "swinmae" / "status.json").write_text('{"stream": "swinmae", "recent": [{"win')
    (live / "listed").mkdir()
    (live / "listed" / "status.json").write_text("[1, 2]")  # JSON, but not a status
    (live / "bad name").mkdir()  # not a stream name: never read
    write_status(tmp_path, "bad name", status_doc([0.5]))
    (live / "empty").mkdir()  # a stream folder before its first status
    r = client.get("/api/live")
    assert r.status_code == 200
    assert list(r.json()["streams"]) == ["patchtst"]


@pytest.mark.parametrize("live_dir", ["../elsewhere", "artifacts/../../x", "/tmp"])
def test_a_live_dir_outside_the_repository_is_refused(tmp_path: Path, live_dir: str) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    with pytest.raises(UserError, match="outside the repository"):
        create_app(root, live_dir=live_dir)


def test_cli_live_dir_flag(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="outside the repository"):
        dashboard_server.main(["--repo-root", str(tmp_path), "--live-dir", "../up"])
    write_status(tmp_path, "patchtst", status_doc([0.5]))
    (tmp_path / "live2" / "patchtst").mkdir(parents=True)
    (tmp_path / "artifacts/live/patchtst/status.json").rename(
        tmp_path / "live2/patchtst/status.json")
    with TestClient(create_app(tmp_path, live_dir="live2")) as c:
        body = c.get("/api/live").json()
    assert body["live_dir"] == "live2"
    assert body["streams"]["patchtst"]["file"] == "live2/patchtst/status.json"


def test_events_stream_pushes_live_changes(tmp_path: Path) -> None:
    with serve(tmp_path, heartbeat_s=0.5) as url, httpx.stream(
        "GET", f"{url}/api/events", timeout=10
    ) as r:
        payloads: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20  # heartbeats keep the read alive: bound the wait here
        lines = r.iter_lines()
        for line in lines:
            assert time.monotonic() < deadline, f"live events seen: {payloads}"
            if line != "event: live":
                continue
            payloads.append(json.loads(next(lines).removeprefix("data: ")))
            if len(payloads) == 1:  # recorded "no streams": a new file must be announced
                write_status(tmp_path, "patchtst", fdc_steps()[-1])
            elif "patchtst" in payloads[-1]["streams"]:
                break
        assert payloads[0] == {"live_dir": "artifacts/live", "streams": {}}
        fdc = payloads[-1]["streams"]["patchtst"]
        assert fdc["level"] == "anomaly" and fdc["stale"] is False


# --------------------------------------------------------------------------- browser
class Scorer(threading.Thread):
    """Rewrites both status files every 0.25 s like a running scorer; ``step`` picks the
    FDC document, so the test moves the plant on and waits for the page to follow."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.step = 0
        self.steps = fdc_steps()
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            doc = self.steps[self.step]
            write_status(self.root, "patchtst", doc | {"updated": now_iso()})
            write_status(self.root, "swinmae", vibration_doc())
            if self.stopped.wait(0.25):
                return


def chip(page: Page, stream: str):  # noqa: ANN201 - a Playwright locator
    return page.locator(f"#monitor .monitor-card[data-stream='{stream}'] .level-chip")


def test_live_tab_follows_a_stream_into_an_alarm_without_reload(
    browser: Browser, tmp_path: Path, shots  # noqa: ANN001
) -> None:
    root = populate(tmp_path)
    with serve(root) as url, open_page(browser, url) as page:
        navigations: list[str] = []
        page.on("framenavigated", lambda f: navigations.append(f.url))
        load_id = page.evaluate("window.__dashboardLoadId")
        page.click("button[data-tab='live']")
        hint = page.locator("#monitor-empty")
        expect(hint).to_be_visible()
        expect(hint).to_contain_text("No live scorer is writing to artifacts/live")
        expect(hint).to_contain_text("python -m inference.live --config configs/live_local.yaml")
        shots(page, "live_empty")
        scorer = Scorer(root)
        scorer.start()
        try:
            fdc = page.locator("#monitor .monitor-card[data-stream='patchtst']")
            expect(chip(page, "patchtst")).to_have_text("normal")
            expect(chip(page, "swinmae")).to_have_text("normal")
            expect(hint).to_be_hidden()
            expect(fdc.locator("circle.point")).to_have_count(RECENT)
            expect(fdc.locator("line.hline")).to_have_count(2)  # warn and anomaly
            expect(fdc.locator("table.open-events")).to_contain_text("No open events.")
            expect(page.locator(".monitor-card[data-stream='swinmae'] .chart")).to_contain_text(
                "window")  # sample-number stamps: a window axis
            scorer.step = 1
            expect(chip(page, "patchtst")).to_have_text("warn")
            expect(fdc.locator("table.open-events tr[data-event='1'] .pill")).to_have_text("warn")
            scorer.step = 2
            expect(chip(page, "patchtst")).to_have_text("anomaly")
            expect(fdc).to_have_class("card monitor-card level-anomaly")
            row = fdc.locator("table.open-events tr[data-event='1']")
            expect(row.locator(".pill")).to_have_text("anomaly")
            expect(row.locator(".contributors .chip").first).to_have_attribute(
                "data-name", "xmeas_9")
            expect(row.locator(".contributors .chip").first).to_have_text("xmeas_9 4.83")
            expect(row).to_contain_text("42 min")  # windows 131..145, 3 min apart
            dq = fdc.locator("table.dq-events tr[data-dq='dq-1']")
            expect(dq).to_contain_text("flatline")
            expect(dq).to_contain_text("xmeas_7, xmeas_8")
            expect(fdc.locator("table.open-events")).not_to_contain_text("flatline")
            expect(fdc.locator(".recent-item").first).to_contain_text("escalated")
            expect(fdc.locator("rect.event-span.level-anomaly")).to_have_count(1)
            expect(page.locator(".tabs button[data-tab='live']")).to_have_attribute(
                "data-level", "anomaly")
            expect(chip(page, "swinmae")).to_have_text("normal")
            expect(fdc.locator(".stale-hint")).to_have_count(0)
            assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
            shots(page, "live_alarm")
        finally:
            scorer.stopped.set()
            scorer.join(5)
        write_status(root, "patchtst", scorer.steps[2] | {"state": "stopped"})
        expect(fdc.locator(".stale-hint")).to_have_text("scorer stopped")
        expect(fdc).to_have_class("card monitor-card level-anomaly stale")
        shots(page, "live_stopped")
        assert page.evaluate("window.__dashboardLoadId") == load_id
        assert navigations == []


def test_opening_the_tab_loads_the_streams(browser: Browser, tmp_path: Path) -> None:
    """With the event stream refused, the tab still shows the streams: it loads /api/live."""
    root = populate(tmp_path)
    write_status(root, "patchtst", fdc_steps()[-1])
    with serve(root) as url:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.route("**/api/events", lambda route: route.abort())
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            assert not any(u.endswith("/api/live") for u in fetched)
            page.click("button[data-tab='live']")
            expect(chip(page, "patchtst")).to_have_text("anomaly")
            eventually(lambda: fetched, lambda f: any(u.endswith("/api/live") for u in f),
                       "the tab to fetch /api/live")
        finally:
            context.close()
