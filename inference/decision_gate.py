"""The decision-quality gate: the promotion signal beside the seed's seven checks.

A model is ready to promote only if its decisions keep their promise on labelled test
files: every held-out normal file raises no alarm event, no fault file raises one before
its labelled onset (that stretch is normal operation too), and at least
``min_detected_fraction`` of the labelled faults not marked ``hard`` are decided
``anomaly``.  Hard faults are reported, never required.  Computed from one test run's
decisions (the ``streams`` part of decisions.json), so it names the checkpoints it judged;
the dashboard calls it stale when those are no longer the current ones.
"""

from __future__ import annotations

from typing import Any

from core.config import DecisionGate


def _before(a: str | int, b: str | int) -> bool:
    """Whether stamp ``a`` precedes ``b`` (both ISO times of one writer, or both indices)."""
    if isinstance(a, int) and isinstance(b, int):
        return a < b
    return isinstance(a, str) and isinstance(b, str) and a < b


def early_events(f: dict[str, Any]) -> int:
    """Events a fault file raised before its labelled onset: false alarms, not detections."""
    onset = f.get("fault_start")
    if onset is None:
        return 0
    return sum(_before(e["raised_at"], onset) for e in f.get("events", []))


def decision_gate(streams: dict[str, dict[str, Any]], rule: DecisionGate) -> dict[str, Any]:
    normal, alarmed, faults, missed, hard, hard_hit = 0, [], 0, [], 0, 0
    early: list[str] = []
    for name, entry in streams.items():
        for f in entry.get("files", []):
            label, fid = f.get("label"), f"{name}:{f['file_id']}"
            if label == "fault" and early_events(f):
                early.append(fid)
            if label == "normal":
                normal += 1
                if f.get("n_events", 0):
                    alarmed.append(fid)
            elif label == "fault" and f.get("difficulty") == "hard":
                hard += 1
                hard_hit += f.get("decision") == "anomaly"
            elif label == "fault":
                faults += 1
                if f.get("decision") != "anomaly":
                    missed.append(fid)
    detected = faults - len(missed)
    checkpoints = {name: e.get("checkpoint_sha256") for name, e in streams.items()}
    base = {"normal_files": normal, "normal_with_events": alarmed, "early_alarms": early,
            "faults": faults,
            "faults_detected": detected, "missed": missed, "hard_faults": hard,
            "hard_detected": hard_hit, "min_detected_fraction": rule.min_detected_fraction,
            "checkpoints": checkpoints}
    if normal == 0 and faults == 0:
        return {**base, "ok": False, "status": "no_labels",
                "detail": "no labelled test files (labels.csv): decision quality unknown"}
    enough = faults == 0 or detected >= rule.min_detected_fraction * faults
    ok = not alarmed and not early and enough
    parts = [f"{normal - len(alarmed)}/{normal} normal files without alarm events"]
    if early:
        parts.append(f"{len(early)} fault file(s) alarmed before the onset")
    if faults:
        parts.append(f"{detected}/{faults} faults decided anomaly "
                     f"(need {rule.min_detected_fraction:.0%})")
    if hard:
        parts.append(f"hard faults {hard_hit}/{hard} (not required)")
    return {**base, "ok": ok, "status": "pass" if ok else "fail", "detail": "; ".join(parts)}
