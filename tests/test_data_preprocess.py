"""Preprocessing: implicit threshold, deduplication, k-core (against a slow loop oracle)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

from recsys_cl.data import deduplicate, k_core, to_implicit
from recsys_cl.errors import DataError

LogFactory = Callable[..., pl.DataFrame]  # the conftest ``long_tail_log`` fixture


def test_to_implicit_keeps_ratings_at_or_above_threshold() -> None:
    df = pl.DataFrame({"user": [1, 1, 2], "item": [1, 2, 3], "rating": [3.0, 4.0, 5.0]})
    out = to_implicit(df, 4.0)
    assert out.rows() == [(1, 2, 4.0), (2, 3, 5.0)]
    assert df.height == 3  # input untouched
    assert to_implicit(df, None) is df


def test_to_implicit_errors_name_source_and_column() -> None:
    no_rating = pl.DataFrame({"user": [1], "item": [1]})
    with pytest.raises(DataError, match=r"ml\.csv: an implicit threshold needs column 'rating'"):
        to_implicit(no_rating, 1.0, source="ml.csv")
    nan = pl.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1.0, float("nan")]})
    with pytest.raises(DataError, match=r"ml\.csv: row 1, column 'rating'.*NaN"):
        to_implicit(nan, 1.0, source="ml.csv")
    negative = pl.DataFrame({"user": [1], "item": [1], "rating": [-1.0]})
    with pytest.raises(DataError, match=r"row 0, column 'rating'.*negative"):
        to_implicit(negative, 1.0)


DUPES = pl.DataFrame(
    {
        "user": [1, 1, 2, 1, 2],
        "item": [7, 7, 8, 7, 9],
        "timestamp": [20, 30, 5, 10, 6],
        "rating": [1.0, 2.0, 3.0, 4.0, 5.0],
    }
)


def test_deduplicate_latest_takes_largest_timestamp() -> None:
    out = deduplicate(DUPES, "latest")
    assert sorted(out.rows()) == [(1, 7, 30, 2.0), (2, 8, 5, 3.0), (2, 9, 6, 5.0)]


def test_deduplicate_first_takes_smallest_timestamp() -> None:
    out = deduplicate(DUPES, "first")
    assert sorted(out.rows()) == [(1, 7, 10, 4.0), (2, 8, 5, 3.0), (2, 9, 6, 5.0)]


def test_deduplicate_sum_adds_ratings_and_keeps_latest_time() -> None:
    out = deduplicate(DUPES, "sum")
    assert out.columns == ["user", "item", "timestamp", "rating"]
    assert sorted(out.rows()) == [(1, 7, 30, 7.0), (2, 8, 5, 3.0), (2, 9, 6, 5.0)]


def test_deduplicate_without_timestamp_uses_file_order_and_counts() -> None:
    df = pl.DataFrame({"user": ["a", "a", "b"], "item": [1, 1, 1], "rating": [1.0, 2.0, 3.0]})
    assert deduplicate(df, "latest").rows() == [("a", 1, 2.0), ("b", 1, 3.0)]
    assert deduplicate(df, "first").rows() == [("a", 1, 1.0), ("b", 1, 3.0)]
    counted = deduplicate(df.drop("rating"), "sum")
    assert counted.rows() == [("a", 1, 2.0), ("b", 1, 1.0)]


def _k_core_oracle(pairs: list[tuple[int, int]], user_k: int, item_k: int) -> set[tuple[int, int]]:
    """Remove one violating user or item at a time until none is left (slow and obvious)."""
    edges = list(pairs)
    while True:
        users: dict[int, int] = {}
        items: dict[int, int] = {}
        for u, i in edges:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        bad_u = next((u for u, n in users.items() if n < user_k), None)
        bad_i = next((i for i, n in items.items() if n < item_k), None)
        if bad_u is None and bad_i is None:
            return set(edges)
        if bad_u is not None:
            edges = [(u, i) for u, i in edges if u != bad_u]
        else:
            edges = [(u, i) for u, i in edges if i != bad_i]


@pytest.mark.parametrize(("user_k", "item_k"), [(3, 3), (5, 2), (2, 6), (8, 8)])
def test_k_core_reaches_the_fixed_point_of_the_oracle(
    long_tail_log: LogFactory, user_k: int, item_k: int
) -> None:
    df = long_tail_log(n_users=80, n_items=120, seed=user_k * 10 + item_k)
    out = k_core(df, user_k, item_k)
    assert out.group_by("user").len()["len"].min() >= user_k
    assert out.group_by("item").len()["len"].min() >= item_k
    expected = _k_core_oracle(list(zip(df["user"], df["item"], strict=True)), user_k, item_k)
    assert set(zip(out["user"], out["item"], strict=True)) == expected
    assert out.height < df.height  # the long tail really had something to remove


def test_k_core_needs_iteration() -> None:
    # Removing item 3 (one row) drops user 2 below 2 rows, which then drops item 2.
    df = pl.DataFrame({"user": [0, 0, 1, 1, 2, 2], "item": [0, 1, 0, 1, 2, 3]})
    assert sorted(k_core(df, 2, 2).rows()) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_k_core_trivial_and_empty() -> None:
    df = pl.DataFrame({"user": [0, 1], "item": [0, 1]})
    assert k_core(df, 1, 1) is df
    with pytest.raises(DataError, match=r"log\.csv: no interactions survive the k-core"):
        k_core(df, 2, 2, source="log.csv")
