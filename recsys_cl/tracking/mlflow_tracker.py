"""The MLflow tracker: a run in an MLflow tracking store, ended with the right status.

The default store needs no server: a SQLite file, ``sqlite:///mlruns.db`` in the working
directory, with artifacts in a ``mlruns/`` folder beside it. ``--tracking-uri`` and
``MLFLOW_TRACKING_URI`` override it, so a remote server works the same way.

A run that raises ends FAILED, one interrupted (Ctrl-C, or SIGTERM turned into an interrupt by
the command line) ends KILLED, never RUNNING. Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the
top-level run is the one MLflow created for the entry point.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag, SourceType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

from recsys_cl.errors import RecsysError, first_line
from recsys_cl.interrupts import uninterrupted

from .base import Tracker

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
_SQLITE = "sqlite:///"
# MLflow's per-request limits (log_batch): 100 params or 1000 metrics.
_PARAMS_PER_CALL = 100
_METRICS_PER_CALL = 1000
_MAX_PARAM_CHARS = 6000
PARENT_TAG = "mlflow.parentRunId"
_KIND_TAG, _KIND = "mlflow.experimentKind", "custom_model_development"


class TrackingError(RecsysError):
    """The tracking store cannot be opened or written (bad URI, unreachable server)."""


_URI_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*@")


def source_tags(argv: list[str] | None = None) -> dict[str, str]:
    """The run's Source and User in MLflow's UI, as ``mlflow.start_run`` records them (runs made
    through ``MlflowClient.create_run`` get none): the command line, e.g.
    ``recsys-cl main --set train.epochs=20``, of type LOCAL, and the login name."""
    args = sys.argv if argv is None else argv
    # A password in a URI argument (--tracking-uri postgresql://user:secret@host/db) would be
    # shown to everyone who can read the store.
    shown = [_URI_PASSWORD.sub(r"\1***@", arg) for arg in args[1:]]
    tags = {
        MLFLOW_SOURCE_NAME: shlex.join([os.path.basename(args[0]) if args else "python", *shown]),
        MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL),
    }
    with contextlib.suppress(Exception):  # no login name (a container without a passwd entry)
        tags[MLFLOW_USER] = getpass.getuser()
    return tags


def resolve_tracking_uri(explicit: str | None = None, configured: str | None = None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the config's, else the default.

    A SQLite path is made absolute, so a run folder records the store it was tracked in and
    ``--resume`` from another working directory reopens the same one.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_TRACKING_URI
    if uri.startswith(_SQLITE):
        return _SQLITE + str(Path(uri[len(_SQLITE) :]).resolve())
    return uri


def artifact_root(uri: str) -> str | None:
    """For a SQLite store, the ``mlruns/`` folder beside the database file (so the store and
    its artifacts move together); None lets other stores choose."""
    if not uri.startswith(_SQLITE):
        return None
    return str(Path(uri[len(_SQLITE) :]).resolve().parent / "mlruns")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "experiment"


def experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with its artifacts beside a SQLite store) when
    missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(uri)
    location = f"{root}/{_slug(name)}" if root is not None else None
    # The UI then opens the experiment in its model-training view, not the GenAI one.
    return client.create_experiment(name, artifact_location=location, tags={_KIND_TAG: _KIND})


def _text(value: Any) -> str:
    text = "null" if value is None else str(list(value) if isinstance(value, tuple) else value)
    return text[:_MAX_PARAM_CHARS]


F = TypeVar("F", bound=Callable[..., Any])


def store_call(method: F) -> F:
    """``method`` run :func:`~recsys_cl.interrupts.uninterrupted` (atomic for Ctrl-C and
    SIGTERM: see that module)."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with uninterrupted():
            return method(*args, **kwargs)

    return call  # type: ignore[return-value]


