"""Log a candidate bundle as an MLflow pyfunc model of an existing run, and load it back.

The model is a "model from code" (:mod:`.pyfunc_code`) with the bundle as its one artifact:
no pickle, and ``mlflow models serve`` answers ``/invocations`` with the lists of
:meth:`CandidateModel.predict <recsys_cl.retrieval.candidate_model.CandidateModel.predict>`.

It is an MLflow 3 *logged model* (``models:/<model_id>``) whose source run is the given run, as
``mlflow.pyfunc.log_model`` would make it, so the run page lists it under "Logged models" and
the experiment's Models tab shows it. Everything goes through an explicit
``MlflowClient(tracking_uri)`` and no active run is set, so logging into a run never ends it
(``mlflow.start_run(run_id=...)`` as a context manager would mark it FINISHED) and callers that
track elsewhere are not disturbed; the one exception is registering into a local (database)
registry, see :func:`_tracking_uri_for_registry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import (
    LoggedModel,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Run,
)
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from recsys_cl.errors import RecsysError
from recsys_cl.optional import faiss_distribution, installed_version
from recsys_cl.retrieval.candidate_model import (
    ALLOWED_FILE,
    BUNDLE_FILE,
    QUERY_ITEM_COLUMN,
    SKIPPED_COLUMN,
    BundleInfo,
    CandidateModel,
)
from recsys_cl.retrieval.request import REQUEST_COLUMNS
from recsys_cl.tracking.mlflow_tracker import global_tracking_uri, store_call

from .model_uris import download_candidate_model, load_candidate_model, run_logged_model

CODE_PATH = Path(__file__).with_name("pyfunc_code.py")
DEFAULT_ARTIFACT_PATH = "candidate_model"
# What loading the model imports (measured from sys.modules after loading it), pinned to the
# versions here; given explicitly so MLflow does not spend seconds inferring them.
_REQUIREMENTS = (
    "mlflow",
    "numpy",
    "pandas",
    "polars",
    "pyarrow",
    "pydantic",
    "pyyaml",
    "torch",
    "tqdm",
)
_MLFLOW_TYPES = {"int64": "long", "string": "string"}
# Run tags copied onto the logged model, as mlflow.pyfunc.log_model records them for its own.
_COPIED_RUN_TAGS = (
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
)
# The logged-model tag MLflow's UI reads to list a model's registered versions.
_MODEL_VERSIONS_TAG = "mlflow.modelVersions"
_MODEL_TYPE = "recsys_cl.candidate_model"
# On each logged model: which bundle it holds (see bundle_digest).
_DIGEST_TAG = "recsys_cl.bundle_sha256"
# Run metrics linked to the logged model: its quality on the test split.
_LINKED_METRIC_PREFIXES = ("test/", "candidates/")
_METRICS_PER_CALL = 1000  # MLflow's log_batch limit


@dataclass(frozen=True)
class CandidateModelInfo:
    """Where :func:`log_candidate_model` put the model.

    Attributes:
        model_uri: ``models:/<model_id>``, the logged model (``runs:/<run_id>/<name>`` resolves
            to it too: MLflow falls back to the run's logged model of that name).
        model_id: the logged model's id (``m-...``).
        registered_name, registered_version: the registry entry, or None when not registered;
            the version's source is ``models:/<model_id>``.
    """

    model_uri: str
    model_id: str
    registered_name: str | None = None
    registered_version: int | None = None


def pip_requirements() -> list[str]:
    """The model's pip requirements: its imports' distributions at their installed versions
    (a local version label such as torch's ``+cpu`` dropped: no index serves it)."""
    names = list(_REQUIREMENTS)
    names.append(faiss_distribution() or "faiss-cpu")
    out = []
    for name in names:
        version = installed_version(name)
        out.append(f"{name}=={version.split('+')[0]}" if version else name)
    return out


def candidate_signature(info: BundleInfo) -> ModelSignature:
    """Param ``k`` (default: the bundle's); output ``user_id, query_item_id, rank, item_id,
    score, history_skipped`` with the two key columns and the last optional (an answer has
    those of its request: a request of user ids alone is answered ``user_id, rank, item_id,
    score``; one with a ``history`` column adds ``history_skipped``); no input schema.

    The input (``user_id`` or ``item_id`` per row, an optional per-row ``k`` and ``exclude``
    list) is checked by :meth:`CandidateModel.predict`, not by MLflow: an MLflow input schema
    makes the scoring server cast each column to its type *before* the model sees it
    (``astype`` in ``cast_df_types_according_to_schema``: ``1.5`` and ``true`` become user 1,
    ``1e30`` becomes -2**63) and makes ``PyFuncModel.predict`` drop unknown columns with a
    warning, so neither could be refused. The input is described in the model's metadata
    (``recsys_cl_input``).
    """
    user_type, item_type = _MLFLOW_TYPES[info.user_id_dtype], _MLFLOW_TYPES[info.item_id_dtype]
    return ModelSignature(
        inputs=None,
        outputs=Schema(
            [
                ColSpec(user_type, "user_id", required=False),
                ColSpec(item_type, QUERY_ITEM_COLUMN, required=False),
                ColSpec("integer", "rank"),
                ColSpec(item_type, "item_id"),
                ColSpec("float", "score"),
                ColSpec("long", SKIPPED_COLUMN, required=False),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", info.k)]),
    )


@store_call  # an interrupted upload would leave the store locked and the model PENDING
def log_candidate_model(
    bundle_dir: str | Path,
    *,
    tracking_uri: str,
    run_id: str,
    artifact_path: str = DEFAULT_ARTIFACT_PATH,
    register: str | None = None,
    registry_uri: str | None = None,
) -> CandidateModelInfo:
    """Log the bundle at ``bundle_dir`` as a pyfunc logged model named ``artifact_path`` whose
    source run is ``run_id``, leaving the run's status as it is; register it as ``register``
    when given.

    The steps of ``mlflow.pyfunc.log_model``, through the client: create the logged model
    (PENDING), record it as an output of the run, save the model with the logged model's id in
    its MLmodel, upload it to the logged model's artifact location and mark it READY (FAILED
    when any step raises).

    Args:
        artifact_path: the logged model's name (``runs:/<run_id>/<artifact_path>`` resolves to
            it); MLflow 3 forbids ``/ : . %`` and quotes in it.
        registry_uri: the model registry; None = MLflow's default (``$MLFLOW_REGISTRY_URI``,
            else the tracking store).

    Raises:
        DataError and the retrieval errors: a bundle that does not load.
        RecsysError: a bad name, no such run, or the run already holds a model or artifacts
            named ``artifact_path``.
    """
    bundle = Path(bundle_dir)
    if not artifact_path or any(c in artifact_path for c in "/:.%\"'"):
        raise RecsysError(
            f"artifact_path {artifact_path!r} is not a valid MLflow logged model name "
            "(non-empty, none of / : . % or quotes)"
        )
    model = CandidateModel.load(bundle, device="cpu")  # fail before anything is created
    info = model.info
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RecsysError(f"run {run_id} not found in {tracking_uri} ({exc.message})") from None
    # One model per name and run: runs:/<run_id>/<name> resolves to a single one (a FAILED
    # attempt is superseded: the newest model of a name wins). Checked by hand, since
    # client.list_artifacts looks the run's logged models up through the global tracking URI.
    digest = bundle_digest(bundle)
    existing = run_logged_model(client, run, artifact_path)
    if (
        existing is not None
        and existing.status == LoggedModelStatus.READY
        and existing.tags.get(_DIGEST_TAG) == digest
    ):
        # A resumed job logging the same bundle again: that model is already there.
        model_id = existing.model_id
        link_test_metrics(client, run_id, model_id)
        version = (
            None
            if register is None
            else _register(client, register, model_id, run_id, tracking_uri)
        )
        return CandidateModelInfo(
            f"models:/{model_id}", model_id, registered_name=register, registered_version=version
        )
    if existing is not None and existing.status == LoggedModelStatus.PENDING:
        # Left by a process killed while uploading (nothing else writes this run now): it can
        # never become READY, so it is marked FAILED and a new one logged.
        client.finalize_logged_model(existing.model_id, LoggedModelStatus.FAILED)
    own_files = mlflow.artifacts.list_artifacts(
        artifact_uri=f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}",
        tracking_uri=tracking_uri,
    )
    if own_files:
        raise RecsysError(
            f"run {run_id} already holds artifacts named {artifact_path!r}; log under another "
            "artifact_path (they cannot be replaced in place)"
        )
    # A READY model of another bundle (a resume that changed retrieval.*) stays; the newest
    # model of a name is the one runs:/<run_id>/<name> resolves to.
    logged = _create_logged_model(client, run, artifact_path, digest)
    model_id = logged.model_id
    try:
        # What makes the run page list it under "Logged models" (source_run_id alone does not).
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        with tempfile.TemporaryDirectory(prefix="recsys_cl_model_") as tmp:
            model_dir = Path(tmp) / artifact_path
            mlflow.pyfunc.save_model(
                path=str(model_dir),
                python_model=str(CODE_PATH),
                artifacts={"bundle": str(bundle.resolve())},
                signature=candidate_signature(info),
                # Saved as serving_input_example.json: the request format, checked by MLflow
                # predicting it once through the saved model.
                input_example=(
                    pd.DataFrame({"user_id": model.users.raw[:1].to_list()}),
                    {"k": info.k},
                ),
                pip_requirements=pip_requirements(),
                metadata={
                    "recsys_cl_bundle": asdict(info),
                    "recsys_cl_input": input_description(info),
                },
                # The MLmodel names its logged model (model_id, model_uuid) and source run, as
                # log_model writes it; loaders use model_id to attribute traces and metrics.
                # artifact_path is the run-relative name (runs:/<run_id>/<name> resolves to
                # this model), not the store's absolute location log_model writes.
                mlflow_model=Model(
                    artifact_path=artifact_path,
                    model_uuid=model_id,
                    run_id=run_id,
                    model_id=model_id,
                ),
            )
            _drop_local_paths(model_dir)
            client.log_model_artifacts(model_id, str(model_dir))
        client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        link_test_metrics(client, run_id, model_id)
    except BaseException:
        # A PENDING model would look as if still being written; MLflow marks such ones FAILED.
        with contextlib.suppress(Exception):
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        raise
    model_uri = f"models:/{model_id}"
    if register is None:
        return CandidateModelInfo(model_uri, model_id)
    version = _register(client, register, model_id, run_id, tracking_uri)
    return CandidateModelInfo(
        model_uri, model_id, registered_name=register, registered_version=version
    )


def input_description(info: BundleInfo) -> dict[str, object]:
    """What a request may hold (the model has no MLflow input schema; see candidate_signature)."""
    types = {"user_id": info.user_id_dtype, "item_id": info.item_id_dtype}
    return {
        "columns": {
            name: f"{types[name]} {text}" if name in types else text
            for name, text in REQUEST_COLUMNS.items()
        },
        "params": {"k": f"list length of rows without their own (default {info.k})"},
        "max_k": info.max_k,
        "max_rows": info.max_rows,
        "max_list": info.max_list,
        "n_allowed": info.n_allowed,
    }


def _drop_local_paths(model_dir: Path) -> None:
    """Replace the two absolute paths of the saving machine that ``save_model`` writes into the
    MLmodel (the code file and the bundle's source folder) with paths inside the model.

    Loading reads neither (MLflow joins the code file's *basename* and each artifact's ``path``
    to the model folder), so the model loads the same from anywhere; they only leaked where it
    was trained.
    """
    mlmodel = Model.load(str(model_dir))
    flavor = mlmodel.flavors["python_function"]
    flavor["model_code_path"] = Path(flavor["model_code_path"]).name
    for artifact in flavor.get("artifacts", {}).values():
        artifact["uri"] = artifact["path"]
    mlmodel.save(str(model_dir / "MLmodel"))


def link_test_metrics(client: MlflowClient, run_id: str, model_id: str) -> None:
    """Record the run's test and candidate metrics (``test/...``, ``candidates/...``) against the
    logged model too, so the experiment's Models view lists and compares candidate models by
    Recall/NDCG. Each metric keeps its run step and time, so the run's history is unchanged (the
    store keeps one row per key, step, time and value). Idempotent."""
    metrics = []
    for key in client.get_run(run_id).data.metrics:
        if key.startswith(_LINKED_METRIC_PREFIXES):
            # The value the run shows: its latest step, then its latest time.
            last = max(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
            metrics.append(
                Metric(key, last.value, last.timestamp, last.step, model_id=model_id, run_id=run_id)
            )
    for start in range(0, len(metrics), _METRICS_PER_CALL):
        client.log_batch(run_id, metrics=metrics[start : start + _METRICS_PER_CALL])


def check_model_name(name: str) -> None:
    """Refuse a registered-model name MLflow would refuse, before any work is done.

    Raises:
        RecsysError: an empty name, or one with ``/`` or ``:`` (MLflow's rule).
    """
    path_like = name == "." or name.startswith("..") or posixpath.normpath(name) != name
    if not name.strip() or any(c in name for c in "/:") or path_like:
        raise RecsysError(
            f"--register {name!r}: a registered model name is non-empty, without '/' or ':', "
            "and not a path such as '.' or '..x'"
        )


def bundle_digest(bundle_dir: Path) -> str:
    """SHA-256 over the bundle's ``bundle.json``, what identifies its index (the index file's
    and the item embeddings' hashes, the spec; not the build time) and its allow-list: equal
    digests, the same model."""
    index = json.loads((bundle_dir / "index.json").read_text())
    stable = {key: index.get(key) for key in ("index_sha256", "embeddings_fingerprint", "spec")}
    sha = hashlib.sha256((bundle_dir / BUNDLE_FILE).read_bytes())
    sha.update(json.dumps(stable, sort_keys=True).encode())
    allowed = bundle_dir / ALLOWED_FILE
    if allowed.is_file():  # two allow-lists of one size are two models
        sha.update(hashlib.sha256(allowed.read_bytes()).digest())
    return sha.hexdigest()


def _create_logged_model(client: MlflowClient, run: Run, name: str, digest: str) -> LoggedModel:
    """A PENDING logged model in the run's experiment, with the run's params and source tags
    (what ``log_model`` copies, so the Models tab can compare candidate models by them)."""
    tags = {key: value for key, value in run.data.tags.items() if key in _COPIED_RUN_TAGS}
    tags[_DIGEST_TAG] = digest
    return client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=name,
        source_run_id=run.info.run_id,
        tags=tags,
        params=dict(run.data.params) or None,
        model_type=_MODEL_TYPE,
    )


def _register(
    client: MlflowClient, name: str, model_id: str, run_id: str, tracking_uri: str
) -> int:
    """A new version of registered model ``name`` (created when missing) from the logged model,
    linked both ways as ``mlflow.register_model("models:/<model_id>", name)`` links them."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    # Source models:/<model_id> is what the UI's version page links back to the logged model
    # from (it only matches that form); the registry stores the artifact location beside it
    # for downloads.
    source = f"models:/{model_id}"
    # A resumed job registering the same model again gets the version it already has.
    for known in client.search_model_versions(f"name = '{name}'"):
        if known.source == source:
            return int(known.version)
    with global_tracking_uri(tracking_uri):
        version = client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
    # The other direction: the logged model's page lists the versions in this tag. A registry
    # server sets it itself; a local registry does not, so set it here (without duplicates).
    entry = {"name": version.name, "version": str(version.version)}
    current = client.get_logged_model(model_id).tags.get(_MODEL_VERSIONS_TAG)
    entries = json.loads(current) if current else []
    if entry not in entries:
        client.set_logged_model_tags(model_id, {_MODEL_VERSIONS_TAG: json.dumps([*entries, entry])})
    return int(version.version)


__all__ = [
    "CODE_PATH",
    "bundle_digest",
    "CandidateModelInfo",
    "candidate_signature",
    "check_model_name",
    "download_candidate_model",
    "input_description",
    "link_test_metrics",
    "load_candidate_model",
    "log_candidate_model",
    "pip_requirements",
]
