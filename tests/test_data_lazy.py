"""Out-of-core preparation (data.lazy): the prepared folder equals the eager one, bad input
fails with the eager path's one-line message, and the log file is only ever scanned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from recsys_cl.cli import main
from recsys_cl.config import load_config
from recsys_cl.data import (
    ColumnMap,
    load_split,
    prepare,
    read_interactions,
    save_split,
    scan_interactions,
)
from recsys_cl.data.lazy import prepare_lazy
from recsys_cl.errors import ConfigError, DataError
from tests.conftest import make_long_tail_log

SPLITS: list[dict[str, Any]] = [
    {"split": "ratio", "test_ratio": 0.2, "val_ratio": 0.1},
    {"split": "ratio", "test_ratio": 0.3},
    {"split": "temporal", "test_ratio": 0.2, "val_ratio": 0.1},
    {"split": "temporal", "test_ratio": 0.25},
    {"split": "leave_one_out", "val_ratio": 0.1},
    {"split": "leave_one_out"},
]


def _log(string_ids: bool = False) -> pl.DataFrame:
    """A long-tail log with repeated pairs (later timestamps, other ratings) to de-duplicate."""
    log = make_long_tail_log(n_users=150, n_items=120, seed=5, string_ids=string_ids)
    again = log.sample(150, seed=1).with_columns(
        pl.col("timestamp") + 1, (6 - pl.col("rating")).alias("rating")
    )
    return pl.concat([log, again])


def _write(df: pl.DataFrame, folder: Path, kind: str) -> Path:
    path = folder / f"log.{kind}"
    if kind == "csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


def _assert_same_folder(eager: Path, lazy: Path) -> None:
    a, b = load_split(eager), load_split(lazy)
    assert a.users == b.users and a.items == b.items
    for name in ("train", "val", "test"):
        fa, fb = getattr(a, name), getattr(b, name)
        assert (fa is None) == (fb is None), name
        if fa is not None:
            assert fa.schema == fb.schema and fa.equals(fb), name
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (eager, lazy)]
    assert manifests[0] == manifests[1]


def _both(path: Path, tmp: Path, buckets: int, **kw: Any) -> tuple[float, float]:
    """Prepare ``path`` eagerly and lazily into tmp/eager and tmp/lazy; each rng's next draw."""
    eager_rng, lazy_rng = np.random.default_rng(11), np.random.default_rng(11)
    split = prepare(read_interactions(path), rng=eager_rng, source="log", **kw)
    save_split(split, tmp / "eager")
    prepare_lazy(path, tmp / "lazy", rng=lazy_rng, source="log", buckets=buckets, **kw)
    return float(eager_rng.random()), float(lazy_rng.random())


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("how", SPLITS, ids=lambda s: "-".join(map(str, s.values())))
def test_lazy_folder_equals_eager_for_every_split(
    tmp_path: Path, kind: str, how: dict[str, Any]
) -> None:
    path = _write(_log(), tmp_path, kind)
    clean = {"implicit_threshold": 2.0, "user_k": 3, "item_k": 3}
    draws = _both(path, tmp_path, buckets=3, **clean, **how)
    _assert_same_folder(tmp_path / "eager", tmp_path / "lazy")
    assert draws[0] == draws[1]  # the caller's rng ends where the eager split leaves it


@pytest.mark.parametrize("dedupe", ["latest", "first", "sum", None])
@pytest.mark.parametrize("buckets", [1, 4])
def test_lazy_equals_eager_for_each_dedupe_and_bucket_count(
    tmp_path: Path, dedupe: str | None, buckets: int
) -> None:
    log = _log(string_ids=True)
    if dedupe is None:
        log = log.unique(["user", "item"], keep="first", maintain_order=True)
    path = _write(log.drop("rating") if dedupe == "sum" else log, tmp_path, "csv")
    _both(path, tmp_path, buckets, split="ratio", test_ratio=0.2, val_ratio=0.1, dedupe=dedupe)
    _assert_same_folder(tmp_path / "eager", tmp_path / "lazy")
    assert load_split(tmp_path / "lazy").users.raw.dtype == pl.String