class MlflowTracker:
    """Logs into one existing MLflow run (see :func:`mlflow_run`); every call is atomic with
    respect to Ctrl-C and SIGTERM (see :mod:`recsys_cl.interrupts`)."""

    enabled = True

    def __init__(self, client: MlflowClient, run_id: str, uri: str) -> None:
        self.client = client
        self.uri = uri
        self._run_id = run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    @store_call
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are write-once in MLflow: on a resumed run, keys already logged are
        skipped, and a value a resume may change (``train.epochs``, say) is recorded as the
        tag ``resumed.<key>`` instead."""
        logged = self.client.get_run(self._run_id).data.params
        changed = {
            f"resumed.{k}": v for k, v in params.items() if k in logged and logged[k] != _text(v)
        }
        if changed:
            self.set_tags(changed)
        items = [Param(key, _text(value)) for key, value in params.items() if key not in logged]
        for start in range(0, len(items), _PARAMS_PER_CALL):
            self.client.log_batch(self._run_id, params=items[start : start + _PARAMS_PER_CALL])

    @store_call
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self._run_id, tags=[RunTag(k, _text(v)) for k, v in tags.items()])

    @store_call
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for start in range(0, len(items), _METRICS_PER_CALL):
            self.client.log_batch(self._run_id, metrics=items[start : start + _METRICS_PER_CALL])

    @store_call
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self._run_id, str(p), artifact_path)
        else:
            self.client.log_artifact(self._run_id, str(p), artifact_path)

    @store_call
    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self._run_id, figure, artifact_file)

    @contextlib.contextmanager
    def child(
        self, name: str, tags: Mapping[str, Any] | None = None, resume_run_id: str | None = None
    ) -> Iterator[Tracker]:
        with uninterrupted():
            if resume_run_id is not None:
                self.client.update_run(resume_run_id, status="RUNNING")
                run_id = resume_run_id
            else:
                experiment = self.client.get_run(self._run_id).info.experiment_id
                run_id = self.client.create_run(
                    experiment,
                    run_name=name,
                    tags={**source_tags(), PARENT_TAG: self._run_id, **(tags or {})},
                ).info.run_id
        with _ended(self.client, run_id, self.uri) as tracker:
            yield tracker


@contextlib.contextmanager
def _ended(client: MlflowClient, run_id: str, uri: str) -> Iterator[MlflowTracker]:
    """Yield a tracker for ``run_id``; end the run FINISHED, FAILED or KILLED on leaving."""
    def end(status: str) -> None:
        with uninterrupted():
            client.set_terminated(run_id, status=status)

    try:
        yield MlflowTracker(client, run_id, uri)
    except KeyboardInterrupt:
        end("KILLED")
        raise
    except SystemExit as exc:
        end("FINISHED" if exc.code in (0, None) else "FAILED")
        raise
    except BaseException:
        end("FAILED")
        raise
    else:
        end("FINISHED")


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for the duration, then restored as it was:
    the explicit global (None included) and the ``MLFLOW_TRACKING_URI`` variable, which
    MLflow's own ``_use_tracking_uri`` unsets when the global was None. Not thread-safe.

    Some MLflow 3.17 paths ignore the client they are called through and resolve logged
    models with a bare ``MlflowClient()`` (registering a ``models:/<model_id>`` source, the
    figure and model helpers); this keeps them on the run's store.
    """
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


@contextlib.contextmanager
def mlflow_run(
    uri: str,
    experiment: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    resume_run_id: str | None = None,
) -> Iterator[MlflowTracker]:
    """Open (or, with ``resume_run_id``, reopen) a top-level run in ``experiment``.

    Raises:
        TrackingError: the store cannot be opened or the run to resume does not exist.
    """
    adopted = os.environ.get("MLFLOW_RUN_ID")
    try:
        with uninterrupted():
            client = MlflowClient(uri)  # builds the store: a bad scheme fails here
            if resume_run_id is not None:
                client.get_run(resume_run_id)
                client.update_run(resume_run_id, status="RUNNING")
                run_id = resume_run_id
            elif adopted:
                run_id = client.get_run(adopted).info.run_id
            else:
                exp = experiment_id(client, uri, experiment)
                run_id = client.create_run(exp, run_name=run_name, tags=source_tags()).info.run_id
    except MlflowException as exc:
        raise TrackingError(f"tracking store {uri}: {first_line(exc)}") from None
    try:
        # MLflow's own helpers (figures, models) resolve the store globally.
        with global_tracking_uri(uri), _ended(client, run_id, uri) as tracker:
            if tags:
                tracker.set_tags(tags)
            yield tracker
    except MlflowException as exc:
        # The store failing mid-run (a server gone, a name MLflow refuses) is the
        # environment's or the user's, not a bug: one line, exit 2; the run was ended FAILED.
        raise TrackingError(f"tracking store {uri}: {first_line(exc)}") from None


def latest_comparison(
    uri: str, experiment: str
) -> tuple[dict[str, str], list[tuple[str, dict[str, float], str]]]:
    """The newest ``compare`` parent run of ``experiment`` (its id and sweep) and its children
    as (strategy, metrics, run id), oldest first, read with ``mlflow.search_runs``.

    Raises:
        TrackingError: no store at a SQLite path, no such experiment, or no comparison in it.
    """
    if uri.startswith(_SQLITE) and not Path(uri[len(_SQLITE) :]).is_file():
        raise TrackingError(
            f"{uri}: no tracking store there (run a comparison first, or pass --tracking-uri)"
        )
    try:
        return _latest_comparison(MlflowClient(uri), uri, experiment)
    except MlflowException as exc:
        raise TrackingError(f"tracking store {uri}: {first_line(exc)}") from None


def _latest_comparison(
    client: MlflowClient, uri: str, experiment: str
) -> tuple[dict[str, str], list[tuple[str, dict[str, float], str]]]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise TrackingError(f"--experiment {experiment!r}: no such experiment in {uri}")
    parents = client.search_runs(
        [exp.experiment_id],
        "tags.job = 'compare'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        raise TrackingError(
            f"--experiment {experiment!r}: no comparison runs (recsys-cl compare --sweep ...)"
        )
    parent = parents[0]
    children = client.search_runs(
        [exp.experiment_id],
        f"tags.{PARENT_TAG} = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    rows = [
        (
            c.data.tags.get("imbalance_strategy") or c.info.run_name or c.info.run_id,
            dict(c.data.metrics),
            c.info.run_id,
        )
        for c in children
    ]
    return {"run_id": parent.info.run_id, "sweep": parent.data.tags.get("sweep", "?")}, rows
