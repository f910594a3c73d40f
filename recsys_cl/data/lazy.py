"""Out-of-core preparation: a CSV/TSV/Parquet log larger than memory -> a prepared split folder.

:func:`prepare_lazy` writes the folder :func:`~recsys_cl.data.prepare.save_split` writes for
``save_split(prepare(read_interactions(path), ...))``, with the same rows, ids, id maps, split
assignment, row order and manifest, without ever holding the log in memory:

1. :func:`~recsys_cl.data.scan.scan_log` checks the file in one streaming pass; a second one
   applies the implicit threshold and sinks the log into P Parquet *buckets* by a hash of the
   user id, each row keeping its position in the log.
2. Every per-user step runs on one bucket at a time (1/P of the log): de-duplication (a pair
   has one user, so its rows share a bucket), per-user counts, the ratio and leave-one-out
   assignment.
3. K-core rounds need global item counts: each round streams the buckets' compact codes and
   sums per-item counts (an array of I), until no user or item falls below its threshold.
4. The ratio split draws one key per surviving row in log order, as the eager path draws
   ``rng.random(rows)``; a byte per log row records which bucket holds each survivor, so each
   bucket replays the same stream and keeps its own keys (draws are cheap, memory is not).
5. The temporal cut needs two order statistics of the timestamps: that one column is read.
6. Id maps are fitted on the training rows (distinct users and items only), every part is
   indexed bucket by bucket, and each part is merged back into log order, range of positions
   by range, into Parquet row groups.

What is held at once: one bucket, the id maps, per-item counts, and one byte per log row.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recsys_cl.data.frame import ITEM, RATING, TIMESTAMP, USER, ColumnMap, data_error
from recsys_cl.data.idmap import IdMap
from recsys_cl.data.prepare import FORMAT_VERSION, ITEM_IDS_FILE, MANIFEST, USER_IDS_FILE
from recsys_cl.data.preprocess import Keep, deduplicate
from recsys_cl.data.scan import POS, scan_log
from recsys_cl.data.splits import (
    _PART,
    _TEST,
    _TRAIN,
    _VAL,
    ColdCounts,
    ColdReport,
    _check_ratios,
    _per_user_parts,
    leave_one_out_error,
    leave_one_out_parts,
    short_users,
)
from recsys_cl.data.stats import profile_of_counts
from recsys_cl.io import atomic_dir, write_json

# About this many log rows per bucket: a few hundred MB in memory at most for one bucket.
BUCKET_ROWS = 2_000_000
MAX_BUCKETS = 255  # the bucket of each surviving row is kept in one byte (255 = removed)
ROW_GROUP_ROWS = 1_000_000  # rows per Parquet row group of a prepared part, at most
_INNER_GROUP_ROWS = 100_000  # small row groups in temporary files, so ranges skip the rest
_MIN_SLICE_ROWS = 4_000  # the merge's smallest read from one file
_BUCKET = "__bucket"
_UCODE, _ICODE = "__u", "__i"
_HASH_SEED = 0x5EED  # any constant: buckets are internal, the result does not depend on them
_PART_NAMES = {_TRAIN: "train", _VAL: "val", _TEST: "test"}
_KEY_CHUNK = 4_000_000  # log rows per step when replaying the ratio split's draws


@dataclass(frozen=True)
class _Work:
    """The temporary folder's layout."""

    root: Path
    buckets: int

    def raw(self, b: int) -> list[Path]:
        folder = self.root / "raw" / f"{_BUCKET}={b}"
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def clean(self, b: int) -> Path:
        return self.root / "clean" / f"{b}.parquet"

    def part(self, stage: str, name: str, b: int) -> Path:
        return self.root / stage / name / f"{b}.parquet"


