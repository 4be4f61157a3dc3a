"""OPC UA source: one node per channel, data changes grouped into rows by their source stamp.

An asyncua client runs in a daemon thread with its own event loop and subscribes to every
channel's node; each data change goes through a :class:`RowAssembler`, and what comes out
(rows, notices) waits in a queue for :meth:`OpcUaSource.read`.  The client is replaced
after a lost connection (back-off from ``reconnect.min_s`` to ``reconnect.max_s``) rather
than left to asyncua's own reconnect, so the scorer hears exactly one ``source_down`` per
outage and one ``source_up`` per (re)connect, and every session subscribes afresh.

Monitored items sample every change (``sampling_ms`` 0), queue ``queue_size`` of them
between publishes, and trigger on status, value *or* source stamp: a tag that holds the
same value still reports every new sample, so its rows complete instead of waiting out
``settle_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent, Subscription

from inference.live.config import OpcUaSourceConfig
from inference.live.rows import (
    LiveRow,
    RowAssembler,
    SourceItem,
    SourceNotice,
    as_float,
    to_stamp,
)

_log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS = 60_000  # how long a server keeps our session after the link drops
# a hung server is declared lost when a status read takes longer than this; shorter gives
# false outages (and a resubscription) on a busy machine
WATCHDOG_S = 5.0
CLOSE_TIMEOUT_S = 1.0  # a polite disconnect on close(); the thread is gone within ~2 s
# DateTime 0 (1601-01-01) is OPC UA's "no stamp"
NULL_STAMP_YEAR = 1601


class _LostConnectionNoise(logging.Filter):
    """Drops asyncua's tracebacks and warnings about a connection that is already gone: the
    source reports the outage once, as ``source_down``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError):  # ConnectionError, TimeoutError too
            return False
        return "connection is closed" not in record.getMessage()


_NOISE = _LostConnectionNoise()


def _quiet_asyncua() -> None:
    """asyncua logs every publish at INFO (slow and huge) and every lost link as an ERROR."""
    root = logging.getLogger("asyncua")
    if root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    for name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient",
                 "asyncua.client.ua_client.UASocketProtocol", "asyncua.client.client",
                 "asyncua.common.subscription"):
        logging.getLogger(name).addFilter(_NOISE)  # once: addFilter skips a known filter


def _utc_stamp(when: datetime) -> np.datetime64:
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(when, "ns")


def _now_stamp() -> np.datetime64:
    return _utc_stamp(datetime.now(UTC))


def _iso(stamp: np.datetime64) -> str:
    """ISO text at millisecond precision, finer only when the stamp needs it (exact resume)."""
    ns = int(stamp.astype("datetime64[ns]").astype(np.int64))
    unit = "ms" if ns % 1_000_000 == 0 else "us" if ns % 1_000 == 0 else "ns"
    return str(np.datetime_as_string(stamp, unit=unit))


