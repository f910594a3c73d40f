"""The candidate model: a bundle of a trained run answers as a direct filtered search over the
run's embeddings does (int and string ids, per-row k, cold start), and the MLflow pyfunc built on
it round-trips through a fresh process, the model registry and `mlflow models serve`."""

from __future__ import annotations

import pytest

# The candidate model searches a FAISS index, an extra (cpu or gpu).
faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from recsys_cl.config import load_config
from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.bundle import write_candidate_bundle
from recsys_cl.jobs.stages.parts import test_exclusions as seen_tables
from recsys_cl.jobs.stages.train import run_training
from recsys_cl.retrieval import (
    InvalidUserIdError,
    PairSet,
    UnknownUserError,
    build_index,
    most_popular,
    save_index,
    top_k_candidates,
)
from recsys_cl.retrieval.candidate_model import (
    BundleInfo,
    CandidateModel,
    CandidateRequestError,
)
from tests.conftest import make_long_tail_log

pytestmark = pytest.mark.usefixtures("one_thread")

SERVER_START_TIMEOUT_S = 90


def _train(root: Path, string_ids: bool) -> Path:
    log = root / "log.csv"
    make_long_tail_log(
        n_users=150, n_items=300, seed=5, mean_activity=15, string_ids=string_ids
    ).write_csv(log)
    cfg = root / "run.yaml"
    cfg.write_text(
        f"output_dir: {root / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model:\n  method: xsimgcl\n  dim: 16\n"
        "train:\n  epochs: 3\n  batch_size: 256\n  eval_every: 1\n  progress: false\n"
    )
    run_training(load_config(cfg, []))
    return root / "run"


@pytest.fixture(scope="module")
def int_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-epoch XSimGCL run with integer raw ids (about a second)."""
    return _train(tmp_path_factory.mktemp("cm_int"), string_ids=False)


@pytest.fixture(scope="module")
def str_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with string raw ids (``u0``, ``i12``)."""
    return _train(tmp_path_factory.mktemp("cm_str"), string_ids=True)


@pytest.fixture(params=["int_run", "str_run"])
def run_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def int_bundle(int_run: Path) -> Path:
    return write_candidate_bundle(int_run, int_run.parent / "bundle", k=5)


@pytest.fixture(scope="module")
def str_bundle(str_run: Path) -> Path:
    return write_candidate_bundle(str_run, str_run.parent / "bundle", k=4)


def _direct(run_dir: Path, users: list[Any], k: int) -> pd.DataFrame:
    """The oracle: an exact search over the run's embeddings with train + val items masked."""
    run = RunFolder(run_dir)
    split = run.split
    user_emb, item_emb = run.embeddings()
    index = build_index(item_emb, IndexSpec(), item_ids=split.items, device="cpu")
    seen = PairSet.from_tables(seen_tables(split), split.n_users, split.n_items)
    cands = top_k_candidates(
        index, user_emb, split.users.to_index(np.asarray(users)), k=k, exclude=seen
    )
    rows, cols = np.nonzero(cands.items >= 0)
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=object)[rows].tolist(),
            "rank": cols + 1,
            "item_id": split.items.to_raw(cands.items[rows, cols]).tolist(),
            "score": cands.scores[rows, cols],
        }
    )


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == ["user_id", "rank", "item_id", "score"]
    assert got["user_id"].tolist() == want["user_id"].tolist()
    assert got["rank"].tolist() == want["rank"].tolist()
    assert got["item_id"].tolist() == want["item_id"].tolist()
    assert np.allclose(
        got["score"].to_numpy(float), want["score"].to_numpy(float), rtol=1e-5, atol=1e-6
    )


