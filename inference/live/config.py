"""``configs/live_local.yaml``: which stream watches which source, the guards, the sinks.

The model side comes from the decision config it names (checkpoint, stream config,
thresholds, alarm rule), so a live scorer judges with exactly what the batch decisions
and the promotion gate judged with.  Every path is repository-relative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.config import (
    NonNegFloat,
    PosFloat,
    PosInt,
    Ratio,
    Section,
    read_yaml,
    validate_config,
)
from core.paths import display_path, resolve_path


class Reconnect(Section):
    """Back-off between attempts: doubles from ``min_s`` up to ``max_s``."""

    min_s: PosFloat = 0.5
    max_s: PosFloat = 30.0


class ReplaySourceConfig(Section):
    """A recorded file played back row by row (the demo, a rehearsal, a test)."""

    kind: Literal["replay"]
    path: str  # one FDC or vibration file, read like the batch readers read it
    speed: NonNegFloat = 0.0  # x real time from the file's stamps; 0: as fast as possible
    rows_per_read: PosInt = 256  # rows handed over per read (vibration: samples)


class CsvTailSourceConfig(Section):
    """A CSV a historian keeps appending to, or a folder where new CSV files arrive."""

    kind: Literal["csv_tail"]
    path: str  # a file, or a glob (data/live/fdc/*.csv): files are read in name order
    poll_s: PosFloat = 0.5
    timestamp_col: str | None = None  # default: the stream config's data.timestamp_col


class OpcUaSourceConfig(Section):
    """An OPC UA server: one node per channel, values with the server's source stamps."""

    kind: Literal["opcua"]
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    # channel -> node id ("ns=2;s=xmeas_1"); channels not listed use node_template
    nodes: dict[str, str] = {}
    node_template: str | None = "ns=2;s={channel}"
    sampling_ms: NonNegFloat = 0.0  # 0: every change the server sees
    queue_size: PosInt = 1000  # changes a node may queue between publishes
    publish_ms: PosFloat = 100.0
    settle_s: PosFloat = 2.0  # a row waits this long for its last tag, then goes with NaN
    reconnect: Reconnect = Reconnect()


class MqttSourceConfig(Section):
    """An MQTT broker: a JSON row per message (``row``) or a value per tag topic (``tag``)."""

    kind: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    # row: one topic, payload {"timestamp": ..., "values": {channel: value, ...}} (or the
    # channels at the top level); tag: "plant/unit1/{channel}", payload {"timestamp": ...,
    # "value": v} or a bare number (stamped on arrival)
    topic: str = "sensor_ssl/{stream}/rows"
    payload: Literal["row", "tag"] = "row"
    timestamp_key: str = "timestamp"
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    client_id: str | None = None  # default: sensor-ssl-live-<stream>
    settle_s: PosFloat = 2.0
    reconnect: Reconnect = Reconnect()


SourceConfig = Annotated[
    ReplaySourceConfig | CsvTailSourceConfig | OpcUaSourceConfig | MqttSourceConfig,
    Field(discriminator="kind"),
]


class GuardConfig(Section):
    """Per-row data-quality guards; each raises a data-quality event, never stops scoring."""

    nan_burst_rows: PosInt = 5  # this many rows in a row with a NaN in some channel
    missing_rows: PosInt = 20  # a channel NaN this many rows in a row: missing channel
    stuck_rows: PosInt = 60  # a channel exactly constant this long (and not in training)
    gap_factor: PosFloat = 3.0  # a time step over this x the expected period: a gap
    drift_tolerance: Ratio = 0.1  # median period over a window off by more: fs drift
    clear_rows: PosInt = 10  # clean rows before a data-quality event clears


class MqttPublishConfig(Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topic: str = "sensor_ssl/{stream}/events"
    qos: Annotated[int, Field(ge=0, le=2)] = 1


class WebhookConfig(Section):
    url: str  # http(s)://...; each event transition is POSTed as JSON
    timeout_s: PosFloat = 5.0


class PublishConfig(Section):
    """Optional copies of every event transition; failures are logged, never fatal."""

    mqtt: MqttPublishConfig | None = None
    webhook: WebhookConfig | None = None


class LiveStreamConfig(Section):
    source: SourceConfig
    guards: GuardConfig = GuardConfig()


class LiveConfig(Section):
    decision_config: str = "configs/decision_local.yaml"
    output_dir: str = "artifacts/live"  # <output_dir>/<stream>/{scores,events}.jsonl, state
    streams: dict[str, LiveStreamConfig]
    publish: PublishConfig = PublishConfig()
    # scores.jsonl rolls over to scores.1.jsonl (and so on, keep this many) at this size
    rotate_mib: PosFloat = 64.0
    keep_rotated: PosInt = 5
    batch_windows: PosInt = 64  # windows scored together when rows arrive faster than real time
    status_every_s: NonNegFloat = 0.5  # status.json for the dashboard at most this often
    recent_scores: PosInt = 600  # scores kept in status.json for the live timeline

    @model_validator(mode="after")
    def _some_stream(self) -> LiveConfig:
        if not self.streams:
            raise ValueError("streams: name at least one stream to watch")
        return self


def load_live_config(path: str | Path) -> LiveConfig:
    shown = display_path(resolve_path(path))
    return validate_config(LiveConfig, read_yaml(path), f"{shown} (live config)")
