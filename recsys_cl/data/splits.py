"""Train / validation / test splits of a canonical frame, with id maps fitted on train.

Every split function returns a :class:`Split` whose frames hold contiguous ``Int64`` indices
(``user`` in ``0..U-1``, ``item`` in ``0..I-1``) plus ``timestamp``/``rating`` when present.
Validation and test rows whose user or item never occurs in train cannot be scored by an
embedding model; they are removed from the evaluation frames and counted in
:class:`ColdReport`, never dropped silently.

Inputs must hold one row per ``(user, item)`` pair (see
:func:`~recsys_cl.data.preprocess.deduplicate`): a pair in two parts would leak the answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys_cl.data.frame import ITEM, TIMESTAMP, USER, data_error
from recsys_cl.data.idmap import IdMap
from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError

Part = Literal["train", "val", "test"]
_ROW = "__row"
_KEY = "__key"
_PART = "__part"
_TRAIN, _VAL, _TEST = 0, 1, 2


@dataclass(frozen=True)
class ColdCounts:
    """What was removed from one evaluation part.

    Attributes:
        rows: rows removed because their user or item is absent from train.
        users: distinct users of the part absent from train.
        items: distinct items of the part absent from train.
        in_train_rows: rows removed because their pair is also in train (or, for test, in the
            validation part carved from train); given splits only.
    """

    rows: int
    users: int
    items: int
    in_train_rows: int = 0


@dataclass(frozen=True)
class ColdReport:
    """Cold-start rows of the validation (``None`` without validation) and test parts."""

    val: ColdCounts | None
    test: ColdCounts

    def to_dict(self) -> dict[str, Any]:
        return {"val": None if self.val is None else asdict(self.val), "test": asdict(self.test)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColdReport:
        val = None if data["val"] is None else ColdCounts(**data["val"])
        return cls(val=val, test=ColdCounts(**data["test"]))


@dataclass(frozen=True, eq=False)
class Split:
    """A split with indices fitted on train.

    Attributes:
        method: how it was made (``given``, ``ratio``, ``temporal``, ``leave_one_out``).
        train, val, test: frames [rows, >=2] with ``user`` in [0, U) and ``item`` in [0, I);
            ``val`` is ``None`` when no validation part was asked for.
        users, items: raw id <-> index maps, fitted on the training rows only.
        cold: what was removed from val/test.
    """

    method: str
    train: pl.DataFrame
    val: pl.DataFrame | None
    test: pl.DataFrame
    users: IdMap
    items: IdMap
    cold: ColdReport

    @property
    def n_users(self) -> int:
        """U, the number of training users."""
        return self.users.size

    @property
    def n_items(self) -> int:
        """I, the number of training items."""
        return self.items.size

    def parts(self) -> dict[str, pl.DataFrame]:
        """The non-empty parts by name, in train/val/test order."""
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {name: df for name, df in named.items() if df is not None}

    def part(self, name: Part) -> pl.DataFrame:
        frame = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if frame is None:
            raise ValueError(f"split has no {name!r} part; parts: {list(self.parts())}")
        return frame

    def user_items(self, part: Part = "train") -> UserItems:
        """The items of each user in ``part`` as CSR rows over [U] users and [I] items."""
        df = self.part(part)
        return UserItems.from_pairs(
            df[USER].to_numpy(), df[ITEM].to_numpy(), self.n_users, self.n_items
        )


def _check_ratios(test_ratio: float, val_ratio: float) -> None:
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    if not 0.0 <= val_ratio < 1.0 or test_ratio + val_ratio >= 1.0:
        raise ValueError(f"val_ratio must be in [0, 1) with test+val < 1, got {val_ratio}")


def _require_unique_pairs(df: pl.DataFrame, source: str) -> None:
    duplicates = df.height - df.select(USER, ITEM).n_unique()
    if duplicates:
        raise data_error(
            source,
            f"{duplicates} duplicate (user, item) rows would leak between parts; "
            "call deduplicate() first",
        )


def _require_timestamp(df: pl.DataFrame, source: str, method: str) -> None:
    if TIMESTAMP not in df.columns:
        found = ", ".join(df.columns)
        raise data_error(
            source, f"a {method} split needs column 'timestamp'; columns found: {found}"
        )


def _rounded(count: pl.Expr, ratio: float) -> pl.Expr:
    # Half-up rounding: a user with 5 items and ratio 0.1 holds out round(0.5) = 1 item.
    return (count * ratio + 0.5).floor().cast(pl.Int64)


def _per_user_parts(
    df: pl.DataFrame, test_ratio: float, val_ratio: float, keys: np.ndarray
) -> pl.DataFrame:
    """Add ``__part`` holding out ``round(n * ratio)`` random rows of each user with n rows.

    ``keys`` [rows] are uniform draws, one per row in row order; each user's rows are ranked by
    them. Held-out counts are capped so every user keeps at least one training row (the test
    part is served first, then validation).
    """
    count = pl.len().over(USER)
    n_test = pl.min_horizontal(_rounded(count, test_ratio), count - 1)
    n_val = pl.min_horizontal(_rounded(count, val_ratio), count - 1 - n_test)
    rank = pl.col(_KEY).rank("ordinal").over(USER) - 1  # a random order within each user
    part = (
        pl.when(rank < n_test)
        .then(pl.lit(_TEST))
        .when(rank < n_test + n_val)
        .then(pl.lit(_VAL))
        .otherwise(pl.lit(_TRAIN))
    )
    return df.with_columns(pl.Series(_KEY, keys)).with_columns(part.alias(_PART)).drop(_KEY)


def _index_part(
    df: pl.DataFrame, users: IdMap, items: IdMap, train_pairs: pl.DataFrame | None, source: str
) -> tuple[pl.DataFrame, ColdCounts]:
    """Map a raw evaluation part to indices, removing and counting what train cannot score."""
    u = users.to_index(df[USER], missing="null", source=f"{source}, column 'user'")
    i = items.to_index(df[ITEM], missing="null", source=f"{source}, column 'item'")
    cold = u.is_null() | i.is_null()
    counts = dict(
        rows=int(cold.sum()),
        users=df.filter(u.is_null())[USER].n_unique(),
        items=df.filter(i.is_null())[ITEM].n_unique(),
    )
    indexed = df.with_columns(u.alias(USER), i.alias(ITEM)).filter(~cold)
    in_train = 0
    if train_pairs is not None:
        before = indexed.height
        indexed = indexed.join(train_pairs, on=[USER, ITEM], how="anti", maintain_order="left")
        in_train = before - indexed.height
    return indexed, ColdCounts(**counts, in_train_rows=in_train)


def _finish(
    method: str,
    train: pl.DataFrame,
    val: pl.DataFrame | None,
    test: pl.DataFrame,
    source: str,
    *,
    check_in_train: bool = False,
) -> Split:
    """Fit the id maps on ``train`` (raw ids) and index every part."""
    if train.height == 0:
        raise data_error(source, f"the {method} split leaves no training rows")
    users, items = IdMap.fit(train[USER]), IdMap.fit(train[ITEM])
    train_idx = train.with_columns(users.to_index(train[USER]), items.to_index(train[ITEM]))
    pairs = train_idx.select(USER, ITEM) if check_in_train else None
    val_idx, val_cold = (
        (None, None) if val is None else _index_part(val, users, items, pairs, source)
    )
    if pairs is not None and val_idx is not None:
        # A given test file may repeat a training pair that was carved into validation: it
        # must not sit in both val and test, so test is checked against train ∪ val.
        pairs = pl.concat([pairs, val_idx.select(USER, ITEM)])
    test_idx, test_cold = _index_part(test, users, items, pairs, source)
    return Split(
        method=method,
        train=train_idx,
        val=val_idx,
        test=test_idx,
        users=users,
        items=items,
        cold=ColdReport(val=val_cold, test=test_cold),
    )


def _take(df: pl.DataFrame, part: int) -> pl.DataFrame:
    return df.filter(pl.col(_PART) == part).drop(_PART)


def split_given(
    train_df: pl.DataFrame,
    test_df: pl.DataFrame,
    val_ratio: float,
    rng: np.random.Generator | None,
    *,
    source: str = "<frame>",
) -> Split:
    """Use a dataset's own train/test files; carve ``val_ratio`` of each user's train rows.

    ``val_ratio=0`` gives no validation part (the "paper" protocol) and needs no ``rng``.
    Test rows whose pair is also in train are removed and counted as ``in_train_rows``.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    _require_unique_pairs(train_df, f"{source} (train)")
    _require_unique_pairs(test_df, f"{source} (test)")
    if val_ratio == 0.0:
        return _finish("given", train_df, None, test_df, source, check_in_train=True)
    if rng is None:
        raise ValueError("carving a validation part needs rng=")
    marked = _per_user_parts(train_df, 0.0, val_ratio, rng.random(train_df.height))
    return _finish(
        "given", _take(marked, _TRAIN), _take(marked, _VAL), test_df, source, check_in_train=True
    )


