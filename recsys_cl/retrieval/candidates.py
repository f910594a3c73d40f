"""Top-K candidate generation through an :class:`~recsys_cl.retrieval.index.ItemIndex`:
each user's unseen items, or an item's nearest items, under business filters.

Per-row exclusions (a user's seen items, a request row's ``exclude`` list, a query item itself)
are over-fetch and filter: a row with ``s`` excluded items is searched for ``k' = K + s`` items
(rounded up to a power of two, so one chunk of users makes a handful of FAISS calls instead of
one per distinct ``s``), excluded items are dropped and the first K that remain are kept. With
an exact index the ``K + s`` best always hold the K best eligible items, so the result equals
full ranking with those items masked; with an ANN index it is as good as the index's own
top-``k'``. Per-query FAISS ID selectors would avoid the over-fetch but cost one FAISS call per
row, which is far slower for batches.

A model-wide allow-list is one FAISS ID selector for the whole batch (see
:mod:`~recsys_cl.retrieval.filters`); only allowed excluded items count towards ``s``.

An ANN index can return fewer than K eligible items (an IVF search's ``nprobe`` lists may hold
too few allowed items, an HNSW walk may stop short); given the item embeddings, such a row is
answered by exact filtered search instead (:func:`~recsys_cl.retrieval.filters.
exact_filtered_top_k`), so a row always gets K items when K eligible items exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_cl.data.user_items import UserItems
from recsys_cl.progress import progress as show_progress

from .filters import AllowList, PairSet, exact_filtered_top_k
from .index import ItemIndex, as_matrix

# Users per search call: large enough for FAISS's batched BLAS path, small enough that the
# over-fetched [B, k'] results of heavy users stay a few MB.
DEFAULT_CHUNK_USERS = 4096


@dataclass(frozen=True)
class Candidates:
    """The top-K eligible items of a batch of queries, best first.

    Attributes:
        users: int64 [B] user indices (the query item indices, from :func:`similar_items`).
        items: int64 [B, K] item indices; -1 past the end of a row's list (fewer than K
            eligible items, or fewer hits from an ANN index searched without a fallback).
        scores: float32 [B, K], the index's score (inner product, or cosine); NaN where
            ``items`` is -1.
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def counts(self) -> np.ndarray:
        """Candidates per user, int64 [B]."""
        return (self.items >= 0).sum(axis=1)

    @classmethod
    def concat(cls, parts: Sequence[Candidates], k: int) -> Candidates:
        if not parts:
            return cls(
                users=np.zeros(0, dtype=np.int64),
                items=np.zeros((0, k), dtype=np.int64),
                scores=np.zeros((0, k), dtype=np.float32),
            )
        return cls(
            users=np.concatenate([p.users for p in parts]),
            items=np.concatenate([p.items for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
        )


def fetch_sizes(k: int, n_seen: np.ndarray, n_items: int) -> np.ndarray:
    """Per-row search length: ``K + excluded`` rounded up to a power of two, at most
    ``n_items`` (the items a search can return: I, or the allow-list's size)."""
    need = np.minimum(k + np.asarray(n_seen, dtype=np.int64), n_items)
    rounded = np.left_shift(1, np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64))
    return np.maximum(np.minimum(rounded, n_items), min(k, n_items))


def search_filtered(
    index: ItemIndex,
    queries: np.ndarray,
    k: int,
    *,
    exclude: PairSet | None = None,
    keys: np.ndarray | None = None,
    allow: AllowList | None = None,
    item_emb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` eligible items of each query: allowed (``allow``; None allows all) and not
    among the pairs of ``exclude`` keyed by ``keys[b]`` (a user's seen items: keys = users;
    per-row lists: keys = rows, the default).

    Args:
        queries: float32 [B, D]. k: list length, cut to I.
        keys: int64 [B] keys into ``exclude`` (-1: nothing excluded).
        item_emb: float32 [I, D], the indexed vectors: a row the index returns fewer than
            min(k, eligible) items for is searched exactly instead. None keeps the index's
            short list.

    Returns:
        items int64 [B, K] (K = min(k, I); -1 past the end of a short list) and scores
        float32 [B, K] (NaN there), best first.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    n_items = index.n_items
    k = min(k, n_items)
    n_rows = len(queries)
    keys = np.arange(n_rows, dtype=np.int64) if keys is None else np.asarray(keys, np.int64)
    out_items = np.full((n_rows, k), -1, dtype=np.int64)
    out_scores = np.full((n_rows, k), np.nan, dtype=np.float32)
    cap = n_items if allow is None else allow.n_allowed
    if n_rows == 0 or cap == 0:
        return out_items, out_scores
    n_excluded = _excluded_counts(exclude, keys, allow)
    sizes = fetch_sizes(k, n_excluded, cap)
    selector = None if allow is None else allow.selector
    for size in np.unique(sizes):
        rows = np.flatnonzero(sizes == size)
        scores, items = index.search(queries[rows], int(size), selector=selector)
        drop = items < 0
        if exclude is not None:
            drop |= exclude.contains(keys[rows], items)
        # A stable sort of the drop mask moves kept items to the front in rank order.
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        dropped = np.take_along_axis(drop, order, axis=1)
        width = order.shape[1]  # below k when the allow-list is shorter than k
        out_items[rows, :width] = np.where(dropped, -1, np.take_along_axis(items, order, axis=1))
        out_scores[rows, :width] = np.where(
            dropped, np.nan, np.take_along_axis(scores, order, axis=1)
        )
    if item_emb is not None:
        want = np.minimum(k, cap - n_excluded)
        short = np.flatnonzero((out_items >= 0).sum(axis=1) < want)
        if short.size:
            row_pairs = None
            if exclude is not None:
                positions, items = exclude.pairs_of(keys[short])
                row_pairs = PairSet.from_pairs(positions, items, short.size, n_items)
            out_items[short], out_scores[short] = exact_filtered_top_k(
                queries[short], item_emb, k, metric=index.metric, exclude=row_pairs, allow=allow
            )
    return out_items, out_scores


def _excluded_counts(
    exclude: PairSet | None, keys: np.ndarray, allow: AllowList | None
) -> np.ndarray:
    """int64 [B]: excluded items of each row that the search could otherwise return."""
    if exclude is None:
        return np.zeros(len(keys), dtype=np.int64)
    if allow is None:
        return np.where(keys >= 0, exclude.counts[np.maximum(keys, 0)], 0)
    positions, items = exclude.pairs_of(keys)
    return np.bincount(positions[allow.mask[items]], minlength=len(keys)).astype(np.int64)


def candidates_for(
    index: ItemIndex,
    user_emb: np.ndarray,
    users: np.ndarray,
    k: int,
    seen: PairSet | None = None,
    *,
    allow: AllowList | None = None,
    item_emb: np.ndarray | None = None,
) -> Candidates:
    """The top-``k`` items of ``users`` (indices into ``user_emb`` [U, D]) not in ``seen``
    and, with ``allow``, allowed (see :func:`search_filtered` for ``item_emb``).

    ``k`` above I is cut to I. One call searches all ``users`` (see :func:`iter_candidates`
    for chunking).
    """
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    items, scores = search_filtered(
        index, user_emb[users], k, exclude=seen, keys=users, allow=allow, item_emb=item_emb
    )
    return Candidates(users=users, items=items, scores=scores)


def similar_items(
    index: ItemIndex,
    item_emb: Any,
    items: np.ndarray | Sequence[int],
    k: int,
    *,
    exclude: PairSet | None = None,
    allow: AllowList | None = None,
) -> Candidates:
    """The ``k`` items nearest to each of ``items`` (indices into ``item_emb`` [I, D], the
    embeddings the index was built from) by the index's metric, the item itself excluded.

    Args:
        exclude: further items per query row (keyed by the row's position in ``items``).
        allow: only these items are returned.

    Returns:
        :class:`Candidates` whose ``users`` are the query item indices [B]; items [B, K] with
        K = min(k, I), -1 past the end of a short list.
    """
    vectors = as_matrix(item_emb, "item embeddings")
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    if items.size and (items.min() < 0 or items.max() >= index.n_items):
        raise ValueError(f"items contains an index outside [0, {index.n_items})")
    rows = np.arange(len(items), dtype=np.int64)
    pair_rows, pair_items = [rows], [items]
    if exclude is not None:
        positions, extra = exclude.pairs_of(rows)
        pair_rows.append(positions)
        pair_items.append(extra)
    own = PairSet.from_pairs(
        np.concatenate(pair_rows), np.concatenate(pair_items), len(items), index.n_items
    )
    found, scores = search_filtered(
        index, vectors[items], k, exclude=own, allow=allow, item_emb=vectors
    )
    return Candidates(users=items, items=found, scores=scores)


def iter_candidates(
    index: ItemIndex,
    user_emb: object,
    users: np.ndarray | Sequence[int] | None = None,
    *,
    k: int = 20,
    exclude: UserItems | Sequence[UserItems] | PairSet | None = None,
    allow: AllowList | None = None,
    item_emb: object = None,
    chunk_size: int = DEFAULT_CHUNK_USERS,
    progress: bool = False,
) -> Iterator[Candidates]:
    """:func:`candidates_for` over ``users`` (default: all) in chunks of ``chunk_size``.

    Args:
        index: the item index. user_emb: float [U, D] (numpy or torch).
        users: user indices to score, in output order.
        k: candidates per user.
        exclude: items never returned (each user's seen items): UserItems tables (U x I) whose
            union is excluded, a prepared :class:`PairSet`, or None.
        allow: the only items returned (:class:`~recsys_cl.retrieval.filters.AllowList`).
        item_emb: float [I, D], the indexed item embeddings: a user an ANN index returns too
            few eligible items for is searched exactly (None: the index's short list stays).
        progress: report progress over users (:func:`recsys_cl.progress.progress`).
    """
    queries = as_matrix(user_emb, "user embeddings")
    n_users = queries.shape[0]
    if queries.shape[1] != index.dim:
        raise ValueError(f"user embeddings have D={queries.shape[1]}, the index D={index.dim}")
    selected = (
        np.arange(n_users, dtype=np.int64)
        if users is None
        else np.asarray(users, dtype=np.int64).reshape(-1)
    )
    if selected.size and (selected.min() < 0 or selected.max() >= n_users):
        raise ValueError(f"users contains an index outside [0, {n_users})")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    seen = (
        exclude
        if isinstance(exclude, PairSet) or exclude is None
        else (PairSet.from_tables(exclude, n_users, index.n_items))
    )
    if seen is not None and (seen.n_users, seen.n_items) != (n_users, index.n_items):
        raise ValueError("exclude does not match the user embeddings and the index")
    items = None if item_emb is None else as_matrix(item_emb, "item embeddings")
    with show_progress(total=len(selected), desc="recommend", unit="user", enabled=progress) as bar:
        for start in range(0, len(selected), chunk_size):
            chunk = selected[start : start + chunk_size]
            yield candidates_for(index, queries, chunk, k, seen, allow=allow, item_emb=items)
            bar.update(len(chunk))


def top_k_candidates(
    index: ItemIndex,
    user_emb: object,
    users: np.ndarray | Sequence[int] | None = None,
    *,
    k: int = 20,
    exclude: UserItems | Sequence[UserItems] | PairSet | None = None,
    allow: AllowList | None = None,
    item_emb: object = None,
    chunk_size: int = DEFAULT_CHUNK_USERS,
    progress: bool = False,
) -> Candidates:
    """All of :func:`iter_candidates` as one :class:`Candidates`."""
    parts = list(
        iter_candidates(
            index,
            user_emb,
            users,
            k=k,
            exclude=exclude,
            allow=allow,
            item_emb=item_emb,
            chunk_size=chunk_size,
            progress=progress,
        )
    )
    return Candidates.concat(parts, min(k, index.n_items))


def most_popular(train: UserItems, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items with the most training users, ties to the lower item index (as
    :func:`recsys_cl.metrics.most_popular_scores` ranks them).

    Returns:
        item indices int64 [min(k, I)] and their training-user counts as float32 scores.
    """
    popularity = np.bincount(train.indices, minlength=train.n_items)
    order = np.lexsort((np.arange(train.n_items), -popularity))[: min(k, train.n_items)]
    return order.astype(np.int64), popularity[order].astype(np.float32)
