"""Similar items and business filters, end to end: filtered search equals a naive loop over
every item (flat), returns K items whenever K eligible items exist (IVF, HNSW, IVF-PQ + refine),
and the same lists come from the Python API, `recsys-cl similar` / `recommend`, the logged
MLflow model and `recsys-cl serve`; every malformed new input is refused in one line."""

from __future__ import annotations

import pytest

faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from recsys_cl.cli import main
from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.errors import RecsysError
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.bundle import write_candidate_bundle
from recsys_cl.jobs.stages.parts import test_exclusions as seen_tables
from recsys_cl.retrieval import (
    AllowList,
    IndexSpecError,
    PairSet,
    build_index,
    exact_filtered_top_k,
    search_filtered,
    similar_items,
)
from recsys_cl.retrieval.candidate_model import SKIPPED_COLUMN, CandidateModel
from tests.conftest import user_error
from tests.test_candidate_model import _env, _train

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(
    queries: np.ndarray,
    item_emb: np.ndarray,
    k: int,
    banned: list[set[int]],
    allowed: np.ndarray | None,
    metric: str = "ip",
) -> list[list[int]]:
    """The oracle: every item scored in a Python loop, the banned and disallowed ones dropped,
    the best k kept (equal scores: lower index first)."""
    if metric == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        item_emb = item_emb / np.linalg.norm(item_emb, axis=1, keepdims=True)
    out = []
    for q, ban in zip(queries, banned, strict=True):
        scores = item_emb.astype(np.float64) @ q.astype(np.float64)
        ranked = sorted(range(len(item_emb)), key=lambda i: (-scores[i], i))
        ok = [i for i in ranked if i not in ban and (allowed is None or allowed[i])]
        out.append(ok[:k])
    return out