def test_bundle_answers_as_direct_search(run_dir: Path) -> None:
    bundle = write_candidate_bundle(run_dir, run_dir.parent / "bundle_k7", k=7)
    model = CandidateModel.load(bundle)
    users = model.users.raw.to_list()
    got = model.predict(pd.DataFrame({"user_id": users}))
    _assert_same(got, _direct(run_dir, users, 7))

    # No recommended item is one the user saw in training or validation.
    split = RunFolder(run_dir).split
    seen = PairSet.from_tables(seen_tables(split), split.n_users, split.n_items)
    u = split.users.to_index(np.asarray(got["user_id"].tolist()))
    i = split.items.to_index(np.asarray(got["item_id"].tolist()))
    assert not seen.contains(u, i[:, None]).any()
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["k"] == 7 and info["n_users"] == split.n_users and info["n_seen"] == seen.keys.size


def test_per_row_k_and_popular_cold_start(int_run: Path, int_bundle: Path) -> None:
    model = CandidateModel.load(int_bundle)
    u0, u1 = model.users.raw.to_list()[:2]
    frame = pd.DataFrame({"user_id": [u1, -7, str(u0), u1], "k": [3, 4, None, 1]})
    got = model.predict(frame, k=2)
    assert got["user_id"].tolist() == [u1] * 3 + [-7] * 4 + [u0] * 2 + [u1]
    assert got["rank"].tolist() == [1, 2, 3, 1, 2, 3, 4, 1, 2, 1]
    known = _direct(int_run, [u1, u0], 3).iloc[[0, 1, 2, 3, 4, 0]]  # u1 top 3, u0 top 2, u1 top 1
    _assert_same(got[got["user_id"] != -7], known)

    # The unknown user gets the most popular training items, scored by their training users.
    split = RunFolder(int_run).split
    pop_items, pop_scores = most_popular(split.user_items("train"), 4)
    cold = got[got["user_id"] == -7]
    assert cold["item_id"].tolist() == split.items.to_raw(pop_items).tolist()
    assert cold["score"].tolist() == pop_scores.tolist()
    # The bundle default applies without k anywhere; k above I is cut to I.
    assert len(model.predict(pd.DataFrame({"user_id": [u0]}))) == 5
    assert len(model.predict(pd.DataFrame({"user_id": [-7]}), k=1000)) == split.n_items


def test_same_lists_as_recsys_cl_recommend(int_run: Path, int_bundle: Path, tmp_path: Path) -> None:
    from recsys_cl.jobs.stages.recommend import run_recommend

    users = [str(u) for u in CandidateModel.load(int_bundle).users.raw.to_list()[:10]] + ["123456"]
    report = run_recommend(
        int_run, users=users, k=5, cold_start="popular", out=tmp_path / "c.parquet", progress=False
    )
    got = CandidateModel.load(int_bundle).predict(pd.DataFrame({"user_id": users}))
    _assert_same(got, pl.read_parquet(report.out).to_pandas())


def test_string_ids_and_error_cold_start(str_run: Path, tmp_path: Path) -> None:
    model = CandidateModel.load(
        write_candidate_bundle(str_run, tmp_path / "b", k=3, cold_start="error")
    )
    first = model.users.raw.to_list()[0]
    assert model.predict(pd.DataFrame({"user_id": [first]}))["user_id"].tolist() == [first] * 3
    with pytest.raises(UnknownUserError, match="2 of 3 requested users are unknown.*'nobody'"):
        model.predict(pd.DataFrame({"user_id": [first, "nobody", "else"]}))


def test_request_errors(int_bundle: Path) -> None:
    model = CandidateModel.load(int_bundle)
    with pytest.raises(CandidateRequestError, match="needs a user_id column.*found: uid"):
        model.predict(pd.DataFrame({"uid": [1]}))
    for k in (0, -1, 2.5, True, 1001, 10**30, "x"):
        with pytest.raises(CandidateRequestError, match="^k must be an integer from 1 to 1,000"):
            model.predict(pd.DataFrame({"user_id": [0]}), k=k)
    with pytest.raises(CandidateRequestError, match="^request row 1: k must be an integer"):
        model.predict(pd.DataFrame({"user_id": [0, 1], "k": [2, 0]}))
    with pytest.raises(ValueError, match="^request row 1: user_id is missing"):
        model.predict(pd.DataFrame({"user_id": [0, None]}))
    with pytest.raises(InvalidUserIdError, match="^request row 0: user_id 'abc' is not an integer"):
        model.predict(pd.DataFrame({"user_id": ["abc"]}))
    empty = model.predict(pd.DataFrame({"user_id": pd.Series([], dtype="int64")}))
    assert empty.empty and list(empty.columns) == ["user_id", "rank", "item_id", "score"]


