"""Entry packages make OpenMP threads wait passively before torch loads (core/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import os, sys; import {pkg}; import torch; "
         "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def _policy(pkg: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(pkg=pkg)], cwd=REPO,
                         env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("pkg", ["pipelines", "trainers", "inference", "benchmarks",
                                 "training_dashboard", "sensor_data"])
def test_entry_packages_prefer_passive_waits(pkg: str) -> None:
    assert _policy(pkg) == "PASSIVE True"


def test_a_policy_the_user_set_is_kept() -> None:
    assert _policy("pipelines", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE True"
