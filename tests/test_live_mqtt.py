"""The MQTT source and the event publisher against a real Mosquitto broker (no mocks).

Every wait is bounded: :func:`collect` polls ``read()`` until the expected items are in
or a deadline passes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage, MQTTv311

from inference.live import publish
from inference.live.config import (
    MqttPublishConfig,
    MqttSourceConfig,
    PublishConfig,
    Reconnect,
    WebhookConfig,
)
from inference.live.publish import EventPublisher
from inference.live.rows import LiveRow, SourceItem, SourceNotice, to_stamp
from inference.live.sources.mqtt import MqttSource
from tests.mqtt_broker import MosquittoBroker, free_port, publish_json, publish_messages

STREAM = "fdc"
ROWS = "sensor_ssl/fdc/rows"
COLUMNS = ["a", "b", "c"]
FAST = Reconnect(min_s=0.1, max_s=0.4)
T0 = np.datetime64("2024-03-01T08:00:00", "ns")


def iso(i: int) -> str:
    return f"{T0 + np.timedelta64(i, 's')}Z"


def rows_of(items: list[SourceItem]) -> list[LiveRow]:
    return [i for i in items if isinstance(i, LiveRow)]


def notices(items: list[SourceItem], kind: str) -> list[SourceNotice]:
    return [i for i in items if isinstance(i, SourceNotice) and i.kind == kind]


def collect(source: MqttSource, done: Callable[[list[SourceItem]], bool],
            timeout_s: float = 10.0) -> list[SourceItem]:
    """Read until ``done(items)`` or fail after ``timeout_s``."""
    items: list[SourceItem] = []
    deadline = time.monotonic() + timeout_s
    while not done(items):
        assert time.monotonic() < deadline, f"timed out; got {items}"
        items.extend(source.read(0.1))
    return items


def n_rows(n: int) -> Callable[[list[SourceItem]], bool]:
    return lambda items: len(rows_of(items)) >= n


def has(kind: str) -> Callable[[list[SourceItem]], bool]:
    return lambda items: bool(notices(items, kind))


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as b:
        yield b


@pytest.fixture
def open_source() -> Iterator[Callable[..., MqttSource]]:
    """``open_source(port, **cfg)``: an opened MqttSource, closed after the test."""
    opened: list[MqttSource] = []

    def make(port: int, resume: dict[str, Any] | None = None, **cfg: Any) -> MqttSource:
        source = MqttSource(MqttSourceConfig(kind="mqtt", port=port, reconnect=FAST, **cfg),
                            STREAM)
        source.open(COLUMNS, resume)
        opened.append(source)
        return source

    yield make
    for source in opened:
        source.close()


def connected(source: MqttSource) -> list[SourceItem]:
    """Wait for the subscription, so nothing published next is missed."""
    return collect(source, has("source_up"))


def row_payload(i: int) -> dict[str, Any]:
    """Rows alternate the nested and the top-level form; ``c`` is missing every third."""
    values: dict[str, Any] = {"a": i * 0.5, "b": -i}
    if i % 3:
        values["c"] = 1e3 + i / 7
    return {"timestamp": iso(i), "values": values} if i % 2 else {"timestamp": iso(i), **values}


def expected(i: int) -> np.ndarray:
    return np.array([i * 0.5, -i, 1e3 + i / 7 if i % 3 else np.nan], dtype=np.float32)


def test_row_mode_rows_arrive_in_order(broker: MosquittoBroker, open_source) -> None:
    source = open_source(broker.port)
    assert source.describe() == (f"mqtt://127.0.0.1:{broker.port} topic sensor_ssl/fdc/rows "
                                 "(row payloads, qos 1)")
    connected(source)
    publish_json(broker.host, broker.port, ROWS, [row_payload(i) for i in range(60)])
    items = collect(source, n_rows(60))
    assert not notices(items, "bad_payload")
    rows = rows_of(items)
    assert [r.stamp for r in rows] == [T0 + np.timedelta64(i, "s") for i in range(60)]
    for i, row in enumerate(rows):
        assert row.values.dtype == np.float32
        np.testing.assert_array_equal(row.values, expected(i))
        assert to_stamp(row.position["stamp"]) == row.stamp


def test_row_mode_blocks_of_samples(broker: MosquittoBroker, open_source) -> None:
    """A vibration gateway's burst: lists of samples, ``fs`` apart from the stamp on."""
    source = open_source(broker.port)
    connected(source)
    burst = {"timestamp": iso(0), "fs": 1000,
             "values": {"a": [0.5, 1.5, 2.5, 3.5], "b": [1, 2, "x", 4], "c": [0, 0, 0, None]}}
    late = {"timestamp": iso(0), "period_s": 0.01, "values": {"a": [1, 2], "b": [3, 4],
                                                             "c": [5, 6]}}
    ragged = {"timestamp": iso(1), "fs": 1000, "values": {"a": [1, 2], "b": [3], "c": [4]}}
    publish_json(broker.host, broker.port, ROWS, [burst, late, ragged])
    items = collect(source, lambda got: len(notices(got, "bad_payload")) >= 3)
    (block,) = rows_of(items)
    ms = np.timedelta64(1, "ms")
    assert list(block.stamp) == [T0 + i * ms for i in range(4)]
    np.testing.assert_array_equal(block.values, np.array(
        [[0.5, 1, 0], [1.5, 2, 0], [2.5, np.nan, 0], [3.5, 4, np.nan]], np.float32))
    details = " ".join(n.detail for n in notices(items, "bad_payload"))
    assert "non-numeric samples for b" in details and "out of order" in details
    assert "a block needs every channel as a list of one length" in details
    assert to_stamp(block.position["stamp"]) == T0 + 3 * ms


