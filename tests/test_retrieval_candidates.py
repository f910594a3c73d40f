"""Candidate generation: seen items never returned, exact lists through a flat index, K above
the catalogue, most-popular fallback, metrics equal to the full-ranking evaluator's, and the
Parquet output complete and atomic."""

from __future__ import annotations

import pytest

# The retrieval stack needs FAISS, an extra (cpu or gpu); without it these tests skip and
# test_optional.py checks the one-line error instead.
faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")

from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch
from hypothesis import HealthCheck, given, settings

from recsys_cl.config import IndexSpec
from recsys_cl.data import IdMap, UserItems
from recsys_cl.jobs.stages.recommend import parse_user_ids
from recsys_cl.metrics import evaluate, most_popular_scores
from recsys_cl.retrieval import (
    InvalidUserIdError,
    PairSet,
    build_index,
    candidate_quality,
    candidate_schema,
    candidate_table,
    fetch_sizes,
    most_popular,
    top_k_candidates,
    write_candidates,
)


def random_user_items(
    rng: np.random.Generator, n_users: int, n_items: int, density: float
) -> UserItems:
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    return UserItems.from_pairs(users, items, n_users, n_items)


def masked_topk(user: np.ndarray, item: np.ndarray, seen: list[UserItems], k: int) -> np.ndarray:
    """The oracle: full scores, seen items at -inf, torch.topk; -1 where only -inf is left."""
    scores = torch.from_numpy(user) @ torch.from_numpy(item).T
    for table in seen:
        scores[torch.from_numpy(table.rows()), torch.from_numpy(table.indices)] = -torch.inf
    values, items = torch.topk(scores, min(k, item.shape[0]), dim=1)
    return items.masked_fill(torch.isneginf(values), -1).numpy()


@pytest.fixture(scope="module")
def problem() -> dict[str, object]:
    rng = np.random.default_rng(7)
    n_users, n_items, dim = 60, 90, 8
    train = random_user_items(rng, n_users, n_items, 0.2)
    val = random_user_items(rng, n_users, n_items, 0.05)
    # Two heavy users with nearly every item seen: their lists end early.
    heavy = UserItems.from_pairs(np.repeat([3, 4], 85), np.tile(np.arange(85), 2), n_users, n_items)
    return {
        "user": rng.normal(size=(n_users, dim)).astype(np.float32),
        "item": rng.normal(size=(n_items, dim)).astype(np.float32),
        "train": train,
        "val": val,
        "heavy": heavy,
    }


def test_flat_candidates_equal_masked_full_ranking(problem: dict) -> None:
    user, item = problem["user"], problem["item"]
    seen = [problem["train"], problem["val"], problem["heavy"]]
    index = build_index(item, IndexSpec(), device="cpu")
    cands = top_k_candidates(index, user, k=10, exclude=seen, chunk_size=7)
    assert np.array_equal(cands.users, np.arange(60))
    assert np.array_equal(cands.items, masked_topk(user, item, seen, 10))
    n_seen = PairSet.from_tables(seen, 60, 90).counts
    assert np.array_equal(cands.counts(), np.minimum(10, 90 - n_seen))
    assert cands.counts()[3] < 10 and cands.counts()[4] < 10
    assert np.isnan(cands.scores[cands.items < 0]).all()
    assert not np.isnan(cands.scores[cands.items >= 0]).any()
    # Scores are the model's inner products of the returned items.
    rows, cols = np.nonzero(cands.items >= 0)
    expected = np.einsum("bd,bd->b", user[rows], item[cands.items[rows, cols]])
    np.testing.assert_allclose(cands.scores[rows, cols], expected, rtol=1e-5, atol=1e-6)


def test_k_above_the_catalogue_returns_every_unseen_item(problem: dict) -> None:
    user, item, train = problem["user"], problem["item"], problem["train"]
    index = build_index(item, IndexSpec(), device="cpu")
    cands = top_k_candidates(index, user, [0, 3, 5], k=1000, exclude=[train, problem["heavy"]])
    assert cands.items.shape == (3, 90)
    seen = PairSet.from_tables([train, problem["heavy"]], 60, 90)
    assert np.array_equal(cands.counts(), 90 - seen.counts[[0, 3, 5]])
    for row, u in enumerate([0, 3, 5]):
        listed = cands.items[row][cands.items[row] >= 0]
        unseen = set(range(90)) - {
            i for i in range(90) if seen.contains(np.array([u]), np.array([[i]]))[0, 0]
        }
        assert set(listed.tolist()) == unseen and len(listed) == len(unseen)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**16),
    k=st.integers(1, 40),
    density=st.floats(0.0, 0.95),
    kind=st.sampled_from(["flat", "hnsw"]),
)
def test_excluded_items_are_never_returned(seed: int, k: int, density: float, kind: str) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = 25, 40
    user = rng.normal(size=(n_users, 6)).astype(np.float32)
    item = rng.normal(size=(n_items, 6)).astype(np.float32)
    seen = random_user_items(rng, n_users, n_items, density)
    index = build_index(item, IndexSpec(kind=kind), device="cpu")  # type: ignore[arg-type]
    cands = top_k_candidates(index, user, k=k, exclude=seen, chunk_size=9)
    valid = cands.items >= 0
    rows = np.repeat(np.arange(n_users), valid.sum(axis=1))
    assert not seen.contains(rows, cands.items[valid]).any()
    # Lists are padded only at the end and hold no duplicates.
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()
    for row in cands.items:
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept)
    if kind == "flat":
        assert np.array_equal(cands.counts(), np.minimum(min(k, n_items), n_items - seen.counts()))