# A request the model must refuse, and what the one-line message names (user ids 0..149 exist).
HOSTILE_FRAMES = [
    ({"user_id": [1, 1.5]}, None, "request row 1: user_id 1.5 is not an integer"),
    ({"user_id": [1.9]}, None, "request row 0: user_id 1.9 is not an integer"),
    (
        {"user_id": pd.Series([1, True], dtype=object)},
        None,
        "request row 1: user_id True is not an integer",
    ),
    ({"user_id": [True]}, None, "request row 0: user_id True is not an integer"),
    ({"user_id": [2, 1e30]}, None, "request row 1: user_id 1e+30 is not an integer"),
    (
        {"user_id": pd.Series([3, 2**64], dtype=object)},
        None,
        "request row 1: user_id 18446744073709551616",
    ),
    ({"user_id": ["1_0"]}, None, "request row 0: user_id '1_0' is not an integer"),
    ({"user_id": [1], "foo": [2]}, None, "unknown column 'foo'"),
    ({"user_id": [1, 2], "k": [3, 0]}, None, "request row 1: k must be an integer from 1 to 100"),
    ({"user_id": [1], "k": [1.5]}, None, "request row 0: k must be"),
    ({"user_id": [1]}, 0, "k must be an integer from 1 to 100"),
    ({"user_id": [1]}, -1, "k must be an integer from 1 to 100"),
    ({"user_id": [1]}, 10**9, "k must be an integer from 1 to 100"),
    ({"user_id": list(range(41))}, None, "request row 40: over the limit of 40 rows"),
]


@pytest.fixture(scope="module")
def strict_bundle(int_run: Path) -> Path:
    """Small limits, so a too-long request stays small: max_k 100, max_rows 40."""
    return write_candidate_bundle(
        int_run, int_run.parent / "bundle_strict", k=5, max_k=100, max_rows=40
    )


@pytest.mark.parametrize(("columns", "k", "message"), HOSTILE_FRAMES)
def test_hostile_requests_are_refused_in_one_line(
    strict_bundle: Path, columns: dict[str, Any], k: Any, message: str
) -> None:
    model = CandidateModel.load(strict_bundle)
    with pytest.raises(ValueError) as caught:
        model.predict(pd.DataFrame(columns), k=k)
    assert isinstance(caught.value, RecsysError)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text, text


def test_an_unsigned_column_past_int64_is_refused_not_wrapped(strict_bundle: Path) -> None:
    # astype(int64) wrapped 2**64 - 1 to -1, answered as an unknown user's popular items.
    model = CandidateModel.load(strict_bundle)
    u0 = model.users.raw.to_list()[0]
    frame = pd.DataFrame({"user_id": pd.Series([u0, 2**64 - 1], dtype="uint64")})
    with pytest.raises(
        InvalidUserIdError, match="^request row 1: user_id 18446744073709551615 is not an integer"
    ):
        model.predict(frame)
    if u0 >= 0:
        ok = model.predict(pd.DataFrame({"user_id": pd.Series([u0], dtype="uint64")}), k=1)
        assert ok["user_id"].tolist() == [u0]


