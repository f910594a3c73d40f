"""Preprocessing of canonical frames: implicit feedback, deduplication and k-core filtering.

All functions take a canonical frame (see :mod:`recsys_cl.data.frame`), return a new one and
never mutate their input. Row order is kept where rows are only removed.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from recsys_cl.data.frame import ITEM, RATING, TIMESTAMP, USER, data_error

Keep = Literal["latest", "first", "sum"]
_ROW = "__row"


def to_implicit(
    df: pl.DataFrame, threshold: float | None, *, source: str = "<frame>"
) -> pl.DataFrame:
    """Keep the interactions whose ``rating >= threshold`` (the rating column is kept as weight).

    ``threshold=None`` returns ``df`` unchanged: every logged interaction is a positive.

    Raises:
        DataError: ``threshold`` is set but ``df`` has no ``rating`` column, or a rating is
            null, NaN or negative (named by ``source``, column and row).
    """
    if threshold is None:
        return df
    if RATING not in df.columns:
        found = ", ".join(df.columns)
        raise data_error(
            source, f"an implicit threshold needs column {RATING!r}; columns found: {found}"
        )
    ratings = df[RATING]
    invalid = ratings.is_null() | ratings.is_nan() | (ratings < 0)
    if invalid.any():
        row = int(invalid.arg_true()[0])
        raise data_error(
            source, f"row {row}, column {RATING!r}: rating {ratings[row]} is null, NaN or negative"
        )
    return df.filter(pl.col(RATING) >= threshold)


def deduplicate(df: pl.DataFrame, keep: Keep = "latest") -> pl.DataFrame:
    """One row per ``(user, item)`` pair.

    Args:
        keep: ``"latest"`` keeps the row with the largest timestamp (the last in file order
            when there is no timestamp or on ties); ``"first"`` the smallest (first in file
            order); ``"sum"`` merges the rows: ``rating`` becomes their sum (the number of
            rows when there is no rating column) and ``timestamp`` the latest.

    Returns:
        A frame with unique pairs; for ``latest``/``first`` rows keep their relative order,
        for ``sum`` pairs appear in order of first occurrence.
    """
    if keep not in ("latest", "first", "sum"):
        raise ValueError(f"keep must be 'latest', 'first' or 'sum', got {keep!r}")
    indexed = df.with_row_index(_ROW)
    if keep == "sum":
        aggs = [
            pl.col(RATING).sum()
            if RATING in df.columns
            else pl.len().cast(pl.Float64).alias(RATING)
        ]
        if TIMESTAMP in df.columns:
            aggs.append(pl.col(TIMESTAMP).max())
        aggs.append(pl.col(_ROW).min())
        merged = indexed.group_by([USER, ITEM]).agg(aggs).sort(_ROW)
        order = [c for c in (USER, ITEM, TIMESTAMP, RATING) if c in merged.columns]
        return merged.select(order)
    by = [TIMESTAMP, _ROW] if TIMESTAMP in df.columns else [_ROW]
    unique_keep: Literal["first", "last"] = "last" if keep == "latest" else "first"
    kept = indexed.sort(by).unique(subset=[USER, ITEM], keep=unique_keep)
    return kept.sort(_ROW).drop(_ROW)


def k_core(df: pl.DataFrame, user_k: int, item_k: int, *, source: str = "<frame>") -> pl.DataFrame:
    """The largest sub-log in which every user has >= ``user_k`` and every item >= ``item_k`` rows.

    Rows are counted, so deduplicate first to count distinct items. Users and items below
    their threshold are removed together each round until nothing changes; the result does not
    depend on removal order because the k-core is the unique maximal subgraph meeting both bounds.

    Raises:
        DataError: nothing survives the filter.
    """
    if user_k < 0 or item_k < 0:
        raise ValueError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    if user_k <= 1 and item_k <= 1:
        return df  # every present user and item already has one row
    keep = (pl.len().over(USER) >= user_k) & (pl.len().over(ITEM) >= item_k)
    current = df
    while True:
        filtered = current.filter(keep)
        if filtered.height == current.height:
            break
        current = filtered
    if current.height == 0:
        raise data_error(
            source, f"no interactions survive the k-core filter (user_k={user_k}, item_k={item_k})"
        )
    return current
