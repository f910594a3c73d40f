"""The ``recsys-cl`` command.

Every command is one :class:`~.command.Command` beside its handler, in the module of this
package named after its job; :data:`COMMANDS` is the table ``recsys-cl --help`` lists. A new
command is one ``Command`` and one row here. Every subcommand that reads a run config takes
``--config FILE`` plus repeated ``--set dotted.key=value`` overrides (values parsed as YAML
scalars, never evaluated). User errors print one line and exit with code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import atexit
import faulthandler
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from recsys_cl.errors import PeerError, RecsysError
from recsys_cl.interrupts import handle_interrupts
from recsys_cl.optional import require_faiss
from recsys_cl.runtime import (
    available_cores,
    configure_threads,
    keep_freed_memory,
    requested_threads,
)

from .command import Command
from .configs import CONFIGS
from .data import DATA
from .evaluate import COMPARE, EVALUATE
from .options import DEFAULT_TIMEOUT_S
from .retrieval import INDEX, RECOMMEND, SERVE
from .similar import SIMILAR
from .train import MAIN, TRAIN
from .tune import TUNE

EXIT_USER_ERROR = 2

# In the order `recsys-cl --help` lists them.
COMMANDS: tuple[Command, ...] = (
    DATA,
    TRAIN,
    MAIN,
    COMPARE,
    TUNE,
    EVALUATE,
    INDEX,
    RECOMMEND,
    SIMILAR,
    SERVE,
    CONFIGS,
)

_EPILOG = """\
examples:
  recsys-cl data stats ml-100k
  recsys-cl data prepare --config configs/ml-100k/xsimgcl.yaml --out data/ml-100k
  recsys-cl main                                   # ml-100k end to end, tracked in MLflow
  recsys-cl train --config configs/ml-100k/xsimgcl.yaml --set train.epochs=20
  recsys-cl train --config configs/gowalla/xsimgcl.yaml --resume
  recsys-cl evaluate runs/ml-100k/xsimgcl
  recsys-cl index runs/ml-100k/xsimgcl --spec hnsw
  recsys-cl recommend runs/ml-100k/xsimgcl --index runs/ml-100k/xsimgcl/index/hnsw.faiss -k 20
  recsys-cl similar runs/ml-100k/xsimgcl --items 50,181 -k 10
  recsys-cl compare --sweep configs/sweeps/ml-100k-imbalance.yaml
  recsys-cl compare --experiment ml-100k
  recsys-cl tune -c configs/ml-100k/xsimgcl.yaml --space configs/tune/ml-100k-xsimgcl.yaml --final

Every command but `data` is recorded in MLflow (default store sqlite:///mlruns.db; see
`mlflow ui --backend-store-uri sqlite:///mlruns.db`); --no-track records nothing.

Benchmark datasets are read from --data-dir or $RECSYS_CL_DATA (a folder holding <name>/<files>)
when given, else downloaded once into $RECSYS_CL_CACHE (default ~/.cache/recsys_cl) and
checksummed.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-cl",
        description="Graph contrastive learning for recommendation: prepare interaction logs, "
        "train LightGCN / SGL / SimGCL / XSimGCL embeddings, evaluate them by full ranking, turn "
        "them into FAISS candidates, and record every run in MLflow.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_to(sub)
    return parser


def _leaf_parsers(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    leaves: list[argparse.ArgumentParser] = []
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        leaves += _leaf_parsers(nested[0]) if nested else [parser]
    return leaves


def _launched_rank() -> bool:
    """Whether this process is one rank of a job a launcher started (``WORLD_SIZE`` > 1)."""
    return os.environ.get("WORLD_SIZE", "1") != "1"


def _dispatch(command: Command, args: argparse.Namespace, argv: list[str]) -> int:
    if _launched_rank() and not command.distributed:
        raise RecsysError(
            f"recsys-cl {args.command} runs in one process; only `recsys-cl train` is "
            "distributed (WORLD_SIZE is set)"
        )
    nproc = getattr(args, "nproc_per_node", None)
    if nproc is not None and nproc != 1:
        from recsys_cl.training.launch import launch

        return launch(nproc, _worker_argv(argv, nproc))
    if command.needs_faiss:
        require_faiss(f"recsys-cl {command.name}")
    assert command.run is not None
    return command.run(args)


_MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _worker_argv(argv: list[str], nproc: int) -> list[str]:
    """The command line each launched rank runs: ``argv`` less ``--nproc-per-node``, plus
    ``--threads`` (the cores split between the ranks) unless the user chose a count."""
    if nproc < 1:
        raise RecsysError(f"--nproc-per-node must be >= 1, got {nproc}")
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--nproc-per-node":
            skip = True
        elif not token.startswith("--nproc-per-node="):
            out.append(token)
    parsed = build_parser().parse_args(out)
    # An abbreviated flag (argparse accepts --nproc) would launch ranks that launch again.
    if parsed.nproc_per_node is not None:
        raise RecsysError("write --nproc-per-node N in full")
    if parsed.threads is None and requested_threads(None) is None:
        out += ["--threads", str(max(1, available_cores() // nproc))]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    # No telemetry; MLflow's INFO lines (store creation, migrations, model validation) and
    # artifact download bars are noise on a command line. Restored for in-process callers.
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    for name, default in _MLFLOW_ENV.items():
        os.environ.setdefault(name, default)
    try:
        # Before torch loads: OpenMP reads its wait policy and thread count once.
        fresh = "torch" not in sys.modules
        command: Command = args.handler
        configure_threads(args.threads, load_torch=command.loads_torch)
        if fresh and command.trains:
            # Not in a caller's process (a notebook, the tests): its malloc is its own.
            keep_freed_memory()
        # SIGTERM (a scheduler stopping the job) ends a tracked run KILLED, as Ctrl-C does.
        with handle_interrupts():
            return _dispatch(command, args, raw)
    except PeerError:
        # Rank 0 failed and printed why; this rank only stops.
        return EXIT_USER_ERROR
    except RecsysError as exc:
        print(f"recsys-cl: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        # The environment, not a bug: a folder that cannot be written, a full disk.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"recsys-cl: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("recsys-cl: interrupted", file=sys.stderr)
        return 130
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run() -> NoReturn:
    """The process entry point: the ``recsys-cl`` script and ``python -m recsys_cl``.

    A crash in native code (SIGSEGV, SIGABRT) prints every thread's Python stack first. A
    rank of a launched job (``WORLD_SIZE`` > 1) ends as :mod:`multiprocessing` ends its
    children: Python's exit handlers run (MLflow's, logging's), then :func:`os._exit` skips
    the interpreter's teardown and the C++ libraries' static destructors, a known source of
    "terminate called without an active exception".
    """
    faulthandler.enable()
    code = main()
    if _launched_rank():
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


__all__ = [
    "COMMANDS",
    "DEFAULT_TIMEOUT_S",
    "EXIT_USER_ERROR",
    "Command",
    "build_parser",
    "main",
    "run",
]
