"""The live scorer: replayed and tailed files raise the batch decisions' events, restarts
neither lose nor repeat events, bad rows become data-quality events.

Tiny checkpoints (tests/test_scoring.py) in a private repository copy; the batch test
pipeline calibrates and decides first, then the live scorer watches the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from core.config import AlarmRule
from inference.alarms import AlarmTracker, find_events
from inference.live.config import GuardConfig, LiveConfig, load_live_config
from inference.live.guards import Guards
from inference.live.rows import SourceNotice
from inference.live.service import build_scorers, run_scorers
from pipelines.run_local_test_pipeline import main as pipeline_main
from tests.test_scoring import fdc_machine, write_vib

REPO = Path(__file__).resolve().parents[1]
EVENT_KEYS = ("level", "start", "raised_at", "end", "start_window", "raised_window",
              "end_window", "n_windows", "peak_window", "open")


def write_fault_fdc(path: Path, rows: slice, fault: slice, channel: str = "ch_02") -> Path:
    """Machine rows with a large step on ``channel`` over the ``fault`` rows (file-relative)."""
    frame = fdc_machine().iloc[rows].reset_index(drop=True)
    frame.loc[fault.start: fault.stop - 1, channel] += 40 * frame[channel].std()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def decided(run_root: Path) -> dict[str, Any]:
    """Batch decisions on a fault file (normal, fault, normal again) of each stream."""
    test = run_root / "data" / "local" / "test"
    write_fault_fdc(test / "fdc" / "fault.csv", slice(1100, 1400), slice(100, 180))
    write_vib(test / "vib" / "bearing.csv", 6.0, seed=23, fault="bearing")
    cfg = {
        "streams": {
            "patchtst": {"config": "configs/patch.yaml",
                         "checkpoint": "checkpoints/patchtst_ssl.pt",
                         "calibration_path": "data/local/calib/fdc/*.csv",
                         "test_path": "data/local/test/fdc/*.csv"},
            "swinmae": {"config": "configs/swin.yaml", "checkpoint": "checkpoints/swinmae_ssl.pt",
                        "calibration_path": "data/local/calib/vib/*.csv",
                        "test_path": "data/local/test/vib/*.csv"},
        },
        "thresholds": {"min_tail_windows": 3},
        "calibration_dir": "artifacts/calibration",
        "output_dir": "artifacts/decisions",
    }
    (run_root / "configs" / "decision.yaml").write_text(yaml.safe_dump(cfg))
    assert pipeline_main(["--config", "configs/decision.yaml", "--run-id", "batch"]) == 0
    decisions = json.loads((run_root / "artifacts" / "decisions" / "decisions.json").read_text())
    return {s: {f["file_id"]: f for f in block["files"]}
            for s, block in decisions["streams"].items()}


def live_config(root: Path, streams: dict[str, Any], **extra: Any) -> Path:
    path = root / "configs" / "live.yaml"
    path.write_text(yaml.safe_dump({"decision_config": "configs/decision.yaml",
                                    "output_dir": "artifacts/live", "streams": streams,
                                    "status_every_s": 0, **extra}))
    return path


def run_live(config: Path, names: tuple[str, ...] = (), timeout_s: float = 120) -> None:
    """Run the scorers until their finite sources end (a watchdog stops a hang)."""
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        run_scorers(build_scorers(load_live_config(config), names), stop)
    finally:
        timer.cancel()
    assert not stop.is_set(), "the live scorer did not finish in time"


class Running:
    """One live stream's scorer on a thread, for sources that never end."""

    def __init__(self, config: Path, stream: str) -> None:
        (self.scorer,) = build_scorers(load_live_config(config), (stream,))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_scorers, args=([self.scorer], self.stop))
        self.thread.start()

    def wait(self, what: Any, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not what(self.scorer):
            assert time.monotonic() < deadline and self.thread.is_alive(), "live scorer stuck"
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def batch_grid(batch: dict[str, Any], n_windows: int) -> tuple[list, list]:
    """The batch windows and events a source that never ends can match: without the
    file's last, covering window (a live feed has no last row)."""
    windows = [w for w in batch["windows"] if w["index"] < n_windows]
    return windows, [e for e in batch["events"] if e["end_window"] < n_windows]


def fdc_rows(path: Path) -> tuple[list[str], pd.DataFrame]:
    frame = pd.read_csv(path)
    return [c for c in frame.columns if c != "timestamp"], frame


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_events(lines: list[dict[str, Any]], status: dict[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    """Each process event as it last stood: its last transition, or for one still open the
    status file's picture (it grew after it was raised)."""
    last: dict[int, dict[str, Any]] = {}
    for line in lines:
        if line["kind"] == "process":
            last[line["event"]["id"]] = line["event"]
    for event in (status or {}).get("open_events", []):
        last[event["id"]] = event
    return [last[k] for k in sorted(last)]


def assert_same_events(live: list[dict[str, Any]], batch: list[dict[str, Any]]) -> None:
    assert [{k: e[k] for k in EVENT_KEYS} for e in live] == \
        [{k: e[k] for k in EVENT_KEYS} for e in batch]
    for a, b in zip(live, batch, strict=True):
        assert a["peak_score"] == pytest.approx(b["peak_score"], rel=1e-4)
        assert list(a["contributors"])[:2] == list(b["contributors"])[:2]
        for name, value in b["contributors"].items():
            assert a["contributors"][name] == pytest.approx(value, rel=1e-4)


# --------------------------------------------------------------------------- alarm rule
def _vectorised_events(s: np.ndarray, warn: float, anomaly: float, clear: float,
                       rule: AlarmRule) -> list[tuple]:
    """The rule written over whole arrays (prefix sums), as an independent reference."""
    def recent(over: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0], np.cumsum(over)])
        idx = np.arange(1, len(over) + 1)
        return c[idx] - c[np.maximum(idx - rule.raise_n, 0)]

    over_w = s > warn
    n_warn, n_anom = recent(over_w), recent(s > anomaly)
    out, i, n = [], 0, len(s)
    while i < n:
        if n_warn[i] < rule.raise_k:
            i += 1
            continue
        lo = max(0, i - rule.raise_n + 1)
        start = lo + int(np.argmax(over_w[lo: i + 1]))
        raised, level, last_high, quiet, j = i, "warn", i, 0, i
        while j < n and quiet < rule.clear_windows:
            level = "anomaly" if n_anom[j] >= rule.raise_k else level
            last_high, quiet = (j, 0) if s[j] > clear or not np.isfinite(s[j]) \
                else (last_high, quiet + 1)
            j += 1
        out.append((level, start, raised, last_high, quiet < rule.clear_windows))
        i = j
    return out


def test_alarm_tracker_equals_the_whole_array_rule() -> None:
    rng = np.random.default_rng(0)
    for _ in range(1500):
        k = int(rng.integers(1, 5))
        rule = AlarmRule(raise_k=k, raise_n=int(rng.integers(k, 8)),
                         clear_windows=int(rng.integers(1, 7)))
        m = int(rng.integers(0, 160))
        s = np.cumsum(rng.normal(0, 0.3, m)) * 0.2 + rng.normal(0, 0.5, m)
        if m and rng.random() < 0.2:
            s[rng.integers(0, m)] = np.nan
        got = [(e.level, e.start, e.raised, e.end, e.open)
               for e in find_events(s, 0.5, 1.0, 0.2, rule)]
        assert got == _vectorised_events(s, 0.5, 1.0, 0.2, rule)


def test_alarm_tracker_state_survives_a_restart() -> None:
    rule = AlarmRule()
    s = np.r_[np.zeros(10), np.full(4, 0.8), np.full(4, 2.0), np.full(8, 0.0)]
    whole = AlarmTracker(0.5, 1.0, 0.2, rule)
    kinds = [t.kind for x in s for t in whole.step(x)]
    first = AlarmTracker(0.5, 1.0, 0.2, rule)
    seen = [t.kind for x in s[:14] for t in first.step(x)]
    again = AlarmTracker.from_state(json.loads(json.dumps(first.state())), 0.5, 1.0, 0.2, rule)
    seen += [t.kind for x in s[14:] for t in again.step(x)]
    assert seen == kinds == ["raised", "escalated", "cleared"]


# --------------------------------------------------------------------------- guards
def test_guards_raise_and_clear_data_quality_events() -> None:
    rules = GuardConfig(nan_burst_rows=3, missing_rows=5, stuck_rows=6, clear_rows=4)
    g = Guards(["a", "b", "c"], rules, period_s=1.0, steady=frozenset({"c"}))
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 3)).astype(np.float32)
    values[5:12, 0] = np.nan  # a: missing 7 rows -> nan burst and missing channel
    values[20:30, 1] = 1.5  # b: stuck 10 rows
    values[:, 2] = 0.0  # c: constant, but it was constant in training too
    stamps = np.datetime64("2024-01-01T00:00:00", "ns") + np.arange(40) * np.timedelta64(1, "s")
    stamps[37:] += np.timedelta64(10, "s")  # 11 s between rows 36 and 37: a gap, still open
    out = g.rows(stamps[:17], values[:17], 0) + g.rows(stamps[17:], values[17:], 17)
    raised = {e.check: e for t, e in out if t == "raised"}
    cleared = {e.check: e for t, e in out if t == "cleared"}
    assert set(raised) == {"nan_burst", "missing_channel", "stuck", "gap"}
    assert raised["nan_burst"].start == "2024-01-01T00:00:07.000"  # the 3rd NaN row
    assert raised["missing_channel"].channels == ["a"]
    assert raised["stuck"].channels == ["b"] and raised["stuck"].start == \
        "2024-01-01T00:00:25.000"  # 6 equal rows: 20 differs from 19, 21..25 equal 20
    assert set(cleared) == {"nan_burst", "missing_channel", "stuck"}
    assert cleared["nan_burst"].end == "2024-01-01T00:00:15.000"  # rows 12..15 clean
    assert [e.check for e in g.open_events()] == ["gap"]
    # one event per problem, however many rows show it; source notices are events too
    assert sum(1 for t, e in out if t == "raised" and e.check == "stuck") == 1
    down = g.notice(SourceNotice("source_down", "broker gone"), "t1")
    assert [(t, e.check) for t, e in down] == [("raised", "source_down")]
    assert [(t, e.check) for t, e in g.notice(SourceNotice("source_up", "back"), "t2")] == \
        [("cleared", "source_down")]
    restored = Guards(["a", "b", "c"], rules, 1.0, frozenset({"c"}))
    restored.load_state(json.loads(json.dumps(g.state())))
    assert [e.id for e in restored.open_events()] == [e.id for e in g.open_events()]


