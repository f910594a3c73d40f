"""Profiles: Gini against the pairwise definition, head share, quantiles, the table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

from recsys_cl.data import format_profile, gini, profile, split_ratio
from recsys_cl.data.stats import head_share

LogFactory = Callable[..., pl.DataFrame]  # the conftest ``long_tail_log`` fixture


def gini_pairwise(x: np.ndarray) -> float:
    """Mean absolute difference over all ordered pairs, over twice the mean."""
    x = np.asarray(x, dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


def test_gini_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 50, size=rng.integers(2, 40))
        if x.sum():
            assert gini(x) == pytest.approx(gini_pairwise(x))


def test_gini_edge_cases() -> None:
    assert gini(np.array([3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)
    assert gini(np.array([])) == 0.0
    assert gini(np.zeros(4)) == 0.0


def test_head_share() -> None:
    counts = np.array([1] * 8 + [10, 30])  # top 20% = 2 items hold 40 of 48
    assert head_share(counts) == pytest.approx(40 / 48)
    assert head_share(np.array([5])) == 1.0


def test_profile_of_a_frame() -> None:
    df = pl.DataFrame({"user": [1, 1, 1, 2], "item": ["a", "b", "c", "a"]})
    p = profile(df)
    assert (p.users, p.items, p.interactions) == (2, 3, 4)
    assert p.density == pytest.approx(4 / 6)
    assert (p.user_activity.min, p.user_activity.max) == (1, 3)
    assert p.item_popularity.median == 1
    assert p.parts is None and p.cold is None


def test_profile_of_a_split_counts_parts(long_tail_log: LogFactory) -> None:
    df = long_tail_log(seed=3)
    split = split_ratio(df, 0.2, 0.1, np.random.default_rng(0))
    p = profile(split)
    assert p.parts == {name: part.height for name, part in split.parts().items()}
    assert p.interactions == sum(p.parts.values())
    assert (p.users, p.items) == (split.n_users, split.n_items)
    assert p.cold == split.cold
    assert 0 < p.item_gini < 1 and 0 < p.head_share < 1
    d = p.to_dict()
    assert d["cold"]["test"]["rows"] == split.cold.test.rows


def test_long_tail_shows_in_the_profile(long_tail_log: LogFactory) -> None:
    skewed = profile(long_tail_log(seed=1, zipf=1.5))
    flat = profile(long_tail_log(seed=1, zipf=0.0))
    assert skewed.item_gini > flat.item_gini
    assert skewed.head_share > flat.head_share


def test_format_profile_uses_thousands_separators() -> None:
    n = 29_858
    df = pl.DataFrame({"user": np.arange(n), "item": np.arange(n) % 7})
    text = format_profile(profile(df), title="demo")
    assert text.splitlines()[0] == "demo"
    assert "29,858" in text
    assert any(line.startswith("items") and line.endswith(" 7") for line in text.splitlines())
