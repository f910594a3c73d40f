"""Splits: no leakage, ratios, latest-is-test, val carved from train, cold rows counted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

from recsys_cl.data import (
    Split,
    split_given,
    split_leave_one_out,
    split_ratio,
    split_temporal,
)
from recsys_cl.errors import DataError

LogFactory = Callable[..., pl.DataFrame]  # the conftest ``long_tail_log`` fixture


def raw_pairs(split: Split, part: str) -> set[tuple[object, object]]:
    """The (raw user, raw item) pairs of a part, mapped back through the id maps."""
    df = split.part(part)  # type: ignore[arg-type]
    users = split.users.to_raw(df["user"]).to_list()
    items = split.items.to_raw(df["item"]).to_list()
    return set(zip(users, items, strict=True))


def assert_no_leakage(split: Split) -> None:
    parts = {name: raw_pairs(split, name) for name in split.parts()}
    names = list(parts)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            assert not parts[names[a]] & parts[names[b]], (names[a], names[b])


def assert_indices_valid(split: Split) -> None:
    for df in split.parts().values():
        assert df["user"].dtype == pl.Int64 and df["item"].dtype == pl.Int64
        assert df["user"].min() >= 0 and df["user"].max() < split.n_users
        assert df["item"].min() >= 0 and df["item"].max() < split.n_items
    # Id maps are fitted on train: every index occurs in train.
    assert split.train["user"].n_unique() == split.n_users
    assert split.train["item"].n_unique() == split.n_items


def test_ratio_split(long_tail_log: LogFactory) -> None:
    df = long_tail_log(n_users=300, n_items=400, seed=1)
    split = split_ratio(df, 0.2, 0.1, np.random.default_rng(0))
    assert_no_leakage(split)
    assert_indices_valid(split)
    assert split.method == "ratio"
    sizes = {name: p.height for name, p in split.parts().items()}
    removed = split.cold.test.rows + split.cold.val.rows  # type: ignore[union-attr]
    assert sum(sizes.values()) + removed == df.height  # nothing vanished uncounted
    assert sizes["test"] / df.height == pytest.approx(0.2, abs=0.03)
    assert sizes["val"] / df.height == pytest.approx(0.1, abs=0.03)
    # Every user keeps at least one training row.
    assert split.train["user"].n_unique() == df["user"].n_unique()


def test_ratio_split_single_row_users_stay_in_train() -> None:
    df = pl.DataFrame({"user": [1, 2, 2, 3], "item": [1, 1, 2, 2]})
    split = split_ratio(df, 0.5, 0.0, np.random.default_rng(0))
    assert split.val is None
    train_users = split.users.to_raw(split.train["user"]).to_list()
    assert sorted(train_users) == [1, 2, 3]
    assert split.users.to_raw(split.test["user"]).to_list() == [2]


def test_ratio_split_is_reproducible_and_random(long_tail_log: LogFactory) -> None:
    df = long_tail_log(seed=2)
    a = split_ratio(df, 0.2, 0.0, np.random.default_rng(5))
    b = split_ratio(df, 0.2, 0.0, np.random.default_rng(5))
    c = split_ratio(df, 0.2, 0.0, np.random.default_rng(6))
    assert a.test.equals(b.test)
    assert raw_pairs(a, "test") != raw_pairs(c, "test")


def test_given_split_carves_val_from_train_per_user(long_tail_log: LogFactory) -> None:
    df = long_tail_log(n_users=200, seed=3, timestamps=False, ratings=False)
    marker = np.random.default_rng(9).random(df.height) < 0.2
    train_df, test_df = df.filter(~pl.Series(marker)), df.filter(pl.Series(marker))
    split = split_given(train_df, test_df, 0.1, np.random.default_rng(0))
    assert_no_leakage(split)
    assert_indices_valid(split)
    train_raw = set(zip(train_df["user"], train_df["item"], strict=True))
    test_raw = set(zip(test_df["user"], test_df["item"], strict=True))
    assert raw_pairs(split, "val") <= train_raw  # carved from the given train file
    assert raw_pairs(split, "train") | raw_pairs(split, "val") <= train_raw
    assert raw_pairs(split, "test") <= test_raw
    assert split.val is not None
    assert split.val.height / train_df.height == pytest.approx(0.1, abs=0.03)
    cold = split.cold.test
    assert split.test.height + cold.rows == test_df.height


def test_given_split_counts_cold_and_in_train_rows() -> None:
    train = pl.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"]})
    test = pl.DataFrame({"user": ["a", "b", "c", "c", "b"], "item": ["z", "y", "x", "w", "x"]})
    split = split_given(train, test, 0.0, None)
    assert split.val is None
    cold = split.cold.test
    # ("a","z"): cold item z; ("c","x"), ("c","w"): cold user c (and cold item w);
    # ("b","x") is already in train.
    assert (cold.rows, cold.users, cold.items, cold.in_train_rows) == (3, 1, 2, 1)
    assert raw_pairs(split, "test") == {("b", "y")}


def test_leave_one_out_takes_the_latest(long_tail_log: LogFactory) -> None:
    df = long_tail_log(n_users=100, seed=4, min_activity=3)
    split = split_leave_one_out(df, val=True)
    assert_no_leakage(split)
    latest = df.sort("timestamp").group_by("user").agg(pl.col("item").last())
    second = df.sort("timestamp").group_by("user").agg(pl.col("item").slice(-2, 1).first())
    expected_test = set(zip(latest["user"], latest["item"], strict=True))
    expected_val = set(zip(second["user"], second["item"], strict=True))
    cold = split.cold
    assert raw_pairs(split, "test") <= expected_test
    assert len(expected_test) - len(raw_pairs(split, "test")) == cold.test.rows
    assert raw_pairs(split, "val") <= expected_val
    assert len(expected_val) - len(raw_pairs(split, "val")) == cold.val.rows  # type: ignore[union-attr]
    # Test rows are later than every training row of their user.
    last_train = split.train.group_by("user").agg(pl.col("timestamp").max().alias("t"))
    joined = split.test.join(last_train, on="user")
    assert (joined["timestamp"] > joined["t"]).all()


def test_leave_one_out_breaks_time_ties_by_row_order() -> None:
    df = pl.DataFrame(
        {"user": [1, 1, 1, 2, 2], "item": [1, 2, 3, 3, 1], "timestamp": [5, 9, 9, 1, 2]}
    )
    split = split_leave_one_out(df, val=False)
    assert raw_pairs(split, "test") == {(1, 3), (2, 1)}


def test_leave_one_out_too_few_rows_names_the_user() -> None:
    df = pl.DataFrame(
        {"user": [1, 1, 2, 2, 2], "item": [1, 2, 1, 2, 3], "timestamp": [1, 2, 3, 4, 5]}
    )
    split_leave_one_out(df, val=False)
    with pytest.raises(DataError, match=r"log\.csv: user 1 has 2 rows, fewer than the 3"):
        split_leave_one_out(df, val=True, source="log.csv")


def test_temporal_split_is_one_global_cut(long_tail_log: LogFactory) -> None:
    df = long_tail_log(n_users=300, seed=5)
    split = split_temporal(df, 0.2, 0.1)
    assert_no_leakage(split)
    assert_indices_valid(split)
    assert split.train["timestamp"].max() < split.val["timestamp"].min()  # type: ignore[index]
    assert split.val["timestamp"].max() < split.test["timestamp"].min()  # type: ignore[index]
    test_total = split.test.height + split.cold.test.rows
    val_total = split.val.height + split.cold.val.rows  # type: ignore[union-attr]
    assert test_total / df.height == pytest.approx(0.2, abs=0.01)
    assert val_total / df.height == pytest.approx(0.1, abs=0.01)


def test_temporal_split_everything_at_one_time_leaves_no_train() -> None:
    df = pl.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": [7, 7]})
    with pytest.raises(DataError, match="leaves no training rows"):
        split_temporal(df, 0.2, 0.0)


def test_time_splits_need_timestamps_and_all_need_unique_pairs() -> None:
    df = pl.DataFrame({"user": [1, 1], "item": [1, 1]})
    with pytest.raises(DataError, match=r"log: a temporal split needs column 'timestamp'"):
        split_temporal(df, 0.2, 0.0, source="log")
    with pytest.raises(DataError, match=r"log: 1 duplicate \(user, item\) rows"):
        split_ratio(df, 0.2, 0.0, np.random.default_rng(0), source="log")


def test_user_items_conversion(long_tail_log: LogFactory) -> None:
    split = split_ratio(long_tail_log(seed=6), 0.2, 0.0, np.random.default_rng(0))
    ui = split.user_items("train")
    assert (ui.n_users, ui.n_items, ui.nnz) == (split.n_users, split.n_items, split.train.height)
    first = split.train.row(0, named=True)
    assert ui.contains(np.array([first["user"]]), np.array([first["item"]]))[0]
    with pytest.raises(ValueError, match="no 'val' part"):
        split.user_items("val")


def test_string_ids_split(long_tail_log: LogFactory) -> None:
    df = long_tail_log(seed=7, string_ids=True)
    split = split_ratio(df, 0.3, 0.1, np.random.default_rng(0))
    assert split.users.raw.dtype == pl.String
    assert_no_leakage(split)
    assert_indices_valid(split)


@pytest.mark.parametrize(
    ("test_ratio", "val_ratio"), [(0.0, 0.1), (1.0, 0.0), (0.6, 0.4), (0.2, -0.1)]
)
def test_bad_ratios(test_ratio: float, val_ratio: float) -> None:
    df = pl.DataFrame({"user": [1], "item": [1], "timestamp": [1]})
    with pytest.raises(ValueError):
        split_ratio(df, test_ratio, val_ratio, np.random.default_rng(0))


def test_given_split_never_puts_a_pair_in_val_and_test() -> None:
    # Every training pair is repeated in the test file, so whichever pairs validation takes,
    # none of them may also stay in test.
    import numpy as np
    import polars as pl

    from recsys_cl.data import split_given

    users = np.repeat(np.arange(20), 10)
    items = np.tile(np.arange(10), 20)
    train = pl.DataFrame({"user": users, "item": items})
    split = split_given(train, train, 0.3, np.random.default_rng(0))
    assert split.val is not None and split.val.height > 0
    assert split.test.height == 0
    assert split.cold.test.in_train_rows == train.height
