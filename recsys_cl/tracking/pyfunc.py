"""Log a candidate bundle as an MLflow pyfunc model into an existing run, and load it back.

The model is a "model from code" (:mod:`.pyfunc_code`) with the bundle as its one artifact:
no pickle, and ``mlflow models serve`` answers ``/invocations`` with the lists of
:meth:`CandidateModel.predict <recsys_cl.tracking.candidate_model.CandidateModel.predict>`.

Everything goes through an explicit ``MlflowClient(tracking_uri)``; no global tracking URI or
active run is set, so logging into a run never ends it (``mlflow.start_run(run_id=...)`` as a
context manager would mark it FINISHED) and callers that track elsewhere are not disturbed.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PyFuncModel
from mlflow.store.artifact.utils.models import get_model_name_and_version
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from recsys_cl.errors import RecsysError

from .candidate_model import BundleInfo, CandidateModel

CODE_PATH = Path(__file__).with_name("pyfunc_code.py")
DEFAULT_ARTIFACT_PATH = "candidate_model"
# What loading the model imports (measured from sys.modules after loading it), pinned to the
# versions here; given explicitly so MLflow does not spend seconds inferring them.
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "polars", "pyarrow", "pydantic", "pyyaml", "torch", "tqdm")
_FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu")
_MLFLOW_TYPES = {"int64": "long", "string": "string"}


@dataclass(frozen=True)
class CandidateModelInfo:
    """Where :func:`log_candidate_model` put the model.

    Attributes:
        model_uri: ``runs:/<run_id>/<artifact_path>``.
        registered_name, registered_version: the registry entry, or None when not registered.
    """

    model_uri: str
    registered_name: str | None = None
    registered_version: int | None = None


def pip_requirements() -> list[str]:
    """The model's pip requirements: its imports' distributions at their installed versions
    (a local version label such as torch's ``+cpu`` dropped: no index serves it)."""
    names = list(_REQUIREMENTS)
    names += [d for d in _FAISS_DISTRIBUTIONS if _installed(d)][:1] or ["faiss-cpu"]
    out = []
    for name in names:
        version = _installed(name)
        out.append(f"{name}=={version.split('+')[0]}" if version else name)
    return out


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def candidate_signature(info: BundleInfo) -> ModelSignature:
    """Input ``user_id`` (the run's id type) and optional per-row ``k``; param ``k`` (default:
    the bundle's); output ``user_id, rank, item_id, score``."""
    user_type, item_type = _MLFLOW_TYPES[info.user_id_dtype], _MLFLOW_TYPES[info.item_id_dtype]
    return ModelSignature(
        inputs=Schema([ColSpec(user_type, "user_id"), ColSpec("long", "k", required=False)]),
        outputs=Schema(
            [
                ColSpec(user_type, "user_id"),
                ColSpec("integer", "rank"),
                ColSpec(item_type, "item_id"),
                ColSpec("float", "score"),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", info.k)]),
    )


def log_candidate_model(
    bundle_dir: str | Path,
    *,
    tracking_uri: str,
    run_id: str,
    artifact_path: str = DEFAULT_ARTIFACT_PATH,
    register: str | None = None,
    registry_uri: str | None = None,
) -> CandidateModelInfo:
    """Log the bundle at ``bundle_dir`` as a pyfunc model under ``artifact_path`` of run
    ``run_id``, leaving the run's status as it is; register it as ``register`` when given.

    The model is saved to a temporary folder and uploaded with ``log_artifacts``; registering
    creates a version whose source is the run's artifact folder, as ``mlflow.register_model``
    does for a ``runs:/`` URI.

    Args:
        registry_uri: the model registry; None = MLflow's default (``$MLFLOW_REGISTRY_URI``,
            else the tracking store).

    Raises:
        DataError and the retrieval errors: a bundle that does not load.
        RecsysError: no such run, or it already holds artifacts at ``artifact_path``.
    """
    bundle = Path(bundle_dir)
    model = CandidateModel.load(bundle, device="cpu")  # fail before anything is uploaded
    info = model.info
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RecsysError(f"run {run_id} not found in {tracking_uri} ({exc.message})") from None
    if client.list_artifacts(run_id, artifact_path):
        raise RecsysError(
            f"run {run_id} already holds artifacts at {artifact_path!r}; log under another "
            "artifact_path (artifacts cannot be replaced in place)"
        )
    with tempfile.TemporaryDirectory(prefix="recsys_cl_model_") as tmp:
        model_dir = Path(tmp) / artifact_path.rsplit("/", 1)[-1]
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=str(CODE_PATH),
            artifacts={"bundle": str(bundle.resolve())},
            signature=candidate_signature(info),
            # Saved as serving_input_example.json: the request format, checked by MLflow
            # predicting it once through the saved model.
            input_example=(pd.DataFrame({"user_id": model.users.raw[:1].to_list()}), {"k": info.k}),
            pip_requirements=pip_requirements(),
            metadata={"recsys_cl_bundle": asdict(info)},
        )
        client.log_artifacts(run_id, str(model_dir), artifact_path)
    model_uri = f"runs:/{run_id}/{artifact_path}"
    if register is None:
        return CandidateModelInfo(model_uri=model_uri)
    try:
        client.create_registered_model(register)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = client.create_model_version(
        register, source=f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}", run_id=run_id
    )
    return CandidateModelInfo(model_uri, registered_name=register, registered_version=int(version.version))


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
            return load_candidate_model(model_uri, tracking_uri, registry_uri=registry_uri, dst_path=tmp)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    source = model_uri
    if urllib.parse.urlparse(model_uri).scheme == "models":
        # MLflow 3.17's download_artifacts looks models:/ URIs up in the *global* registry,
        # ignoring its registry_uri argument: resolve them with our client first.
        found = get_model_name_and_version(client, model_uri)
        if len(found) == 1:
            source = client.get_logged_model(found[0]).artifact_location
        else:
            source = client.get_model_version_download_uri(*found)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(dst_path), tracking_uri=tracking_uri
    )
    return mlflow.pyfunc.load_model(local)


__all__ = [
    "CODE_PATH",
    "CandidateModelInfo",
    "candidate_signature",
    "load_candidate_model",
    "log_candidate_model",
    "pip_requirements",
]