def test_tag_mode_assembles_rows(broker: MosquittoBroker, open_source) -> None:
    source = open_source(broker.port, topic="plant/{stream}/tags/{channel}", payload="tag",
                         settle_s=0.3)
    assert source.subscription == "plant/fdc/tags/+"
    connected(source)
    msgs = [(f"plant/fdc/tags/{c}", {"timestamp": iso(i), "value": 10 * i + k})
            for i in range(3) for k, c in enumerate(COLUMNS)]
    msgs += [("plant/fdc/tags/zzz", 1.0),  # not a column: ignored
             ("plant/fdc/tags/a", {"timestamp": iso(3), "value": "n/a"}),
             ("plant/fdc/tags/b", {"timestamp": iso(3), "value": 31}),
             ("plant/fdc/tags/c", {"timestamp": iso(3), "value": 32}),
             ("plant/fdc/tags/a", {"timestamp": iso(4), "value": 40})]  # b, c never come
    publish_messages(broker.host, broker.port, msgs)
    items = collect(source, n_rows(5))
    rows = rows_of(items)
    assert [r.stamp for r in rows] == [T0 + np.timedelta64(i, "s") for i in range(5)]
    for i in range(3):
        np.testing.assert_array_equal(rows[i].values, [10 * i, 10 * i + 1, 10 * i + 2])
    np.testing.assert_array_equal(rows[3].values, [np.nan, 31, 32])
    np.testing.assert_array_equal(rows[4].values, [40, np.nan, np.nan])  # after settle_s
    (bad,) = notices(items, "bad_payload")
    assert bad.channels == ["a"] and "plant/fdc/tags/a" in bad.detail


def test_tag_mode_bare_numbers_are_stamped_on_arrival(broker: MosquittoBroker,
                                                      open_source) -> None:
    source = open_source(broker.port, topic="plant/{channel}", payload="tag")
    connected(source)
    before = np.datetime64(time.time_ns(), "ns")
    scan = [("plant/a", 1.5), ("plant/b", "2.5"), ("plant/c", {"value": 3.5})]
    publish_messages(broker.host, broker.port, scan + scan)
    rows = rows_of(collect(source, n_rows(2)))
    for row in rows:  # one row per scan: values that arrive together share a stamp
        np.testing.assert_array_equal(row.values, [1.5, 2.5, 3.5])
        assert before <= row.stamp <= np.datetime64(time.time_ns(), "ns")
    assert rows[0].stamp < rows[1].stamp


def test_bad_payloads_give_notices_and_later_rows_still_arrive(broker: MosquittoBroker,
                                                               open_source) -> None:
    source = open_source(broker.port)
    connected(source)
    publish_json(broker.host, broker.port, ROWS, [
        "{not json",
        [1, 2, 3],
        {"timestamp": iso(0), "values": {"a": "high", "b": 2, "c": None}},
        {"values": {"a": 1}},
        {"timestamp": "yesterday-ish", "a": 1},
        f'{{"timestamp": "{iso(1)}", "a": 1, "b": 1{"0" * 400}}}',  # too large for a float
        {"timestamp": iso(2), "a": 1, "b": 2, "c": 3},
    ])
    items = collect(source, n_rows(3))
    bad = notices(items, "bad_payload")
    assert len(bad) == 6
    assert all("sensor_ssl/fdc/rows" in n.detail for n in bad)
    assert "not JSON" in bad[0].detail and "list" in bad[1].detail
    assert bad[2].channels == ["a"] and "non-numeric" in bad[2].detail
    assert "'timestamp'" in bad[3].detail and "'timestamp'" in bad[4].detail
    assert bad[5].channels == ["b"]
    first, huge, good = rows_of(items)
    np.testing.assert_array_equal(first.values, [np.nan, 2, np.nan])
    np.testing.assert_array_equal(huge.values, [1, np.nan, np.nan])
    np.testing.assert_array_equal(good.values, [1, 2, 3])


def test_broker_restart_reconnects_and_resubscribes(broker: MosquittoBroker,
                                                    open_source) -> None:
    source = open_source(broker.port)
    connected(source)
    broker.stop()
    down = notices(collect(source, has("source_down")), "source_down")
    assert len(down) == 1
    assert down[0].detail.startswith(f"127.0.0.1:{broker.port}: connection lost (")
    assert down[0].detail.endswith("); retrying")
    time.sleep(0.5)  # a few failed attempts: still only the one notice
    broker.start()
    items = connected(source)
    assert not notices(items, "source_down")
    assert notices(items, "source_up")[0].detail == f"127.0.0.1:{broker.port}: connected"
    publish_json(broker.host, broker.port, ROWS, [row_payload(i) for i in range(5)])
    assert len(rows_of(collect(source, n_rows(5)))) == 5


