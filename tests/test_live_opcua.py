"""The OPC UA live source against a real asyncua server (tests/opcua_server.py), no mocks.

Every wait is bounded: a test polls ``read()`` until what it expects has arrived or a
deadline passes, so a broken source fails in seconds instead of hanging the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from inference.live.config import OpcUaSourceConfig, Reconnect
from inference.live.rows import LiveRow, SourceItem, SourceNotice
from inference.live.sources.opcua import OpcUaSource
from tests.opcua_server import ReplayOpcUaServer, free_port

DEADLINE_S = 20.0
T0 = np.datetime64("2026-01-01T00:00:00", "ns")
STEP = np.timedelta64(1, "s")


def stamps(start: int, stop: int) -> np.ndarray:
    return T0 + np.arange(start, stop) * STEP


def values(n_rows: int, n_channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(50.0, 10.0, size=(n_rows, n_channels))


def rows_of(items: list[SourceItem]) -> list[LiveRow]:
    return [i for i in items if isinstance(i, LiveRow)]


def notices(items: list[SourceItem], kind: str) -> list[SourceNotice]:
    return [i for i in items if isinstance(i, SourceNotice) and i.kind == kind]


def collect(source: OpcUaSource, done: Callable[[list[SourceItem]], bool],
            deadline_s: float = DEADLINE_S) -> list[SourceItem]:
    """Read until ``done(items)``; fail with what came when the deadline passes first."""
    items: list[SourceItem] = []
    end = time.monotonic() + deadline_s
    while not done(items):
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s} s; got {len(rows_of(items))} rows and "
                        f"{[i for i in items if isinstance(i, SourceNotice)]}")
        items += source.read(0.1)
    return items


def has_rows(n: int) -> Callable[[list[SourceItem]], bool]:
    return lambda items: len(rows_of(items)) >= n


def has_notice(kind: str) -> Callable[[list[SourceItem]], bool]:
    return lambda items: bool(notices(items, kind))


@contextmanager
def opened(endpoint: str, columns: list[str], resume: dict | None = None,
           **cfg: object) -> Iterator[OpcUaSource]:
    source = OpcUaSource(OpcUaSourceConfig(kind="opcua", endpoint=endpoint, **cfg), "fdc")
    source.open(columns, resume)
    try:
        yield source
    finally:
        source.close()


# one server for the module (starting one takes seconds); each test reads its own group of
# nodes, so no test sees another's current values
GROUPS = {"rows": 52, "miss": 4, "text": 3, "settle": 3, "restart": 4, "resume": 3, "close": 2}
MISSING = "miss_xmeas_3"


def group(name: str) -> list[str]:
    return [f"{name}_xmeas_{i + 1}" for i in range(GROUPS[name])]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ReplayOpcUaServer]:
    with ReplayOpcUaServer([c for g in GROUPS for c in group(g)], missing={MISSING}) as server:
        yield server


@pytest.fixture
def server(shared_server: ReplayOpcUaServer) -> ReplayOpcUaServer:
    shared_server.start()  # a no-op unless a failed restart test left it stopped
    return shared_server


def test_every_row_arrives_once_in_order(server: ReplayOpcUaServer) -> None:
    cols = group("rows")
    written, when = values(200, 52), stamps(0, 200)
    written[:, 7] = 42.0  # a tag that holds its value still reports every sample
    with opened(server.endpoint, cols) as source:
        assert source.describe() == f"OPC UA {server.endpoint}, 52 nodes"
        collect(source, has_notice("source_up"))
        server.publish_rows(when, written, columns=cols)
        items = collect(source, has_rows(200))
        items += source.read(0.3)  # nothing more: no duplicates
    rows = rows_of(items)
    assert [r.stamp for r in rows] == list(when)
    np.testing.assert_array_equal(np.stack([r.values for r in rows]), written.astype(np.float32))
    assert rows[-1].position == {"stamp": "2026-01-01T00:03:19.000"}
    assert [i for i in items if isinstance(i, SourceNotice)] == []


def test_missing_node_is_named_and_left_nan(server: ReplayOpcUaServer) -> None:
    cols = group("miss")
    written = values(5, 4)
    with opened(server.endpoint, cols) as source:
        items = collect(source, has_notice("source_up"))
        server.publish_rows(stamps(0, 5), written, columns=cols)
        items += collect(source, has_rows(5))
        assert source.describe().endswith("4 nodes (1 missing)")
    (bad,) = notices(items, "bad_payload")
    assert bad.channels == [MISSING] and f"ns=2;s={MISSING}" in bad.detail
    got = np.stack([r.values for r in rows_of(items)])
    assert np.isnan(got[:, 2]).all()
    np.testing.assert_array_equal(got[:, [0, 1, 3]], written[:, [0, 1, 3]].astype(np.float32))


def test_non_numeric_value_is_nan_with_a_notice(server: ReplayOpcUaServer) -> None:
    cols = group("text")
    written, when = values(3, 3), stamps(0, 3)
    with opened(server.endpoint, cols) as source:
        collect(source, has_notice("source_up"))
        server.publish_rows(when[:1], written[:1], columns=cols)
        server.write_raw(cols[0], written[1, 0], when[1])
        server.write_raw(cols[1], "sensor fault", when[1])
        server.write_raw(cols[2], written[1, 2], when[1])
        server.publish_rows(when[2:], written[2:], columns=cols)  # the tag is numeric again
        items = collect(source, has_rows(3))
    rows = rows_of(items)
    assert [r.stamp for r in rows] == list(when)
    assert np.isnan(rows[1].values[1]) and np.isfinite(rows[1].values[[0, 2]]).all()
    np.testing.assert_array_equal(rows[2].values, written[2].astype(np.float32))
    (bad,) = notices(items, "bad_payload")
    assert bad.channels == [cols[1]] and bad.stamp == when[1]
    assert "non-numeric" in bad.detail and "sensor fault" in bad.detail


def test_row_with_a_silent_tag_goes_out_after_settle(server: ReplayOpcUaServer) -> None:
    cols = group("settle")
    with opened(server.endpoint, cols, settle_s=0.5) as source:
        collect(source, has_notice("source_up"))
        server.write_raw(cols[0], 1.5, T0)
        server.write_raw(cols[1], 2.5, T0)
        started = time.monotonic()
        (row,) = rows_of(collect(source, has_rows(1), deadline_s=5.0))
    assert time.monotonic() - started >= 0.4
    assert row.stamp == T0 and row.values[:2].tolist() == [1.5, 2.5] and np.isnan(row.values[2])


def test_reconnects_after_the_server_restarts(server: ReplayOpcUaServer) -> None:
    cols = group("restart")
    written, when = values(6, 4), stamps(0, 6)
    with opened(server.endpoint, cols, reconnect=Reconnect(min_s=0.2, max_s=1.0)) as source:
        collect(source, has_notice("source_up"))
        server.publish_rows(when[:3], written[:3], columns=cols)
        items = collect(source, has_rows(3))
        server.stop()
        items += collect(source, has_notice("source_down"))
        time.sleep(1.0)  # a few failed attempts while it is down: still one source_down
        server.start()
        items += collect(source, has_notice("source_up"))
        server.publish_rows(when[3:], written[3:], columns=cols)
        items += collect(source, has_rows(3))
    (down,) = notices(items, "source_down")
    assert down.detail.startswith(f"{server.endpoint}: connection lost (")
    assert down.detail.endswith("); retrying")
    assert notices(items, "source_up")[-1].detail == f"{server.endpoint}: connected"
    assert notices(items, "bad_payload") == []  # the re-sent current value is not "late"
    rows = rows_of(items)
    assert [r.stamp for r in rows] == list(when)
    np.testing.assert_array_equal(np.stack([r.values for r in rows]), written.astype(np.float32))


def test_resume_skips_rows_already_scored(server: ReplayOpcUaServer) -> None:
    cols = group("resume")
    written, when = values(10, 3), stamps(0, 10)
    with opened(server.endpoint, cols) as source:
        collect(source, has_notice("source_up"))
        server.publish_rows(when[:5], written[:5], columns=cols)
        first = rows_of(collect(source, has_rows(5)))
    assert first[-1].position == {"stamp": "2026-01-01T00:00:04.000"}
    # the server re-sends row 4 (its current values) to the new subscription: dropped
    with opened(server.endpoint, cols, resume=first[-1].position) as source:
        items = collect(source, has_notice("source_up"))
        server.publish_rows(when, written, columns=cols)  # the run again: only 5.. are new
        items += collect(source, has_rows(5))
        items += source.read(0.3)
    assert [r.stamp for r in rows_of(items)] == list(when[5:])
    assert notices(items, "bad_payload") == []


def test_close_is_prompt_connected_or_not(server: ReplayOpcUaServer) -> None:
    cols = group("close")
    nobody = f"opc.tcp://127.0.0.1:{free_port()}"
    for endpoint, told in ((server.endpoint, "source_up"), (nobody, "source_down")):
        source = OpcUaSource(OpcUaSourceConfig(kind="opcua", endpoint=endpoint), "fdc")
        source.open(cols, None)
        items = collect(source, has_notice(told))
        started = time.monotonic()
        source.close()
        assert time.monotonic() - started < 2.0
        assert source._thread is not None and not source._thread.is_alive()
        assert source.finished is False and source.kind == "opcua"
    assert "cannot connect" in notices(items, "source_down")[0].detail