def split_ratio(
    df: pl.DataFrame,
    test_ratio: float,
    val_ratio: float,
    rng: np.random.Generator,
    *,
    source: str = "<frame>",
) -> Split:
    """Hold out ``round(n * ratio)`` random rows of each user for test and for validation.

    Every user keeps at least one training row, so a user with a single row is train-only.
    ``val_ratio=0`` gives no validation part.
    """
    _check_ratios(test_ratio, val_ratio)
    _require_unique_pairs(df, source)
    marked = _per_user_parts(df, test_ratio, val_ratio, rng.random(df.height))
    val = _take(marked, _VAL) if val_ratio > 0 else None
    return _finish("ratio", _take(marked, _TRAIN), val, _take(marked, _TEST), source)


def split_temporal(
    df: pl.DataFrame, test_ratio: float, val_ratio: float, *, source: str = "<frame>"
) -> Split:
    """One global time cut: the latest ``test_ratio`` of rows are test, the ``val_ratio``
    before them validation, the rest train.

    Cuts are timestamps, so rows sharing a timestamp stay in one part and the fractions are
    approximate. Users first seen after the cut are cold and counted in the report.
    """
    _check_ratios(test_ratio, val_ratio)
    _require_timestamp(df, source, "temporal")
    _require_unique_pairs(df, source)
    times = df[TIMESTAMP].sort()
    n = df.height
    n_test = max(1, int(n * test_ratio + 0.5))
    n_val = int(n * val_ratio + 0.5) if val_ratio > 0 else 0
    test_cut = times[n - n_test]
    val_cut = times[max(n - n_test - n_val, 0)]
    ts = pl.col(TIMESTAMP)
    test = df.filter(ts >= test_cut)
    val = df.filter((ts >= val_cut) & (ts < test_cut)) if val_ratio > 0 else None
    train = df.filter(ts < (val_cut if val_ratio > 0 else test_cut))
    return _finish("temporal", train, val, test, source)


