"""MQTT source: rows from a broker, one JSON row per message or one value per tag topic.

``row`` payloads are ``{"<timestamp_key>": ..., "values": {channel: value, ...}}`` or the
channels at the top level; a row needs its stamp (one without it, or with one that does
not parse, is dropped with a ``bad_payload`` notice: arrival times would interleave
wrongly with the publisher's stamps).  ``tag`` topics (``plant/unit1/{channel}``, read
through a ``+`` wildcard) carry ``{"<timestamp_key>": ..., "value": v}``, ``{"value": v}``
or a bare number; the last two are stamped on arrival (UTC), and values of one scan that
arrive together share a stamp so they still assemble into one row.  ``null`` is a
missing value (NaN, no notice); any other non-numeric value is NaN with a notice.

A ``row`` payload may carry a block of samples (a vibration gateway sends a burst, not one
message per sample): every channel a list of the same length, the first sample at the
stamp and the others ``period_s`` (or ``1 / fs``) apart, e.g. ``{"timestamp": ...,
"fs": 1000, "values": {"x": [...], "y": [...], "z": [...]}}``.

The client keeps a persistent session (``clean_session=False`` under the configured or
default client id), so QoS 1/2 messages published while the link was down arrive after
the reconnect, as long as the broker itself stayed up.  Rows at or before the resume
stamp, or at or before the last row given out (a redelivery), are dropped.
"""

from __future__ import annotations