def test_ids_are_read_strictly(int_bundle: Path, str_bundle: Path) -> None:
    model = CandidateModel.load(int_bundle)
    u0, u1 = model.users.raw.to_list()[:2]
    # Exactly-integral forms of a known id answer as that id: JSON 7.0, a decimal string.
    frame = pd.DataFrame({"user_id": pd.Series([u0, float(u1), str(u0), f"+{u1}"], dtype=object)})
    got = model.predict(frame, k=1)
    assert got["user_id"].tolist() == [u0, u1, u0, u1]
    # A string run takes strings only: 5 is not "5".
    strings = CandidateModel.load(str_bundle)
    with pytest.raises(
        InvalidUserIdError,
        match="^request row 1: user_id 5 is a int; this run's user ids are strings",
    ):
        strings.predict(pd.DataFrame({"user_id": pd.Series(["u0", 5], dtype=object)}))
    # Limits travel in bundle.json; a version 1 bundle (no limits) reads with the defaults,
    # a version 2 bundle (no max_list, no allow-list) with the default max_list, allowing all.
    info = json.loads((int_bundle / "bundle.json").read_text())
    assert (info["format_version"], info["max_k"], info["max_rows"]) == (4, 1000, 1000)
    assert (info["max_list"], info["n_allowed"]) == (1000, None)
    assert "/" not in info["source_run"]  # the run folder's name, no path of this machine
    excluded = ("max_list", "n_allowed", "fold_in")
    v2 = {key: value for key, value in info.items() if key not in excluded}
    (int_bundle.parent / "bundle_v2").mkdir(exist_ok=True)
    (int_bundle.parent / "bundle_v2" / "bundle.json").write_text(
        json.dumps({**v2, "format_version": 2})
    )
    read_v2 = BundleInfo.read(int_bundle.parent / "bundle_v2")
    assert (read_v2.max_list, read_v2.n_allowed) == (1000, None)
    old = {key: value for key, value in v2.items() if key not in ("max_k", "max_rows")}
    (int_bundle.parent / "bundle_v1").mkdir(exist_ok=True)
    (int_bundle.parent / "bundle_v1" / "bundle.json").write_text(
        json.dumps({**old, "format_version": 1})
    )
    assert BundleInfo.read(int_bundle.parent / "bundle_v1").max_rows == 1000
    # A version 1 bundle with a default list over 1000 stays readable: its max_k covers its k.
    (int_bundle.parent / "bundle_v1" / "bundle.json").write_text(
        json.dumps({**old, "k": 2000, "format_version": 1})
    )
    assert BundleInfo.read(int_bundle.parent / "bundle_v1").max_k == 2000
    with pytest.raises(RecsysError, match=r"k \(50\) must be at most max_k \(10\)"):
        write_candidate_bundle(int_bundle.parent / "run", int_bundle.parent / "bad", k=50, max_k=10)