def split_leave_one_out(df: pl.DataFrame, val: bool, *, source: str = "<frame>") -> Split:
    """Each user's latest row is test and, with ``val``, the one before is validation.

    Ties in time are broken by row order (the later row counts as later).

    Raises:
        DataError: a user has too few rows to keep one for training (2, or 3 with ``val``);
            the message names the user. Filter with ``k_core(user_k=...)`` first.
    """
    _require_timestamp(df, source, "leave-one-out")
    _require_unique_pairs(df, source)
    needed = 3 if val else 2
    short = short_users(df, needed)
    if short.height:
        raise leave_one_out_error(source, short, needed)
    marked = leave_one_out_parts(df, val)
    val_df = _take(marked, _VAL) if val else None
    return _finish("leave_one_out", _take(marked, _TRAIN), val_df, _take(marked, _TEST), source)


def short_users(df: pl.DataFrame, needed: int) -> pl.DataFrame:
    """The users of ``df`` with fewer than ``needed`` rows: columns ``user``, ``len``."""
    return df.group_by(USER).len().filter(pl.col("len") < needed)


def leave_one_out_error(source: str, short: pl.DataFrame, needed: int) -> DataError:
    """The error naming the smallest user id of ``short`` (see :func:`short_users`)."""
    user, rows = short.sort(USER).row(0)
    return data_error(
        source,
        f"user {user!r} has {rows} rows, fewer than the {needed} a leave-one-out "
        f"split needs ({short.height} such users); apply k_core(user_k={needed}) first",
    )


def leave_one_out_parts(df: pl.DataFrame, val: bool) -> pl.DataFrame:
    """Add ``__part``: each user's latest row is test, with ``val`` the one before validation.

    Every user's rows are in ``df`` (a user split over two frames would lose one of them).
    """
    ordered = df.with_row_index(_ROW).sort([USER, TIMESTAMP, _ROW])
    from_end = pl.len().over(USER) - 1 - pl.int_range(pl.len()).over(USER)
    part = (
        pl.when(from_end == 0)
        .then(pl.lit(_TEST))
        .when(from_end == 1)
        .then(pl.lit(_VAL if val else _TRAIN))
        .otherwise(pl.lit(_TRAIN))
    )
    return ordered.with_columns(part.alias(_PART)).sort(_ROW).drop(_ROW)
