"""Peak memory of a benchmark process, printed by every benchmark beside its timings."""

from __future__ import annotations

import resource


def peak_rss_mib() -> float:
    """Largest resident set of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_peak_rss() -> None:
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (this process)")