def _lists(items: np.ndarray) -> list[list[int]]:
    return [[int(i) for i in row if i >= 0] for row in items]


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    """600 items and 40 queries, D=16, from 12 clusters (IVF lists of unequal sizes)."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 16)).astype(np.float32)
    items = centres[rng.integers(0, 12, 600)] + 0.3 * rng.normal(size=(600, 16)).astype(np.float32)
    queries = centres[rng.integers(0, 12, 40)] + 0.3 * rng.normal(size=(40, 16)).astype(np.float32)
    return items.astype(np.float32), queries.astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_filtered_flat_search_equals_a_naive_loop(
    vectors: tuple[np.ndarray, np.ndarray], metric: str
) -> None:
    items, queries = vectors
    rng = np.random.default_rng(0)
    allowed = rng.random(len(items)) < 0.5  # half the catalogue excluded
    banned = [
        set(rng.choice(len(items), size=rng.integers(0, 60), replace=False).tolist())
        for _ in queries
    ]
    rows = np.concatenate([np.full(len(b), r) for r, b in enumerate(banned)])
    exclude = PairSet.from_pairs(
        rows, np.concatenate([sorted(b) for b in banned]), len(queries), len(items)
    )
    allow = AllowList.of_items(np.flatnonzero(allowed), len(items))
    index = build_index(items, IndexSpec(kind="flat", metric=metric), device="cpu")
    want = _naive(queries, items, 20, banned, allowed, metric)
    got, scores = search_filtered(index, queries, 20, exclude=exclude, allow=allow)
    assert _lists(got) == want
    assert all(len(row) == 20 for row in want)
    exact, exact_scores = exact_filtered_top_k(
        queries, items, 20, metric=metric, exclude=exclude, allow=allow
    )
    assert _lists(exact) == want
    assert np.allclose(scores, exact_scores, atol=1e-4)
    # An allow-list shorter than k: every allowed item, and no more.
    few = AllowList.of_items([5, 17, 300], len(items))
    got, _ = search_filtered(index, queries[:3], 20, allow=few)
    assert [sorted(row) for row in _lists(got)] == [[5, 17, 300]] * 3


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec(kind="ivf", nlist=12, nprobe=1),
        IndexSpec(kind="hnsw", hnsw_m=8, ef_search=16),
        IndexSpec(kind="factory", factory="IVF12,PQ4x4,Refine(SQ8)", nprobe=1, k_factor=2),
    ],
    ids=["ivf-nprobe1", "hnsw", "ivfpq-refine"],
)
def test_ann_filtered_search_returns_k_whenever_k_eligible_items_exist(
    vectors: tuple[np.ndarray, np.ndarray], spec: IndexSpec
) -> None:
    items, queries = vectors
    index = build_index(items, spec, device="cpu")
    # 30 allowed items scattered over every cluster: one probed IVF list holds a few of them.
    allowed = np.zeros(len(items), dtype=bool)
    allowed[np.random.default_rng(1).choice(len(items), 30, replace=False)] = True
    allow = AllowList.of_items(np.flatnonzero(allowed), len(items))
    banned = [set(np.flatnonzero(allowed)[:5].tolist())] * len(queries)  # 25 eligible left
    exclude = PairSet.from_pairs(
        np.repeat(np.arange(len(queries)), 5),
        np.tile(np.flatnonzero(allowed)[:5], len(queries)),
        len(queries),
        len(items),
    )
    bare, _ = search_filtered(index, queries, 20, exclude=exclude, allow=allow)
    assert all(allowed[i] and i not in banned[0] for row in _lists(bare) for i in row)
    got, _ = search_filtered(index, queries, 20, exclude=exclude, allow=allow, item_emb=items)
    counts = (got >= 0).sum(axis=1)
    assert (counts == 20).all()
    # A row the index filled itself keeps the index's list; a short one is the exact list.
    want = _naive(queries, items, 20, banned, allowed)
    refilled = (bare >= 0).sum(axis=1) < 20
    assert [r for r, row in enumerate(_lists(got)) if refilled[r] and row != want[r]] == []
    if spec.kind == "ivf":
        assert refilled.any()  # nprobe 1 over 30 scattered items: the fallback was needed
    # The selector searches with the index's own parameters: all allowed = unfiltered.
    everything = AllowList.of_items(np.arange(len(items)), len(items))
    assert np.array_equal(
        index.search(queries, 10, selector=everything.selector)[1], index.search(queries, 10)[1]
    )


def test_an_index_faiss_cannot_filter_is_refused(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, _ = vectors
    pq = build_index(items, IndexSpec(kind="factory", factory="PQ4x4"), device="cpu")
    with pytest.raises(IndexSpecError, match="cannot filter a search of a IndexPQ"):
        pq.check_selectable()


def test_similar_items_leave_the_item_out_and_match_a_naive_loop(
    vectors: tuple[np.ndarray, np.ndarray],
) -> None:
    items, _ = vectors
    index = build_index(items, IndexSpec(kind="flat", metric="cosine"), device="cpu")
    query = np.array([0, 7, 7, 599])
    extra = PairSet.from_pairs([1, 1], [3, 4], 4, len(items))
    got = similar_items(index, items, query, 10, exclude=extra)
    banned = [{0}, {7, 3, 4}, {7}, {599}]
    assert _lists(got.items) == _naive(items[query], items, 10, banned, None, "cosine")
    assert np.array_equal(got.users, query)


# ------------------------------------------------------------------ a trained run


@pytest.fixture(scope="module")
def int_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("sim_int"), string_ids=False)


@pytest.fixture(scope="module")
def str_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("sim_str"), string_ids=True)


@pytest.fixture(scope="module")
def allowed_ids(int_run: Path) -> list[int]:
    """Every other item of the run, plus two ids it does not have."""
    return [*RunFolder(int_run).split.items.raw.to_list()[::2], 10**9, 10**9 + 1]


@pytest.fixture(scope="module")
def filtered_bundle(int_run: Path, allowed_ids: list[int]) -> Path:
    """A bundle with that allow-list and small limits (max_k 100, max_rows 40, max_list 8)."""
    return write_candidate_bundle(
        int_run,
        int_run.parent / "bundle_allow",
        k=5,
        max_k=100,
        max_rows=40,
        max_list=8,
        allow_items=allowed_ids,
    )


def _oracle_users(
    run_dir: Path, users: list[Any], k: int, exclude: list[list[Any]], allowed: list[Any] | None
) -> list[list[Any]]:
    """Raw item ids: each user's k best items, train + val + ``exclude`` left out."""
    run = RunFolder(run_dir)
    split = run.split
    user_emb, item_emb = run.embeddings()
    seen = PairSet.from_tables(seen_tables(split), split.n_users, split.n_items)
    idx = split.users.to_index(np.asarray(users))
    banned = []
    for u, extra in zip(idx, exclude, strict=True):
        _, own = seen.pairs_of(np.array([u]))
        banned.append(set(own.tolist()) | set(split.items.to_index(np.asarray(extra)).tolist()))
    mask = None
    if allowed is not None:
        mask = np.zeros(split.n_items, dtype=bool)
        mask[split.items.to_index(np.asarray(allowed))] = True
    found = _naive(user_emb[idx], item_emb, k, banned, mask)
    return [split.items.to_raw(np.asarray(row, dtype=np.int64)).tolist() for row in found]


