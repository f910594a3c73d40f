"""Optional dependencies: a clear one-line error instead of an ImportError traceback."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from recsys_cl.errors import RecsysError

# The distributions that install the ``faiss`` package, the project's own extras first.
FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss")


class MissingDependencyError(RecsysError):
    """An optional package a requested feature needs is not installed."""


def faiss_available() -> bool:
    """Whether FAISS (the ``cpu`` or ``gpu`` extra) can be imported, without importing it."""
    return importlib.util.find_spec("faiss") is not None


def require_faiss(feature: str) -> None:
    """Raise :class:`MissingDependencyError` unless FAISS can be imported.

    FAISS comes from one of two mutually exclusive extras, so the message names both.
    """
    if not faiss_available():
        raise MissingDependencyError(
            f"{feature} needs FAISS: pip install 'recsys-cl[cpu]' (or 'recsys-cl[gpu]' with a GPU)"
        )


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def faiss_distribution() -> str | None:
    """Which distribution installed FAISS (:data:`FAISS_DISTRIBUTIONS` order), or None."""
    return next((d for d in FAISS_DISTRIBUTIONS if installed_version(d) is not None), None)