def test_saved_index_is_copied_and_bad_bundles_fail_on_load(int_run: Path, tmp_path: Path) -> None:
    run = RunFolder(int_run)
    saved = build_index(
        run.embeddings()[1], IndexSpec(kind="hnsw"), item_ids=run.split.items, device="cpu"
    )
    faiss_file, _ = save_index(saved, tmp_path / "idx" / "hnsw.faiss")
    bundle = write_candidate_bundle(int_run, tmp_path / "b", index_path=faiss_file)
    assert (bundle / "index.faiss").read_bytes() == faiss_file.read_bytes()
    model = CandidateModel.load(bundle)
    assert (
        model.info.index.startswith("HNSW")
        and len(model.predict(pd.DataFrame({"user_id": [0]}))) == 20
    )
    # A bundle is replaced whole; anything else at out_dir (the run folder itself) is refused.
    assert CandidateModel.load(write_candidate_bundle(int_run, bundle)).info.index == "Flat"
    with pytest.raises(RecsysError, match="is not a candidate bundle; refusing to replace it"):
        write_candidate_bundle(int_run, int_run)
    assert (int_run / "model.pt").is_file()

    (bundle / "seen.parquet").unlink()
    with pytest.raises(DataError, match=r"seen\.parquet: missing from the candidate bundle"):
        CandidateModel.load(bundle)
    (bundle / "bundle.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError, match=r"bundle\.json: not a recsys_cl.candidate_bundle file"):
        CandidateModel.load(bundle)
    with pytest.raises(DataError, match="not found; is .* a candidate bundle"):
        CandidateModel.load(tmp_path / "nothing")


@pytest.mark.integration
def test_candidate_model_does_not_import_mlflow() -> None:
    code = "import sys, recsys_cl.retrieval.candidate_model; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tracking URI, experiment id) of a temporary SQLite store, made once (its schema
    migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow_store")
    uri = f"sqlite:///{root}/mlruns.db"
    artifacts = (root / "artifacts").as_uri()
    return uri, MlflowClient(tracking_uri=uri).create_experiment(
        "candidates", artifact_location=artifacts
    )


@pytest.fixture
def tracking(store: tuple[str, str]) -> tuple[str, str]:
    """(tracking URI, id of a new RUNNING run)."""
    from mlflow.tracking import MlflowClient

    uri, experiment = store
    return uri, MlflowClient(tracking_uri=uri).create_run(experiment).info.run_id


def _env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_DISABLE_TELEMETRY="true")
    env["OMP_NUM_THREADS"] = "1"
    # `mlflow models serve` starts `uvicorn` by name: it must be on PATH even when the venv is not
    # activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _assert_logged_model(uri: str, run_id: str, model_id: str) -> None:
    """An MLflow 3 logged model: READY, of the run (source and outputs), found by the
    experiment's model search, and the run still RUNNING."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    logged = client.get_logged_model(model_id)
    assert (logged.name, logged.status, logged.source_run_id) == (
        "candidate_model",
        "READY",
        run_id,
    )
    assert logged.experiment_id == run.info.experiment_id
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert [m.model_id for m in found] == [model_id]
    assert [o.model_id for o in run.outputs.model_outputs] == [model_id]
    assert run.info.status == "RUNNING"


@pytest.mark.integration
def test_pyfunc_round_trip_in_a_fresh_process(
    str_bundle: Path, tracking: tuple[str, str], tmp_path: Path
) -> None:
    import mlflow

    from recsys_cl.serving.pyfunc import load_candidate_model, log_candidate_model

    uri, run_id = tracking
    global_uri = mlflow.get_tracking_uri()
    info = log_candidate_model(str_bundle, tracking_uri=uri, run_id=run_id)
    assert info.model_uri == f"models:/{info.model_id}" and info.model_id.startswith("m-")
    assert info.registered_version is None
    _assert_logged_model(uri, run_id, info.model_id)
    assert mlflow.get_tracking_uri() == global_uri

    model = CandidateModel.load(str_bundle)
    users = model.users.raw.to_list()[:4] + ["nobody"]  # string ids; an unknown one
    want = model.predict(pd.DataFrame({"user_id": users}), k=3)
    assert want["user_id"].tolist().count("nobody") == 3
    # Both URI forms, in one fresh process: the logged model's and the run-relative one (MLflow
    # resolves runs:/<run_id>/<name> to the run's logged model of that name).
    run_uri = f"runs:/{run_id}/candidate_model"
    code = (
        "import json, sys, mlflow, pandas as pd\n"
        "for model_uri in sys.argv[2:]:\n"
        "    model = mlflow.pyfunc.load_model(model_uri)\n"
        "    frame = pd.DataFrame({'user_id': json.loads(sys.argv[1])})\n"
        "    out = model.predict(frame, params={'k': 3})\n"
        "    print(json.dumps(out.to_dict(orient='list')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(users), info.model_uri, run_uri],
        check=False,
        capture_output=True,
        text=True,
        env=_env(uri),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()[-2:]
    for line in lines:
        _assert_same(pd.DataFrame(json.loads(line)), want)
    for model_uri in (info.model_uri, run_uri):
        in_process = load_candidate_model(model_uri, uri)
        _assert_same(in_process.predict(pd.DataFrame({"user_id": users}), params={"k": 3}), want)
        # The MLmodel names the logged model it was logged as.
        assert (
            in_process.metadata.model_id == info.model_id and in_process.metadata.run_id == run_id
        )

    # Logging the same run's model again (a resumed job) returns the model already there.
    again = log_candidate_model(str_bundle, tracking_uri=uri, run_id=run_id)
    assert again.model_id == info.model_id
    with pytest.raises(RecsysError, match="run nope not found"):
        log_candidate_model(str_bundle, tracking_uri=uri, run_id="nope")
    with pytest.raises(RecsysError, match="not a valid MLflow logged model name"):
        log_candidate_model(
            str_bundle, tracking_uri=uri, run_id=run_id, artifact_path="models/cand"
        )
    _assert_logged_model(uri, run_id, info.model_id)  # the refused calls created nothing


def test_registered_model_version(int_bundle: Path, tracking: tuple[str, str]) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from recsys_cl.serving.pyfunc import load_candidate_model, log_candidate_model

    uri, run_id = tracking
    global_uri, env_uri = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    info = log_candidate_model(
        int_bundle, tracking_uri=uri, run_id=run_id, register="recsys-cl-test"
    )
    # Registering into the local registry points the global tracking URI at the store for a
    # moment (MLflow resolves models:/<model_id> through it); it is put back.
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == (
        global_uri,
        env_uri,
    )
    _assert_logged_model(uri, run_id, info.model_id)
    client = MlflowClient(uri)
    versions = client.search_model_versions("name='recsys-cl-test'")
    assert [(v.version, v.run_id, v.status) for v in versions] == [
        (info.registered_version, run_id, "READY")
    ]
    # The version points at the logged model, and the logged model lists the version.
    assert versions[0].source == info.model_uri
    tag = json.loads(client.get_logged_model(info.model_id).tags["mlflow.modelVersions"])
    assert tag == [{"name": "recsys-cl-test", "version": str(info.registered_version)}]
    model = load_candidate_model(f"models:/recsys-cl-test/{info.registered_version}", uri)
    assert model.metadata.model_id == info.model_id
    assert len(model.predict(pd.DataFrame({"user_id": [0]}))) == 5


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.integration
def test_served_model_answers_invocations(
    int_run: Path, int_bundle: Path, tracking: tuple[str, str], tmp_path: Path
) -> None:
    from recsys_cl.serving.pyfunc import log_candidate_model
    from recsys_cl.serving.server import free_port, local_server

    uri, run_id = tracking
    info = log_candidate_model(
        int_bundle, tracking_uri=uri, run_id=run_id, register="recsys-cl-serve"
    )
    # The form the README gives (models:/<id> and runs:/ load in a fresh process above).
    served_uri = f"models:/recsys-cl-serve/{info.registered_version}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        served_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with local_server(
        command, base, log_dir=tmp_path, env=_env(uri), start_timeout_s=SERVER_START_TIMEOUT_S
    ):
        users = CandidateModel.load(int_bundle).users.raw.to_list()[:3]
        status, body = _post(
            f"{base}/invocations",
            {
                "dataframe_split": {"columns": ["user_id"], "data": [[u] for u in users]},
                "params": {"k": 5},
            },
        )
        assert status == 200, body
        _assert_same(pd.DataFrame(body["predictions"]), _direct(int_run, users, 5))

        status, body = _post(
            f"{base}/invocations", {"dataframe_records": [{"user_id": users[0], "k": 0}]}
        )
        assert status == 400 and "request row 0: k must be an integer" in body["message"]
        # MLflow's server hands the model the values as sent (no input schema to cast them), so it
        # refuses a fractional id too, though it prefixes the message with a dump of the request;
        # `recsys-cl serve` answers in one line (tests/test_serving.py).
        status, body = _post(
            f"{base}/invocations",
            {"dataframe_split": {"columns": ["user_id"], "data": [[users[0]], [1.5]]}},
        )
        assert status == 400 and "request row 1: user_id 1.5 is not an integer" in body["message"]