def _oracle_items(run_dir: Path, query: list[Any], k: int) -> list[list[Any]]:
    run = RunFolder(run_dir)
    split = run.split
    _, item_emb = run.embeddings()
    idx = split.items.to_index(np.asarray(query))
    found = _naive(item_emb[idx], item_emb, k, [{int(i)} for i in idx], None)
    return [split.items.to_raw(np.asarray(row, dtype=np.int64)).tolist() for row in found]


def _by_row(frame: pd.DataFrame, key: str) -> list[list[Any]]:
    """The answer's item lists, one per request row (a list starts at rank 1)."""
    out: list[list[Any]] = []
    for rank, item in zip(frame["rank"], frame["item_id"], strict=True):
        if rank == 1:
            out.append([])
        assert rank == len(out[-1]) + 1, frame[key]
        out[-1].append(item)
    return out


@pytest.mark.parametrize("run_name", ["int_run", "str_run"])
def test_item_rows_are_answered_with_their_nearest_items(
    request: pytest.FixtureRequest, run_name: str
) -> None:
    run_dir = request.getfixturevalue(run_name)
    model = CandidateModel.load(write_candidate_bundle(run_dir, run_dir.parent / "b_sim", k=4))
    items = model.items.raw.to_list()
    users = model.users.raw.to_list()
    got = model.predict(
        pd.DataFrame({"item_id": [items[3], items[0], items[3]], "k": [2, 6, None]})
    )
    assert list(got.columns) == ["query_item_id", "rank", "item_id", "score"]
    assert got["query_item_id"].tolist() == [items[3]] * 2 + [items[0]] * 6 + [items[3]] * 4
    want = _oracle_items(run_dir, [items[3], items[0], items[3]], 6)
    assert _by_row(got, "query_item_id") == [want[0][:2], want[1], want[2][:4]]
    assert items[3] not in got[got["query_item_id"] == items[3]]["item_id"].tolist()
    # Rows by user and by item in one request: both key columns, the other key null.
    mixed = model.predict(
        pd.DataFrame({"user_id": [users[1], None], "item_id": [None, items[5]]}), k=3
    )
    assert list(mixed.columns) == ["user_id", "query_item_id", "rank", "item_id", "score"]
    assert mixed["user_id"].tolist() == [users[1]] * 3 + [None] * 3
    assert mixed["query_item_id"].tolist() == [None] * 3 + [items[5]] * 3
    alone = model.predict(pd.DataFrame({"user_id": [users[1]]}), k=3)
    assert mixed["item_id"].tolist()[:3] == alone["item_id"].tolist()
    assert list(alone.columns) == ["user_id", "rank", "item_id", "score"]  # as it always was


def test_exclude_and_allow_list_through_the_python_api(
    int_run: Path, filtered_bundle: Path, allowed_ids: list[int]
) -> None:
    model = CandidateModel.load(filtered_bundle)
    info = json.loads((filtered_bundle / "bundle.json").read_text())
    n_items = RunFolder(int_run).split.n_items
    assert (info["format_version"], info["n_allowed"], info["max_list"]) == (
        4,
        (n_items + 1) // 2,
        8,
    )
    assert pl.read_parquet(filtered_bundle / "allowed.parquet")["item_id"].to_list() == sorted(
        allowed_ids[:-2]
    )
    users = model.users.raw.to_list()[:6]
    exclude = [[allowed_ids[0], allowed_ids[1], 10**12], [], None, [allowed_ids[2]], [], []]
    got = model.predict(pd.DataFrame({"user_id": users, "exclude": exclude}), k=7)
    lists = _by_row(got, "user_id")
    assert all(len(row) == 7 for row in lists)  # K eligible items exist for each
    assert set(got["item_id"]) <= set(allowed_ids)
    want = _oracle_users(
        int_run,
        users,
        7,
        [[i for i in e if i != 10**12] if e else [] for e in exclude],
        allowed_ids[:-2],
    )
    assert lists == want
    # An unknown user (cold start popular) gets the most popular allowed items, minus exclude.
    cold = model.predict(pd.DataFrame({"user_id": [-5, -5], "exclude": [[], [allowed_ids[4]]]}))
    popular = [i for i in model.items.to_raw(model.pop_items).tolist() if i in allowed_ids]
    assert _by_row(cold, "user_id") == [
        popular[:5],
        [i for i in popular if i != allowed_ids[4]][:5],
    ]
    # Similar items under the allow-list: never the item itself, only allowed items.
    sims = model.predict(pd.DataFrame({"item_id": [allowed_ids[0]], "exclude": [[allowed_ids[2]]]}))
    assert len(sims) == 5 and set(sims["item_id"]) <= set(allowed_ids) - {
        allowed_ids[0],
        allowed_ids[2],
    }


