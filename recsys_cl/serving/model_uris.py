"""Finding a logged candidate model by URI and downloading or loading it, with an explicit
tracking store rather than MLflow's global one (see :func:`download_candidate_model`)."""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModel, Run
from mlflow.pyfunc import PyFuncModel
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from mlflow.store.artifact.utils.models import get_model_name_and_version
from mlflow.tracking import MlflowClient


def load_candidate_model(
    model_uri: str,
    tracking_uri: str,
    *,
    registry_uri: str | None = None,
    dst_path: str | Path | None = None,
) -> PyFuncModel:
    """The pyfunc model at ``model_uri`` (``runs:/``, ``models:/`` or a local path), read from
    ``tracking_uri`` (and ``registry_uri``, default as :class:`MlflowClient` resolves it)
    without setting the global tracking or registry URI.

    The files are downloaded to ``dst_path``, or to a temporary folder removed once the model
    is loaded (the model holds its whole bundle in memory).
    """
    if dst_path is None:
        with tempfile.TemporaryDirectory(prefix="recsys_cl_model_") as tmp:
            return load_candidate_model(
                model_uri, tracking_uri, registry_uri=registry_uri, dst_path=tmp
            )
    return mlflow.pyfunc.load_model(
        download_candidate_model(model_uri, tracking_uri, dst_path, registry_uri=registry_uri)
    )


def download_candidate_model(
    model_uri: str, tracking_uri: str, dst_path: str | Path, *, registry_uri: str | None = None
) -> str:
    """Download the model at ``model_uri`` into ``dst_path`` (see :func:`load_candidate_model`);
    returns the local folder holding its MLmodel."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    source = model_uri
    scheme = urllib.parse.urlparse(model_uri).scheme
    # MLflow 3.17's download_artifacts looks models:/ URIs (and the logged model a runs:/ URI
    # falls back to) up through the *global* tracking and registry URIs, ignoring its
    # arguments: resolve them with our client first.
    if scheme == "models":
        found = get_model_name_and_version(client, model_uri)
        if len(found) == 1:
            source = client.get_logged_model(found[0]).artifact_location
        else:
            source = client.get_model_version_download_uri(*found)
    elif scheme == "runs":
        source = run_logged_model_uri(client, model_uri) or model_uri
    return mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(dst_path), tracking_uri=tracking_uri
    )


def run_logged_model(client: MlflowClient, run: Run, name: str) -> LoggedModel | None:
    """The run's newest logged model named ``name``: the one MLflow resolves
    ``runs:/<run_id>/<name>`` to (search results come newest first)."""
    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"name = '{name}' AND source_run_id = '{run.info.run_id}'",
        max_results=1,
    )
    return models[0] if models else None


def run_logged_model_uri(client: MlflowClient, runs_uri: str) -> str | None:
    """For ``runs:/<run_id>/<name>[/<path>]``, the artifact location (plus path) of the run's
    logged model ``name``; None when the run has none (a model logged as plain run artifacts,
    before MLflow 3)."""
    run_id, path = RunsArtifactRepository.parse_runs_uri(runs_uri)
    name, _, rest = (path or "").partition("/")
    if not name or any(c in name for c in "'\\"):  # not a logged model name; keep the filter valid
        return None
    model = run_logged_model(client, client.get_run(run_id), name)
    if model is None:
        return None
    root = model.artifact_location.rstrip("/")
    return f"{root}/{rest}" if rest else root


__all__ = [
    "download_candidate_model",
    "load_candidate_model",
    "run_logged_model",
    "run_logged_model_uri",
]
