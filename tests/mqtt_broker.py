"""A real Mosquitto broker for tests, on a free 127.0.0.1 port, and a fast publisher.

Tests talk to Debian's ``mosquitto`` (``make broker`` installs it) rather than a mock, so
reconnects, QoS and wildcard subscriptions behave as they will on site.  Not a test file:
import :class:`MosquittoBroker`, :func:`publish_json` and :func:`publish_messages`
from test modules.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessageInfo, MQTTv311

START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0


def mosquitto_binary() -> str | None:
    """Where ``mosquitto`` is: PATH first, then Debian's /usr/sbin (not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.is_file() else None


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """``with MosquittoBroker() as broker:`` a private broker; ``stop()`` / ``start()``
    take it down and bring it back on the same port, for reconnect tests."""

    host = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto not found: run `make broker` "
                               "(or apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="mosquitto-test-"))
        self.conf = self._dir / "mosquitto.conf"
        self.log_path = self._dir / "mosquitto.log"
        # log to stdout (captured in log_path): when started as root, mosquitto drops to
        # its own user and could no longer open a file in this private directory
        self.conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\n"
                             "persistence false\nlog_dest stdout\n"
                             "log_type error\nlog_type warning\nlog_type notice\n")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> MosquittoBroker:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) the broker and return once the port accepts connections."""
        if self.running:
            return
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on {self.host}:{self.port}:\n"
                                   f"{self.log_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the broker (kill it after a grace period) and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_text(self) -> str:
        """The broker's log so far, for a failure message."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def publish_json(host: str, port: int, topic: str, payloads: list[Any], qos: int = 1,
                 timeout_s: float = 10.0) -> None:
    """Publish ``payloads`` on ``topic`` in order and return once the broker has them all.

    Each payload is sent JSON-encoded, except ``str`` and ``bytes``, which go as they are
    (to test payloads that are not JSON).  With ``qos`` 0 "has them" means written out.
    """
    publish_messages(host, port, [(topic, p) for p in payloads], qos, timeout_s)


def publish_messages(host: str, port: int, messages: list[tuple[str, Any]], qos: int = 1,
                     timeout_s: float = 10.0) -> None:
    """Like :func:`publish_json`, for (topic, payload) pairs: one topic per tag."""
    connected = threading.Event()
    client = Client(CallbackAPIVersion.VERSION2, protocol=MQTTv311)
    client.on_connect = lambda *args: connected.set()
    client.max_inflight_messages_set(1000)  # a replay of many rows: no ack-per-20 stalls
    client.connect(host, port)
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise TimeoutError(f"no CONNACK from {host}:{port} within {timeout_s} s")
        infos = [client.publish(topic, _encode(p), qos=qos) for topic, p in messages]
        _wait_published(infos, time.monotonic() + timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()


def _encode(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def _wait_published(infos: list[MQTTMessageInfo], deadline: float) -> None:
    for info in infos:
        while not info.is_published():
            if time.monotonic() > deadline:
                raise TimeoutError(f"message {info.mid} not acknowledged in time")
            time.sleep(0.005)