# --------------------------------------------------------------------------- replay
def test_replay_raises_the_batch_events_for_both_streams(decided: dict, run_root: Path) -> None:
    config = live_config(run_root, {
        "patchtst": {"source": {"kind": "replay", "path": "data/local/test/fdc/fault.csv",
                                "rows_per_read": 37}},
        "swinmae": {"source": {"kind": "replay", "path": "data/local/test/vib/bearing.csv",
                               "rows_per_read": 700}},
    })
    run_live(config)
    out = run_root / "artifacts" / "live"
    for stream, name in (("patchtst", "fault.csv"), ("swinmae", "bearing.csv")):
        batch = decided[stream][name]
        assert batch["events"], f"the {stream} fault file should raise an event in batch"
        scores = read_lines(out / stream / "scores.jsonl")
        assert [s["window"] for s in scores] == list(range(batch["n_windows"]))
        np.testing.assert_allclose([s["score"] for s in scores],
                                   [w["score"] for w in batch["windows"]], rtol=1e-4)
        assert [s["end"] for s in scores] == [w["end"] for w in batch["windows"]]
        lines = read_lines(out / stream / "events.jsonl")
        assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
        status = json.loads((out / stream / "status.json").read_text())
        assert_same_events(final_events(lines, status), batch["events"])
        assert status["state"] == "finished" and status["windows"] == batch["n_windows"]
        assert status["thresholds"]["warn"] > status["thresholds"]["clear"]


