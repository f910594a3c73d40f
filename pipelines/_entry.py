"""Shared by the MLflow entry points: MLproject parameters → a ``recsys-cl`` command line.

MLflow passes every declared parameter, so an optional one arrives as an empty string and is
dropped here; ``--set`` overrides arrive as one whitespace-separated string in
``--overrides`` (``"train.epochs=20 model.eps=0.1"``). A switch (``--final``) arrives as
``true``/``false``: true becomes the bare flag. Anything else is passed through.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from recsys_cl.cli import main as recsys_cl

# Positional in the command line rather than a flag.
_POSITIONAL = ("run-dir",)
_TRUE, _FALSE = ("true", "1", "yes"), ("", "false", "0", "no")


def command_line(
    command: str,
    flags: Sequence[str],
    argv: Sequence[str] | None = None,
    switches: Sequence[str] = (),
) -> list[str]:
    """The ``recsys-cl`` arguments for ``command`` from the entry point's ``argv``."""
    parser = argparse.ArgumentParser(
        prog=f"pipelines ({command})",
        description=f"MLproject entry point for `recsys-cl {command}`; see its --help.",
    )
    for flag in (*flags, *switches):
        parser.add_argument(f"--{flag}", default="")
    parser.add_argument("--overrides", default="", help="whitespace-separated dotted.key=value")
    known, rest = parser.parse_known_args(argv)
    args = [command]
    for flag in flags:
        value = getattr(known, flag.replace("-", "_"))
        if not value:
            continue
        if flag in _POSITIONAL:
            args.append(value)
        else:
            args += [f"--{flag}" if len(flag) > 1 else f"-{flag}", value]
    for switch in switches:
        value = getattr(known, switch.replace("-", "_")).strip().lower()
        if value not in (*_TRUE, *_FALSE):
            parser.error(f"--{switch}: expected true or false, got {value!r}")
        if value in _TRUE:
            args.append(f"--{switch}")
    for override in shlex.split(known.overrides):
        args += ["--set", override]
    return [*args, *rest]


def run(
    command: str,
    flags: Sequence[str],
    argv: Sequence[str] | None = None,
    switches: Sequence[str] = (),
) -> int:
    return recsys_cl(command_line(command, flags, argv, switches))
