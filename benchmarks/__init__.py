"""`benchmarks`: OpenMP threads wait passively from the first import (core/threads.py)."""

from core.threads import prefer_passive_waits

prefer_passive_waits()
