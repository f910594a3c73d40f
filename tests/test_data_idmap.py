"""IdMap: sorted order, identity on 0..n-1 ids, round trips, unknown ids, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_cl.data import IdMap
from recsys_cl.errors import DataError


def test_fit_sorts_and_dedupes() -> None:
    m = IdMap.fit(pl.Series([30, 10, 20, 10]))
    assert m.raw.to_list() == [10, 20, 30]
    assert m.to_index(pl.Series([20, 30, 10])).to_list() == [1, 2, 0]


def test_contiguous_integer_ids_map_to_themselves() -> None:
    ids = np.random.default_rng(0).permutation(1000)
    m = IdMap.fit(ids)
    np.testing.assert_array_equal(m.to_index(ids), ids)


@pytest.mark.parametrize(
    "raw", [np.array([5, -3, 99, 5]), np.array(["b", "a", "ccc"]), pl.Series(["x", "y", "x"])]
)
def test_round_trip(raw: np.ndarray | pl.Series) -> None:
    m = IdMap.fit(raw)
    index = m.to_index(raw)
    back = m.to_raw(index)
    assert list(back) == list(raw)
    assert type(index) is type(raw) and type(back) is type(raw)


def test_save_load_round_trip(tmp_path: Path) -> None:
    for raw in (pl.Series([3, 1, 2]), pl.Series(["u9", "u1"])):
        m = IdMap.fit(raw)
        m.save(tmp_path / "map.parquet")
        loaded = IdMap.load(tmp_path / "map.parquet")
        assert loaded == m
        assert loaded.raw.dtype == m.raw.dtype
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_unknown_ids() -> None:
    m = IdMap.fit(pl.Series(["a", "b"]))
    with pytest.raises(DataError, match=r"test\.csv: 2 unknown ids, the first 'z' at position 1"):
        m.to_index(pl.Series(["a", "z", "q"]), source="test.csv")
    assert m.to_index(pl.Series(["a", "z"]), missing="null").to_list() == [0, None]
    np.testing.assert_array_equal(m.to_index(np.array(["z", "b"]), missing="null"), [-1, 1])


def test_type_mismatch_and_bad_index() -> None:
    m = IdMap.fit(pl.Series([1, 2]))
    with pytest.raises(DataError, match="ids of type String cannot index a map of Int64 ids"):
        m.to_index(pl.Series(["1"]))
    with pytest.raises(DataError, match=r"integers in \[0, 2\)"):
        m.to_raw(np.array([0, 2]))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gone\.parquet: id map file not found"):
        IdMap.load(tmp_path / "gone.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: unreadable Parquet"):
        IdMap.load(junk)
    wrong = tmp_path / "wrong.parquet"
    pl.DataFrame({"index": [0, 1], "raw": [5, 5]}).write_parquet(wrong)
    with pytest.raises(DataError, match=r"wrong\.parquet: invalid id map"):
        IdMap.load(wrong)