def _filter_refused(result: int | ua.StatusCode) -> bool:
    """The server would monitor the node, but not with our data-change filter."""
    return isinstance(result, ua.StatusCode) and result.value in (
        ua.StatusCodes.BadMonitoredItemFilterUnsupported, ua.StatusCodes.BadFilterNotAllowed)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class OpcUaSource:
    """Rows from an OPC UA server's data changes, stamped with the values' source stamps."""

    kind = "opcua"

    def __init__(self, cfg: OpcUaSourceConfig, stream: str) -> None:
        self.cfg = cfg
        self.stream = stream
        self.finished = False  # a server never runs out
        self._queue: queue.Queue[SourceItem] = queue.Queue()
        self._lock = threading.Lock()  # the assembler is fed by the loop, flushed by read()
        self._assembler: RowAssembler | None = None
        self._node_ids: dict[str, ua.NodeId] = {}
        self._missing: set[str] = set()
        self._after: np.datetime64 | None = None  # resume: nothing at or before this
        self._last_out: np.datetime64 | None = None
        self._seen: dict[str, np.datetime64] = {}  # channel -> stamp of its last change
        self._arrival: tuple[float, np.datetime64] | None = None
        self._down = False  # source_down already told for the current outage
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    # -- LiveSource ------------------------------------------------------------------------

    def open(self, columns: list[str], resume: dict[str, Any] | None) -> None:
        """Resolve every column's node and start the client thread."""
        if self._thread is not None:
            raise RuntimeError(f"{self.describe()}: already open")
        _quiet_asyncua()
        self._assembler = RowAssembler(columns, self.cfg.settle_s)
        self._after = to_stamp((resume or {}).get("stamp"))
        for channel in columns:
            self._resolve(channel)
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._run())
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"opcua-source-{self.stream}")
        self._thread.start()

    def read(self, timeout_s: float) -> list[SourceItem]:
        """Everything queued, waiting up to ``timeout_s`` for the first item; rows whose last
        tag never came are given out once they are ``settle_s`` old."""
        self._flush()
        items: list[SourceItem] = []
        try:
            items.append(self._queue.get(timeout=max(timeout_s, 0.0)))
        except queue.Empty:
            self._flush()
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def describe(self) -> str:
        missing = f" ({len(self._missing)} missing)" if self._missing else ""
        return f"OPC UA {self.cfg.endpoint}, {len(self._node_ids)} nodes{missing}"

    def close(self) -> None:
        """Stop the client (a short polite disconnect) and its thread."""
        if self._loop is None or self._task is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the thread has ended
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(CLOSE_TIMEOUT_S + 1.0)
        if self._thread.is_alive():
            _log.warning("%s: client thread still running after close", self.describe())

    # -- nodes -----------------------------------------------------------------------------

    def _resolve(self, channel: str) -> None:
        """The node id a channel reads from; none (or a malformed one): the column is absent."""
        text = self.cfg.nodes.get(channel)
        if text is None and self.cfg.node_template is not None:
            text = self.cfg.node_template.format(channel=channel)
        if text is None:
            self._absent(channel, f"{channel}: no node id (not in nodes, no node_template)")
            return
        try:
            self._node_ids[channel] = ua.NodeId.from_string(text)
        except (ValueError, ua.UaError):
            self._absent(channel, f"{channel}: {text!r} is not a node id (like ns=2;s=name)")

    def _absent(self, channel: str, detail: str) -> None:
        assert self._assembler is not None
        with self._lock:
            self._assembler.mark_absent(channel)
        self._queue.put(SourceNotice("bad_payload", f"{detail}; column stays NaN", [channel]))

    def _node_result(self, channel: str, result: int | ua.StatusCode) -> None:
        """Mark a node the server refused absent (told once), and one that came back present."""
        assert self._assembler is not None
        if isinstance(result, ua.StatusCode):
            if channel not in self._missing:
                self._missing.add(channel)
                self._absent(channel, f"{channel} ({self._node_ids[channel].to_string()}): "
                                      f"not on the server ({result.name})")
        elif channel in self._missing:
            self._missing.discard(channel)
            with self._lock:
                self._assembler.mark_absent(channel, False)

    # -- the client thread -----------------------------------------------------------------

    def _serve(self) -> None:
        """Thread body: run the client until close() cancels it, then tidy the loop."""
        assert self._loop is not None and self._task is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftover:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.close()

    async def _run(self) -> None:
        """Connect, deliver, and after a failure or a lost link retry with back-off; never
        returns (close() cancels it)."""
        backoff = self.cfg.reconnect
        delay = backoff.min_s
        while True:
            try:
                connected, reason = await self._session()
            except Exception as exc:  # a bug or a surprise from asyncua: keep the loop alive
                _log.exception("%s: client session failed", self.describe())
                connected, reason = False, _reason(exc)
            if connected:
                delay = backoff.min_s
            if connected or not self._down:
                what = "connection lost" if connected else "cannot connect"
                self._queue.put(SourceNotice(
                    "source_down", f"{self.cfg.endpoint}: {what} ({reason}); retrying"))
                self._down = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff.max_s)

    async def _session(self) -> tuple[bool, str]:
        """One client from connect to loss: (whether it got as far as source_up, why it
        ended)."""
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_lost(exc: Exception) -> None:
            if not lost.done():
                lost.set_result(_reason(exc))

        client = Client(self.cfg.endpoint, watchdog_intervall=WATCHDOG_S)
        client.session_timeout = SESSION_TIMEOUT_MS
        client.connection_lost_callback = on_lost
        try:
            await client.connect()
        except asyncio.CancelledError:
            client.disconnect_socket()  # close() during a connect: leave no socket behind
            raise
        except Exception as exc:
            return False, _reason(exc)
        up = False
        try:
            sub = await client.create_subscription(self.cfg.publish_ms, queue_maxsize=0)
            handles = await self._subscribe(sub)
            self._arrival = None
            self._down, up = False, True
            self._queue.put(SourceNotice("source_up", f"{self.cfg.endpoint}: connected"))
            return True, await self._deliver(sub, handles, lost)
        except Exception as exc:
            expected = isinstance(exc, OSError | ua.UaError)  # not a bug of ours: no traceback
            _log.warning("%s: session ended: %s", self.cfg.endpoint, _reason(exc),
                         exc_info=not expected)
            return up, _reason(exc)
        finally:
            await self._disconnect(client)

    async def _deliver(self, sub: Subscription, handles: dict[int, str],
                       lost: asyncio.Future[str]) -> str:
        """Pump data changes until the link is lost; why it ended."""
        pump = asyncio.create_task(self._pump(sub, handles))
        try:
            await asyncio.wait({pump, lost}, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)  # let the pump take what arrived before the loss
        finally:
            pump.cancel()
        if pump.done() and not pump.cancelled():
            pump.result()  # the pump's own failure, raised here
        return lost.result() if lost.done() else "subscription ended"

    async def _disconnect(self, client: Client) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), CLOSE_TIMEOUT_S)
        except Exception as exc:
            _log.debug("%s: disconnect: %s", self.cfg.endpoint, _reason(exc))

    async def _subscribe(self, sub: Subscription) -> dict[int, str]:
        """Monitored items for every resolved node; client handle -> channel."""
        handles = dict(enumerate(self._node_ids, start=1))
        if not handles:
            return handles
        results = await sub.create_monitored_items(
            [self._item_request(self._node_ids[c], h) for h, c in handles.items()])
        by_handle = dict(zip(handles, results, strict=True))
        refused = [h for h, r in by_handle.items() if _filter_refused(r)]
        if refused:  # a server without the timestamp trigger: its default (value changes)
            _log.warning("%s: the server refuses the source-timestamp trigger; a tag that "
                         "holds its value completes its rows after settle_s", self.cfg.endpoint)
            retried = await sub.create_monitored_items(
                [self._item_request(self._node_ids[handles[h]], h, trigger=False)
                 for h in refused])
            by_handle.update(zip(refused, retried, strict=True))
        for handle, result in by_handle.items():
            self._node_result(handles[handle], result)
        return handles

    def _item_request(self, node_id: ua.NodeId, handle: int, trigger: bool = True
                      ) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters(
            ClientHandle=handle, SamplingInterval=self.cfg.sampling_ms,
            QueueSize=self.cfg.queue_size, DiscardOldest=True,
            Filter=ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
            if trigger else None)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params)

    async def _pump(self, sub: Subscription, handles: dict[int, str]) -> None:
        """Feed every data change to the assembler, in the order the server sent them."""
        async for event in sub:
            if isinstance(event, DataChangeEvent):
                channel = handles.get(event.data.monitored_item.ClientHandle)
                if channel is not None:
                    self._on_change(channel, event.data.monitored_item.Value, event.value)

    # -- values ----------------------------------------------------------------------------

    def _on_change(self, channel: str, data: ua.DataValue | None, value: Any) -> None:
        """One data change into the assembler; one before the resume point or already given
        out (re-sent) is dropped without a word."""
        status = data.StatusCode if data is not None else None
        if status is not None and status.value == ua.StatusCodes.BadWaitingForInitialData:
            return  # nothing written to the node yet
        stamp = self._stamp(data)
        if self._after is not None and stamp <= self._after:
            return
        number = None if status is not None and status.is_bad() else as_float(value)
        assert self._assembler is not None
        with self._lock:
            if self._again(channel, stamp):
                return
            items: list[SourceItem] = (
                [] if number is not None else [self._bad_value(channel, status, value, stamp)])
            items += self._assembler.add(channel, stamp, number)
            self._give(items)

    def _again(self, channel: str, stamp: np.datetime64) -> bool:
        """A value already given out, sent again: a new subscription (after a reconnect) starts
        with each node's current value.  Not late, just repeated (hold the lock)."""
        seen, self._seen[channel] = self._seen.get(channel), stamp
        return stamp == seen and self._last_out is not None and stamp <= self._last_out

    def _bad_value(self, channel: str, status: ua.StatusCode | None, value: Any,
                   stamp: np.datetime64) -> SourceNotice:
        node = self._node_ids[channel].to_string()
        if status is not None and status.is_bad():
            what = f"status {status.name}"
        else:
            what = f"non-numeric value {str(value)[:40]!r} ({type(value).__name__})"
        return SourceNotice("bad_payload", f"{channel} ({node}): {what}; kept as NaN",
                            [channel], stamp)

    def _stamp(self, data: ua.DataValue | None) -> np.datetime64:
        """Source stamp, else server stamp, else the arrival time of its publish."""
        for when in (data.SourceTimestamp, data.ServerTimestamp) if data is not None else ():
            if when is not None and when.year > NULL_STAMP_YEAR:
                return _utc_stamp(when)
        return self._arrival_stamp()

    def _arrival_stamp(self) -> np.datetime64:
        """One arrival stamp per publish: changes arriving within half a publishing interval
        of the stamp share it, so a server without stamps still gives whole rows."""
        now = time.monotonic()
        if self._arrival is None or now - self._arrival[0] > self.cfg.publish_ms / 2000:
            self._arrival = (now, _now_stamp())
        return self._arrival[1]

    # -- handing over ----------------------------------------------------------------------

    def _flush(self) -> None:
        if self._assembler is None:
            return
        with self._lock:
            self._give(self._assembler.flush())

    def _give(self, items: list[SourceItem]) -> None:
        """Queue what the assembler gave out, each row positioned at its own stamp (hold the
        lock, so rows from add() and flush() stay in order)."""
        for item in items:
            if isinstance(item, LiveRow) and item.stamp is not None:
                item.position = {"stamp": _iso(item.stamp)}
                self._last_out = item.stamp
            self._queue.put(item)