def test_lazy_keeps_blank_lines_out_and_columns_mapped(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    rows = [f"u{u}\t{i}\t{5 - (u + i) % 5}" for u in range(12) for i in range(u % 4, 9)]
    path.write_text("who\twhat\tstars\n" + "\n".join(rows[:20]) + "\n\n" + "\n".join(rows[20:]))
    columns = ColumnMap(user="who", item="what", rating="stars")
    assert (
        scan_interactions(path, columns=columns)
        .collect()
        .equals(read_interactions(path, columns=columns))
    )
    kw: dict[str, Any] = {
        "split": "ratio",
        "test_ratio": 0.25,
        "implicit_threshold": 2,
        "user_k": 2,
        "item_k": 2,
        "source": "t",
    }
    eager = prepare(
        read_interactions(path, columns=columns), rng=np.random.default_rng(0), **kw
    )
    save_split(eager, tmp_path / "eager")
    prepare_lazy(path, tmp_path / "lazy", columns=columns, rng=np.random.default_rng(0), **kw)
    _assert_same_folder(tmp_path / "eager", tmp_path / "lazy")


def _eager_error(path: Path, columns: ColumnMap | None, **kw: Any) -> str:
    with pytest.raises(DataError) as caught:
        prepare(
            read_interactions(path, columns=columns),
            rng=np.random.default_rng(0),
            source=str(path),
            **kw,
        )
    return str(caught.value)


BAD_CSV = {
    "empty id": "user,item,rating\n1,2,3\n,4,5\n",
    "blank id": "user,item,rating\n1,2,3\n  ,4,5\n",
    "text rating": "user,item,rating\n1,2,3\n\n2,4,lots\n",
    "infinite rating": "user,item,rating\n1,2,3\n2,4,inf\n",
    "negative rating": "user,item,rating\n1,2,3\n2,4,-1\n",
    "missing column": "user,items,rating\n1,2,3\n",
    "one column": "user;item;rating\n1;2;3\n",
    "no rows": "user,item,rating\n",
    "empty timestamp": "user,item,timestamp\n1,2,3\n2,3,\n",
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_lazy_csv_errors_are_the_eager_ones(tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV[case])
    kw: dict[str, Any] = {"split": "ratio", "test_ratio": 0.5}
    if "timestamp" not in case:
        kw["implicit_threshold"] = 1.0
    expected = _eager_error(path, None, **kw)
    with pytest.raises(DataError) as caught:
        prepare_lazy(path, tmp_path / "out", rng=np.random.default_rng(0), **kw)
    assert str(caught.value) == expected and "\n" not in expected
    assert not (tmp_path / "out").exists()


BAD_PARQUET = {
    "null id": pl.DataFrame({"user": [1, None], "item": [1, 2]}),
    "fractional id": pl.DataFrame({"user": [1.0, 2.5], "item": [1, 2]}),
    "overflowing id": pl.DataFrame(
        {"user": pl.Series([1, 2**63], dtype=pl.UInt64), "item": [1, 2]}
    ),
    "unsupported ids": pl.DataFrame({"user": [[1], [2]], "item": [1, 2]}),
    "nan rating": pl.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, float("nan")]}),
    "no rating for the threshold": pl.DataFrame({"user": [1, 2], "item": [1, 2]}),
}