# (columns, the start of the one-line message); the filtered bundle has max_list 8, int ids.
HOSTILE_NEW_INPUTS = [
    ({"user_id": [1, 2], "item_id": [None, 3]}, "request row 1: both user_id and item_id"),
    (
        {"user_id": [1, None], "item_id": [None, None]},
        "request row 1: user_id and item_id are both missing",
    ),
    ({"item_id": [1, None]}, "request row 1: item_id is missing"),
    ({"item_id": [1.5]}, "request row 0: item_id 1.5 is not an integer id"),
    ({"item_id": [True]}, "request row 0: item_id True is not an integer id"),
    ({"item_id": ["x1"]}, "request row 0: item_id 'x1' is not an integer id"),
    ({"item_id": [10**9]}, "request row 0: item_id 1000000000 is not an item of this model"),
    (
        {"user_id": [1], "exclude": ["1,2"]},
        "request row 0: exclude must be a list of raw item ids, got str",
    ),
    (
        {"user_id": [1], "exclude": [7]},
        "request row 0: exclude must be a list of raw item ids, got int",
    ),
    ({"user_id": [1], "exclude": [{"a": 1}]}, "request row 0: exclude must be a list"),
    (
        {"user_id": [1, 2], "exclude": [[], [3, 2.5]]},
        "request row 1: exclude[1] 2.5 is not an integer id",
    ),
    (
        {"user_id": [1], "exclude": [[False]]},
        "request row 0: exclude[0] False is not an integer id",
    ),
    (
        {"user_id": [1], "exclude": [["abc"]]},
        "request row 0: exclude[0] 'abc' is not an integer id",
    ),
    (
        {"user_id": [1], "exclude": [list(range(9))]},
        "request row 0: exclude holds 9 ids, over this model's max_list of 8",
    ),
    ({"user_id": [1], "histories": [[1, 2]]}, "unknown column 'histories'"),
    ({"item_id": [1], "history": [[1, 2]]}, "request row 0: history is a user's items"),
    ({"user_id": [1], "history": ["1"]}, "request row 0: history must be a list"),
]


@pytest.mark.parametrize(("columns", "message"), HOSTILE_NEW_INPUTS)
def test_new_inputs_are_read_strictly(
    filtered_bundle: Path, columns: dict[str, Any], message: str
) -> None:
    model = CandidateModel.load(filtered_bundle)
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})
    with pytest.raises(ValueError) as caught:
        model.predict(frame)
    assert isinstance(caught.value, RecsysError)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text, text


def test_string_runs_take_string_item_ids_only(str_run: Path) -> None:
    model = CandidateModel.load(write_candidate_bundle(str_run, str_run.parent / "b_str", k=3))
    item = model.items.raw.to_list()[0]
    with pytest.raises(
        ValueError, match="^request row 0: exclude\\[1\\] 5 is a int; this run's item"
    ):
        model.predict(pd.DataFrame({"item_id": [item], "exclude": [[item, 5]]}))
    with pytest.raises(ValueError, match="^request row 0: item_id 5 is a int; this run's item ids"):
        model.predict(pd.DataFrame({"item_id": pd.Series([5], dtype=object)}))
    got = model.predict(pd.DataFrame({"item_id": [item], "exclude": [np.array(["nope", item])]}))
    assert len(got) == 3


# ------------------------------------------------------------------------- CLI



