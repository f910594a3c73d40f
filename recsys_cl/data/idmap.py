"""Bijection between raw ids (int or str) and contiguous indices ``0..n-1``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import polars as pl

from recsys_cl.data.frame import data_error, shown
from recsys_cl.errors import DataError
from recsys_cl.io import atomic_path, read_table

Missing = Literal["error", "null"]
RawIds = pl.Series | np.ndarray | Sequence[Any]
_RAW = "raw"
_INDEX = "index"


def _as_series(values: RawIds, name: str) -> pl.Series:
    if isinstance(values, pl.Series):
        return values.alias(name)
    return pl.Series(name, np.asarray(values) if not isinstance(values, np.ndarray) else values)


@dataclass(frozen=True, eq=False)
class IdMap:
    """Raw ids in index order: index ``i`` stands for ``raw[i]``.

    The order is the *sorted* order of the raw ids (not first appearance): it does not depend
    on row order, and ids that already are ``0..n-1`` integers (the LightGCN files) map to
    themselves.

    Attributes:
        raw: ``Int64`` or ``Utf8`` polars Series [n], sorted, unique, no nulls.
    """

    raw: pl.Series

    def __post_init__(self) -> None:
        raw = self.raw
        if raw.dtype not in (pl.Int64, pl.String):
            raise ValueError(f"IdMap ids must be Int64 or Utf8, got {raw.dtype}")
        if raw.null_count() or not raw.is_sorted() or raw.n_unique() != raw.len():
            raise ValueError("IdMap ids must be sorted, unique and non-null; build it with fit()")

    @classmethod
    def fit(cls, raw_ids: RawIds) -> IdMap:
        """The map of the distinct ids in ``raw_ids`` (any order, repeats allowed)."""
        s = _as_series(raw_ids, _RAW)
        if s.dtype.is_integer():
            s = s.cast(pl.Int64)
        elif s.dtype != pl.String:
            raise ValueError(f"raw ids must be integers or strings, got {s.dtype}")
        if s.null_count():
            raise ValueError("raw ids contain nulls")
        return cls(s.unique().sort())

    def __len__(self) -> int:
        return self.raw.len()

    @property
    def size(self) -> int:
        """Number of ids n."""
        return self.raw.len()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.raw.equals(other.raw)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking Series content: not hashable

    def __repr__(self) -> str:
        return f"IdMap(n={self.size}, dtype={self.raw.dtype})"

    @overload
    def to_index(
        self, raw: pl.Series, *, missing: Missing = ..., source: str = ...
    ) -> pl.Series: ...

    @overload
    def to_index(
        self, raw: np.ndarray | Sequence[Any], *, missing: Missing = ..., source: str = ...
    ) -> np.ndarray: ...

    def to_index(
        self, raw: RawIds, *, missing: Missing = "error", source: str = "<ids>"
    ) -> pl.Series | np.ndarray:
        """Indices of ``raw`` ids; same kind as the input (polars Series in, Series out).

        Args:
            raw: ids [B] of the map's type.
            missing: ``"error"`` raises on an unknown id; ``"null"`` returns null for it in a
                Series and ``-1`` in a numpy array (which has no null).

        Returns:
            ``Int64`` Series [B] or int64 ndarray [B].

        Raises:
            DataError: an unknown id with ``missing="error"``, or ids of the wrong type.
        """
        if missing not in ("error", "null"):
            raise ValueError(f"missing must be 'error' or 'null', got {missing!r}")
        s = _as_series(raw, _RAW)
        if s.len() == 0 or s.dtype == pl.Null:
            s = s.cast(self.raw.dtype)
        elif s.dtype.is_integer() and self.raw.dtype == pl.Int64:
            s = s.cast(pl.Int64)
        elif s.dtype != self.raw.dtype:
            raise data_error(
                source, f"ids of type {s.dtype} cannot index a map of {self.raw.dtype} ids"
            )
        positions = pl.int_range(self.size, dtype=pl.Int64, eager=True)
        index = s.replace_strict(self.raw, positions, default=None, return_dtype=pl.Int64)
        unknown = index.is_null()
        if missing == "error" and unknown.any():
            first = int(unknown.arg_true()[0])
            count = int(unknown.sum())
            raise data_error(
                source, f"{count} unknown ids, the first {shown(s[first])} at position {first}"
            )
        if isinstance(raw, pl.Series):
            return index.alias(raw.name)
        return index.fill_null(-1).to_numpy()

    @overload
    def to_raw(self, index: pl.Series) -> pl.Series: ...

    @overload
    def to_raw(self, index: np.ndarray | Sequence[int]) -> np.ndarray: ...

    def to_raw(self, index: pl.Series | np.ndarray | Sequence[int]) -> pl.Series | np.ndarray:
        """Raw ids of ``index`` [B] (Series in, Series out; else a numpy array)."""
        idx = _as_series(index, _INDEX)
        if idx.len() == 0:
            idx = idx.cast(pl.Int64)  # an empty list or array carries no integer dtype
        valid = idx.dtype.is_integer() and not idx.null_count()
        if not valid or not idx.is_between(0, self.size - 1).all():
            raise DataError(f"indices must be integers in [0, {self.size}), without nulls")
        out = self.raw.gather(idx.cast(pl.Int64))
        return out.alias(index.name) if isinstance(index, pl.Series) else out.to_numpy()

    def save(self, path: str | Path) -> None:
        """Write the map as Parquet (columns ``index``, ``raw``), atomically."""
        positions = pl.int_range(self.size, dtype=pl.Int64, eager=True)
        frame = pl.DataFrame({_INDEX: positions, _RAW: self.raw})
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        """Read a map written by :meth:`save`.

        Raises:
            DataError: the file is missing, unreadable or not a valid id map.
        """
        path = Path(path)
        frame = read_table(path, [_INDEX, _RAW], missing="id map file not found")
        expected = pl.int_range(frame.height, dtype=pl.Int64, eager=True)
        if not frame[_INDEX].cast(pl.Int64).equals(expected.alias(_INDEX)):
            raise data_error(str(path), "id map indices are not 0..n-1 in order")
        try:
            return cls(frame[_RAW])
        except ValueError as exc:
            raise data_error(str(path), f"invalid id map: {exc}") from exc


@dataclass(frozen=True, eq=False)
class IdAlignment:
    """Where the ids of an old map sit in a new one, matched by raw id (warm start).

    Attributes:
        old_index: int64 [K], the old map's indices of the ids both maps hold, ascending.
        new_index: int64 [K], the same ids' indices in the new map (``new_index[k]`` and
            ``old_index[k]`` stand for one raw id; the two orders need not agree).
        n_old, n_new_map: the sizes of the old and new maps.
    """

    old_index: np.ndarray
    new_index: np.ndarray
    n_old: int
    n_new_map: int

    @property
    def copied(self) -> int:
        """K, the ids in both maps."""
        return int(self.old_index.size)

    @property
    def new(self) -> int:
        """Ids only the new map holds."""
        return self.n_new_map - self.copied

    @property
    def dropped(self) -> int:
        """Ids only the old map holds."""
        return self.n_old - self.copied


def align(old: IdMap, new: IdMap, *, source: str = "<ids>") -> IdAlignment:
    """Match ``old``'s ids to ``new``'s by raw id.

    Raises:
        DataError: the maps hold ids of different types (int vs str), named by ``source``.
    """
    if old.raw.dtype != new.raw.dtype:
        raise data_error(
            source, f"ids of type {old.raw.dtype} cannot be matched to {new.raw.dtype} ids"
        )
    at = new.to_index(old.raw, missing="null", source=source)
    known = at.is_not_null()
    # Copies: polars hands out read-only views, which torch.from_numpy warns about.
    old_index = np.array(known.arg_true().cast(pl.Int64).to_numpy(), dtype=np.int64)
    new_index = np.array(at.filter(known).cast(pl.Int64).to_numpy(), dtype=np.int64)
    return IdAlignment(old_index, new_index, old.size, new.size)