def test_fetch_sizes_cover_k_plus_seen() -> None:
    sizes = fetch_sizes(20, np.array([0, 1, 12, 44, 5000]), n_items=1000)
    assert sizes.tolist() == [32, 32, 32, 64, 1000]
    assert fetch_sizes(5, np.array([0]), n_items=3).tolist() == [3]


def test_most_popular_matches_the_baseline_order() -> None:
    train = UserItems.from_pairs(
        np.array([0, 1, 2, 0, 1, 2, 0]), np.array([3, 3, 3, 1, 1, 0, 4]), n_users=3, n_items=5
    )
    items, scores = most_popular(train, 10)
    assert items.tolist() == [3, 1, 0, 4, 2] and scores.tolist() == [3, 2, 1, 1, 0]
    user, item = most_popular_scores(train)
    assert items.tolist() == torch.argsort((user @ item.T)[0], descending=True).tolist()


def test_candidate_metrics_through_flat_equal_the_evaluator(problem: dict) -> None:
    rng = np.random.default_rng(11)
    user, item = problem["user"], problem["item"]
    train, val = problem["train"], problem["val"]
    drawn = random_user_items(rng, 60, 90, 0.08)
    # Test items never overlap train/val in a split.
    fresh = ~PairSet.from_tables([train, val], 60, 90).contains(
        drawn.rows(), drawn.indices[:, None]
    )[:, 0]
    truth = UserItems.from_pairs(drawn.rows()[fresh], drawn.indices[fresh], 60, 90)
    k = 20
    expected = evaluate(
        torch.from_numpy(user), torch.from_numpy(item), truth, [train, val],
        ks=(k,), metrics=("recall", "ndcg"), return_topk=True,
    )
    index = build_index(item, IndexSpec(), device="cpu")
    cands = top_k_candidates(index, user, k=k, exclude=[train, val])
    evaluated = expected.users.numpy()
    assert np.array_equal(cands.items[evaluated], expected.topk.numpy())
    quality = candidate_quality(cands, truth, ks=(k,))
    assert quality.n_users_evaluated == expected.n_users_evaluated
    assert quality.n_users_skipped == expected.n_users_skipped
    assert quality.metrics == expected.metrics  # exactly: same lists, same formulas, same sums
    assert quality.metrics["recall@20"] > 0


def _table_chunks(n_chunks: int, fail_after: int | None = None):
    users, items = IdMap.fit([f"u{i}" for i in range(10)]), IdMap.fit(np.arange(100, 130))
    schema = candidate_schema(users, items)
    rng = np.random.default_rng(0)
    for c in range(n_chunks):
        if fail_after is not None and c == fail_after:
            raise KeyboardInterrupt
        chosen = np.stack([rng.permutation(30)[:5] for _ in range(2)])
        chosen[1, 3:] = -1  # a user with only 3 candidates
        scores = rng.random(chosen.shape).astype(np.float32)
        raw = users.to_raw(np.array([2 * c % 10, (2 * c + 1) % 10]))
        yield candidate_table(raw, chosen, scores, items, schema)


def test_parquet_output_is_complete(tmp_path: Path) -> None:
    users, items = IdMap.fit([f"u{i}" for i in range(10)]), IdMap.fit(np.arange(100, 130))
    schema = candidate_schema(users, items)
    out = tmp_path / "c.parquet"
    n = write_candidates(out, _table_chunks(4), schema)
    frame = pl.read_parquet(out)
    assert n == frame.height == 4 * (5 + 3)
    assert frame.columns == ["user_id", "rank", "item_id", "score"]
    assert frame.schema["user_id"] == pl.String and frame.schema["item_id"] == pl.Int64
    assert frame.schema["rank"] == pl.Int32 and frame.schema["score"] == pl.Float32
    ranks = frame.group_by("user_id", maintain_order=True).agg(pl.col("rank"))
    assert ranks["user_id"].to_list() == ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"]
    assert [r.to_list() for r in ranks["rank"]] == [[1, 2, 3, 4, 5], [1, 2, 3]] * 4
    assert frame["item_id"].is_between(100, 129).all()
    assert pq.ParquetFile(out).num_row_groups == 4  # written chunk by chunk


def test_parquet_output_is_atomic(tmp_path: Path) -> None:
    users, items = IdMap.fit([f"u{i}" for i in range(10)]), IdMap.fit(np.arange(100, 130))
    schema = candidate_schema(users, items)
    out = tmp_path / "c.parquet"
    write_candidates(out, _table_chunks(1), schema)
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        write_candidates(out, _table_chunks(4, fail_after=2), schema)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.parquet"]  # no temporary file left


def test_user_ids_are_parsed_like_the_run_map() -> None:
    ints = IdMap.fit([5, 7, 9])
    typed, index = parse_user_ids(["9", " 5", "404", "9", ""], ints)
    assert typed.tolist() == [9, 5, 404] and index.tolist() == [2, 0, -1]
    typed, index = parse_user_ids(["7", "07", "+7", "9"], ints)  # one id written three ways
    assert typed.tolist() == [7, 9] and index.tolist() == [1, 2]
    # Read as the served model reads ids: canonical decimal integers in the int64 range only.
    for bad in ("abc", "1.5", "1e3", "true", "1_0", "9" * 30, "٣"):
        with pytest.raises(
            InvalidUserIdError, match=f"^requested user 0: user_id {bad!r} is not an integer"
        ):
            parse_user_ids([bad], ints)
    strings = IdMap.fit(["a", "b"])
    typed, index = parse_user_ids(["b", "zz"], strings)
    assert typed.tolist() == ["b", "zz"] and index.tolist() == [1, -1]
