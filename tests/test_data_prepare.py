"""The prepare pipeline and the prepared-split folder (save, load, corruption)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_cl.data import RawDataset, get_spec, load_split, prepare, save_split
from recsys_cl.errors import DataError

LogFactory = Callable[..., pl.DataFrame]  # the conftest ``long_tail_log`` fixture


def test_prepare_runs_every_stage(long_tail_log: LogFactory) -> None:
    df = long_tail_log(n_users=150, seed=1)
    noisy = pl.concat([df, df.head(50)])  # repeated interactions
    split = prepare(
        noisy,
        split="ratio",
        test_ratio=0.2,
        val_ratio=0.1,
        implicit_threshold=3.0,
        user_k=3,
        item_k=2,
        rng=np.random.default_rng(0),
    )
    assert split.method == "ratio"
    assert split.train["rating"].min() >= 3.0
    pairs = pl.concat([p.select("user", "item") for p in split.parts().values()])
    assert pairs.n_unique() == pairs.height  # deduplicated, no leakage


def test_prepare_given_uses_the_files() -> None:
    train = pl.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 0, 1]})
    test = pl.DataFrame({"user": [0, 1], "item": [2, 0]})
    raw = RawDataset(spec=get_spec("gowalla"), folder=Path("."), train=train, test=test)
    split = prepare(raw, split="given")
    assert (split.train.height, split.test.height, split.val) == (4, 0, None)
    assert split.cold.test.rows == 1 and split.cold.test.in_train_rows == 1
    with pytest.raises(ValueError, match="needs rng"):
        prepare(raw, split="given", val_ratio=0.1)
    with pytest.raises(ValueError, match="RawDataset with its own train and test"):
        prepare(train, split="given")


def test_prepare_leave_one_out(long_tail_log: LogFactory) -> None:
    split = prepare(long_tail_log(seed=2), split="leave_one_out", val_ratio=1.0, user_k=3)
    users = split.n_users
    assert split.test.height + split.cold.test.rows == users
    assert split.val is not None and split.val.height + split.cold.val.rows == users  # type: ignore[union-attr]


def test_save_load_round_trip(tmp_path: Path, long_tail_log: LogFactory) -> None:
    split = prepare(
        long_tail_log(seed=3, string_ids=True), split="temporal", test_ratio=0.2, val_ratio=0.1
    )
    out = save_split(split, tmp_path / "prepared")
    assert sorted(p.name for p in out.iterdir()) == [
        "items.parquet",
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "users.parquet",
        "val.parquet",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["train"] == split.train.height
    assert manifest["profile"]["users"] == split.n_users
    loaded = load_split(out)
    assert loaded.method == "temporal"
    assert loaded.users == split.users and loaded.items == split.items
    for name, part in split.parts().items():
        assert loaded.part(name).equals(part)  # type: ignore[arg-type]
    assert loaded.cold == split.cold
    # Saving again replaces the folder whole and leaves no temporary sibling.
    save_split(split, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_interrupted_save_leaves_nothing(tmp_path: Path, long_tail_log: LogFactory) -> None:
    split = prepare(long_tail_log(seed=4), split="temporal", test_ratio=0.2)
    # An Object column cannot be written to Parquet: the save fails after train.parquet.
    unwritable = pl.Series("obj", [object()] * split.test.height, dtype=pl.Object)
    broken = dataclasses.replace(split, test=split.test.with_columns(unwritable))
    with pytest.raises(Exception):  # noqa: B017 - whatever polars raises, nothing may remain
        save_split(broken, tmp_path / "prepared")
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path: Path, long_tail_log: LogFactory) -> None:
    with pytest.raises(DataError, match=r"nothing: prepared split folder not found"):
        load_split(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: not a prepared split \(no manifest\.json\)"):
        load_split(tmp_path / "empty")
    split = prepare(long_tail_log(seed=5), split="temporal", test_ratio=0.2)
    out = save_split(split, tmp_path / "prepared")
    (out / "test.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"test\.parquet: unreadable"):
        load_split(out)
    (out / "test.parquet").unlink()
    with pytest.raises(DataError, match=r"test\.parquet: missing part"):
        load_split(out)
    split.train.head(3).write_parquet(out / "test.parquet")
    with pytest.raises(DataError, match=r"test\.parquet: has 3 rows, the manifest says"):
        load_split(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: corrupt manifest"):
        load_split(out)
