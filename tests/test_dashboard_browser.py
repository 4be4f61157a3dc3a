"""The dashboard page in a real browser (Debian's Chromium through Playwright) at 1280x800.

Each test starts the server on a free loopback port against a temporary repository root
filled from tests/fixtures/dashboard. Screenshots go to $SSL_TEST_SCREENSHOTS when set
(e.g. artifacts/test_screenshots, which is git-ignored), else to the test's tmp_path.

The page redraws itself from server-sent events (the whole graph is rebuilt on a visible
status change), so tests never sleep or read a value once: they wait, with a bounded
timeout, for the state they expect (Playwright's expect, page.wait_for_function, or
`eventually` for what Playwright cannot wait on, such as a box position or a file).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.test_dashboard_api import RUN_ID, populate
from training_dashboard.server import _group_alive, create_app

FIXTURES = Path(__file__).parent / "fixtures" / "dashboard"
FAKE = FIXTURES / "fake_pipeline.py"
TOKEN = "browser-token-0123456789abcdef"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
T = TypeVar("T")


def eventually(read: Callable[[], T], check: Callable[[T], bool], what: str,
               timeout_s: float = 10.0) -> T:
    """Poll ``read()`` until ``check`` accepts its value; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}; last: {value!r}"
        time.sleep(0.05)


@contextmanager
def serve(root: Path, **kwargs: object) -> Iterator[str]:
    """The dashboard app under uvicorn in a thread; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(root, poll_s=0.25, **kwargs)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), bool, "the server to start")
    assert thread.is_alive(), "server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Looked up like scripts/ensure_chromium.sh (`make browser`, run by `make test`) does.
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(executable, os.X_OK):
        pytest.fail("Chromium is not installed: run `make browser` (as root it installs it) "
                    "or `sudo apt-get install -y chromium`")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], Path]:
    folder = Path(os.environ.get("SSL_TEST_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
        return path

    return take


@contextmanager
def open_page(browser: Browser, url: str, without_layout: bool = False) -> Iterator[Page]:
    """A 1280x800 page that fails the test on any script error."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if without_layout:
        page.route("**/api/layout", lambda route: route.fulfill(status=404, body="{}"))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (``Z`` for a zombie), None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def node(page: Page, node_id: str):  # noqa: ANN201 - a Playwright locator
    return page.locator(f"#graph g.node[data-id='{node_id}']")


def box_when(locator: Locator, check: Callable[[dict], bool], what: str) -> dict:
    """The locator's bounding box once ``check`` accepts it (None while a redraw detaches it)."""
    return eventually(locator.bounding_box, lambda b: b is not None and check(b), what)


def box(locator: Locator) -> dict:
    return box_when(locator, lambda _: True, "a bounding box")


