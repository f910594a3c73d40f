"""Process-wide settings the command line fixes as it starts: CPU threads (before torch loads),
and how the C allocator keeps freed memory.

Two torch processes on one machine stall each other when their OpenMP threads spin while they
wait: GNU OpenMP (the runtime of torch's Linux wheels) spins 300,000 times before it sleeps, and
two ML-100K trainings started together on 2 cores took 5.8x the wall time of one alone
(benchmarks/RESULTS.md § Sharing a machine). OpenMP reads its settings once, when torch loads,
so the ``recsys-cl`` process sets them first:

- ``GOMP_SPINCOUNT=3000`` (unless it or ``OMP_WAIT_POLICY`` is set): waiting threads spin
  briefly, then sleep, so a second job gets the cores it needs. Measured on 2 cores: one job
  alone as fast as with the default spin, two together 2x the wall time of one instead of 5.8x;
  ``OMP_WAIT_POLICY=PASSIVE`` (never spin) shared as well but made a job alone 1.8x slower;
- the thread count: ``--threads``, else ``$RECSYS_CL_THREADS``, else ``$OMP_NUM_THREADS``, else
  torch's default (the physical cores) capped by the cores this process may run on (its CPU
  affinity mask, which ``taskset`` and container CPU sets narrow; a CPU *quota*, such as
  ``docker --cpus``, does not: pass ``--threads`` there). A count from ``--threads`` or
  ``$RECSYS_CL_THREADS`` also caps polars' threads unless ``POLARS_MAX_THREADS`` is set: a lazy
  preparation of a 50M-row CSV peaks lower with fewer (benchmarks/RESULTS.md § Ingestion larger
  than memory).

An in-process caller (a notebook, the tests) has loaded torch already and owns its threads:
only an explicit count is applied there.

A training step allocates and frees several [N, D] tensors (gradients, propagated layers; 18 MB
each on Gowalla). glibc's malloc serves blocks that large with ``mmap`` and may hand freed ones
back to the OS, so a step can page-fault its tensors in afresh: the same MF epoch took 3.4-4.0 s
or 9.3-10.3 s depending on the process's allocation history. :func:`keep_freed_memory` (called
by the commands that train: ``train``, ``main``, ``compare``, ``tune``, in a fresh process)
serves blocks up to 32 MiB from the heap and keeps up to 128 MiB freed at its top for reuse:
MF's Gowalla epoch 9.9 -> 3.4 s, LightGCN's 5% faster, XSimGCL's unchanged
(benchmarks/RESULTS.md § Training speed). It leaves glibc alone where the user set any of its
``MALLOC_*`` variables or ``GLIBC_TUNABLES``, and does nothing off glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

from recsys_cl.errors import RecsysError

THREADS_ENV = "RECSYS_CL_THREADS"
# Spins before a waiting OpenMP thread sleeps (GNU default 300,000); measured, see above.
SPIN_COUNT = 3000
# glibc mallopt(3) parameters and the values keep_freed_memory sets: the largest mmap threshold
# glibc accepts on 64-bit, and a trim threshold that keeps a step's tensors for the next.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 128 * 2**20


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
        if value and name == "OMP_NUM_THREADS":
            # OpenMP's nested form "8,1": the first number is the outer level, torch's threads.
            value = value.split(",")[0]
        if value:
            return _parse(value, name)
    return None


def configure_threads(threads: int | None = None, *, load_torch: bool = True) -> int | None:
    """Apply the thread settings (see the module docstring); returns the count applied, or None
    when an in-process caller's torch keeps its own.

    A count from ``--threads`` or ``$RECSYS_CL_THREADS`` also caps polars' thread pool when
    polars has not loaded yet and ``POLARS_MAX_THREADS`` is unset (``$OMP_NUM_THREADS`` is
    OpenMP's, so it is left to torch). ``load_torch=False`` (``recsys-cl data``, which never
    uses torch) only sets the environment: torch's import alone is ~220 MiB of a lazy
    preparation's memory.
    """
    count = requested_threads(threads)
    fresh = "torch" not in sys.modules
    ours = threads is not None or bool(os.environ.get(THREADS_ENV))
    if count is not None and ours and "polars" not in sys.modules:
        os.environ.setdefault("POLARS_MAX_THREADS", str(count))
    if fresh:
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
        if count is not None:
            os.environ["OMP_NUM_THREADS"] = str(count)
        if not load_torch:
            return count
    elif count is None:
        return None
    import torch

    if count is None:
        # torch's own default (physical cores), never more than the cores we may run on.
        count = min(torch.get_num_threads(), available_cores())
    torch.set_num_threads(count)
    return count


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed large blocks instead of unmapping them (module
    docstring). Returns whether the settings were applied: False off Linux, off glibc, or where
    the user set any of glibc's malloc variables (``MALLOC_*``, ``GLIBC_TUNABLES``)."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return False  # a static build with no dynamic symbol table: nothing to tune
    if not hasattr(libc, "gnu_get_libc_version"):
        return False  # musl and others: their malloc has no such knobs
    mallopt = libc.mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


__all__ = [
    "SPIN_COUNT",
    "THREADS_ENV",
    "available_cores",
    "configure_threads",
    "keep_freed_memory",
    "requested_threads",
]
