"""A real OPC UA server for the live-source tests: one Double node per channel, replayed rows.

The server runs in its own thread and event loop, so a test (or a live-scorer test) drives
it with plain synchronous calls while a client in another thread subscribes to it.  Every
row is written with its own stamp as the values' SourceTimestamp, the way a PLC or a
historian gateway stamps its samples.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import numpy as np
from asyncua import Server, ua

NAMESPACE = "urn:sensor-ssl:tests:replay"
# a value nobody wrote yet: no value, no stamp (a subscriber gets it first and skips it)
NOT_WRITTEN = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)

# the server's own warnings (a client gone mid-request) say nothing about the code under test
logging.getLogger("asyncua.server").setLevel(logging.ERROR)


class Sample(ua.DataValue):
    """A written value the server may share instead of deep-copying it for every monitored
    item: nothing changes it after the write, and that copy is most of a write's cost."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> Sample:
        return self


def free_port() -> int:
    """A TCP port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def opc_datetime(stamp: np.datetime64) -> datetime:
    """A datetime64 (UTC, naive) as the aware datetime asyncua encodes (microseconds)."""
    return np.datetime64(stamp, "us").item().replace(tzinfo=UTC)


class ReplayOpcUaServer:
    """An in-process asyncua server on 127.0.0.1 with node ``ns=2;s=<channel>`` per channel.

    ``missing`` channels get no node (a mis-configured tag); their column in
    :meth:`publish_rows` is skipped.  :meth:`stop` / :meth:`start` take the server off the
    network and back on the same port with its values kept, like a restarted gateway.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, channels: list[str], port: int | None = None,
                 missing: set[str] | frozenset[str] = frozenset()) -> None:
        self.channels = list(channels)
        self.missing = set(missing)
        self.port = port or free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}"
        self.running = False
        self._raw: set[str] = set()  # channels whose last write was not a Double
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"opcua-server-{self.port}")
        self._thread.start()
        self._server = Server()
        self._call(self._build())
        self.start()

    def __enter__(self) -> ReplayOpcUaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node_id(self, channel: str) -> ua.NodeId:
        return ua.NodeId(channel, 2)

    def start(self) -> None:
        """Listen on ``port`` (again); the nodes keep their last values."""
        if not self.running:
            self._call(self._server.start())
            self.running = True

    def stop(self) -> None:
        """Close every client connection and stop listening (clients see the server gone)."""
        if self.running:
            self._call(self._server.stop())
            self.running = False

    def close(self) -> None:
        """Stop the server and its thread (and the sessions clients left behind)."""
        if self._loop.is_closed():
            return
        self.stop()
        self._call(self._cancel_leftovers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop.close()

    def publish_rows(self, stamps: np.ndarray, values: np.ndarray, interval_s: float = 0.0,
                     columns: list[str] | None = None) -> None:
        """Write row i's values, all stamped ``stamps[i]``, row after row; returns when all are
        written.  ``values`` has one column per channel, or per name in ``columns`` (some
        channels only: the others keep their values); ``interval_s`` > 0 waits that long
        between rows (a paced replay)."""
        names = self.channels if columns is None else list(columns)
        unknown = sorted(set(names) - set(self.channels))
        if unknown:
            raise KeyError(f"not channels of this server: {unknown}")
        stamps = np.asarray(stamps, dtype="datetime64[ns]")
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(stamps), len(names)):
            raise ValueError(f"values: expected shape ({len(stamps)}, {len(names)}), "
                             f"got {values.shape}")
        budget = 60.0 + interval_s * len(stamps)
        self._call(self._write_rows(stamps, values, names, interval_s), timeout=budget)

    def write_raw(self, channel: str, value: ua.Variant | Any, stamp: np.datetime64) -> None:
        """Write one value of any type (a String, a Boolean) to ``channel``'s node."""
        variant = value if isinstance(value, ua.Variant) else ua.Variant(value)
        self._call(self._write(channel, variant, opc_datetime(stamp)))

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @staticmethod
    async def _cancel_leftovers() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _build(self) -> None:
        server = self._server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.disable_clock()  # its 1 s tick would make every stop() wait for it
        if await server.register_namespace(NAMESPACE) != 2:
            raise RuntimeError("the test namespace did not get index 2")
        for channel in self.channels:
            if channel in self.missing:
                continue
            await server.nodes.objects.add_variable(
                self.node_id(channel), channel, 0.0, varianttype=ua.VariantType.Double)
            await self._store(channel, ua.DataValue(StatusCode=NOT_WRITTEN))

    async def _write_rows(self, stamps: np.ndarray, values: np.ndarray, names: list[str],
                          interval_s: float) -> None:
        present = [(j, c) for j, c in enumerate(names) if c not in self.missing]
        for i, stamp in enumerate(stamps):
            when = opc_datetime(stamp)
            for j, channel in present:
                await self._write(channel, ua.Variant(float(values[i, j]), ua.VariantType.Double),
                                  when)
            # let the server publish and serve clients between rows
            await asyncio.sleep(interval_s)

    async def _write(self, channel: str, variant: ua.Variant, when: datetime) -> None:
        if channel in self.missing or channel not in self.channels:
            raise KeyError(f"{channel}: no node on this server")
        raw = variant.VariantType != ua.VariantType.Double
        if raw or channel in self._raw:
            # the address space refuses a value of another type than the last one: forget it
            self._server.iserver.aspace[self.node_id(channel)].attributes[
                ua.AttributeIds.Value].value = None
        await self._store(channel, Sample(variant, SourceTimestamp=when,
                                          ServerTimestamp=datetime.now(UTC)))
        self._raw.discard(channel)
        if raw:
            self._raw.add(channel)

    async def _store(self, channel: str, value: ua.DataValue) -> None:
        status = await self._server.iserver.aspace.write_attribute_value(
            self.node_id(channel), ua.AttributeIds.Value, value)
        if not status.is_good():
            raise RuntimeError(f"{channel}: write refused ({status.name})")
