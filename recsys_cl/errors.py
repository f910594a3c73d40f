"""Errors a user can cause and fix.

Every exception raised for bad input (a file, a config key, a dataset, an id) derives from
:class:`RecsysError`. The CLI prints its message on one line and exits with code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base class of user errors: the message alone tells the user what to fix."""


class ConfigError(RecsysError):
    """An invalid configuration file, key or override."""


class DataError(RecsysError):
    """An unreadable or invalid interaction log, split or prepared dataset."""


class ChecksumError(DataError):
    """A dataset file whose SHA-256 is not the registered one."""


class DownloadError(DataError):
    """A dataset file that could not be downloaded."""


class TrainingError(RecsysError):
    """Training cannot go on (a NaN/inf loss, an incompatible checkpoint)."""


class DistributedError(RecsysError):
    """A distributed run cannot go on: bad launch settings, a lost or dead rank."""


class PeerError(DistributedError):
    """Raised on the other ranks of a distributed run when rank 0 fails in a step it takes for
    all of them; rank 0 reports the error itself, so the command line adds nothing."""


def one_line(text: str) -> str:
    """Collapse ``text`` to one line: the CLI prints error messages on a single line."""
    return " ".join(str(text).split())


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name when it has none): library
    errors (polars, FAISS, MLflow) often append tracebacks or hints a one-line message drops."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
