"""The :class:`Tracker` protocol every stage logs through, and the null tracker.

Library code and jobs take a tracker argument and never import ``mlflow``; a run that is not
tracked gets :class:`NullTracker`, whose methods do nothing, so the same code path serves
tests, benchmarks and tracked runs alike.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def mlflow_name(key: str) -> str:
    """A metric name MLflow accepts: ``recall@20`` -> ``recall_at_20``; other unsafe chars -> _."""
    return _MLFLOW_UNSAFE.sub("_", key.replace("@", "_at_"))


def metric_key(name: str, prefix: str = "") -> str:
    """``recall@20`` → ``recall_at_20`` (with ``prefix``: ``test/recall_at_20``); MLflow
    rejects ``@`` in metric names (DESIGN rule 13)."""
    key = mlflow_name(name)
    return f"{prefix}/{key}" if prefix else key


def metric_dict(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Sanitized, finite-or-NaN float metrics; None values and non-numbers are left out."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[metric_key(name, prefix)] = float(value) if math.isfinite(value) else math.nan
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → dotted keys (``{"model": {"eps": 0.2}}`` → ``{"model.eps": 0.2}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


class Tracker(Protocol):
    """Where a run's parameters, tags, metrics and artifacts go.

    ``enabled`` is False only for :class:`NullTracker`: callers skip work whose only purpose
    is the record (plots, artifact copies). ``run_id`` and ``uri`` (the store) are None when
    nothing is recorded.
    """

    # Read-only members, so that an implementation may narrow them (MlflowTracker's uri is a str).
    @property
    def enabled(self) -> bool: ...

    @property
    def uri(self) -> str | None: ...

    @property
    def run_id(self) -> str | None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Already sanitized names (see :func:`metric_key`); ``step`` is the epoch."""
        ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a folder's whole content, under ``artifact_path``."""
        ...

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as a PNG at ``artifact_file`` (e.g. ``plots/losses.png``)."""
        ...

    def child(
        self, name: str, tags: Mapping[str, Any] | None = None, resume_run_id: str | None = None
    ) -> contextlib.AbstractContextManager[Tracker]:
        """A nested run under this one (or, with ``resume_run_id``, that earlier child
        reopened), ended (FINISHED / FAILED / KILLED) on leaving."""
        ...


class NullTracker:
    """Records nothing."""

    enabled = False
    uri = None

    @property
    def run_id(self) -> str | None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        return None

    @contextlib.contextmanager
    def child(
        self, name: str, tags: Mapping[str, Any] | None = None, resume_run_id: str | None = None
    ) -> Iterator[Tracker]:
        yield self