def prepare_lazy(
    path: str | Path,
    out_dir: str | Path,
    *,
    split: str,
    test_ratio: float | None = None,
    val_ratio: float = 0.0,
    implicit_threshold: float | None = None,
    dedupe: Keep | None = "latest",
    user_k: int = 0,
    item_k: int = 0,
    rng: np.random.Generator | None = None,
    format: str = "auto",
    columns: ColumnMap | None = None,
    sep: str | None = None,
    source: str | None = None,
    buckets: int | None = None,
    work_dir: str | Path | None = None,
) -> Path:
    """Prepare a CSV/TSV/Parquet log out of core into the folder ``out_dir``; return it.

    Arguments are :func:`~recsys_cl.data.prepare.prepare`'s and
    :func:`~recsys_cl.data.readers.read_interactions`'s (``split`` is ``ratio``, ``temporal``
    or ``leave_one_out``: a given split has two files and is prepared eagerly).

    Args:
        buckets: how many user-hash buckets to process one at a time (default: one per
            :data:`BUCKET_ROWS` log rows); the result does not depend on it.
        work_dir: where temporary buckets go (about the log's size in Parquet); default
            beside ``out_dir``.

    Raises:
        DataError: what the eager path raises for the same input (see
            :mod:`recsys_cl.data.scan` for the one exception, date-string timestamps).
    """
    if split not in ("ratio", "temporal", "leave_one_out"):
        raise ValueError(
            f"lazy preparation splits one log by ratio, temporal or leave_one_out, not {split!r}"
        )
    if split in ("ratio", "temporal"):
        if test_ratio is None:
            raise ValueError(f"a {split} split needs test_ratio=")
        _check_ratios(test_ratio, val_ratio)
    if split == "ratio" and rng is None:
        raise ValueError(f"a ratio split with val_ratio={val_ratio} needs rng=")
    if buckets is not None and not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be in [1, {MAX_BUCKETS}], got {buckets}")
    out_dir = Path(out_dir)
    log = scan_log(
        path, format=format, columns=columns, sep=sep, implicit_threshold=implicit_threshold
    )
    name = source or log.source
    n_buckets = buckets or min(MAX_BUCKETS, max(1, math.ceil(log.rows / BUCKET_ROWS)))
    parent = Path(work_dir) if work_dir is not None else out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=".recsys-cl-prepare-", dir=parent))
    try:
        work = _Work(root, n_buckets)
        _sink_buckets(log.frame, work, log.source)
        kept_columns, n_items = _dedupe_buckets(work, dedupe)
        masks = _k_core(work, n_items, user_k, item_k, name)
        parts, method = _split(
            work, masks, log.rows, kept_columns, split, test_ratio, val_ratio, rng, name
        )
        _write_prepared(work, parts, method, log.rows, out_dir, name)
    finally:
        shutil.rmtree(root, ignore_errors=False)
    return out_dir


def _sink_buckets(frame: pl.LazyFrame, work: _Work, source: str) -> None:
    bucket = (pl.col(USER).hash(_HASH_SEED) % work.buckets).alias(_BUCKET)
    try:
        frame.with_columns(bucket).sink_parquet(
            pl.PartitionBy(work.root / "raw", key=_BUCKET, include_key=False),
            mkdir=True,
            row_group_size=_INNER_GROUP_ROWS,
            engine="streaming",
        )
    except pl.exceptions.PolarsError as exc:
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise data_error(source, f"cannot read: {first}") from exc


def _read_bucket(files: list[Path]) -> pl.DataFrame | None:
    """A bucket in log order, or ``None`` when no row hashed into it."""
    if not files:
        return None
    return pl.read_parquet(files).sort(POS)


def _dedupe_buckets(work: _Work, dedupe: Keep | None) -> tuple[list[str], int]:
    """De-duplicate every bucket (a pair's rows share its user's bucket) and add compact
    codes: ``__u`` local to the bucket, ``__i`` global (items are coded by sorted id).

    Returns the canonical columns kept and the number of item codes (every code is used).
    """
    frames_items = []
    columns: list[str] = []
    for b in range(work.buckets):
        df = _read_bucket(work.raw(b))
        if df is None:
            continue
        columns = [c for c in df.columns if c != POS]
        if dedupe == "sum":
            df = _dedupe_sum(df)
        elif dedupe is not None:
            df = deduplicate(df, dedupe)  # keeps __pos; rows are in log order, as eagerly
        # Users are local to a bucket: their codes are ranks within it.
        df = df.with_columns((pl.col(USER).rank("dense") - 1).cast(pl.Int32).alias(_UCODE))
        work.clean(b).parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(work.clean(b))
        # shrink_to_fit: unique() keeps its input's capacity, 26 buckets of it held ~400 MiB.
        frames_items.append(df.select(ITEM).unique().shrink_to_fit())
    if not frames_items:
        return columns, 0
    items = pl.concat(frames_items).unique().sort(ITEM)
    codes = items.with_columns(pl.int_range(items.height, dtype=pl.Int32).alias(_ICODE))
    for b in range(work.buckets):
        if work.clean(b).exists():
            df = pl.read_parquet(work.clean(b))
            coded = df.join(codes, on=ITEM, how="left", maintain_order="left")
            coded.write_parquet(work.clean(b), row_group_size=_INNER_GROUP_ROWS)
    if dedupe == "sum" and RATING not in columns:
        columns.append(RATING)  # merged rows carry their count as rating
    return columns, items.height