def test_tailed_csv_with_rotation_raises_the_batch_events(decided: dict, run_root: Path) -> None:
    """A writer thread appends the fault file's rows in pieces, rotating the file once."""
    source = run_root / "data" / "local" / "test" / "fdc" / "fault.csv"
    lines = source.read_text().splitlines()
    header, body = lines[0], lines[1:]
    live_dir = run_root / "data" / "live"
    live_dir.mkdir(parents=True)
    target = live_dir / "unit.csv"
    config = live_config(run_root, {"patchtst": {"source": {
        "kind": "csv_tail", "path": "data/live/unit.csv", "poll_s": 0.05}}})
    scorers = build_scorers(load_live_config(config), ("patchtst",))
    stop = threading.Event()
    runner = threading.Thread(target=run_scorers, args=(scorers, stop))
    runner.start()

    def write(rows: list[str], mode: str = "a") -> None:
        with target.open(mode) as f:
            f.write("\n".join(rows) + "\n")
            f.flush()

    write([header] + body[:50], "w")
    for lo in range(50, 170, 30):
        time.sleep(0.05)
        write(body[lo: lo + 30])
    partial = body[170]
    with target.open("a") as f:  # half a line: must wait for its newline
        f.write(partial[:10])
    time.sleep(0.2)
    with target.open("a") as f:
        f.write(partial[10:] + "\n")
    os.replace(target, live_dir / "unit.csv.1")  # rotation: a new file under the same name
    write([header] + body[171:], "w")
    scorer = scorers[0]
    deadline = time.monotonic() + 60
    while scorer.n_rows < len(body) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(30)
    assert scorer.n_rows == len(body)
    out = run_root / "artifacts" / "live" / "patchtst"
    batch = decided["patchtst"]["fault.csv"]
    # a growing file has no last row: the batch's extra window at the file's end is absent
    grid = [w for w in batch["windows"] if w["index"] < scorer.next_window]
    scores = read_lines(out / "scores.jsonl")
    assert [s["end"] for s in scores] == [w["end"] for w in grid]
    events = final_events(read_lines(out / "events.jsonl"))
    assert_same_events(events, [e for e in batch["events"] if e["end_window"] < len(grid)])
    dq = [x for x in read_lines(out / "events.jsonl") if x["kind"] == "data_quality"]
    assert dq == []  # a rotation and a half-written line are not data problems