def test_cli_similar_and_recommend_with_an_allow_list(
    int_run: Path, tmp_path: Path, allowed_ids: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    items = RunFolder(int_run).split.items.raw.to_list()
    users = RunFolder(int_run).split.users.raw.to_list()
    out = tmp_path / "sim.parquet"
    argv = [
        "similar",
        str(int_run),
        "--items",
        f"{items[3]},{items[0]}",
        "-k",
        "6",
        "--out",
        str(out),
        "--no-track",
        "--no-progress",
    ]
    assert main(argv) == 0
    frame = pl.read_parquet(out).to_pandas()
    assert list(frame.columns) == ["query_item_id", "rank", "item_id", "score"]
    assert _by_row(frame, "query_item_id") == _oracle_items(int_run, [items[3], items[0]], 6)
    # The same through a saved HNSW index: --index and the model's item rows agree.
    assert main(["index", str(int_run), "--spec", "hnsw", "--no-track"]) == 0
    hnsw = int_run / "index" / "hnsw.faiss"
    assert (
        main([*argv[:-4], "--index", str(hnsw), "--out", str(out), "--no-track", "--no-progress"])
        == 0
    )
    assert (pl.read_parquet(out).group_by("query_item_id").len()["len"] == 6).all()

    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("# the allow-list\n" + "\n".join(map(str, allowed_ids)) + "\n")
    capsys.readouterr()
    rec = tmp_path / "rec.parquet"
    assert (
        main(
            [
                "recommend",
                str(int_run),
                "--users",
                ",".join(map(str, users[:5])),
                "-k",
                "7",
                "--allow-items",
                str(allow_file),
                "--out",
                str(rec),
                "--no-track",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    n_allowed = (len(items) + 1) // 2
    assert f"allow-list: {n_allowed:,} of {len(items):,} items (2 listed ids unknown" in printed
    frame = pl.read_parquet(rec).to_pandas()
    assert _by_row(frame, "user_id") == _oracle_users(
        int_run, users[:5], 7, [[]] * 5, allowed_ids[:-2]
    )
    assert (
        main(
            [
                *argv[:-4],
                "--allow-items",
                str(allow_file),
                "--out",
                str(out),
                "--no-track",
                "--no-progress",
            ]
        )
        == 0
    )
    assert set(pl.read_parquet(out)["item_id"]) <= set(allowed_ids)

    err = user_error(
        capsys, ["similar", str(int_run), "--items", f"{items[0]},999999999", "--no-track"]
    )
    assert "1 of 2 requested items are not items of the run, the first 999999999" in err
    err = user_error(capsys, ["similar", str(int_run), "--items", "1.5", "--no-track"])
    assert "requested item 0: item_id '1.5' is not an integer id" in err
    (tmp_path / "none.txt").write_text("999999999\n")
    err = user_error(
        capsys,
        ["recommend", str(int_run), "--allow-items", str(tmp_path / "none.txt"), "--no-track"],
    )
    assert "allow-list: none of its 1 ids is an item of the run" in err
    err = user_error(
        capsys,
        [
            "recommend",
            str(int_run),
            "--allow-items",
            str(allow_file),
            "--compare-exact",
            "--no-track",
        ],
    )
    assert "--compare-exact needs" in err
    err = user_error(
        capsys,
        ["similar", str(int_run), "--allow-items", str(tmp_path / "missing.txt"), "--no-track"],
    )
    assert "missing.txt: allowed items file not found" in err
    (tmp_path / "bad.txt").write_text(f"# ok, then a bad id\n{items[0]}\nabc\n")
    err = user_error(
        capsys,
        ["recommend", str(int_run), "--allow-items", str(tmp_path / "bad.txt"), "--no-track"],
    )
    assert "allowed item 1: item_id 'abc' is not an integer id" in err
    err = user_error(capsys, ["similar", str(int_run), "-k", "0", "--no-track"])
    assert "-k 0" in err


# ------------------------------------------------------------ MLflow and HTTP


@pytest.fixture(scope="module")
def logged(filtered_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from recsys_cl.serving.pyfunc import log_candidate_model

    root = tmp_path_factory.mktemp("sim_mlflow")
    uri = f"sqlite:///{root}/mlruns.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sim", artifact_location=(root / "a").as_uri())
    run_id = client.create_run(experiment).info.run_id
    info = log_candidate_model(filtered_bundle, tracking_uri=uri, run_id=run_id)
    return {"root": root, "uri": uri, "info": info, "bundle": filtered_bundle}


def test_pyfunc_answers_similar_items_and_filters(logged: dict[str, Any]) -> None:
    from mlflow.exceptions import MlflowException

    from recsys_cl.serving.pyfunc import load_candidate_model

    model = load_candidate_model(logged["info"].model_uri, logged["uri"])
    direct = CandidateModel.load(logged["bundle"])
    users, items = direct.users.raw.to_list()[:2], direct.items.raw.to_list()
    frame = pd.DataFrame(
        {
            "user_id": [users[0], None, users[1]],
            "item_id": [None, items[0], None],
            "exclude": [[items[2]], [], None],
        }
    )
    got = model.predict(frame, params={"k": 4})
    pd.testing.assert_frame_equal(got, direct.predict(frame, k=4))
    meta = model.metadata.metadata["recsys_cl_input"]
    assert set(meta["columns"]) == {"user_id", "item_id", "k", "exclude", "history"}
    assert (meta["max_list"], meta["n_allowed"]) == (8, direct.info.n_allowed)
    outputs = model.metadata.get_output_schema().input_names()
    assert outputs == ["user_id", "query_item_id", "rank", "item_id", "score", "history_skipped"]
    for columns, message in HOSTILE_NEW_INPUTS:
        bad = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})
        with pytest.raises(MlflowException) as caught:
            model.predict(bad)
        assert caught.value.get_http_status_code() == 400
        assert caught.value.message.startswith(message) and "\n" not in caught.value.message


@pytest.fixture(scope="module")
def server(logged: dict[str, Any]) -> Iterator[str]:
    from recsys_cl.serving.server import free_port, local_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "recsys_cl.cli",
        "serve",
        logged["info"].model_uri,
        "--tracking-uri",
        logged["uri"],
        "--port",
        str(port),
    ]
    with local_server(cmd, base, log_dir=logged["root"], env=_env(logged["uri"])):
        yield base


def _post(url: str, payload: Any) -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


HOSTILE_NEW_BODIES = [
    (
        {"dataframe_records": [{"user_id": 1, "item_id": 2}]},
        "request row 0: both user_id and item_id",
    ),
    ({"dataframe_records": [{"k": 2}]}, "the input needs a user_id column"),
    (
        {"dataframe_records": [{"user_id": 1}, {"k": 3, "item_id": None}]},
        "request row 1: user_id and item_id are both missing",
    ),
    ({"dataframe_records": [{"item_id": 2.5}]}, "request row 0: item_id 2.5 is not an integer id"),
    (
        {"dataframe_records": [{"item_id": 10**9}]},
        "request row 0: item_id 1000000000 is not an item",
    ),
    (
        {"dataframe_records": [{"user_id": 1, "exclude": "3"}]},
        "request row 0: exclude must be a list",
    ),
    (
        {"dataframe_records": [{"user_id": 1, "exclude": {"3": 1}}]},
        "request row 0: exclude must be a list",
    ),
    (
        {"dataframe_records": [{"user_id": 1, "exclude": [3, True]}]},
        "request row 0: exclude[1] True is not an integer id",
    ),
    (
        {"dataframe_records": [{"user_id": 1, "exclude": [[3]]}]},
        "request row 0: exclude[0] [3] is not an integer id",
    ),
    (
        {"dataframe_records": [{"user_id": 1, "exclude": list(range(9))}]},
        "request row 0: exclude holds 9 ids, over",
    ),
    (
        {"dataframe_split": {"columns": ["user_id", "histories"], "data": [[1, [2]]]}},
        "unknown column 'histories'",
    ),
    (
        {"dataframe_records": [{"item_id": 2, "history": [3]}]},
        "request row 0: history is a user's items",
    ),
    (
        {"dataframe_records": [{"user_id": 1, "history": [3, "x"]}]},
        "request row 0: history[1] 'x' is not an integer id",
    ),
]


@pytest.mark.integration
def test_served_model_answers_the_new_paths_and_refuses_bad_ones(
    server: str, logged: dict[str, Any]
) -> None:
    direct = CandidateModel.load(logged["bundle"])
    users, items = direct.users.raw.to_list()[:2], direct.items.raw.to_list()
    url = f"{server}/invocations"
    for payload, frame in (
        (
            {"dataframe_records": [{"item_id": items[0]}], "params": {"k": 3}},
            pd.DataFrame({"item_id": [items[0]]}),
        ),
        (
            {
                "dataframe_split": {
                    "columns": ["user_id", "exclude"],
                    "data": [[users[0], [items[0], items[2]]]],
                },
                "params": {"k": 3},
            },
            pd.DataFrame({"user_id": [users[0]], "exclude": [[items[0], items[2]]]}),
        ),
        (
            {
                "dataframe_records": [
                    {"user_id": 10**9, "history": [items[0], items[3], -7]},
                    {"user_id": users[0], "history": [items[1]], "exclude": [items[5]]},
                ],
                "params": {"k": 3},
            },
            pd.DataFrame(
                {
                    "user_id": [10**9, users[0]],
                    "history": [[items[0], items[3], -7], [items[1]]],
                    "exclude": [None, [items[5]]],
                }
            ),
        ),
        (
            {
                "dataframe_records": [{"user_id": users[1]}, {"item_id": items[4], "k": 2}],
                "params": {"k": 3},
            },
            pd.DataFrame(
                {"user_id": [users[1], None], "item_id": [None, items[4]], "k": [None, 2]}
            ),
        ),
    ):
        status, answer = _post(url, payload)
        assert status == 200, answer
        want = direct.predict(frame, k=3)
        got = pd.DataFrame(answer["predictions"])
        assert list(got.columns) == list(want.columns)
        assert got["item_id"].tolist() == want["item_id"].tolist()
        if SKIPPED_COLUMN in want:
            assert got[SKIPPED_COLUMN].tolist() == want[SKIPPED_COLUMN].tolist()
        for key in ("user_id", "query_item_id"):
            if key in want:
                assert [None if pd.isna(v) else v for v in got[key]] == want[key].tolist()
    failures = []
    for payload, message in HOSTILE_NEW_BODIES:
        status, answer = _post(url, payload)
        text = answer.get("message", "") if isinstance(answer, dict) else ""
        if status != 400 or not text.startswith(message) or "\n" in text:
            failures.append(f"{str(payload)[:70]}: {status} {text[:200]!r}")
    assert not failures, "\n".join(failures)


def test_main_stores_the_allow_list_in_the_logged_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from recsys_cl.serving.pyfunc import load_candidate_model
    from tests.conftest import make_long_tail_log

    log = tmp_path / "log.csv"
    make_long_tail_log(n_users=80, n_items=120, seed=2, mean_activity=10).write_csv(log)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model:\n  method: lightgcn\n  dim: 8\n"
        "train:\n  epochs: 1\n  batch_size: 256\n  eval_every: 1\n  progress: false\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    # A missing allow-list file stops the job before anything is trained.
    argv = ["main", "-c", str(cfg), "--tracking-uri", uri, "--no-baselines"]
    err = user_error(capsys, [*argv, "--allow-items", str(tmp_path / "nope.txt")])
    assert "nope.txt: allowed items file not found" in err
    assert not (tmp_path / "run").exists()

    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("\n".join(str(i) for i in range(0, 120, 3)) + "\n")
    assert main([*argv, "--allow-items", str(allow_file)]) == 0
    out = capsys.readouterr().out
    bundle = json.loads((tmp_path / "run" / "candidate_model" / "bundle.json").read_text())
    assert f"candidate model allow-list: {bundle['n_allowed']:,} items" in out
    allowed = set(range(0, 120, 3))
    assert 0 < bundle["n_allowed"] <= len(allowed)
    model_uri = next(line.split()[-1] for line in out.splitlines() if "candidate model: " in line)
    model = load_candidate_model(model_uri, uri)
    users = RunFolder(tmp_path / "run").split.users.raw.to_list()[:20]
    got = model.predict(pd.DataFrame({"user_id": users}), params={"k": 10})
    assert len(got) == 200 and set(got["item_id"]) <= allowed
    assert model.metadata.metadata["recsys_cl_input"]["n_allowed"] == bundle["n_allowed"]
    assert MlflowClient(uri).get_logged_model(model_uri.removeprefix("models:/")).status == "READY"


def test_the_allow_list_is_part_of_the_bundle_digest(int_run: Path, filtered_bundle: Path) -> None:
    from recsys_cl.serving.pyfunc import bundle_digest

    items = RunFolder(int_run).split.items.raw.to_list()
    other = write_candidate_bundle(
        int_run,
        int_run.parent / "bundle_allow_odd",
        k=5,
        max_k=100,
        max_rows=40,
        max_list=8,
        allow_items=items[1::2] + ([items[0]] if len(items) % 2 else []),
    )
    assert (
        json.loads((other / "bundle.json").read_text())["n_allowed"]
        == (json.loads((filtered_bundle / "bundle.json").read_text())["n_allowed"])
    )
    assert bundle_digest(other) != bundle_digest(filtered_bundle)


# ------------------------------------------------------------------ the README

README = Path(__file__).resolve().parents[1] / "README.md"
README_RUN = "runs/ml-100k/xsimgcl"  # the run folder the README's examples name


def test_similar_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["similar", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "K items nearest to each requested item (the item itself excluded)",
        "query_item_id, rank, item_id, score",
        "--items ID,ID",
        "--items-file FILE",
        "--allow-items FILE",
        "--index PATH",
        "default: exact search",
        "an unknown item id is an error naming it",
    ):
        assert needle in text, needle


def test_the_readme_python_example_runs_as_written(
    int_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text()
    block = text.split("Similar items and filters in Python", 1)[1]
    block = block.split("```python", 1)[1].split("```", 1)[0]
    assert README_RUN in block
    namespace: dict[str, Any] = {}
    code = compile(block.replace(README_RUN, str(int_run)), "README.md (similar items)", "exec")
    capsys.readouterr()
    exec(code, namespace)
    printed = capsys.readouterr().out
    assert "query_item_id" in printed
    run = RunFolder(int_run)
    split = run.split
    user_emb, item_emb = run.embeddings()
    even = np.arange(split.n_items) % 2 == 0
    seen = PairSet.from_tables(seen_tables(split), split.n_users, split.n_items)
    cands, near = namespace["cands"], namespace["near"]
    assert cands.items.shape == (split.n_users, 20) and (cands.items >= 0).all()
    assert even[cands.items].all() and not seen.contains(cands.users, cands.items).any()
    assert near.items.shape == (2, 10) and even[near.items].all()
    assert 0 not in near.items[0].tolist()
    want = _naive(item_emb[[0, 1]], item_emb, 10, [{0}, {1}], even)
    hits = sum(len(set(row) & set(w)) for row, w in zip(_lists(near.items), want, strict=True))
    assert hits >= 18  # HNSW over a few hundred items: (nearly) the exact lists
    model, request = namespace["model"], namespace["request"]
    answer = model.predict(request, k=10)
    in_stock = namespace["in_stock"]
    assert len(answer) == 10 and answer["query_item_id"].tolist() == [in_stock[0]] * 10
    assert set(answer["item_id"]) <= set(in_stock) - {in_stock[0], in_stock[1]}


def test_the_readme_cli_examples_run_as_written(
    int_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex
    import subprocess

    text = README.read_text()
    section = text.split("**Similar items.**", 1)[1].split("Filtered search returns K items", 1)[0]
    lines = [
        line
        for block in section.split("```bash")[1:]
        for line in block.split("```", 1)[0].splitlines()
        if line.strip()
    ]
    assert [shlex.split(line)[:2] for line in lines] == [
        ["recsys-cl", "similar"],
        ["recsys-cl", "index"],
        ["recsys-cl", "similar"],
        ["seq", "1"],
        ["recsys-cl", "recommend"],
        ["recsys-cl", "similar"],
    ]
    split = RunFolder(int_run).split
    known = {"--items": split.items.raw.to_list(), "--users": split.users.raw.to_list()}
    monkeypatch.chdir(tmp_path)
    for line in lines:
        argv = shlex.split(line.replace(README_RUN, str(int_run)), comments=True)
        if argv[0] != "recsys-cl":
            subprocess.run(line, shell=True, check=True, cwd=tmp_path)
            continue
        for flag, ids in known.items():  # ids the tiny run lacks become ids it has
            if flag in argv:
                at = argv.index(flag) + 1
                given = [int(v) for v in argv[at].split(",")]
                argv[at] = ",".join(str(v if v in ids else ids[i]) for i, v in enumerate(given))
        extra = ["--no-track"] + (["--no-progress"] if argv[1] != "index" else [])
        assert main([*argv[1:], *extra]) == 0, line
    allowed = {int(v) for v in (tmp_path / "in_stock.txt").read_text().split()}
    assert pl.read_parquet(tmp_path / "similar.parquet")["query_item_id"].n_unique() == 2
    every = pl.read_parquet(int_run / "similar_items.parquet")
    assert every["query_item_id"].n_unique() == split.n_items
    assert set(pl.read_parquet(tmp_path / "top20.parquet")["item_id"]) <= allowed
    assert set(pl.read_parquet(tmp_path / "similar_odd.parquet")["item_id"]) <= allowed