def assert_nodes_laid_out(page: Page) -> None:
    """Every node lies inside the graph panel and no two nodes overlap."""
    ids = [n["id"] for n in json.loads((FIXTURES / "dashboard-state.json").read_text())["nodes"]]
    expect(page.locator("#graph g.node")).to_have_count(len(ids))
    boxes = [box(node(page, i)) for i in ids]
    panel = box(page.locator("#graph"))
    for i, a in enumerate(boxes):
        assert panel["x"] <= a["x"] and a["x"] + a["width"] <= panel["x"] + panel["width"]
        assert panel["y"] <= a["y"] and a["y"] + a["height"] <= panel["y"] + panel["height"]
        for b in boxes[i + 1:]:
            assert (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                    or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


# --------------------------------------------------------------------------- read-only views
def test_training_view_shows_graph_checklist_and_losses(browser: Browser, tmp_path: Path,
                                                        shots) -> None:  # noqa: ANN001
    checklist = json.loads((FIXTURES / "checklist.json").read_text())
    with serve(populate(tmp_path)) as url, open_page(browser, url) as page:
        expect(page.locator("#run-id")).to_have_text(RUN_ID)
        expect(page.locator("#verdict")).to_contain_text("6/7")
        expect(page.locator("#verdict")).to_have_class("verdict bad")
        expect(page.locator("#graph g.node")).to_have_count(6)
        expect(page.locator("#graph path.edge")).to_have_count(6)
        expect(node(page, "validation_gate")).to_have_attribute("data-status", "done")
        items = page.locator("#checklist li")
        expect(items).to_have_count(7)
        for i, item in enumerate(checklist["items"]):
            li = items.nth(i)
            expect(li.locator(".badge")).to_have_text(item["status"], use_inner_text=True)
            expect(li.locator(".check-title")).to_have_text(
                f"{item['id']}. {item['title']}", use_inner_text=True)
            expect(li).to_have_attribute("data-key", item["key"])
        expect(page.locator("#checklist li.FAIL .check-hint")).to_contain_text("make_bundle")
        gate = page.locator("#decision-gate")
        expect(gate.locator("h3")).to_have_text("Decision quality", use_inner_text=False)
        expect(gate.locator(".gate-item")).to_have_attribute("data-status", "PASS")
        expect(gate).to_contain_text("2/2 normal files without alarm events")
        assert page.locator("#checklist").evaluate("l => l.scrollHeight <= l.clientHeight + 1"), \
            "the seven checks and the decision gate must fit the panel without scrolling"
        for stream in ("patchtst", "swinmae"):
            chart = page.locator(f"#loss-{stream}")
            expect(chart.locator("path.series.train")).to_have_count(1)
            expect(chart.locator("path.series.val")).to_have_count(1)
            expect(chart.locator("text").nth(8)).to_be_attached()  # > 8 tick labels and axis names
            expect(page.locator(f"#config-{stream}")).to_contain_text("mask_ratio")
        expect(page.locator("#config-patchtst")).to_contain_text("lr 0.001")
        expect(page.locator("#artifacts-score")).to_have_text("16/17 ready")
        expect(page.locator("#artifacts tbody tr").first).to_contain_text("missing")
        expect(page.locator("#artifacts")).to_contain_text("119 MB")
        assert_nodes_laid_out(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
        node(page, "swinmae_training").click()
        expect(page.locator("#node-info")).to_contain_text("30 epochs, best val 0.01364")
        shots(page, "training_view")


def test_a_loss_that_does_not_fall_is_flagged(browser: Browser, tmp_path: Path) -> None:
    root = populate(tmp_path)
    state_path = root / "training_dashboard" / "data" / "dashboard-state.json"
    state = json.loads(state_path.read_text())
    rows = state["loss"]["patchtst"]
    for i, row in enumerate(rows):  # a training loss that rises epoch by epoch
        row["train_loss"] = 5.5e3 + 100.0 * i
    state_path.write_text(json.dumps(state))
    with serve(root) as url, open_page(browser, url) as page:
        expect(page.locator("#config-patchtst .chip-fail")).to_have_text("loss not falling")
        expect(page.locator("#config-swinmae .chip-fail")).to_have_count(0)


def test_graph_filter_drag_pan_and_zoom(browser: Browser, tmp_path: Path) -> None:
    with serve(populate(tmp_path)) as url, open_page(browser, url) as page:
        page.locator("#type-filter input[data-type='training']").uncheck()
        expect(page.locator("#graph g.node")).to_have_count(4)
        expect(page.locator("#graph path.edge")).to_have_count(2)
        page.locator("#type-filter input[data-type='training']").check()
        expect(page.locator("#graph g.node")).to_have_count(6)
        expect(page.locator("#graph path.edge")).to_have_count(6)
        gate = node(page, "validation_gate")
        before = box(gate)
        page.mouse.move(before["x"] + 30, before["y"] + 20)
        page.mouse.down()
        page.mouse.move(before["x"] + 10, before["y"] + 60, steps=5)
        page.mouse.up()
        box_when(gate, lambda b: b["y"] - before["y"] == pytest.approx(40, abs=2),
                 "the dragged node to move 40 px down")
        dqvl_node = node(page, "dqvl")
        dqvl = box(dqvl_node)
        graph = box(page.locator("#graph"))
        page.mouse.move(graph["x"] + 8, graph["y"] + graph["height"] - 30)  # empty background
        page.mouse.down()
        page.mouse.move(graph["x"] + 58, graph["y"] + graph["height"] - 30, steps=5)
        page.mouse.up()
        panned = box_when(dqvl_node, lambda b: b["x"] - dqvl["x"] == pytest.approx(50, abs=2),
                          "the graph to pan 50 px right")
        page.mouse.move(graph["x"] + graph["width"] / 2, graph["y"] + graph["height"] / 2)
        page.mouse.wheel(0, -300)  # dispatched without waiting for the page to handle it
        box_when(dqvl_node, lambda b: b["width"] > panned["width"] * 1.2, "the wheel to zoom in")
        page.click("#graph-fit")
        box_when(dqvl_node, lambda b: b == pytest.approx(dqvl, abs=1),
                 "Fit to restore the initial view")


def test_graph_without_layout_file_uses_the_state_nodes(browser: Browser, tmp_path: Path) -> None:
    with serve(populate(tmp_path)) as url, open_page(browser, url, without_layout=True) as page:
        expect(page.locator("#graph g.node")).to_have_count(6)
        expect(page.locator("#graph path.edge")).to_have_count(6)
        expect(node(page, "swinmae_training")).to_contain_text("Swin-MAE training")
        assert_nodes_laid_out(page)


def test_history_comparison_highlights_changes(browser: Browser, tmp_path: Path,
                                               shots) -> None:  # noqa: ANN001
    with serve(populate(tmp_path)) as url, open_page(browser, url) as page:
        page.click("button[data-tab='history']")
        expect(page.locator("#runs-table tbody tr")).to_have_count(3)
        expect(page.locator("#compare-title")).to_have_text(
            f"A = {RUN_ID} · B = 20260222T163000Z")
        lr = page.locator("#compare-config tr[data-key='patchtst.lr']")
        expect(lr).to_have_class("changed")
        expect(lr).to_contain_text("0.001")
        expect(lr).to_contain_text("5.00e-4")
        expect(page.locator("#compare-config tr[data-key='patchtst.epochs']")).to_have_class("")
        expect(page.locator("#compare-checklist tr[data-key='backup_bundle']")).to_have_class(
            "changed")
        expect(page.locator("#compare-checklist tr[data-key='scaler']")).to_have_class("")
        # drawn in an animation frame after both snapshots were fetched
        expect(page.locator("#compare-loss-patchtst path.series")).to_have_count(2)
        shots(page, "history_compare")
        page.locator("#runs-table tr[data-run='20260221T090000Z'] input[name='run-b']").check()
        expect(page.locator("#compare-title")).to_have_text(
            f"A = {RUN_ID} · B = 20260221T090000Z")
        expect(page.locator("#compare-config tr[data-key='swinmae.amp']")).to_have_class("changed")
        expect(page.locator("#compare-checklist tr[data-key='checkpoints']")).to_have_class(
            "changed")


def fixture_state() -> dict[str, Any]:
    return json.loads((FIXTURES / "dashboard-state.json").read_text())


def write_state(root: Path, state: dict[str, Any]) -> Path:
    """``populate(root)`` with ``state`` as the exported dashboard state."""
    populate(root)
    (root / "training_dashboard/data/dashboard-state.json").write_text(json.dumps(state))
    return root


def event_span_click(page: Page, event_id: int) -> None:
    """Click an event's span near its top-left corner, where no point sits on top of it."""
    page.locator(f"#timeline rect.event-span[data-event='{event_id}']").click(
        position={"x": 3, "y": 16})


def test_test_runs_timeline_and_breakdown(browser: Browser, tmp_path: Path,
                                          shots) -> None:  # noqa: ANN001
    decisions = fixture_state()["test_run"]
    fdc = decisions["streams"]["patchtst"]["files"][1]
    with serve(populate(tmp_path)) as url, open_page(browser, url) as page:
        page.click("button[data-tab='test']")
        expect(page.locator("#timeline-title")).to_have_text(f"Score timeline · {fdc['file_id']}")
        points = page.locator("#timeline circle.point")
        expect(points).to_have_count(fdc["n_windows"])
        expect(page.locator("#timeline circle.level-anomaly")).to_have_count(fdc["n_anomaly"])
        expect(page.locator("#timeline circle.level-warn")).to_have_count(fdc["n_warn"])
        expect(page.locator("#timeline line.hline")).to_have_count(3)  # clear, warn, anomaly
        expect(page.locator("#timeline")).to_contain_text("anomaly 0.61")
        window = fdc["windows"][20]
        points.nth(20).click()
        expect(page.locator("#breakdown-title")).to_have_text("Breakdown · window 20")
        rows = page.locator("#breakdown .bar-row")
        expect(rows).to_have_count(12)
        top = max(window["contributions"], key=window["contributions"].get)
        expect(rows.first).to_have_attribute("data-name", top)
        expect(page.locator("#breakdown")).to_contain_text("top 12 of 52")
        page.click("#test-stream button[data-stream='swinmae']")
        vib = decisions["streams"]["swinmae"]["files"][1]
        expect(page.locator("#timeline-title")).to_contain_text(vib["file_id"])
        expect(page.locator("#timeline circle.point")).to_have_count(vib["n_windows"])
        page.locator("#timeline circle.point").nth(25).click()
        expect(page.locator("#breakdown-title")).to_have_text("Breakdown · window 25")
        expect(page.locator("#breakdown .bar-row")).to_have_count(3 + 4)
        expect(page.locator("#breakdown")).to_contain_text("Per frequency band")
        expect(page.locator("#test-extra")).to_contain_text("vib_pump_c_short.csv")


def test_events_onset_and_truth_on_the_test_tab(browser: Browser, tmp_path: Path,
                                                shots) -> None:  # noqa: ANN001
    decisions = fixture_state()["test_run"]
    fdc_stream = decisions["streams"]["patchtst"]
    fdc = fdc_stream["files"][1]
    with serve(populate(tmp_path)) as url, open_page(browser, url) as page:
        page.click("button[data-tab='test']")
        rows = page.locator("#test-files tbody tr")
        expect(rows).to_have_count(len(fdc_stream["files"]))
        for f in fdc_stream["files"]:
            row = page.locator(f"#test-files tr[data-file='{f['file_id']}']")
            expect(row.locator("td.truth .pill")).to_have_text(f["label"])
            expect(row.locator("td.events")).to_have_text(str(f["n_events"]))
            expect(row.locator(".tag")).to_have_count(1 if f.get("difficulty") else 0)
        hard = page.locator("#test-files tr[data-file='te_d15_te_hard.csv']")
        expect(hard.locator(".tag")).to_have_text("hard", use_inner_text=False)
        expect(hard.locator(".disagree")).to_have_count(1)
        expect(page.locator(f"#test-files tr[data-file='{fdc['file_id']}'] td.first-alarm")
               ).to_have_text(fdc["first_alarm"][11:16])
        table = page.locator("#test-files")
        fits = table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")
        assert fits, "the file table is wider than its panel"
        expect(page.locator("#test-effective")).to_contain_text("what ran")
        expect(page.locator("#test-effective")).to_contain_text("epochs trained 38")
        expect(page.locator("#test-meta")).to_contain_text("clear 0.36")
        timeline = page.locator("#timeline")
        spans = timeline.locator("rect.event-span")
        expect(spans).to_have_count(len(fdc["events"]))
        for i, e in enumerate(fdc["events"]):
            expect(spans.nth(i)).to_have_class(f"event-span level-{e['level']}")
        expect(timeline.locator(".fault-onset line")).to_have_count(1)
        expect(timeline.locator(".fault-onset")).to_contain_text("fault onset")
        expect(timeline).to_contain_text("time · 2026-02-20")
        expect(timeline).to_contain_text("12:00")  # tick labels are times of day
        event = fdc["events"][1]
        event_span_click(page, event["id"])
        expect(page.locator("#breakdown-title")).to_have_text(
            f"Event {event['id']} · {event['level']} · 4 h 24 min")
        expect(page.locator("#breakdown-meta")).to_contain_text("after fault onset")
        bars = page.locator("#breakdown .bar-row")
        expect(bars).to_have_count(len(event["contributors"]))
        top = max(event["contributors"], key=event["contributors"].get)
        expect(bars.first).to_have_attribute("data-name", top)
        expect(page.locator(f"#timeline rect.event-span[data-event='{event['id']}']")
               ).to_have_class(f"event-span level-{event['level']} selected")
        shots(page, "test_runs_fdc")
        first = fdc["events"][0]
        page.click(f"#event-list button[data-event='{first['id']}']")
        expect(page.locator("#breakdown-title")).to_contain_text(f"Event {first['id']} · warn")
        page.click("#test-stream button[data-stream='swinmae']")
        vib = decisions["streams"]["swinmae"]["files"][1]
        (vib_event,) = vib["events"]
        expect(timeline.locator("rect.event-span.level-anomaly")).to_have_count(1)
        expect(timeline.locator(".fault-onset line")).to_have_count(1)
        expect(timeline.locator("text.axis-label").first).to_have_text("window")
        event_span_click(page, vib_event["id"])
        expect(page.locator("#breakdown-title")).to_have_text(
            f"Event 1 · anomaly · {vib_event['n_windows']} windows")
        top = max(vib_event["contributors"], key=vib_event["contributors"].get)
        expect(page.locator("#breakdown .bar-row").first).to_have_attribute("data-name", top)
        expect(page.locator("#breakdown")).to_contain_text("Per frequency band")
        expect(page.locator("#breakdown .bar-row")).to_have_count(3 + 4)
        shots(page, "test_runs_vibration")


def _checks_pass(state: dict[str, Any]) -> None:
    checklist = state["checklist"]
    for item in checklist["items"]:
        item.update(status="PASS", hint="")
    checklist.update(passed=7, ok=True)


def _gate_fails(state: dict[str, Any]) -> None:
    _checks_pass(state)
    state["test_run"]["decision_gate"].update(
        ok=False, status="fail", normal_with_events=["patchtst:te_d00_te_normal.csv"],
        detail="1/2 normal files without alarm events; 2/2 faults decided anomaly (need 85%)")


def _fault_missed(state: dict[str, Any]) -> None:
    _checks_pass(state)
    state["test_run"]["decision_gate"].update(
        ok=False, status="fail", missed=["patchtst:te_d06_te_fault.csv"], faults_detected=1,
        detail="2/2 normal files without alarm events; 1/2 faults decided anomaly (need 85%)")


def _gate_stale(state: dict[str, Any]) -> None:
    _checks_pass(state)
    state["test_run"]["decision_gate"].update(stale=True,
                                              stale_reason="patchtst checkpoint changed")


def _no_test_run(state: dict[str, Any]) -> None:
    _checks_pass(state)
    state["test_run"] = None


@pytest.mark.parametrize(
    ("mutate", "verdict", "text", "gate_status"),
    [
        (_checks_pass, "ok", "✓ Ready to promote · 7/7 + decisions", "PASS"),
        (_gate_fails, "bad", "✗ Not ready · 7/7 checks, decisions: 1 normal file raised alarms",
         "FAIL"),
        (_fault_missed, "bad", "✗ Not ready · 7/7 checks, decisions: 1 of 2 faults missed", "FAIL"),
        (_gate_stale, "warn",
         "✗ Not ready · 7/7 checks, decisions stale (patchtst checkpoint changed)", "STALE"),
        (_no_test_run, "warn", "✗ Not ready · 7/7 checks, no test run yet", "NONE"),
    ],
    ids=["passing", "false-alarm", "missed-fault", "stale", "no-test-run"],
)
def test_badge_is_green_only_when_checks_and_decisions_pass(
    browser: Browser, tmp_path: Path, shots, mutate, verdict: str, text: str,  # noqa: ANN001
    gate_status: str,
) -> None:
    state = fixture_state()
    mutate(state)
    with serve(write_state(tmp_path, state)) as url, open_page(browser, url) as page:
        expect(page.locator("#verdict")).to_have_class(f"verdict {verdict}")
        expect(page.locator("#verdict")).to_have_text(text)
        expect(page.locator("#checklist li")).to_have_count(7)
        expect(page.locator("#decision-gate .gate-item")).to_have_attribute("data-status",
                                                                             gate_status)
        if gate_status == "STALE":
            expect(page.locator("#decision-gate")).to_contain_text("run the test pipeline again")
        shots(page, f"badge_{mutate.__name__.strip('_')}")


def test_timeline_uses_a_log_axis_when_faults_dwarf_the_thresholds(
        browser: Browser, tmp_path: Path, shots) -> None:  # noqa: ANN001
    state = fixture_state()
    fdc = state["test_run"]["streams"]["patchtst"]
    fault = next(f for f in fdc["files"] if f["decision"] == "anomaly")
    anomaly = fdc["thresholds"]["anomaly"]
    for w in fault["windows"]:  # a strong fault: 300x the anomaly threshold
        if w["level"] == "anomaly":
            w["score"] = 300 * anomaly
    with serve(write_state(tmp_path, state)) as url, open_page(browser, url) as page:
        page.click("button[data-tab='test']")
        expect(page.locator("#timeline-title")).to_have_text(
            f"Score timeline · {fault['file_id']}")
        expect(page.locator("#timeline .axis-label").last).to_have_text("score (log)")
        labels = page.locator("#timeline text.y-tick").all_text_contents()
        assert {"1", "10", "100"} <= set(labels), labels
        # the thresholds stay apart on screen instead of collapsing onto the bottom line
        warn_y = float(page.locator("#timeline line.hline.warn").get_attribute("y1"))
        anomaly_y = float(page.locator("#timeline line.hline.anomaly").get_attribute("y1"))
        assert warn_y - anomaly_y > 5
        shots(page, "test_runs_log_axis")
    normal = fixture_state()
    with serve(write_state(tmp_path / "linear", normal)) as url, open_page(browser, url) as page:
        page.click("button[data-tab='test']")
        expect(page.locator("#timeline .axis-label").last).to_have_text("score")


def test_empty_state_says_what_to_run(browser: Browser, tmp_path: Path,
                                      shots) -> None:  # noqa: ANN001
    with serve(tmp_path) as url, open_page(browser, url) as page:
        empty = page.locator("#empty-state")
        expect(empty).to_be_visible()
        expect(empty).to_contain_text("make run")
        expect(empty).to_contain_text("python -m pipelines.run_local_training_pipeline")
        expect(page.locator("#verdict")).to_have_text("no run yet")
        expect(page.locator("#graph g.node[data-status='idle']")).to_have_count(6)
        shots(page, "empty_state")


def test_token_from_url_fragment(browser: Browser, tmp_path: Path) -> None:
    with serve(populate(tmp_path), token=TOKEN) as url:
        with open_page(browser, f"{url}/#token={TOKEN}") as page:
            expect(page.locator("#run-id")).to_have_text(RUN_ID)
            expect(page.locator("#live-text")).to_have_text("live")
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(url)
        expect(page.locator("#live-text")).to_have_text("token needed")
        expect(page.locator("#run-id")).to_have_text("—")
        context.close()


# --------------------------------------------------------------------------- live runs
# What the page shows while a node runs, read in one go inside the page (a fresh query, not
# an element handle: each status event rebuilds the graph, so a handle taken a moment earlier
# may point at a detached node, whose computed style is empty). Null until the node runs.
RUNNING_VIEW_JS = """(nodeId) => {
  const node = document.querySelector(`#graph g.node[data-id='${nodeId}']`);
  const progress = document.querySelector("#progress-text").textContent;
  if (!node || node.dataset.status !== "running" || !progress.includes("epoch")) return null;
  return {
    glow: getComputedStyle(node.querySelector("rect.box")).animationName,
    flowing: document.querySelectorAll(`#graph path.edge.flow[data-to='${nodeId}']`).length,
    progress,
    stop_enabled: !document.querySelector("#btn-stop").disabled,
  };
}"""


def wait_running_view(page: Page, node_id: str, timeout_ms: float = 10_000) -> dict[str, Any]:
    """The page's view of ``node_id`` at the first frame it runs with epoch progress shown."""
    try:
        handle = page.wait_for_function(RUNNING_VIEW_JS, arg=node_id, timeout=timeout_ms)
    except PlaywrightTimeoutError:
        last = page.evaluate("""(nodeId) => ({
          status: document.querySelector(`#graph g.node[data-id='${nodeId}']`)?.dataset.status,
          progress: document.querySelector("#progress-text").textContent})""", node_id)
        pytest.fail(f"{node_id} never ran with epoch progress within {timeout_ms} ms: {last}")
    return handle.json_value()


def test_upload_then_training_run_updates_live_without_reload(
    browser: Browser, tmp_path: Path, shots  # noqa: ANN001
) -> None:
    root = populate(tmp_path / "repo")
    sample = tmp_path / "line 7 normal.csv"
    sample.write_text("timestamp,xmeas_1,xmeas_2\n2026-01-01T00:00:00,1.0,2.0\n")
    with serve(root, train_cmd=[sys.executable, str(FAKE), "--mode", "quick"]) as url, \
            open_page(browser, url) as page:
        navigations: list[str] = []
        page.on("framenavigated", lambda f: navigations.append(f.url))
        load_id = page.evaluate("window.__dashboardLoadId")
        expect(page.locator("#live-text")).to_have_text("live")
        page.click("#btn-upload-open")
        page.select_option("#up-stream", "patchtst")
        page.select_option("#up-target", "train")
        page.set_input_files("#up-files", str(sample))
        page.click("#btn-upload")
        expect(page.locator("#upload-msg")).to_contain_text(
            "data/local/train/fdc/line_7_normal.csv")
        assert (root / "data/local/train/fdc/line_7_normal.csv").read_bytes() == sample.read_bytes()
        shots(page, "upload_dialog")
        page.click("#btn-upload-close")
        page.fill("#opt-epochs", "3")
        page.click("#btn-train")
        # PatchTST runs for about 1.5 s of the fake run: check the running view in one frame.
        running = wait_running_view(page, "patchtst_training")
        assert running["glow"] == "glow", running
        assert running["flowing"] == 1, running
        assert running["stop_enabled"], running
        shots(page, "training_running")
        expect(node(page, "validation_gate")).to_have_attribute("data-status", "done",
                                                                timeout=15_000)
        expect(page.locator("#run-id")).to_have_text("fake-quick", timeout=10_000)
        node(page, "data_prep").click()
        expect(page.locator("#node-info")).to_contain_text("line_7_normal.csv")
        expect(page.locator("#graph g.node[data-status='done']")).to_have_count(6)
        expect(page.locator("#log-tail")).to_contain_text("fake pipeline done")
        expect(page.locator("#btn-train")).to_be_enabled()
        assert page.evaluate("window.__dashboardLoadId") == load_id
        assert navigations == []
        argv = json.loads((root / "artifacts/pipeline/fake_argv.json").read_text())
        assert argv["extra"] == ["--set-patch", "training.epochs=3",
                                 "--set-swin", "training.epochs=3"]
        shots(page, "training_done")


def test_stop_button_ends_a_long_run(browser: Browser, tmp_path: Path,
                                     shots) -> None:  # noqa: ANN001
    root = populate(tmp_path)
    with serve(root, train_cmd=[sys.executable, str(FAKE), "--mode", "long"],
               stop_grace_s=2.0) as url, open_page(browser, url) as page:
        page.click("#btn-train")
        training = node(page, "patchtst_training")
        expect(training).to_have_attribute("data-status", "running", timeout=10_000)
        pid_file = root / "artifacts/pipeline/fake_child.pid"
        child_pid = eventually(lambda: pid_file.exists() and pid_file.read_text().strip(), bool,
                               "the fake run to start its child")
        status = httpx.get(f"{url}/api/status").json()["process"]
        leader, child = status["pid"], int(child_pid)
        assert _group_alive(leader)
        page.click("#btn-stop")
        expect(training).to_have_attribute("data-status", "fail", timeout=10_000)
        expect(page.locator("#run-state")).to_have_text("stopped by user")
        training.click()
        expect(page.locator("#node-info")).to_contain_text("stopped by user")
        assert not _group_alive(leader)
        assert process_state(child) in (None, "Z")  # gone, or a zombie not reaped yet
        expect(page.locator("#btn-stop")).to_be_disabled()
        shots(page, "stopped_by_user")


def test_events_stream_pushes_changes(tmp_path: Path) -> None:
    root = populate(tmp_path)
    with serve(root, heartbeat_s=0.5) as url, httpx.stream(
        "GET", f"{url}/api/events", timeout=10
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        seen: list[str] = []
        touched = False
        deadline = time.monotonic() + 20  # heartbeats keep the read alive: bound the wait here
        for line in r.iter_lines():
            seen.append(line)
            assert time.monotonic() < deadline, f"no state event after the change: {seen}"
            if not touched and {"event: status", "event: state", "event: runs"} <= set(seen):
                # The server has recorded the file's (mtime, size) by now; a longer file differs.
                state = root / "training_dashboard/data/dashboard-state.json"
                state.write_text(state.read_text() + " ")
                touched = True
                mark = len(seen)
            if touched and "event: state" in seen[mark:] and ": heartbeat" in seen:
                break
        status = json.loads(seen[seen.index("event: status") + 1].removeprefix("data: "))
        assert status["process"]["state"] == "idle"
