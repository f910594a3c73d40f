"""Top-K candidate generation through an :class:`~recsys_cl.retrieval.index.ItemIndex`, with
each user's seen items excluded.

Exclusion is over-fetch and filter: a user with ``s`` seen items is searched for
``k' = K + s`` items (rounded up to a power of two, so one chunk of users makes a handful of
FAISS calls instead of one per distinct ``s``), seen items are dropped and the first K that
remain are kept. With an exact index the ``K + s`` best always hold the K best unseen items,
so the result equals full ranking with seen items masked; with an ANN index it is as good as
the index's own top-``k'``. Per-query FAISS ID selectors would avoid the over-fetch but cost
one FAISS call per user, which is far slower for batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recsys_cl.data.user_items import UserItems
from recsys_cl.progress import progress as show_progress

from .index import ItemIndex, as_matrix

# Users per search call: large enough for FAISS's batched BLAS path, small enough that the
# over-fetched [B, k'] results of heavy users stay a few MB.
DEFAULT_CHUNK_USERS = 4096


@dataclass(frozen=True)
class PairSet:
    """A set of (user, item) pairs for vectorized membership tests, e.g. each user's seen items.

    Attributes:
        counts: int64 [U], pairs per user.
        keys: int64 [nnz], sorted ``user * I + item``.
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
        counts = np.bincount(keys // max(n_items, 1), minlength=n_users).astype(np.int64)
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


@dataclass(frozen=True)
class Candidates:
    """The top-K unseen items of a batch of users, best first.

    Attributes:
        users: int64 [B] user indices.
        items: int64 [B, K] item indices; -1 past the end of a user's list (fewer than K
            unseen items, or fewer hits from an ANN index).
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
    """Per-user search length: ``K + seen`` rounded up to a power of two, at most I."""
    need = np.minimum(k + np.asarray(n_seen, dtype=np.int64), n_items)
    rounded = np.left_shift(1, np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64))
    return np.maximum(np.minimum(rounded, n_items), min(k, n_items))


def candidates_for(
    index: ItemIndex,
    user_emb: np.ndarray,
    users: np.ndarray,
    k: int,
    seen: PairSet | None = None,
) -> Candidates:
    """The top-``k`` items of ``users`` (indices into ``user_emb`` [U, D]) not in ``seen``.

    ``k`` above I is cut to I. One call searches all ``users`` (see :func:`iter_candidates`
    for chunking).
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    k = min(k, index.n_items)
    out_items = np.full((len(users), k), -1, dtype=np.int64)
    out_scores = np.full((len(users), k), np.nan, dtype=np.float32)
    if len(users) == 0:
        return Candidates(users=users, items=out_items, scores=out_scores)
    n_seen = seen.counts[users] if seen is not None else np.zeros(len(users), dtype=np.int64)
    sizes = fetch_sizes(k, n_seen, index.n_items)
    for size in np.unique(sizes):
        rows = np.flatnonzero(sizes == size)
        scores, items = index.search(user_emb[users[rows]], int(size))
        drop = items < 0
        if seen is not None:
            drop |= seen.contains(users[rows], items)
        # A stable sort of the drop mask moves kept items to the front in rank order.
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        dropped = np.take_along_axis(drop, order, axis=1)
        out_items[rows] = np.where(dropped, -1, np.take_along_axis(items, order, axis=1))
        out_scores[rows] = np.where(dropped, np.nan, np.take_along_axis(scores, order, axis=1))
    return Candidates(users=users, items=out_items, scores=out_scores)


def iter_candidates(
    index: ItemIndex,
    user_emb: object,
    users: np.ndarray | Sequence[int] | None = None,
    *,
    k: int = 20,
    exclude: UserItems | Sequence[UserItems] | PairSet | None = None,
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
    seen = exclude if isinstance(exclude, PairSet) or exclude is None else (
        PairSet.from_tables(exclude, n_users, index.n_items)
    )
    if seen is not None and (seen.n_users, seen.n_items) != (n_users, index.n_items):
        raise ValueError("exclude does not match the user embeddings and the index")
    with show_progress(
        total=len(selected), desc="recommend", unit="user", enabled=progress
    ) as bar:
        for start in range(0, len(selected), chunk_size):
            chunk = selected[start : start + chunk_size]
            yield candidates_for(index, queries, chunk, k, seen)
            bar.update(len(chunk))


def top_k_candidates(
    index: ItemIndex,
    user_emb: object,
    users: np.ndarray | Sequence[int] | None = None,
    *,
    k: int = 20,
    exclude: UserItems | Sequence[UserItems] | PairSet | None = None,
    chunk_size: int = DEFAULT_CHUNK_USERS,
    progress: bool = False,
) -> Candidates:
    """All of :func:`iter_candidates` as one :class:`Candidates`."""
    parts = list(
        iter_candidates(
            index, user_emb, users, k=k, exclude=exclude, chunk_size=chunk_size, progress=progress
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
