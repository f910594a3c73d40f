"""A ``recsys-cl`` command: its parser fragment, its help and its handler, in one place."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from .options import add_threads

Handler = Callable[[argparse.Namespace], int]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


@dataclass(frozen=True)
class Command:
    """One command of the ``recsys-cl`` table (:data:`recsys_cl.cli.COMMANDS`).

    Attributes:
        name: the word on the command line.
        help: its line in ``recsys-cl --help``; description: the head of its own ``--help``.
        arguments: adds its options to its parser (``--threads`` is added to every command).
        run: the handler. It imports the job it runs, so that building the parser, and so
            ``recsys-cl --help``, loads neither torch nor MLflow.
        actions: sub-commands (``data stats``, ``data prepare``); a command with actions is
            not run itself.
        epilog: help text after the options; raw: keep its line breaks (and the description's).
        loads_torch: its handler loads torch (threads are configured before it does).
        trains: its steps allocate and free [N, D] tensors, so freed memory is kept for reuse.
        distributed: it may run as one rank of a launched job (``WORLD_SIZE`` > 1).
        needs_faiss: it stops with the install hint before anything runs when FAISS is
            missing.
    """

    name: str
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    run: Handler | None = None
    actions: tuple[Command, ...] = ()
    epilog: str | None = None
    raw: bool = False
    loads_torch: bool = True
    trains: bool = False
    distributed: bool = False
    needs_faiss: bool = False

    def __post_init__(self) -> None:
        if (self.run is None) == (not self.actions):
            raise ValueError(f"command {self.name!r} needs either a handler or actions")

    def add_to(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add this command (and its actions) to the sub-command table ``sub``."""
        parser = sub.add_parser(
            self.name,
            help=self.help,
            description=self.description,
            epilog=self.epilog,
            formatter_class=(
                argparse.RawDescriptionHelpFormatter if self.raw else argparse.HelpFormatter
            ),
        )
        if self.actions:
            nested = parser.add_subparsers(
                dest=f"{self.name}_command", metavar="ACTION", required=True
            )
            for action in self.actions:
                action.add_to(nested)
        else:
            self.arguments(parser)
            add_threads(parser)
            parser.set_defaults(handler=self)
        return parser
