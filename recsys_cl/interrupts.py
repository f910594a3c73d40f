"""Ctrl-C and SIGTERM as ``KeyboardInterrupt``, held back inside critical sections.

A tracked run must end KILLED when a user or a scheduler stops it, so the command line turns
SIGTERM into the same ``KeyboardInterrupt`` Ctrl-C raises. Raised in the middle of a store
call, though, it leaves MLflow's SQLite session holding its write lock (MLflow rolls back on
an ``Exception``, not on ``KeyboardInterrupt``), and ending the run then fails with "database
is locked". Store calls therefore run :func:`uninterrupted`: a signal that arrives inside one
is raised as soon as the outermost section ends. Blocking the signal at the OS level would not
do: the kernel hands a process signal to any thread that does not block it (torch's and
MLflow's threads), and Python then runs the handler in the main thread at once.

Signal handlers are process-wide by nature, so the state here is too; it only changes while
:func:`handle_interrupts` is active (the ``recsys-cl`` command), and is a plain counter
otherwise.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict[str, int | None] = {"depth": 0, "pending": None}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["depth"]:
        _state["pending"] = signum
        return
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A critical section: an interrupt arriving inside is raised when the outermost section
    ends normally (one ending in an exception keeps its own exception)."""
    _state["depth"] = int(_state["depth"] or 0) + 1
    ok = False
    try:
        yield
        ok = True
    finally:
        _state["depth"] = int(_state["depth"] or 0) - 1
        if _state["depth"] == 0 and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            if ok:
                raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def handle_interrupts() -> Iterator[None]:
    """Install the handler for Ctrl-C and SIGTERM (main thread only), restore the old ones."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state["pending"] = None
