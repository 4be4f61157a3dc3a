"""OpenMP worker threads that sleep instead of spinning while they wait.

PyTorch's CPU kernels run on OpenMP threads, which by default spin on a core while they
wait for work.  On a host where another process is busy (a shared workstation, CI, a
second job), two spinning threads fight that process for the same cores and throughput
collapses below one thread's: measured on 2 cores with one busy process, the CWT image
path fell from 159 to 70 images/s going from 1 to 2 threads, PatchTST scoring ran at 172
instead of 356 windows/s and Swin-MAE scoring at 236 instead of 816; with
``OMP_WAIT_POLICY=PASSIVE`` the busy-host figures are the second ones, and on an idle host
the two policies are within noise (docs/benchmarks.md).

The OpenMP runtime reads the variable once, when torch is first imported, so every entry
package calls :func:`prefer_passive_waits` from its ``__init__`` before anything imports
torch.  A value the user has set is kept.
"""

from __future__ import annotations

import os


def prefer_passive_waits() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