def test_killed_and_restarted_scorer_neither_loses_nor_repeats_events(
        decided: dict, run_root: Path) -> None:
    config = live_config(run_root, {"patchtst": {"source": {
        "kind": "replay", "path": "data/local/test/fdc/fault.csv", "speed": 600,
        "rows_per_read": 5}}})  # rows 1 s apart: 600 rows/s
    cmd = [sys.executable, "-m", "inference.live", "--config", str(config)]
    env = {**os.environ, "SSL_REPO_ROOT": str(run_root)}
    events = run_root / "artifacts" / "live" / "patchtst" / "events.jsonl"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (events.is_file() and events.read_text()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to save anything
    proc.wait(10)
    assert events.read_text(), "the first run should have raised the event before the kill"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming after row" in done.stdout
    lines = read_lines(events)
    assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))  # none twice, none lost
    assert_same_events(final_events(lines), decided["patchtst"]["fault.csv"]["events"])
    transitions = [(x["event"]["id"], x["transition"]) for x in lines]
    assert len(transitions) == len(set(transitions))


def test_bad_live_rows_give_data_quality_events_not_a_stop(decided: dict,
                                                           run_root: Path) -> None:
    """NaN bursts, non-numeric cells, out-of-order and missing stamps in a tailed file."""
    frame = fdc_machine().iloc[1100:1300].reset_index(drop=True)
    frame = frame.astype({"ch_01": object, "timestamp": object})
    frame.loc[40:55, "ch_03"] = np.nan
    frame.loc[70:72, "ch_01"] = "sensor fault"
    frame.loc[90, "timestamp"] = frame.loc[10, "timestamp"]  # out of order
    frame.loc[120, "timestamp"] = "not a time"
    path = run_root / "data" / "live" / "bad.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    config = live_config(run_root, {"patchtst": {
        "source": {"kind": "csv_tail", "path": "data/live/bad.csv", "poll_s": 0.05},
        "guards": {"nan_burst_rows": 5, "missing_rows": 10, "clear_rows": 5}}})
    scorers = build_scorers(load_live_config(config), ("patchtst",))
    stop = threading.Event()
    runner = threading.Thread(target=run_scorers, args=(scorers, stop))
    runner.start()
    deadline = time.monotonic() + 60
    while scorers[0].n_rows < 198 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(30)
    assert scorers[0].n_rows == 198  # two rows dropped: out of order, no stamp
    lines = read_lines(run_root / "artifacts" / "live" / "patchtst" / "events.jsonl")
    dq = {(x["event"]["check"], x["transition"]) for x in lines if x["kind"] == "data_quality"}
    assert {("nan_burst", "raised"), ("nan_burst", "cleared"), ("missing_channel", "raised"),
            ("bad_payload", "raised"), ("out_of_order", "raised")} <= dq
    scores = read_lines(run_root / "artifacts" / "live" / "patchtst" / "scores.jsonl")
    assert len(scores) == (198 - 16) // 4 + 1 and all(np.isfinite(s["score"]) for s in scores)