def test_source_opened_before_the_broker_connects_once_it_starts(open_source) -> None:
    with MosquittoBroker() as broker:
        broker.stop()
        source = open_source(broker.port)
        items = collect(source, has("source_down"))
        assert "cannot connect" in notices(items, "source_down")[0].detail
        broker.start()
        connected(source)
        publish_json(broker.host, broker.port, ROWS, [row_payload(0)])
        (row,) = rows_of(collect(source, n_rows(1)))
        assert row.stamp == T0


def test_resume_drops_rows_up_to_the_stamp(broker: MosquittoBroker, open_source) -> None:
    source = open_source(broker.port, resume={"stamp": iso(4)})
    connected(source)
    publish_json(broker.host, broker.port, ROWS,
                 [row_payload(i) for i in range(10)] + [row_payload(7)])
    items = collect(source, n_rows(5))
    items += source.read(0.3)  # the repeated row 7
    assert [r.stamp for r in rows_of(items)] == [T0 + np.timedelta64(i, "s") for i in range(5, 10)]
    (repeat,) = notices(items, "bad_payload")
    assert "out of order or repeated" in repeat.detail


# -- EventPublisher -----------------------------------------------------------------------

LINES = [{"kind": "data_quality", "transition": t, "stream": STREAM, "event": {"id": f"dq-{i}"}}
         for i, t in enumerate(["raised", "cleared", "raised"])]


def test_publisher_sends_event_lines_to_the_topic(broker: MosquittoBroker) -> None:
    got: list[dict[str, Any]] = []
    subscribed = threading.Event()
    sub = Client(CallbackAPIVersion.VERSION2, protocol=MQTTv311)
    sub.on_connect = lambda c, *_: c.subscribe("sensor_ssl/fdc/events", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()

    def on_message(client: Client, userdata: Any, msg: MQTTMessage) -> None:
        got.append(json.loads(msg.payload))

    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    publisher = EventPublisher(PublishConfig(mqtt=MqttPublishConfig(port=broker.port)), STREAM)
    try:
        assert subscribed.wait(5)
        for line in LINES:
            publisher.publish(line)
        deadline = time.monotonic() + 5
        while len(got) < len(LINES) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == LINES
    finally:
        publisher.close()
        sub.disconnect()
        sub.loop_stop()


@dataclass
class Hook:
    """What a local webhook received; it holds each request until ``release`` is set."""

    url: str = ""
    bodies: list[tuple[str, Any]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def webhook_server(release: bool = True) -> Iterator[Hook]:
    hook = Hook()
    if release:
        hook.release.set()

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.bodies.append((self.headers["Content-Type"], json.loads(body)))
            hook.entered.set()
            hook.release.wait(10)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield hook
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()


def webhook_publisher(url: str) -> EventPublisher:
    return EventPublisher(PublishConfig(webhook=WebhookConfig(url=url, timeout_s=2)), STREAM)


def test_publisher_posts_event_lines_to_the_webhook() -> None:
    with webhook_server() as hook:
        publisher = webhook_publisher(hook.url)
        for line in LINES:
            publisher.publish(line)
        publisher.close()  # waits (bounded) for the queued posts
        assert hook.bodies == [("application/json", line) for line in LINES]


def test_a_slow_webhook_drops_the_oldest_events(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(publish, "WEBHOOK_QUEUE", 3)
    with webhook_server(release=False) as hook, caplog.at_level(logging.WARNING):
        publisher = webhook_publisher(hook.url)
        publisher.publish({"n": 0})
        assert hook.entered.wait(5)  # the worker is stuck posting event 0
        t = time.monotonic()
        for n in range(1, 10):
            publisher.publish({"n": n})
        assert time.monotonic() - t < 0.1
        hook.release.set()
        publisher.close()
        assert [body["n"] for _, body in hook.bodies] == [0, 7, 8, 9]
    (warning,) = [r for r in caplog.records if r.name == "inference.live.publish"]
    assert "dropped the oldest" in warning.getMessage()


def test_webhook_to_a_closed_port_neither_blocks_nor_raises(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    publisher = webhook_publisher(url)
    with caplog.at_level(logging.WARNING, logger="inference.live.publish"):
        slowest = 0.0
        for i in range(20):
            t = time.monotonic()
            publisher.publish({**LINES[0], "n": i})
            slowest = max(slowest, time.monotonic() - t)
        publisher.close()
    assert slowest < 0.1
    warnings = [r for r in caplog.records if r.name == "inference.live.publish"]
    assert len(warnings) == 1 and url in warnings[0].getMessage()


def test_publisher_without_sinks_is_a_no_op() -> None:
    publisher = EventPublisher(PublishConfig(), STREAM)
    publisher.publish({"kind": "process"})
    publisher.close()
