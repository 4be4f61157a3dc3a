"""What every benchmark prints beside its timings: peak memory and the command to rerun it."""

from __future__ import annotations

import resource
import shlex
import sys


def peak_rss_mib() -> float:
    """Largest resident set of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_peak_rss() -> None:
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (this process)")


def reproduce_command(module: str, argv: list[str] | None) -> str:
    """``python -m <module> <args>``: the benchmark's own arguments (``sys.argv`` if None)."""
    args = sys.argv[1:] if argv is None else argv
    return f"python -m {module} {shlex.join(args)}".strip()
