"""Live monitoring: score rows as they arrive and raise the batch decisions' alarm events.

``python -m inference.live --config configs/live_local.yaml`` watches one source per
stream (replay, a growing CSV, OPC UA, MQTT), keeps a sliding window, scores every
``stride`` rows with the batch scoring code and turns the scores into the same alarm
events as :mod:`inference.decisions` (persistence, hysteresis, contributors).  Per-row
guards raise data-quality events apart from process alarms.

What it writes, per stream, under ``<output_dir>/<stream>/`` (``artifacts/live``):

``scores.jsonl``
    one line per scored window: ``{"window", "start", "end", "score", "level", "top"}``
    (``top``: the largest parts, channel or axis -> error); rolls over by size.
``events.jsonl``
    one line per event transition, never rewritten:
    ``{"kind": "process", "transition": "raised"|"escalated"|"cleared", "stream",
    "written", "event": <EventRecord of inference.decisions>}`` or
    ``{"kind": "data_quality", "transition": "raised"|"cleared", "stream", "written",
    "event": {"id": "dq-N", "check", "channels", "detail", "start", "end", "open"}}``.
``status.json``
    the current picture for the dashboard, rewritten atomically at most every
    ``status_every_s``: ``{"schema_version", "stream", "title", "part_kind", "updated",
    "state": "running"|"waiting"|"finished"|"stopped", "source": {"kind", "detail",
    "connected"}, "checkpoint", "thresholds": {"clear", "warn", "anomaly"}, "rows",
    "windows", "level", "last": {"window", "end", "score", "level"} | null,
    "recent": [{"window", "end", "score", "level"}, ...], "open_events": [EventRecord],
    "open_dq": [data-quality event], "recent_events": [events.jsonl lines, newest last]}``.
``state.json`` / ``state.npz``
    where the scorer is (source position, the rows of the current window, the alarm
    state), so a restart resumes without losing or repeating events.

Stamps are ISO times (UTC, milliseconds) when the source has time stamps, else row /
sample numbers; ``written`` and ``updated`` are wall-clock ISO times.
"""
