"""Copies of every ``events.jsonl`` line to an MQTT topic and/or a webhook.

``events.jsonl`` is the record; these copies are best effort and must never hold up or
stop the scorer.  MQTT goes through paho's own network thread: while the broker is away,
QoS 1/2 events wait in paho's queue (up to :data:`MQTT_QUEUE`) and go out after the
reconnect.  Webhook posts run on a worker thread behind a bounded queue (the oldest event
is dropped when it is full); a post that fails is not retried.  A failure is logged once
per outage (logger ``inference.live.publish``), and again when delivery works again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

import httpx
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessageInfo, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from inference.live.config import MqttPublishConfig, PublishConfig, Reconnect, WebhookConfig

log = logging.getLogger("inference.live.publish")

MQTT_QUEUE = 1000  # events paho keeps while the broker is away
WEBHOOK_QUEUE = 1000  # events waiting for the webhook worker
DROP_LOG_EVERY_S = 60.0  # a full webhook queue is logged at most this often
CLOSE_WAIT_S = 2.0  # close() waits this long for events still in flight


class _Outage:
    """Logs the first failure of an outage and its end, not every failed event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._down = False
        self._lock = threading.Lock()

    def failed(self, why: str) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        log.warning("%s: %s; not logged again until it works", self.name, why)

    def ok(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.info("%s: delivering events again", self.name)


class _MqttSink:
    """Publishes on a topic through a paho client that reconnects on its own."""

    def __init__(self, cfg: MqttPublishConfig, stream: str) -> None:
        self.qos = cfg.qos
        self.topic = cfg.topic.replace("{stream}", stream)
        self.outage = _Outage(f"event publish to mqtt://{cfg.host}:{cfg.port} {self.topic}")
        self._connected = threading.Event()
        self._closing = False
        self._last: MQTTMessageInfo | None = None
        reconnect = Reconnect()
        client = Client(CallbackAPIVersion.VERSION2, protocol=MQTTv311)
        client.max_queued_messages_set(MQTT_QUEUE)
        client.reconnect_delay_set(reconnect.min_s, reconnect.max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.connect_async(cfg.host, cfg.port)
        client.loop_start()
        self._client = client

    def send(self, body: bytes) -> None:
        try:
            info = self._client.publish(self.topic, body, qos=self.qos)
        except ValueError as exc:  # a topic or payload paho refuses
            self.outage.failed(f"refused ({exc}); event dropped")
            return
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.outage.failed(f"{MQTT_QUEUE} events already waiting; event dropped")
        self._last = info

    def close(self) -> None:
        """Give the last events a moment to be acknowledged, then disconnect."""
        deadline = time.monotonic() + CLOSE_WAIT_S
        while (self._last is not None and self._connected.is_set()
               and not self._published(self._last) and time.monotonic() < deadline):
            time.sleep(0.01)
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    @staticmethod
    def _published(info: MQTTMessageInfo) -> bool:
        """Acknowledged; a message queued while offline reports its first failure (paho
        raises for it), which only means there is nothing more to wait for here."""
        try:
            return info.is_published()
        except (RuntimeError, ValueError):
            return True

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self.outage.failed(f"connection refused ({reason_code}); retrying")
            return
        self._connected.set()
        self.outage.ok()

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        self.outage.failed("cannot connect; events wait for the broker, retrying")

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._connected.clear()
        if not self._closing:
            self.outage.failed(f"connection lost ({reason_code}); events wait, retrying")


class _WebhookSink:
    """POSTs each event as JSON from a worker thread, so a slow endpoint costs nothing."""

    def __init__(self, cfg: WebhookConfig) -> None:
        self.cfg = cfg
        self.outage = _Outage(f"event webhook {cfg.url}")
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=WEBHOOK_QUEUE)
        self._stop = threading.Event()
        self._dropped = 0
        self._next_drop_log = 0.0
        self._thread = threading.Thread(target=self._run, name="live-event-webhook",
                                        daemon=True)
        self._thread.start()

    def send(self, body: bytes) -> None:
        while True:
            try:
                self._queue.put_nowait(body)
                return
            except queue.Full:
                self._drop_oldest()

    def close(self) -> None:
        """Let the worker post what is queued, for a bounded time (it is a daemon)."""
        self._stop.set()
        self._thread.join(self.cfg.timeout_s + CLOSE_WAIT_S)

    def _drop_oldest(self) -> None:
        try:
            self._queue.get_nowait()
        except queue.Empty:
            return
        self._dropped += 1
        now = time.monotonic()
        if now >= self._next_drop_log:
            self._next_drop_log = now + DROP_LOG_EVERY_S
            log.warning("%s: %d events waiting; dropped the oldest (%d dropped so far)",
                        self.outage.name, WEBHOOK_QUEUE, self._dropped)

    def _run(self) -> None:
        with httpx.Client(timeout=self.cfg.timeout_s) as http:
            while True:
                try:
                    body = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                self._post(http, body)

    def _post(self, http: httpx.Client, body: bytes) -> None:
        try:
            http.post(self.cfg.url, content=body,
                      headers={"Content-Type": "application/json"}).raise_for_status()
        except Exception as exc:  # any failure of a best-effort copy: log, keep the worker
            self.outage.failed(f"{type(exc).__name__}: {exc}; events are dropped")
        else:
            self.outage.ok()


class EventPublisher:
    """Sends every event line to the configured sinks; a no-op when there are none."""

    def __init__(self, cfg: PublishConfig, stream: str) -> None:
        self._sinks: list[_MqttSink | _WebhookSink] = []
        if cfg.mqtt is not None:
            self._sinks.append(_MqttSink(cfg.mqtt, stream))
        if cfg.webhook is not None:
            self._sinks.append(_WebhookSink(cfg.webhook))

    def publish(self, line: dict[str, Any]) -> None:
        """Hand ``line`` to every sink; returns at once and never raises."""
        if not self._sinks:
            return
        try:
            body = json.dumps(line, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            log.warning("event line is not JSON-serialisable (%s); not published", exc)
            return
        for sink in self._sinks:
            sink.send(body)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()
        self._sinks = []