@pytest.mark.parametrize("case", BAD_PARQUET)
def test_lazy_parquet_errors_are_the_eager_ones(tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.parquet"
    BAD_PARQUET[case].write_parquet(path)
    kw: dict[str, Any] = {"split": "ratio", "test_ratio": 0.5, "implicit_threshold": 1.0}
    expected = _eager_error(path, None, **kw)
    with pytest.raises(DataError) as caught:
        prepare_lazy(path, tmp_path / "out", rng=np.random.default_rng(0), **kw)
    assert str(caught.value) == expected


@pytest.mark.parametrize(
    "kw",
    [
        {"split": "ratio", "test_ratio": 0.2, "user_k": 50, "item_k": 50},  # nothing survives
        {"split": "leave_one_out", "val_ratio": 0.1},  # users with 2 rows
        {"split": "temporal", "test_ratio": 0.2},  # no timestamp column
    ],
    ids=["k-core", "leave-one-out", "temporal"],
)
def test_lazy_cleaning_and_split_errors_are_the_eager_ones(
    tmp_path: Path, kw: dict[str, Any]
) -> None:
    log = make_long_tail_log(n_users=40, n_items=30, seed=2, min_activity=2)
    if kw["split"] == "temporal":
        log = log.drop("timestamp")
    path = _write(log, tmp_path, "parquet")
    expected = _eager_error(path, None, **kw)
    with pytest.raises(DataError) as caught:
        prepare_lazy(path, tmp_path / "out", rng=np.random.default_rng(0), buckets=3, **kw)
    assert str(caught.value) == expected


def test_lazy_text_timestamps_must_be_integers(tmp_path: Path) -> None:
    # The one documented difference: dates in text are read eagerly, refused lazily by line.
    path = tmp_path / "dates.csv"
    path.write_text("user,item,timestamp\n1,2,2024-01-01\n\n2,3,2024-01-02\n")
    assert read_interactions(path)["timestamp"].to_list() == [1704067200, 1704153600]
    with pytest.raises(DataError, match=r"dates.csv: line 2, column 'timestamp': '2024-01-01'"):
        scan_interactions(path)


def test_the_log_file_is_only_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(_log(), tmp_path, "csv")
    parquet = _write(_log(), tmp_path, "parquet")
    lazy = scan_interactions(path)
    assert isinstance(lazy, pl.LazyFrame)
    real_read_parquet = pl.read_parquet

    def refuse_csv(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the log was read whole")

    def read_parquet(source: Any, *args: Any, **kwargs: Any) -> pl.DataFrame:
        sources = source if isinstance(source, list) else [source]
        if any(Path(s) == parquet for s in sources):
            raise AssertionError("the log was read whole")
        return real_read_parquet(source, *args, **kwargs)

    monkeypatch.setattr(pl, "read_csv", refuse_csv)
    monkeypatch.setattr(pl, "read_parquet", read_parquet)
    for source in (path, parquet):
        out = prepare_lazy(
            source, tmp_path / source.suffix[1:], split="leave_one_out", user_k=2, buckets=2
        )
        assert load_split(out).train.height > 0


def test_bucket_count_does_not_change_the_result(tmp_path: Path) -> None:
    path = _write(_log(), tmp_path, "parquet")
    kw: dict[str, Any] = {"split": "ratio", "test_ratio": 0.2, "user_k": 2, "item_k": 2}
    for buckets in (1, 5):
        prepare_lazy(
            path, tmp_path / f"b{buckets}", rng=np.random.default_rng(3), buckets=buckets, **kw
        )
    _assert_same_folder(tmp_path / "b1", tmp_path / "b5")


def test_merge_in_small_slices_keeps_log_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ranges, slices and row groups far smaller than a bucket's part: every take spans
    # several slices and every slice several ranges, as with a 50M-row log's 26 buckets.
    import recsys_cl.data.lazy as lazy

    monkeypatch.setattr(lazy, "ROW_GROUP_ROWS", 40)
    monkeypatch.setattr(lazy, "_INNER_GROUP_ROWS", 16)
    monkeypatch.setattr(lazy, "_MIN_SLICE_ROWS", 5)
    path = _write(_log(), tmp_path, "csv")
    _both(path, tmp_path, 4, split="ratio", test_ratio=0.2, val_ratio=0.1, user_k=2)
    _assert_same_folder(tmp_path / "eager", tmp_path / "lazy")
    groups = pq.ParquetFile(tmp_path / "lazy" / "train.parquet").metadata.num_row_groups
    assert groups > 10  # the merge wrote one row group per range, not one in all


def test_data_prepare_with_data_lazy_writes_the_eager_folder(tmp_path: Path) -> None:
    path = _write(_log(), tmp_path, "csv")
    base = [
        "data",
        "prepare",
        "--set",
        f"data.path={path}",
        "--set",
        "data.implicit_threshold=2",
        "--set",
        "data.min_user_interactions=3",
        "--set",
        "data.min_item_interactions=3",
    ]
    assert main([*base, "--out", str(tmp_path / "eager")]) == 0
    assert main([*base, "--set", "data.lazy=true", "--out", str(tmp_path / "lazy")]) == 0
    _assert_same_folder(tmp_path / "eager", tmp_path / "lazy")


def test_data_prepare_does_not_load_torch(tmp_path: Path) -> None:
    # torch's import alone is ~220 MiB, a third of a 50M-row lazy preparation's peak.
    path = _write(_log(), tmp_path, "csv")
    code = (
        "import sys\n"
        "from recsys_cl.cli import main\n"
        f"rc = main(['data', 'prepare', '--set', 'data.path={path}', '--set', 'data.lazy=true',"
        f" '--out', '{tmp_path / 'out'}'])\n"
        "assert rc == 0, rc\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.dataset=ml-100k"], "data.lazy prepares one log file"),
        (["data.path=a.csv", "data.test_path=b.csv", "data.split.kind=given"], "one log file"),
        (["data.path=train.txt", "data.format=lightgcn"], "not lightgcn"),
    ],
)
def test_data_lazy_config_rules(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*(f"{o}" for o in overrides), "data.lazy=true"])