import json
import queue
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from paho.mqtt.client import (
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
    MQTTv311,
    topic_matches_sub,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from inference.live.config import MqttSourceConfig
from inference.live.rows import (
    LiveRow,
    RowAssembler,
    SourceItem,
    SourceNotice,
    as_float,
    to_stamp,
)

CHANNEL = "{channel}"


@dataclass(frozen=True)
class _Message:
    """A message as the network thread saw it; parsed later, on the scorer's thread."""

    topic: str
    payload: bytes
    arrived: np.datetime64


def stamp_text(stamp: np.datetime64) -> str:
    """ISO text to the nanosecond, so a resume position compares exactly."""
    return str(np.datetime_as_string(stamp, unit="ns"))


def tag_topics(topic: str) -> tuple[str, re.Pattern[str]]:
    """The wildcard subscription for a tag topic and a pattern giving a topic's channel."""
    if topic.count(CHANNEL) != 1:
        raise ValueError(f"mqtt tag topic {topic!r} must contain {CHANNEL} exactly once")
    levels = topic.split("/")
    subscription = "/".join("+" if CHANNEL in level else level for level in levels)
    pattern = re.escape(topic).replace(re.escape(CHANNEL), "([^/]+)")
    return subscription, re.compile(pattern)


def _bad(detail: str, channels: list[str] | None = None,
         stamp: np.datetime64 | None = None) -> SourceNotice:
    return SourceNotice("bad_payload", detail, channels or [], stamp)


def _number(value: Any) -> float | None:
    """:func:`as_float`, where a JSON integer too large for a float is no number either."""
    try:
        return as_float(value)
    except OverflowError:
        return None


def _json(msg: _Message) -> Any | SourceNotice:
    try:
        return json.loads(msg.payload)
    except (ValueError, RecursionError) as exc:
        return _bad(f"{msg.topic}: payload is not JSON ({exc}); dropped")


def _stamp(body: dict[str, Any], key: str, msg: _Message) -> np.datetime64 | SourceNotice:
    if key not in body:
        return _bad(f"{msg.topic}: row has no {key!r}; dropped")
    stamp = to_stamp(body[key])
    if stamp is None:
        return _bad(f"{msg.topic}: {key!r} {body[key]!r} is not a time stamp; dropped")
    return stamp


def parse_row(msg: _Message, index: dict[str, int], key: str) -> list[SourceItem]:
    """One row message -> the row (NaN where a channel is missing) and any notice."""
    body = _json(msg)
    if isinstance(body, SourceNotice):
        return [body]
    if not isinstance(body, dict):
        return [_bad(f"{msg.topic}: payload is a JSON {type(body).__name__}, "
                     "not an object; dropped")]
    stamp = _stamp(body, key, msg)
    if isinstance(stamp, SourceNotice):
        return [stamp]
    nested = body.get("values")
    values = nested if isinstance(nested, dict) else {
        k: v for k, v in body.items() if k not in (key, "fs", "period_s")}
    if any(isinstance(v, list) for v in values.values()):
        return parse_block(msg, index, values, body, stamp)
    row = np.full(len(index), np.nan, dtype=np.float32)
    bad: list[str] = []
    for name, value in values.items():
        if name not in index or value is None:
            continue
        number = _number(value)
        if number is None:
            bad.append(name)
        else:
            row[index[name]] = number
    out: list[SourceItem] = []
    if bad:
        out.append(_bad(f"{msg.topic}: non-numeric value for {', '.join(bad)}; taken as NaN",
                        bad, stamp))
    out.append(LiveRow(stamp, row))
    return out


def _block_period(body: dict[str, Any]) -> float | None:
    """Seconds between a block's samples: ``period_s``, else ``1 / fs``."""
    period = _number(body.get("period_s"))
    if period is None and (fs := _number(body.get("fs"))) is not None and fs > 0:
        period = 1.0 / fs
    return period if period is not None and period > 0 else None


def parse_block(msg: _Message, index: dict[str, int], values: dict[str, Any],
                body: dict[str, Any], first: np.datetime64) -> list[SourceItem]:
    """A block payload -> one LiveRow of ``n`` samples (see the module docstring)."""
    lists = {k: v for k, v in values.items() if k in index}
    lengths = {len(v) if isinstance(v, list) else -1 for v in lists.values()}
    period = _block_period(body)
    if len(lengths) != 1 or min(lengths) < 1 or period is None:
        return [_bad(f"{msg.topic}: a block needs every channel as a list of one length and "
                     "fs or period_s; dropped")]
    n = lengths.pop()
    block = np.full((n, len(index)), np.nan, dtype=np.float32)
    bad: list[str] = []
    for name, items in lists.items():
        numbers = [np.nan if v is None else _number(v) for v in items]
        if any(x is None for x in numbers):
            bad.append(name)
        block[:, index[name]] = [np.nan if x is None else x for x in numbers]
    offsets = np.rint(np.arange(n) * period * 1e9).astype(np.int64).astype("timedelta64[ns]")
    out: list[SourceItem] = []
    if bad:
        out.append(_bad(f"{msg.topic}: non-numeric samples for {', '.join(bad)}; taken as NaN",
                        bad, first))
    out.append(LiveRow(first + offsets, block))
    return out


def parse_tag(msg: _Message, key: str) -> tuple[np.datetime64 | None, Any] | SourceNotice:
    """One tag message -> (its stamp, None when stamped on arrival; its raw value)."""
    body = _json(msg)
    if isinstance(body, SourceNotice):
        return body
    if isinstance(body, list):
        return _bad(f"{msg.topic}: payload is a JSON list, not a value; dropped")
    if not isinstance(body, dict):
        return None, body
    if "value" not in body:
        return _bad(f"{msg.topic}: payload has no 'value'; dropped")
    if key not in body:
        return None, body["value"]
    stamp = _stamp(body, key, msg)
    return stamp if isinstance(stamp, SourceNotice) else (stamp, body["value"])


class MqttSource:
    """A :class:`~inference.live.rows.LiveSource` on an MQTT broker (paho, own thread)."""

    kind = "mqtt"

    def __init__(self, cfg: MqttSourceConfig, stream: str) -> None:
        self.cfg = cfg
        self.stream = stream
        self.finished = False
        self.address = f"{cfg.host}:{cfg.port}"
        topic = cfg.topic.replace("{stream}", stream)
        self.subscription, self._tag_pattern = (
            tag_topics(topic) if cfg.payload == "tag" else (topic, None))
        self._inbox: queue.Queue[_Message | SourceNotice] = queue.Queue()
        self._client: Client | None = None
        self._closing = False
        self._down_reported = False
        self._index: dict[str, int] = {}
        self._assembler: RowAssembler | None = None
        self._resume: np.datetime64 | None = None
        self._last: np.datetime64 | None = None
        self._open_stamp: np.datetime64 | None = None  # arrival-stamped tag row being filled
        self._open_seen: set[str] = set()

    # -- LiveSource -------------------------------------------------------------------

    def open(self, columns: list[str], resume: dict[str, Any] | None) -> None:
        """Connect in the background: a broker that is down is retried, never raised."""
        self._index = {c: i for i, c in enumerate(columns)}
        if self.cfg.payload == "tag":
            self._assembler = RowAssembler(columns, self.cfg.settle_s)
        self._resume = to_stamp((resume or {}).get("stamp"))
        client = Client(CallbackAPIVersion.VERSION2,
                        client_id=self.cfg.client_id or f"sensor-ssl-live-{self.stream}",
                        clean_session=False, protocol=MQTTv311)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(self.cfg.reconnect.min_s, self.cfg.reconnect.max_s)
        client.connect_async(self.cfg.host, self.cfg.port)
        client.loop_start()
        self._client = client

    def read(self, timeout_s: float) -> list[SourceItem]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            out = self._admit(self._process(self._take(deadline)))
            if out or time.monotonic() >= deadline:
                return out

    def describe(self) -> str:
        return (f"mqtt://{self.address} topic {self.subscription} "
                f"({self.cfg.payload} payloads, qos {self.cfg.qos})")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._closing = True
            client.disconnect()
            client.loop_stop()

    # -- the scorer's side: parse, assemble, order ------------------------------------

    def _take(self, deadline: float) -> list[_Message | SourceNotice]:
        """Everything queued; waits until ``deadline`` for the first item."""
        try:
            items = [self._inbox.get(timeout=max(deadline - time.monotonic(), 0.0))]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                return items

    def _process(self, items: list[_Message | SourceNotice]) -> list[SourceItem]:
        out: list[SourceItem] = []
        for item in items:
            if isinstance(item, SourceNotice):
                out.append(item)
            elif not topic_matches_sub(self.subscription, item.topic):
                continue  # a subscription an earlier config left in the persistent session
            elif self._assembler is None:
                out.extend(parse_row(item, self._index, self.cfg.timestamp_key))
            else:
                out.extend(self._add_tag(item, self._assembler))
        if self._assembler is not None:
            out.extend(self._assembler.flush())
        return out

    def _add_tag(self, msg: _Message, assembler: RowAssembler) -> list[SourceItem]:
        match = self._tag_pattern.fullmatch(msg.topic) if self._tag_pattern else None
        if match is None or match.group(1) not in self._index:
            return []  # another tag under the same wildcard
        channel = match.group(1)
        parsed = parse_tag(msg, self.cfg.timestamp_key)
        if isinstance(parsed, SourceNotice):
            return [SourceNotice(parsed.kind, parsed.detail, [channel], parsed.stamp)]
        stamp, value = parsed
        stamp = stamp if stamp is not None else self._arrival_row(channel, msg.arrived)
        number = np.nan if value is None else _number(value)
        out = assembler.add(channel, stamp, number)
        if number is None:
            out.insert(0, _bad(f"{msg.topic}: non-numeric value {value!r} for {channel}; "
                               "taken as NaN", [channel], stamp))
        return out

    def _arrival_row(self, channel: str, arrived: np.datetime64) -> np.datetime64:
        """Arrival-stamped values of one scan share a stamp: a value joins the row being
        filled unless its channel is already in it or that row is older than settle_s."""
        settle = np.timedelta64(int(self.cfg.settle_s * 1e9), "ns")
        if (self._open_stamp is None or channel in self._open_seen
                or arrived - self._open_stamp >= settle):
            self._open_stamp, self._open_seen = arrived, set()
        self._open_seen.add(channel)
        return self._open_stamp

    def _admit(self, items: list[SourceItem]) -> list[SourceItem]:
        """Drop rows up to the resume stamp (silently) or out of order (with a notice);
        stamp each kept row's position.  A block keeps the samples after both."""
        out: list[SourceItem] = []
        for item in items:
            if isinstance(item, LiveRow) and item.stamp is not None:
                stamps = np.atleast_1d(item.stamp)
                keep = np.ones(len(stamps), bool)
                if self._resume is not None:
                    keep &= stamps > self._resume
                if not keep.any():
                    continue
                if self._last is not None and not (stamps[keep] > self._last).all():
                    out.append(_bad(f"{self.subscription}: row for {stamp_text(stamps[0])} "
                                    "arrived after a later row (out of order or repeated); "
                                    "dropped", stamp=stamps[0]))
                    continue
                if not keep.all():
                    item = LiveRow(stamps[keep], item.values[keep])
                self._last = stamps[keep][-1]
                item.position = {"stamp": stamp_text(self._last)}
            out.append(item)
        return out

    # -- paho's network thread: only queue things, never raise -----------------------

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._down(f"connection refused ({reason_code}); retrying")
        else:
            client.subscribe(self.subscription, qos=self.cfg.qos)

    def _on_subscribe(self, client: Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            self._down(f"subscription to {self.subscription} refused ({', '.join(refused)})")
            return
        self._down_reported = False
        self._inbox.put(SourceNotice("source_up", f"{self.address}: connected"))

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        self._down("cannot connect; retrying")

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        if not self._closing:
            self._down(f"connection lost ({reason_code}); retrying")

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        self._inbox.put(_Message(message.topic, message.payload,
                                 np.datetime64(time.time_ns(), "ns")))

    def _down(self, why: str) -> None:
        """One ``source_down`` per outage, however many attempts fail during it."""
        if not self._down_reported:
            self._down_reported = True
            self._inbox.put(SourceNotice("source_down", f"{self.address}: {why}"))