def test_mqtt_rows_raise_the_batch_events(decided: dict, run_root: Path) -> None:
    """The fault file published as JSON rows to a real Mosquitto broker, which goes down
    and comes back in the middle (the scorer says so and goes on)."""
    from tests.mqtt_broker import MosquittoBroker, publish_json

    channels, frame = fdc_rows(run_root / "data" / "local" / "test" / "fdc" / "fault.csv")
    payloads = [{"timestamp": t, "values": {c: float(r[c]) for c in channels}}
                for t, (_, r) in zip(frame["timestamp"], frame.iterrows(), strict=True)]
    with MosquittoBroker() as broker:
        config = live_config(run_root, {"patchtst": {"source": {
            "kind": "mqtt", "port": broker.port, "topic": "plant/{stream}/rows",
            "reconnect": {"min_s": 0.1, "max_s": 0.5}}}})
        live = Running(config, "patchtst")
        try:
            live.wait(lambda s: s.connected)
            publish_json(broker.host, broker.port, "plant/patchtst/rows", payloads[:150])
            live.wait(lambda s: s.n_rows == 150)
            broker.stop()
            live.wait(lambda s: not s.connected)
            broker.start()
            live.wait(lambda s: s.connected)
            publish_json(broker.host, broker.port, "plant/patchtst/rows", payloads[150:])
            live.wait(lambda s: s.n_rows == len(payloads))
        finally:
            live.close()
    out = run_root / "artifacts" / "live" / "patchtst"
    windows, events = batch_grid(decided["patchtst"]["fault.csv"], live.scorer.next_window)
    assert [s["end"] for s in read_lines(out / "scores.jsonl")] == [w["end"] for w in windows]
    lines = read_lines(out / "events.jsonl")
    status = json.loads((out / "status.json").read_text())
    assert_same_events(final_events(lines, status), events)
    dq = [(x["event"]["check"], x["transition"]) for x in lines if x["kind"] == "data_quality"]
    assert dq == [("source_down", "raised"), ("source_down", "cleared")]


def test_opcua_nodes_raise_the_batch_events(decided: dict, run_root: Path) -> None:
    """The fault file published on one node per channel of a real asyncua server, with the
    rows' stamps as source timestamps; a node the server lacks is a data-quality event."""
    from tests.opcua_server import ReplayOpcUaServer

    channels, frame = fdc_rows(run_root / "data" / "local" / "test" / "fdc" / "fault.csv")
    stamps = pd.to_datetime(frame["timestamp"]).to_numpy("datetime64[ns]")
    values = frame[channels].to_numpy(np.float64)
    with ReplayOpcUaServer(channels) as server:
        config = live_config(run_root, {"patchtst": {"source": {
            "kind": "opcua", "endpoint": server.endpoint, "publish_ms": 50}}})
        live = Running(config, "patchtst")
        try:
            live.wait(lambda s: s.connected)
            server.publish_rows(stamps, values)
            live.wait(lambda s: s.n_rows == len(frame))
        finally:
            live.close()
    out = run_root / "artifacts" / "live" / "patchtst"
    windows, events = batch_grid(decided["patchtst"]["fault.csv"], live.scorer.next_window)
    assert [s["end"] for s in read_lines(out / "scores.jsonl")] == [w["end"] for w in windows]
    np.testing.assert_allclose([s["score"] for s in read_lines(out / "scores.jsonl")],
                               [w["score"] for w in windows], rtol=1e-4)
    lines = read_lines(out / "events.jsonl")
    assert_same_events(final_events(lines, json.loads((out / "status.json").read_text())),
                       events)
    assert [x for x in lines if x["kind"] == "data_quality"] == []

    with ReplayOpcUaServer(channels, missing={"ch_03"}) as server:
        config = live_config(run_root, {"patchtst": {
            "source": {"kind": "opcua", "endpoint": server.endpoint, "publish_ms": 50},
            "guards": {"missing_rows": 10}}})
        live = Running(config, "patchtst")
        try:
            live.wait(lambda s: s.connected)
            later = stamps + np.timedelta64(1, "D")  # after what the first run scored
            kept = [c for c in channels if c != "ch_03"]
            server.publish_rows(later[:60], frame[kept].to_numpy(np.float64)[:60], columns=kept)
            live.wait(lambda s: s.n_rows >= len(frame) + 60)
        finally:
            live.close()
    dq = {(x["event"]["check"], tuple(x["event"]["channels"]))
          for x in read_lines(out / "events.jsonl") if x["kind"] == "data_quality"}
    assert ("bad_payload", ("ch_03",)) in dq and ("missing_channel", ("ch_03",)) in dq


