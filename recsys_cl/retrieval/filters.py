"""What a search must not return: per-row exclusions (:class:`PairSet`: each user's seen items,
a request row's ``exclude`` list, a query item itself) and a model-wide allow-list
(:class:`AllowList`), and the exact filtered search both are checked against.

The two filters reach FAISS differently, each the way that keeps a batch one FAISS call:

- an **allow-list** is the same for every query of a batch, so it is one FAISS ID selector
  (``IDSelectorBitmap``, one bit per item) passed with the search
  (:meth:`~recsys_cl.retrieval.index.ItemIndex.search`): only allowed items are ever scored
  into a result, whatever fraction of the catalogue is allowed;
- **per-row exclusions** differ by row, and FAISS takes one selector per call, so they are
  over-fetched and filtered (:func:`~recsys_cl.retrieval.candidates.search_filtered`): a row
  with ``s`` excluded (allowed) items is searched for ``K + s``.

Through a flat index the pair is exact: the ``K + s`` best allowed items hold the K best
eligible ones. :func:`exact_filtered_top_k` is that result computed directly (the oracle of the
tests, and the fallback for a row an ANN index under-fills).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from recsys_cl.data.user_items import UserItems

# Rows scored at once by the exact fallback: rows x I float32 scores (32 MB at 1M items).
_EXACT_CHUNK_ROWS = 8


@dataclass(frozen=True)
class PairSet:
    """A set of (key, item) pairs for vectorized membership tests: each user's seen items
    (key = user), or each request row's excluded items (key = row).

    Attributes:
        counts: int64 [U], pairs per key.
        keys: int64 [nnz], sorted ``key * I + item``.
        n_items: I.
    """

    counts: np.ndarray
    keys: np.ndarray
    n_items: int

    @classmethod
    def from_tables(
        cls, tables: UserItems | Sequence[UserItems] | None, n_users: int, n_items: int
    ) -> PairSet:
        """The union of ``tables`` (each U x I); None or ``[]`` is the empty set."""
        if tables is None:
            tables = []
        elif isinstance(tables, UserItems):
            tables = [tables]
        parts = []
        for table in tables:
            if table.n_users != n_users or table.n_items != n_items:
                raise ValueError(
                    f"a table of {table.n_users} users x {table.n_items} items does not fit "
                    f"{n_users} users x {n_items} items"
                )
            parts.append(table.rows() * n_items + table.indices)
        keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        return cls._of_keys(keys, n_users, n_items)

    @classmethod
    def from_pairs(cls, rows: np.ndarray, items: np.ndarray, n_rows: int, n_items: int) -> PairSet:
        """The set of pairs ``(rows[j], items[j])`` (duplicates kept once). Shapes: [P] each."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        return cls._of_keys(np.unique(rows * n_items + items), n_rows, n_items)

    @classmethod
    def _of_keys(cls, keys: np.ndarray, n_rows: int, n_items: int) -> PairSet:
        keys = keys.astype(np.int64, copy=False)
        counts = np.bincount(keys // max(n_items, 1), minlength=n_rows).astype(np.int64)
        return cls(counts=counts, keys=keys, n_items=n_items)

    @property
    def n_users(self) -> int:
        return len(self.counts)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool [B, K]: whether ``(users[b], items[b, j])`` is in the set (item -1: False).

        Shapes: ``users`` int64 [B]; ``items`` int64 [B, K].
        """
        items = np.asarray(items, dtype=np.int64)
        if self.keys.size == 0:
            return np.zeros(items.shape, dtype=bool)
        query = np.asarray(users, dtype=np.int64)[:, None] * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, query), self.keys.size - 1)
        return (self.keys[pos] == query) & (items >= 0)

    def pairs_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs of ``users`` [B] (an entry -1 has none) as (position in ``users``, item),
        int64 [P] each, grouped by position."""
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        known = users >= 0
        counts = np.where(known, self.counts[np.where(known, users, 0)], 0)
        starts = np.searchsorted(self.keys, np.where(known, users, 0) * self.n_items)
        positions = np.repeat(np.arange(len(users), dtype=np.int64), counts)
        offsets = np.arange(positions.size, dtype=np.int64) - np.repeat(
            np.cumsum(counts) - counts, counts
        )
        items = self.keys[np.repeat(starts, counts) + offsets] % max(self.n_items, 1)
        return positions, items

    def restrict(self, allowed: np.ndarray) -> PairSet:
        """The pairs whose item is ``allowed`` (bool [I]): what a search under that allow-list
        can still meet, so each count is the over-fetch it needs."""
        keep = allowed[self.keys % max(self.n_items, 1)]
        return PairSet._of_keys(self.keys[keep], self.n_users, self.n_items)


@dataclass(frozen=True, eq=False)
class AllowList:
    """The only items a search may return (a business allow-list, fixed per model).

    Attributes:
        mask: bool [I], True for an allowed item.
        bitmap: uint8 [ceil(I / 8)], ``mask`` packed little-endian, as FAISS's
            ``IDSelectorBitmap`` reads it (it holds a pointer to this array).
        selector: the ``faiss.IDSelectorBitmap`` over ``bitmap``.
    """

    mask: np.ndarray
    bitmap: np.ndarray
    selector: Any

    @classmethod
    def of_items(cls, items: np.ndarray | Sequence[int], n_items: int) -> AllowList:
        """The allow-list of item indices ``items`` (duplicates are one) out of ``n_items``."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"allowed item index out of range [0, {n_items})")
        mask = np.zeros(n_items, dtype=bool)
        mask[items] = True
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        return cls(mask=mask, bitmap=bitmap, selector=selector)

    @property
    def n_allowed(self) -> int:
        return int(self.mask.sum())

    @property
    def items(self) -> np.ndarray:
        """The allowed item indices, int64 ascending."""
        return np.flatnonzero(self.mask).astype(np.int64)


def exact_filtered_top_k(
    queries: np.ndarray,
    item_emb: np.ndarray,
    k: int,
    *,
    metric: str = "ip",
    exclude: PairSet | None = None,
    allow: AllowList | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` eligible items of each query: scored against every item (inner
    product, or cosine: both sides normalized), disallowed items and row ``b``'s pairs in
    ``exclude`` (keyed by row) left out; within the list, equal scores go to the lower item
    index first.

    Shapes: ``queries`` float32 [B, D], ``item_emb`` float32 [I, D].

    Returns:
        items int64 [B, min(k, I)] (-1 past a row's eligible items) and scores float32 (NaN
        there).
    """
    n_items = item_emb.shape[0]
    k = min(k, n_items)
    out_items = np.full((len(queries), k), -1, dtype=np.int64)
    out_scores = np.full((len(queries), k), np.nan, dtype=np.float32)
    norms = np.linalg.norm(item_emb, axis=1) if metric == "cosine" else None
    for start in range(0, len(queries), _EXACT_CHUNK_ROWS):
        q = np.asarray(queries[start : start + _EXACT_CHUNK_ROWS], dtype=np.float32)
        if norms is not None:
            q_norms = np.linalg.norm(q, axis=1, keepdims=True)
            q = np.divide(q, q_norms, out=np.zeros_like(q), where=q_norms > 0)
        scores = q @ item_emb.T
        if norms is not None:
            np.divide(scores, norms, out=scores, where=norms > 0)
            scores[:, norms == 0] = 0.0
        if allow is not None:
            scores[:, ~allow.mask] = -np.inf
        if exclude is not None:
            rows, items = exclude.pairs_of(np.arange(start, start + len(q)))
            scores[rows, items] = -np.inf
        # Best first, ties to the lower index: sort by (-score, index) over a partition.
        part = (
            np.argpartition(-scores, k - 1, axis=1)[:, :k]
            if k < n_items
            else (np.broadcast_to(np.arange(n_items), scores.shape))
        )
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        top = np.take_along_axis(part, order, axis=1)
        top_scores = np.take_along_axis(part_scores, order, axis=1)
        ok = np.isfinite(top_scores)
        out_items[start : start + len(q)] = np.where(ok, top, -1)
        out_scores[start : start + len(q)] = np.where(ok, top_scores, np.nan)
    return out_items, out_scores


__all__ = ["AllowList", "PairSet", "exact_filtered_top_k"]
