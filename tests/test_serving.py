"""The logged candidate model under hostile input and away from the machine that trained it:
every malformed request is a 4xx with one line naming the row, through the pyfunc model and
through `recsys-cl serve` on loopback; the model's files hold no path of the training machine,
it loads and answers the same from a copied folder, and its run's test metrics are linked to it."""

from __future__ import annotations

import pytest

faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")

import http.client
import json
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

import recsys_cl
from recsys_cl.jobs.stages.bundle import write_candidate_bundle
from recsys_cl.retrieval.candidate_model import CandidateModel
from tests.test_candidate_model import HOSTILE_FRAMES, _assert_same, _env, _train

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_BODY_MB = 8


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained run, its bundle (max_k 100, max_rows 40) logged as the model of an MLflow run
    that holds test, candidate and training metrics."""
    from mlflow.tracking import MlflowClient

    from recsys_cl.serving.pyfunc import log_candidate_model

    root = tmp_path_factory.mktemp("serving")
    (root / "train").mkdir()
    run_dir = _train(root / "train", string_ids=False)
    bundle = write_candidate_bundle(run_dir, root / "train" / "bundle", k=5, max_k=100, max_rows=40)
    uri = f"sqlite:///{root}/mlruns.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment(
        "serving", artifact_location=(root / "artifacts").as_uri()
    )
    run_id = client.create_run(experiment).info.run_id
    for key, value in {
        "test/recall_at_20": 0.31,
        "candidates/ndcg_at_5": 0.12,
        "train/loss": 0.7,
    }.items():
        client.log_metric(run_id, key, value, step=3)
    client.log_metric(run_id, "test/recall_at_20", 0.33, step=4)  # the latest value is linked
    info = log_candidate_model(bundle, tracking_uri=uri, run_id=run_id)
    return {
        "root": root,
        "run_dir": run_dir,
        "bundle": bundle,
        "uri": uri,
        "run_id": run_id,
        "info": info,
    }


def test_logged_model_is_portable_and_carries_its_metrics(
    logged: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from recsys_cl.serving.pyfunc import load_candidate_model, log_candidate_model

    client = MlflowClient(logged["uri"])
    model_id = logged["info"].model_id
    metrics = {
        m.key: (m.value, m.step, m.run_id) for m in client.get_logged_model(model_id).metrics
    }
    run_id = logged["run_id"]
    assert metrics == {
        "test/recall_at_20": (0.33, 4, run_id),
        "candidates/ndcg_at_5": (0.12, 3, run_id),
    }
    # Linking changed no run metric, and linking again (a resumed job) adds nothing.
    log_candidate_model(logged["bundle"], tracking_uri=logged["uri"], run_id=run_id)
    assert len(client.get_logged_model(model_id).metrics) == 2
    assert [m.value for m in client.get_metric_history(run_id, "test/recall_at_20")] == [0.31, 0.33]

    # No file of the model names a path of the machine that trained it.
    folder = Path(
        urllib.request.url2pathname(
            client.get_logged_model(model_id).artifact_location[len("file:") :]
        )
    )
    machine_paths = [str(logged["root"]), str(Path(recsys_cl.__file__).resolve().parents[1])]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"MLmodel", "pyfunc_code.py", "bundle.json", "index.faiss"}
    for path in files:
        data = path.read_bytes()
        assert not any(m.encode() in data for m in machine_paths), (
            f"{path.relative_to(folder)} names a local path"
        )

    # Copied elsewhere (the store and the training folder out of reach), it answers the same.
    copy = shutil.copytree(folder, tmp_path / "elsewhere" / "model")
    users = CandidateModel.load(logged["bundle"]).users.raw.to_list()[:5] + [-1]
    frame = pd.DataFrame({"user_id": users})
    want = load_candidate_model(logged["info"].model_uri, logged["uri"]).predict(
        frame, params={"k": 4}
    )
    _assert_same(mlflow.pyfunc.load_model(str(copy)).predict(frame, params={"k": 4}), want)


@pytest.mark.parametrize(("columns", "k", "message"), HOSTILE_FRAMES)
def test_pyfunc_refuses_hostile_frames_in_one_line(
    logged: dict[str, Any], columns: dict[str, Any], k: Any, message: str
) -> None:
    from mlflow.exceptions import MlflowException

    model = _pyfunc(logged)
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame(columns), params=None if k is None else {"k": k})
    assert caught.value.get_http_status_code() == 400
    assert caught.value.message.startswith(message) and "\n" not in caught.value.message


_PYFUNC: dict[str, Any] = {}


def _pyfunc(logged: dict[str, Any]) -> Any:
    """The logged pyfunc model, loaded once for the parametrized test."""
    from recsys_cl.serving.pyfunc import load_candidate_model

    if logged["info"].model_id not in _PYFUNC:
        _PYFUNC[logged["info"].model_id] = load_candidate_model(
            logged["info"].model_uri, logged["uri"]
        )
    return _PYFUNC[logged["info"].model_id]


@pytest.fixture(scope="module")
def server(logged: dict[str, Any]) -> Iterator[str]:
    """`recsys-cl serve` of the logged model on a free loopback port (body limit 8 MiB); its
    base URL. Stopped by its process group id."""
    from recsys_cl.serving.server import free_port, local_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "recsys_cl.cli", "serve", logged["info"].model_uri,
        "--tracking-uri", logged["uri"], "--host", "127.0.0.1", "--port", str(port),
        "--max-body-mb", str(MAX_BODY_MB),
    ]
    with local_server(cmd, base, log_dir=logged["root"], env=_env(logged["uri"])):
        yield base


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _records(*rows: dict[str, Any], **params: Any) -> bytes:
    return json.dumps(
        {"dataframe_records": list(rows), **({"params": params} if params else {})}
    ).encode()


# (body, status, the start of the one-line message)
HOSTILE_BODIES = [
    (
        json.dumps({"dataframe_split": {"columns": ["user_id"], "data": [[1], [1.5]]}}).encode(),
        400,
        "request row 1: user_id 1.5 is not an integer",
    ),
    (_records({"user_id": 1.9}), 400, "request row 0: user_id 1.9 is not an integer"),
    (
        _records({"user_id": 1}, {"user_id": True}),
        400,
        "request row 1: user_id True is not an integer",
    ),
    (
        b'{"dataframe_records": [{"user_id": 1e30}]}',
        400,
        "request row 0: user_id 1e+30 is not an integer",
    ),
    (_records({"user_id": 2**70}), 400, "request row 0: user_id 1180591620717411303424 is not"),
    (_records({"user_id": 1, "foo": 2}), 400, "unknown column 'foo'"),
    (_records({"user_id": 1}, {"user_id": None}), 400, "request row 1: user_id is missing"),
    (_records({"uid": 1}), 400, "the input needs a user_id column"),
    (_records({"user_id": 1}, k=0), 400, "k must be an integer from 1 to 100"),
    (_records({"user_id": 1}, k=-1), 400, "k must be an integer from 1 to 100"),
    (_records({"user_id": 1}, k=10**12), 400, "k must be an integer from 1 to 100"),
    # A param of the wrong type is refused by MLflow's params schema (k: long), in its words.
    (_records({"user_id": 1}, k=1.5), 400, "Invalid parameters found: {('k', "),
    (_records({"user_id": 1}, k=True), 400, "Invalid parameters found: {('k', "),
    (_records({"user_id": 1, "k": 2}, {"user_id": 2, "k": 0}), 400, "request row 1: k must be"),
    (
        _records(*({"user_id": u} for u in range(41))),
        400,
        "request row 40: over the limit of 40 rows",
    ),
    (
        json.dumps({"dataframe_split": {"columns": ["user_id"], "data": [[1, 2]]}}).encode(),
        400,
        "request row 0: not a list of 1 values",
    ),
    (_records({"user_id": 1}, 7), 400, "request row 1: not an object"),
    (b'{"dataframe_records": [', 400, "the body is not valid JSON"),
    (b"[" * 5_000_000, 400, "the body is not a request: JSON nested deeper"),
    (b"\xff\xfe\x00", 400, "the body is not valid JSON"),
    (b"[1, 2]", 400, "the body must be a JSON object"),
    (
        b'{"inputs": {"user_id": [1]}}',
        400,
        "the body must be a JSON object with one of dataframe_split",
    ),
    (
        b'{"dataframe_records": [{"user_id": 1}], "params": [3]}',
        400,
        "params must be a JSON object",
    ),
]


@pytest.mark.integration
def test_served_model_refuses_hostile_requests_in_one_line(
    server: str, logged: dict[str, Any]
) -> None:
    users = CandidateModel.load(logged["bundle"]).users.raw.to_list()[:3]
    status, answer = _post(f"{server}/invocations", _records(*({"user_id": u} for u in users), k=4))
    assert status == 200
    want = CandidateModel.load(logged["bundle"]).predict(pd.DataFrame({"user_id": users}), k=4)
    _assert_same(pd.DataFrame(answer["predictions"]), want)

    failures = []
    for body, want_status, message in HOSTILE_BODIES:
        status, answer = _post(f"{server}/invocations", body)
        text = answer.get("message", "") if isinstance(answer, dict) else ""
        if status != want_status or not text.startswith(message) or "\n" in text:
            failures.append(f"{body[:60]!r}: {status} {text[:300]!r}")
    assert not failures, "\n".join(failures)
    status, answer = _post(f"{server}/invocations", _records({"user_id": 1}), "text/csv")
    assert status == 415 and "reads application/json" in answer["message"]
    # A body over the limit is refused from its declared length, before it is read (a client
    # still sending it would see the connection close under it).
    too_big = MAX_BODY_MB * 2**20 + 1
    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(too_big))
    connection.endheaders()
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413 and answer["message"].startswith(f"the body is {too_big:,} bytes")
    # The server is still up and answering after all of that.
    assert _post(f"{server}/invocations", _records({"user_id": users[0]}))[0] == 200


def test_request_limits_are_configured_with_the_run() -> None:
    from pydantic import ValidationError

    from recsys_cl.config.retrieval import DEFAULT_MAX_K, DEFAULT_MAX_ROWS
    from recsys_cl.config.schema import RetrievalConfig

    default = RetrievalConfig()
    assert (default.max_k, default.max_rows) == (DEFAULT_MAX_K, DEFAULT_MAX_ROWS)
    assert RetrievalConfig(k=50, max_k=50, max_rows=10).max_rows == 10
    with pytest.raises(ValidationError, match=r"k \(60\) must be at most max_k \(50\)"):
        RetrievalConfig(k=60, max_k=50)
    # A config that sets only k (a run folder from before max_k) loads, its max_k covering k.
    assert RetrievalConfig.model_validate({"k": 2000}).max_k == 2000


@pytest.mark.integration
def test_bench_serving_measures_both_modes(
    logged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    bench_dir = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, bench_dir)
    try:
        from bench_serving import main as bench_main
    finally:
        sys.path.remove(bench_dir)
    args = [
        "--model-uri",
        logged["info"].model_uri,
        "--tracking-uri",
        logged["uri"],
        "--clients",
        "2",
        "--requests",
        "30",
        "--seconds",
        "20",
        "--batch",
        "10",
        "-k",
        "5",
        "--json",
    ]
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    record = json.loads(out.strip().splitlines()[-1])
    assert record["workers"] == 1 and "--workers 1" in record["server"] and "--workers 1" in out
    assert [(r["mode"], r["users_per_request"]) for r in record["results"]] == [
        ("single", 1),
        ("batched", 10),
    ]
    for result in record["results"]:
        assert (result["requests"], result["errors"]) == (30, 0), result
        assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]


def test_parse_request_keeps_json_values_and_checks_rows_first() -> None:
    from recsys_cl.serving.server import RequestError, parse_request

    frame, params = parse_request(
        b'{"dataframe_records": [{"user_id": 1}, {"user_id": 1.5, "k": 2}]}', "application/json"
    )
    # object columns: the int stays an int and the float a float, for the model to judge.
    assert frame["user_id"].tolist() == [1, 1.5] and type(frame["user_id"][0]) is int
    assert frame["k"].tolist() == [None, 2] and params is None
    body = (
        b'{"dataframe_split": {"columns": ["user_id"], "data": [[1], [2], [3]]}, '
        b'"params": {"k": 2}}'
    )
    assert parse_request(body, "application/json; charset=utf-8", max_rows=3)[1] == {"k": 2}
    with pytest.raises(
        RequestError, match=r"^request row 2: over the limit of 2 rows per request \(3 sent\)"
    ):
        parse_request(body, "application/json", max_rows=2)


def test_parse_request_takes_a_single_column_as_mlflow_does_and_refuses_repeated_columns() -> None:
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    from recsys_cl.serving.server import RequestError, parse_request

    # MLflow's server (pandas) reads one column's values given flat; so must this one.
    payload = {"dataframe_split": {"columns": ["user_id"], "data": [1, 2]}}
    assert infer_and_parse_data(payload)["user_id"].tolist() == [1, 2]
    frame, _ = parse_request(json.dumps(payload).encode(), "application/json")
    assert frame["user_id"].tolist() == [1, 2]
    # A column named twice would silently keep its last value.
    twice = b'{"dataframe_split": {"columns": ["user_id", "user_id"], "data": [[1, 2]]}}'
    with pytest.raises(RequestError, match="names column 'user_id' more than once"):
        parse_request(twice, "application/json")