def test_onnx_backend_gives_the_same_decisions_batch_and_live(
        decided: dict, run_root: Path, onnx_graphs: dict[str, Path]) -> None:
    """--backend onnx: ONNX Runtime on the exported graphs, in the batch pipeline and the
    live scorer, decides as PyTorch did."""
    from inference.live.__main__ import main as live_main
    from inference.onnx_scoring import default_graph_path, sidecar_path

    with pytest.raises(Exception, match="export it first"):
        pipeline_main(["--config", "configs/decision.yaml", "--backend", "onnx"])
    for stream, graph in onnx_graphs.items():  # the same checkpoints: their export is valid
        target = run_root / default_graph_path(stream)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(graph, target)
        shutil.copy(sidecar_path(graph), sidecar_path(target))
    assert pipeline_main(["--config", "configs/decision.yaml", "--backend", "onnx",
                          "--out-dir", "artifacts/onnx_decisions"]) == 0
    onnx = json.loads((run_root / "artifacts" / "onnx_decisions" / "decisions.json").read_text())
    for stream, block in onnx["streams"].items():
        for f in block["files"]:
            ref = decided[stream][f["file_id"]]
            np.testing.assert_allclose([w["score"] for w in f["windows"]],
                                       [w["score"] for w in ref["windows"]], rtol=1e-4)
            assert_same_events(f["events"], ref["events"])
    config = live_config(run_root, {"patchtst": {"source": {
        "kind": "replay", "path": "data/local/test/fdc/fault.csv"}}})
    assert live_main(["--config", str(config), "--backend", "onnx"]) == 0
    out = run_root / "artifacts" / "live" / "patchtst"
    lines = read_lines(out / "events.jsonl")
    status = json.loads((out / "status.json").read_text())
    assert_same_events(final_events(lines, status), decided["patchtst"]["fault.csv"]["events"])


def test_live_demo_reports_the_batch_first_alarm(decided: dict, run_root: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.run_live_demo import main as demo_main

    config = live_config(run_root, {"patchtst": {"source": {
        "kind": "replay", "path": "data/local/test/fdc/fault.csv"}}})
    assert demo_main(["--config", str(config), "--no-dashboard"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "first alarm" in x]
    first = decided["patchtst"]["fault.csv"]["first_alarm"]
    assert line == f"[patchtst] fault.csv: live first alarm at {first}; batch decision: at {first}"


def test_live_config_errors_are_one_line(tmp_path: Path, repo_tmp: Path) -> None:
    from core.errors import ConfigError

    bad = tmp_path / "live.yaml"
    bad.write_text(yaml.safe_dump({"streams": {"patchtst": {"source": {"kind": "carrier"}}}}))
    with pytest.raises(ConfigError, match="live config"):
        load_live_config(bad)
    assert LiveConfig(streams={"patchtst": {"source": {"kind": "replay", "path": "x.csv"}}})
    repo = load_live_config(REPO / "configs" / "live_local.yaml")
    assert set(repo.streams) == {"patchtst", "swinmae"}
