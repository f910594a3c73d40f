"""Opening tracked runs for the commands, and the ``tracking.json`` a run folder keeps.

``tracking.json`` names the store and the MLflow run that trained a folder, so ``--resume``
continues that run and later stages (``evaluate``, ``index``, ``recommend``, a resumed
``compare``) tag their runs with it. ``finished`` is set once every stage of the job ended.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_cl.tracking.base import NullTracker, Tracker

from ..folder import RunFolder


@dataclass(frozen=True)
class TrackingOptions:
    """The command line's tracking flags."""

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrackingOptions:
        return cls(
            enabled=not getattr(args, "no_track", False),
            uri=getattr(args, "tracking_uri", None),
            experiment=getattr(args, "experiment", None),
            run_name=getattr(args, "run_name", None),
        )


def write_tracking_file(run_dir: Path, tracker: Tracker, *, finished: bool = False) -> None:
    if tracker.run_id is not None:
        RunFolder(run_dir).write_tracking(tracker.uri, tracker.run_id, finished=finished)


def previous_run(run_dir: Path, uri: str) -> str | None:
    """The run id ``run_dir`` was recorded under, if it was recorded in store ``uri``."""
    saved = RunFolder(run_dir).tracking()
    return saved.get("run_id") if saved.get("tracking_uri") == uri else None


def source_run_id(run_dir: Path) -> str | None:
    """The id of the MLflow run that trained ``run_dir``, in whichever store."""
    return RunFolder(run_dir).tracking().get("run_id")


@contextlib.contextmanager
def open_run(
    opts: TrackingOptions,
    *,
    experiment: str,
    configured_uri: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
) -> Iterator[Tracker]:
    """A tracked run (or the null tracker with ``--no-track``), ended with its status.

    With ``run_dir``, the run is written to ``run_dir/tracking.json`` (``finished`` once the
    block ends without an error), and ``resume`` reopens the run recorded there.
    """
    if not opts.enabled:
        yield NullTracker()
        return
    from recsys_cl.tracking.mlflow_tracker import mlflow_run, resolve_tracking_uri

    uri = resolve_tracking_uri(opts.uri, configured_uri)
    resume_id = previous_run(run_dir, uri) if (resume and run_dir is not None) else None
    with mlflow_run(
        uri,
        opts.experiment or experiment,
        run_name=opts.run_name or run_name,
        tags=tags,
        resume_run_id=resume_id,
    ) as tracker:
        if run_dir is not None:
            write_tracking_file(run_dir, tracker)
        yield tracker
        if run_dir is not None:
            write_tracking_file(run_dir, tracker, finished=True)


def folder_run(args: argparse.Namespace, job: str) -> contextlib.AbstractContextManager[Tracker]:
    run = RunFolder(args.run_dir)
    cfg = run.config if run.has_config() else None
    tags: dict[str, Any] = {"job": job, "run_dir": str(run.root)}
    source = source_run_id(run.root)
    if source is not None:
        tags["source_run_id"] = source
    return open_run(
        TrackingOptions.from_args(args),
        experiment=cfg.experiment if cfg is not None else "recsys_cl",
        configured_uri=cfg.tracking.uri if cfg is not None else None,
        run_name=f"{job}:{run.root.name}",
        tags=tags,
    )


def print_tracking(tracker: Tracker) -> None:
    """The run id and how to look at it (nothing for an untracked run)."""
    if tracker.enabled:
        print(f"MLflow run {tracker.run_id} in {tracker.uri}")
        print(f"open the UI: mlflow ui --backend-store-uri {tracker.uri}   (then http://127.0.0.1:5000)")


__all__ = [
    "TrackingOptions",
    "folder_run",
    "open_run",
    "previous_run",
    "print_tracking",
    "source_run_id",
    "write_tracking_file",
]