def _dedupe_sum(df: pl.DataFrame) -> pl.DataFrame:
    """:func:`~recsys_cl.data.preprocess.deduplicate` with ``keep="sum"``, keeping ``__pos``
    (a merged pair sits at its first row's position)."""
    aggs = [
        pl.col(RATING).sum() if RATING in df.columns else pl.len().cast(pl.Float64).alias(RATING)
    ]
    if TIMESTAMP in df.columns:
        aggs.append(pl.col(TIMESTAMP).max())
    aggs.append(pl.col(POS).min())
    merged = df.group_by([USER, ITEM]).agg(aggs).sort(POS)
    order = [c for c in (POS, USER, ITEM, TIMESTAMP, RATING) if c in merged.columns]
    return merged.select(order)


def _codes(work: _Work, b: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not work.clean(b).exists():
        return None
    df = pl.read_parquet(work.clean(b), columns=[_UCODE, _ICODE])
    return df[_UCODE].to_numpy(), df[_ICODE].to_numpy()


def _k_core(
    work: _Work, n_items: int, user_k: int, item_k: int, source: str
) -> list[np.ndarray | None]:
    """Per bucket, the mask of rows in the k-core (``None``: every row of the bucket).

    Each round keeps the rows whose user and item both reach their threshold in the current
    rows, as :func:`~recsys_cl.data.preprocess.k_core` does; the state is which users and
    items are alive (the rows are the clean ones of alive users and items).
    """
    if user_k < 0 or item_k < 0:
        raise ValueError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    if user_k <= 1 and item_k <= 1:
        return [None] * work.buckets
    items_alive = np.ones(n_items, dtype=bool)
    users_alive: list[np.ndarray | None] = [None] * work.buckets
    while True:
        item_counts = np.zeros(n_items, dtype=np.int64)
        user_counts: list[np.ndarray | None] = []
        for b in range(work.buckets):
            codes = _codes(work, b)
            if codes is None:
                user_counts.append(None)
                continue
            ucode, icode = codes
            alive = users_alive[b]
            n_users = int(ucode.max()) + 1 if ucode.size else 0
            mask = items_alive[icode] if alive is None else alive[ucode] & items_alive[icode]
            user_counts.append(np.bincount(ucode[mask], minlength=n_users))
            item_counts += np.bincount(icode[mask], minlength=n_items)
        # Alive with a count below the threshold: this round removes them.
        changed = bool(((item_counts < item_k) & items_alive).any())
        next_users: list[np.ndarray | None] = []
        for b, counts in enumerate(user_counts):
            if counts is None:
                next_users.append(None)
                continue
            alive_b = users_alive[b]
            was = np.ones(counts.size, dtype=bool) if alive_b is None else alive_b
            changed |= bool(((counts < user_k) & was).any())
            next_users.append(was & (counts >= user_k))
        if not changed:
            break
        items_alive &= item_counts >= item_k
        users_alive = next_users
    masks: list[np.ndarray | None] = []
    total = 0
    for b in range(work.buckets):
        codes = _codes(work, b)
        alive = users_alive[b]
        if codes is None or alive is None:
            masks.append(None if codes is None else np.ones(codes[0].size, dtype=bool))
            total += 0 if codes is None else codes[0].size
            continue
        mask = alive[codes[0]] & items_alive[codes[1]]
        masks.append(mask)
        total += int(mask.sum())
    if total == 0:
        raise data_error(
            source, f"no interactions survive the k-core filter (user_k={user_k}, item_k={item_k})"
        )
    return masks


def _core_bucket(work: _Work, b: int, mask: np.ndarray | None) -> pl.DataFrame | None:
    """Bucket ``b`` after de-duplication and k-core, in log order, canonical columns."""
    if not work.clean(b).exists():
        return None
    df = pl.read_parquet(work.clean(b)).drop(_UCODE, _ICODE)
    return df if mask is None else df.filter(pl.Series(mask))


def _split(
    work: _Work,
    masks: list[np.ndarray | None],
    log_rows: int,
    columns: list[str],
    method: str,
    test_ratio: float | None,
    val_ratio: float,
    rng: np.random.Generator | None,
    source: str,
) -> tuple[list[str], str]:
    """Assign every surviving row to a part, bucket by bucket; write raw-id parts.

    Returns the parts' names in train/val/test order.
    """
    if method in ("temporal", "leave_one_out") and TIMESTAMP not in columns:
        what = "temporal" if method == "temporal" else "leave-one-out"
        found = ", ".join(columns)
        raise data_error(source, f"a {what} split needs column 'timestamp'; columns found: {found}")
    rows = sum(
        int(m.sum()) if m is not None else _bucket_height(work, b) for b, m in enumerate(masks)
    )
    if rows == 0:
        raise data_error(source, f"the {method} split leaves no training rows")
    with_val = val_ratio > 0
    cuts: tuple[int, int] | None = None
    keys: Iterator[np.ndarray] | None = None
    if method == "temporal":
        assert test_ratio is not None
        cuts = _temporal_cuts(work, masks, rows, test_ratio, val_ratio)
    elif method == "leave_one_out":
        _check_leave_one_out(work, masks, 3 if with_val else 2, source)
    else:
        assert rng is not None
        keys = _bucket_keys(work, masks, log_rows, rng)
    names = ["train", "val", "test"] if with_val else ["train", "test"]
    for b, mask in enumerate(masks):
        df = _core_bucket(work, b, mask)
        bucket_keys = next(keys) if keys is not None else None
        if df is None:
            continue
        if method == "ratio":
            assert test_ratio is not None and bucket_keys is not None
            marked = _per_user_parts(df, test_ratio, val_ratio, bucket_keys)
        elif method == "leave_one_out":
            marked = leave_one_out_parts(df, with_val)
        else:
            assert cuts is not None
            marked = _temporal_parts(df, cuts, with_val)
        for code, name in _PART_NAMES.items():
            if name in names:
                path = work.part("split", name, b)
                path.parent.mkdir(parents=True, exist_ok=True)
                part = marked.filter(pl.col(_PART) == code).drop(_PART)
                part.write_parquet(path)
    return names, method


def _bucket_height(work: _Work, b: int) -> int:
    path = work.clean(b)
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def _survivor_positions(work: _Work, b: int, mask: np.ndarray | None) -> np.ndarray:
    if not work.clean(b).exists():
        return np.empty(0, dtype=np.int64)
    pos = pl.read_parquet(work.clean(b), columns=[POS])[POS].to_numpy()
    return pos if mask is None else pos[mask]


def _bucket_keys(
    work: _Work, masks: list[np.ndarray | None], log_rows: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """For each bucket in turn, the ratio split's keys of its surviving rows (in log order).

    The eager split draws ``rng.random(rows)`` over the surviving rows in log order. Here
    ``owner`` [log rows] holds the bucket of each survivor (255 for a removed row); each
    bucket replays the same draws from a copy of ``rng`` and keeps those of its own rows. The
    last bucket draws from ``rng`` itself, which so ends where the eager split leaves it.
    """
    dead = np.uint8(MAX_BUCKETS)
    owner = np.full(log_rows, dead, dtype=np.uint8)
    for b, mask in enumerate(masks):
        owner[_survivor_positions(work, b, mask)] = b
    state = rng.bit_generator.state
    for b in range(work.buckets):
        last = b == work.buckets - 1
        if last:
            gen = rng  # untouched so far: the copies drew for the other buckets
        else:
            gen = np.random.Generator(type(rng.bit_generator)())
            gen.bit_generator.state = state
        kept: list[np.ndarray] = []
        for start in range(0, log_rows, _KEY_CHUNK):
            block = owner[start : start + _KEY_CHUNK]
            survivors = block[block != dead]
            draws = gen.random(survivors.size)
            kept.append(draws[survivors == b])
        yield np.concatenate(kept) if kept else np.empty(0)


def _temporal_cuts(
    work: _Work, masks: list[np.ndarray | None], rows: int, test_ratio: float, val_ratio: float
) -> tuple[int, int]:
    """:func:`~recsys_cl.data.splits.split_temporal`'s two cut timestamps (test, val).

    The only column read whole: the timestamps of the surviving rows (8 bytes a row).
    """
    times = np.concatenate(
        [
            frame[TIMESTAMP].to_numpy()
            for b, m in enumerate(masks)
            if (frame := _core_bucket(work, b, m)) is not None
        ]
    )
    n_test = max(1, int(rows * test_ratio + 0.5))
    n_val = int(rows * val_ratio + 0.5) if val_ratio > 0 else 0
    test_at, val_at = rows - n_test, max(rows - n_test - n_val, 0)
    times.partition(sorted({test_at, val_at}))
    return int(times[test_at]), int(times[val_at])


def _temporal_parts(df: pl.DataFrame, cuts: tuple[int, int], with_val: bool) -> pl.DataFrame:
    test_cut, val_cut = cuts
    ts = pl.col(TIMESTAMP)
    # Without validation the val cut is never reached: nothing is < test_cut yet >= it.
    val_from = val_cut if with_val else test_cut
    part = (
        pl.when(ts >= test_cut)
        .then(pl.lit(_TEST))
        .when(ts >= val_from)
        .then(pl.lit(_VAL))
        .otherwise(pl.lit(_TRAIN))
    )
    return df.with_columns(part.alias(_PART))


def _check_leave_one_out(
    work: _Work, masks: list[np.ndarray | None], needed: int, source: str
) -> None:
    shorts = [
        short_users(df, needed)
        for b, m in enumerate(masks)
        if (df := _core_bucket(work, b, m)) is not None
    ]
    short = pl.concat(shorts) if shorts else pl.DataFrame()
    if short.height:
        raise leave_one_out_error(source, short, needed)


def _write_prepared(
    work: _Work, names: list[str], method: str, log_rows: int, out_dir: Path, source: str
) -> None:
    """Fit the id maps on train, index every part, merge the parts into log order."""
    users, items = _fit_id_maps(work, method, source)
    # Rows per user and per item index, summed over the parts: two arrays of U and I.
    user_counts = np.zeros(users.size, dtype=np.int64)
    item_counts = np.zeros(items.size, dtype=np.int64)
    cold = _index_parts(work, names, users, items, user_counts, item_counts)
    report = ColdReport(val=cold.get("val"), test=cold["test"])
    rows: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        for name in names:
            files = [work.part("indexed", name, b) for b in range(work.buckets)]
            rows[name] = _merge([f for f in files if f.exists()], tmp / f"{name}.parquet", log_rows)
        users.save(tmp / USER_IDS_FILE)
        items.save(tmp / ITEM_IDS_FILE)
        prof = profile_of_counts(
            user_counts,
            item_counts,
            users.size,
            items.size,
            parts=dict(rows),
            cold=report,
        )
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "method": method,
            "n_users": users.size,
            "n_items": items.size,
            "rows": rows,
            "cold": report.to_dict(),
            "profile": prof.to_dict(),
        }
        write_json(tmp / MANIFEST, manifest)  # last: its presence marks a complete folder


def _fit_id_maps(work: _Work, method: str, source: str) -> tuple[IdMap, IdMap]:
    """The user and item id maps of the training rows (distinct ids only are held)."""
    train_users, train_items = [], []
    for b in range(work.buckets):
        path = work.part("split", "train", b)
        if path.exists():
            train = pl.read_parquet(path, columns=[USER, ITEM])
            # shrink_to_fit: unique() keeps its input's capacity (a bucket's rows, not its ids).
            train_users.append(train[USER].unique().shrink_to_fit())
            train_items.append(train[ITEM].unique().shrink_to_fit())
    if not train_users or sum(s.len() for s in train_users) == 0:
        raise data_error(source, f"the {method} split leaves no training rows")
    return IdMap.fit(pl.concat(train_users)), IdMap.fit(pl.concat(train_items).unique())


def _index_parts(
    work: _Work,
    names: list[str],
    users: IdMap,
    items: IdMap,
    user_counts: np.ndarray,
    item_counts: np.ndarray,
) -> dict[str, ColdCounts]:
    """Index every part bucket by bucket, dropping cold rows; add each kept row to
    ``user_counts``/``item_counts``; return what each part but train dropped.

    A function of its own so that its frames are freed before the merge starts: the
    preparation's peak memory is this step's or the merge's, not both.
    """
    # A bucket's users are only those hashing into it: join each bucket with its share.
    user_tables = (
        _index_table(users)
        .with_columns((pl.col("__raw").hash(_HASH_SEED) % work.buckets).alias(_BUCKET))
        .partition_by(_BUCKET, as_dict=True, include_key=False)
    )
    item_table = _index_table(items)
    no_users = _index_table(users).clear()
    cold: dict[str, ColdCounts] = {}
    for name in names:
        cold_rows, cold_users, cold_items = 0, 0, []
        for b in range(work.buckets):
            path = work.part("split", name, b)
            if not path.exists():
                continue
            df = pl.read_parquet(path)
            user_table = user_tables.get((b,), no_users)
            indexed = df.join(
                user_table, left_on=USER, right_on="__raw", how="left", maintain_order="left"
            ).join(
                item_table,
                left_on=ITEM,
                right_on="__raw",
                how="left",
                maintain_order="left",
                suffix="_i",
            )
            u, i = indexed["__index"], indexed["__index_i"]
            is_cold = u.is_null() | i.is_null()
            cold_rows += int(is_cold.sum())
            cold_users += df.filter(u.is_null())[USER].n_unique()
            cold_items.append(df.filter(i.is_null())[ITEM].unique())
            kept = df.with_columns(u.alias(USER), i.alias(ITEM)).filter(~is_cold)
            out = work.part("indexed", name, b)
            out.parent.mkdir(parents=True, exist_ok=True)
            kept.write_parquet(out, row_group_size=_INNER_GROUP_ROWS)
            user_counts += np.bincount(kept[USER].to_numpy(), minlength=users.size)
            item_counts += np.bincount(kept[ITEM].to_numpy(), minlength=items.size)
        if name != "train":
            distinct_items = pl.concat(cold_items).n_unique() if cold_items else 0
            cold[name] = ColdCounts(rows=cold_rows, users=cold_users, items=distinct_items)
    return cold


def _index_table(ids: IdMap) -> pl.DataFrame:
    return pl.DataFrame(
        {"__raw": ids.raw, "__index": pl.int_range(ids.size, dtype=pl.Int64, eager=True)}
    )


class _Sorted:
    """A Parquet file sorted by ``__pos``, read slice by slice: :meth:`take` hands out the
    rows below a position, so merging never holds more than a range and a slice per file."""

    def __init__(self, path: Path, step: int) -> None:
        self._scan = pl.scan_parquet(path)
        self._rows = pq.ParquetFile(path).metadata.num_rows
        self._step = step
        self._offset = 0
        self._pending: pl.DataFrame | None = None

    def take(self, end: int) -> pl.DataFrame | None:
        """The rows with ``__pos < end`` not yet taken (``None``: none)."""
        parts = [] if self._pending is None else [self._pending]
        while self._offset < self._rows and (not parts or parts[-1][POS][-1] < end):
            # A slice reads only the row groups it covers.
            parts.append(self._scan.slice(self._offset, self._step).collect())
            self._offset += self._step
        if not parts:
            return None
        pending = pl.concat(parts)
        cut = int(pending[POS].search_sorted(end, side="left"))
        self._pending = pending[cut:] if cut < pending.height else None
        return pending[:cut] if cut else None


def _merge(files: list[Path], out: Path, log_rows: int) -> int:
    """Merge per-bucket parts (each in log order) into one file in log order; return its rows.

    A k-way merge by position, range by range; each range becomes a row group of ``out``.
    """
    written = 0
    # Every file reads ahead one slice: together about one output row group up to 250 files
    # (a slice of 100K rows from each of 26 buckets held 2.6M rows). A slice is a whole share
    # of a temporary row group, so no row group is decoded for more slices than it must.
    share = max(_MIN_SLICE_ROWS, min(_INNER_GROUP_ROWS, ROW_GROUP_ROWS // max(1, len(files))))
    step = _INNER_GROUP_ROWS // math.ceil(_INNER_GROUP_ROWS / share)
    readers = [_Sorted(f, step) for f in files]
    schema = pq.read_schema(files[0])
    with pq.ParquetWriter(out, schema.remove(schema.get_field_index(POS)), compression="zstd") as w:
        for start in range(0, log_rows, ROW_GROUP_ROWS):
            taken = [t for r in readers if (t := r.take(start + ROW_GROUP_ROWS)) is not None]
            if not taken:
                continue
            chunk = pl.concat(taken).sort(POS).drop(POS)
            w.write_table(chunk.to_arrow(), row_group_size=ROW_GROUP_ROWS)
            written += chunk.height
    return written


__all__ = ["BUCKET_ROWS", "prepare_lazy"]
