"""Process-wide settings the command line fixes before torch loads: CPU threads.

Two torch processes on one machine stall each other when their OpenMP threads spin while they
wait: two ML-100K trainings started together on 2 cores ran 80x slower per epoch than one alone
(benchmarks/RESULTS.md § Sharing a machine). OpenMP reads its settings once, when torch loads,
so the ``recsys-cl`` process sets them first:

- ``OMP_WAIT_POLICY=PASSIVE`` (unless set): waiting threads sleep instead of spinning, so a
  second job gets the cores it needs;
- the thread count: ``--threads``, else ``$RECSYS_CL_THREADS``, else ``$OMP_NUM_THREADS``, else
  the cores this process may run on (its CPU affinity mask, which ``taskset`` and container CPU
  sets narrow).

An in-process caller (a notebook, the tests) has loaded torch already and owns its threads:
only an explicit count is applied there.
"""

from __future__ import annotations

import os
import sys

from recsys_cl.errors import RecsysError

THREADS_ENV = "RECSYS_CL_THREADS"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _parse(value: str, source: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise RecsysError(f"{source}: expected a positive number of threads, got {value!r}")
    return count


def requested_threads(threads: int | None = None) -> int | None:
    """The thread count the user asked for (``--threads``, then the environment), or None."""
    if threads is not None:
        return _parse(str(threads), "--threads")
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name)
        if value:
            return _parse(value, name)
    return None


def configure_threads(threads: int | None = None) -> int | None:
    """Apply the thread settings (see the module docstring); returns the count applied, or None
    when an in-process caller's torch keeps its own."""
    count = requested_threads(threads)
    if "torch" not in sys.modules:
        count = count or available_cores()
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ["OMP_NUM_THREADS"] = str(count)
    if count is None:
        return None
    import torch

    torch.set_num_threads(count)
    return count


__all__ = ["THREADS_ENV", "available_cores", "configure_threads", "requested_threads"]
