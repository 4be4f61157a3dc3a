"""Wiring: a live config becomes one scorer per stream, each on its own thread."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import load_decision_config
from core.device import select_device
from core.errors import ConfigError
from core.paths import display_path, resolve_path
from inference.live.config import LiveConfig, SourceConfig
from inference.live.rows import LiveSource
from inference.live.scorer import LiveScorer, ScoringModel
from streams.base import LiveInput


def make_source(src: SourceConfig, stream: str, inp: LiveInput, cfg: Any) -> LiveSource:
    """The adapter for a source section; protocol libraries load only when used."""
    if src.kind == "replay":
        from inference.live.sources.replay import ReplaySource

        return ReplaySource(src, inp.read_recording, inp.period_s)
    if src.kind == "csv_tail":
        from inference.live.sources.csv_tail import CsvTailSource

        return CsvTailSource(src, inp.file_names, getattr(cfg.data, "timestamp_col", None))
    if src.kind == "opcua":
        from inference.live.sources.opcua import OpcUaSource

        return OpcUaSource(src, stream)
    from inference.live.sources.mqtt import MqttSource

    return MqttSource(src, stream)


def make_publisher(live: LiveConfig, stream: str) -> Any:
    if live.publish.mqtt is None and live.publish.webhook is None:
        return None
    from inference.live.publish import EventPublisher

    return EventPublisher(live.publish, stream)


def archive_outputs(live: LiveConfig, stream: str) -> Path | None:
    """``--fresh``: move a stream's earlier live outputs aside (nothing is deleted)."""
    folder = resolve_path(live.output_dir) / stream
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = resolve_path(live.output_dir) / "archive" / f"{stream}-{stamp}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(dest))
    return dest


def build_scorers(live: LiveConfig, names: Sequence[str] = (), device_pref: str = "auto",
                  fresh: bool = False, backend: str = "torch") -> list[LiveScorer]:
    """One scorer per configured stream (or those in ``names``), models loaded."""
    chosen = list(names) or list(live.streams)
    unknown = [n for n in chosen if n not in live.streams]
    if unknown:
        raise ConfigError(f"live config has no stream {', '.join(unknown)} "
                          f"(it has {', '.join(live.streams)})")
    dcfg = load_decision_config(live.decision_config)
    scorers = []
    for name in chosen:
        scfg = live.streams[name]
        device = select_device(device_pref != "cpu")
        model = ScoringModel.load(name, dcfg, device, backend)
        if fresh and (dest := archive_outputs(live, name)) is not None:
            print(f"[{name}] earlier live outputs moved to {display_path(dest)}")
        source = make_source(scfg.source, name, model.live, model.cfg)
        scorers.append(LiveScorer(name, model, source, scfg, live, make_publisher(live, name)))
    return scorers


def run_scorers(scorers: list[LiveScorer], stop: threading.Event) -> None:
    """Run every scorer on its own thread until ``stop`` is set or all have finished."""
    errors: list[BaseException] = []

    def work(scorer: LiveScorer) -> None:
        try:
            scorer.run(stop)
        except BaseException as exc:  # reported by the caller, after the others stop
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(s,), name=f"live-{s.stream}", daemon=True)
               for s in scorers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    for s in scorers:
        if s.publisher is not None:
            s.publisher.close()
    if errors:
        raise errors[0]
