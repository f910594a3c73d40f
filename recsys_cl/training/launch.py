"""Starting the ranks of a data-parallel run on one machine (``recsys-cl train
--nproc-per-node N``), and turning the ways they end into one line.

The ranks are ``python -m recsys_cl ARGV`` processes under ``torch.distributed.run``'s elastic
agent (what ``torchrun --standalone`` runs): it picks a free loopback port for the ranks to
meet, polls them, and stops the others as soon as one fails (no restarts). What the ranks do is
:mod:`.distributed`'s.
"""

from __future__ import annotations

import logging
import signal
import sys
import uuid
from collections.abc import Sequence

from recsys_cl.errors import DistributedError

# How a rank the launcher stopped ends: the command's exit code for an interrupt (SIGTERM is
# turned into one, see recsys_cl.interrupts), or the signal itself.
_STOPPED = frozenset({130, -signal.SIGTERM, -signal.SIGINT})


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m recsys_cl ARGV`` as ``nproc`` ranks on this machine and wait for them.

    The ranks meet on a free loopback port (``torchrun --standalone``); a rank that fails
    stops the others at once (no restarts). Returns 0 when every rank succeeded, 2 when the
    ranks stopped on an error they printed themselves (a user error).

    Raises:
        DistributedError: a rank died or failed otherwise; the message names it.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise DistributedError(f"--nproc-per-node must be >= 1, got {nproc}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
    )
    # The agent logs each stop it makes; the one-line error below says what matters.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "recsys_cl", *argv)
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        raise_for_failures(codes)
        return 2
    except SignalException as exc:
        raise KeyboardInterrupt(str(exc)) from None
    return 0


def raise_for_failures(codes: dict[int, int]) -> None:
    """Raise the :class:`DistributedError` for ranks that ended with exit ``codes`` (negative:
    killed by that signal); nothing when every rank that failed by itself stopped on a
    reported user error (exit code 2).

    The launcher stops the surviving ranks with SIGTERM (they exit 130, interrupted, or die of
    it), and a rank that loses its peer or whose rank 0 failed ends with code 2: those are
    consequences, named only when nothing else failed.
    """
    causes = {r: c for r, c in codes.items() if c not in _STOPPED} or codes
    if all(c == 2 for c in causes.values()):
        return
    causes = {r: c for r, c in causes.items() if c != 2}
    described = ", ".join(_describe(rank, code) for rank, code in sorted(causes.items()))
    raise DistributedError(f"{described}; the other ranks were stopped")


def _describe(rank: int, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"rank {rank} died (killed by {name})"
    return f"rank {rank} failed (exit code {code})"


__all__ = ["launch", "raise_for_failures"]
