"""The candidate model: top-K unseen items for raw user ids, the K nearest items for raw item
ids, under business filters, and the bundle it is saved as.

One object serves every path: ``recsys-cl recommend`` / ``recsys-cl similar`` build it from a
run folder and write its lists to Parquet, and the MLflow model
(:mod:`recsys_cl.serving.pyfunc_code`, a thin shell) loads it from a *candidate bundle*, a
folder that needs neither the run nor its config::

    bundle.json               format, default k, request limits, cold-start policy, metric,
                              id types, counts (n_allowed: the allow-list's size, or null)
    user_embeddings.parquet   user_id (raw) + embedding, in index order (= the run's id map)
    item_embeddings.parquet   item_id (raw) + embedding, in index order
    seen.parquet              user_id, item_id: the masked pairs (train + validation)
    popular.parquet           item_id, score: every item, most training users first
    allowed.parquet           item_id: the only items ever returned (only with an allow-list)
    fold_in_items.parquet     item_id, degree, layer_0..layer_{L-1}: what LightGCN-based fold-in
    fold_in_users.parquet     user_id, ego: propagates (only for those methods; see
                              :mod:`recsys_cl.retrieval.fold_in`)
    index.faiss, index.json   the FAISS index and its metadata (:mod:`recsys_cl.retrieval.store`)

Requests are read by :mod:`recsys_cl.retrieval.request`; the filters are applied as
:mod:`recsys_cl.retrieval.filters` describes.

Nothing is pickled and this module never imports ``mlflow``, so the model is tested and usable
without a tracking server.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from recsys_cl.config.retrieval import is_positive_int
from recsys_cl.data import IdMap, UserItems
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.io import atomic_dir, read_table, write_json

from .bundle import (
    ALLOWED_FILE,
    BUNDLE_FILE,
    FORMAT,
    FORMAT_VERSION,
    IN_BUNDLE,
    INDEX_FILE,
    ITEM_FILE,
    POPULAR_FILE,
    SEEN_FILE,
    USER_FILE,
    BundleInfo,
    ColdStart,
    id_dtype,
    indices_of,
    read_allowed,
    read_embeddings,
)
from .candidates import (
    DEFAULT_CHUNK_USERS,
    Candidates,
    candidates_for,
    search_filtered,
    similar_items,
)
from .errors import UnknownUserError
from .filters import AllowList, PairSet
from .fold_in import FoldIn, read_fold_in
from .ids import short_repr
from .index import Device, ItemIndex
from .request import (
    CandidateRequestError,
    Request,
    lookup_ids,
    read_request,
    too_many_rows,
)
from .store import index_paths, load_index, save_index

# The answer: the request's key columns (user_id and/or query_item_id, as it has user_id and/or
# item_id), then the list, then (with a history column) the unknown ids each row's history had.
# A request of user ids alone is answered as it always was.
OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score")
QUERY_ITEM_COLUMN = "query_item_id"
SKIPPED_COLUMN = "history_skipped"
LIST_COLUMNS = ("rank", "item_id", "score")
# Output id columns: object (Python str) for string ids, the same on pandas 2 and 3.
_NUMPY_DTYPE = {"int64": np.dtype(np.int64), "string": np.dtype(object)}
# (request row, rank, item index, score) of no candidates.
_NO_ROWS = tuple(np.zeros(0, dtype=t) for t in (np.int64, np.int32, np.int64, np.float32))


def lookup_users(
    users: IdMap, values: Sequence[Any], *, where: str = "request row"
) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids read strictly (:mod:`recsys_cl.retrieval.ids`) → (ids typed like the run's
    [B], int64 indices [B] with -1 for ids the run never trained on).

    Raises:
        InvalidUserIdError: the first entry that is not an id of the run's kind, named by
            ``where`` and its position.
    """
    return lookup_ids(users, values, kind="user", name=lambda i: f"{where} {i}: user_id")


def lookup_items(
    items: IdMap, values: Sequence[Any], *, where: str = "requested item"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lookup_users` for item ids (-1 for ids the run does not have)."""
    return lookup_ids(items, values, kind="item", name=lambda i: f"{where} {i}: item_id")


@dataclass(frozen=True, eq=False)
class CandidateModel:
    """Top-K unseen items for raw user ids and the K nearest items for raw item ids, under the
    model's allow-list and each row's ``exclude``: what ``recsys-cl recommend`` / ``similar``
    write and the MLflow model serves, through one object. Build it with :meth:`load` (a
    bundle) or directly from a run's parts (the recommend stage does), and write it with
    :meth:`save`.

    Attributes:
        info: the bundle's ``bundle.json`` (default k, limits, cold-start policy, id types).
        users, items: raw ids in index order. user_emb: float32 [U, D]; item_emb: float32 [I, D].
        index: the item index.
        seen: the masked (user, item) pairs (None masks nothing).
        pop_items: int64 [I] item indices, most popular first; pop_scores: float32 [I].
        allow: the only items ever returned (None: all).
        fold_in: the method's fold-in rule for users given with a ``history`` (None: the
            method has none; a history then only masks its items).
    """

    info: BundleInfo
    users: IdMap
    items: IdMap
    user_emb: np.ndarray
    item_emb: np.ndarray
    index: ItemIndex
    seen: PairSet | None
    pop_items: np.ndarray
    pop_scores: np.ndarray
    allow: AllowList | None = None
    fold_in: FoldIn | None = None

    def __post_init__(self) -> None:
        n_allowed = None if self.allow is None else self.allow.n_allowed
        if n_allowed != self.info.n_allowed:
            raise ValueError(f"info.n_allowed {self.info.n_allowed} != allow-list {n_allowed}")
        if self.allow is not None:
            self.index.check_selectable()
        params = None if self.fold_in is None else self.fold_in.params()
        if params != self.info.fold_in:
            raise ValueError(f"info.fold_in {self.info.fold_in} != the fold-in rule's {params}")

    @classmethod
    def load(cls, bundle_dir: str | Path, *, device: Device = "auto") -> CandidateModel:
        """Read and check a bundle written by :meth:`save` (format versions 1 to 4).

        Raises:
            DataError: a missing or inconsistent file (named in the message);
                IndexFileError / IndexMismatchError: an index that does not match its items;
                IndexSpecError: an allow-list over an index FAISS cannot filter.
        """
        root = Path(bundle_dir)
        info = BundleInfo.read(root)
        users, user_emb = read_embeddings(root / USER_FILE, "user_id", info.n_users, info.dim)
        items, item_emb = read_embeddings(root / ITEM_FILE, "item_id", info.n_items, info.dim)
        seen = read_table(root / SEEN_FILE, ["user_id", "item_id"], missing=IN_BUNDLE)
        seen_users = indices_of(users, seen["user_id"], root / SEEN_FILE)
        pairs = UserItems.from_pairs(
            seen_users, indices_of(items, seen["item_id"], root / SEEN_FILE), users.size, items.size
        )
        popular = read_table(root / POPULAR_FILE, ["item_id", "score"], missing=IN_BUNDLE)
        pop_items = indices_of(items, popular["item_id"], root / POPULAR_FILE)
        if np.unique(pop_items).size != items.size or pop_items.size != items.size:
            raise DataError(f"{root / POPULAR_FILE}: must rank each of the {items.size} items once")
        allow = None
        if info.n_allowed is not None:
            allowed = read_allowed(root / ALLOWED_FILE, items, info.n_allowed)
            allow = AllowList.of_items(allowed, items.size)
        index = load_index(root / INDEX_FILE, item_emb=item_emb, item_ids=items, device=device)
        seen_set = PairSet.from_tables(pairs, users.size, items.size)
        pop_scores = popular["score"].to_numpy()
        fold_in = read_fold_in(root, info.fold_in, users, items, item_emb)
        return cls(
            info,
            users,
            items,
            user_emb,
            item_emb,
            index,
            seen_set,
            pop_items,
            pop_scores,
            allow,
            fold_in,
        )

    def save(self, out_dir: str | Path, *, index_file: str | Path | None = None) -> Path:
        """Write the bundle to ``out_dir``, built next to it and swapped in only when complete
        (:func:`recsys_cl.io.atomic_dir`), so a server never loads half a bundle.

        Args:
            index_file: the saved index this model's index was loaded from; it is copied byte
                for byte (keeping the checksum every load checks again). None serializes it.

        Raises:
            RecsysError: ``out_dir`` is something other than a bundle (it is replaced whole).
        """
        out = Path(out_dir)
        if (
            out.exists()
            and not (out / BUNDLE_FILE).is_file()
            and (not out.is_dir() or any(out.iterdir()))
        ):
            raise RecsysError(
                f"{out}: exists and is not a candidate bundle; refusing to replace it"
            )
        seen_keys = self.seen.keys if self.seen is not None else np.zeros(0, dtype=np.int64)
        seen_users, seen_items = np.divmod(seen_keys, self.items.size)
        tables: dict[str, dict[str, Any]] = {
            USER_FILE: {"user_id": self.users.raw, "embedding": self.user_emb},
            ITEM_FILE: {"item_id": self.items.raw, "embedding": self.item_emb},
            SEEN_FILE: {
                "user_id": self.users.to_raw(seen_users),
                "item_id": self.items.to_raw(seen_items),
            },
            POPULAR_FILE: {"item_id": self.items.to_raw(self.pop_items), "score": self.pop_scores},
        }
        if self.allow is not None:
            tables[ALLOWED_FILE] = {"item_id": self.items.to_raw(self.allow.items)}
        if self.fold_in is not None:
            tables.update(self.fold_in.tables(self.users, self.items))
        with atomic_dir(out) as tmp:
            for name, columns in tables.items():
                pl.DataFrame(columns).write_parquet(tmp / name)
            if index_file is None:
                save_index(self.index, tmp / INDEX_FILE)
            else:
                pairs = zip(index_paths(index_file), index_paths(tmp / INDEX_FILE), strict=True)
                for source, target in pairs:
                    shutil.copyfile(source, target)
            header = {"format": FORMAT, "format_version": FORMAT_VERSION}
            write_json(tmp / BUNDLE_FILE, {**header, **asdict(self.info)})
        return out

    def lookup(
        self, values: Sequence[Any], *, where: str = "request row"
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`lookup_users` in this model's users."""
        return lookup_users(self.users, values, where=where)

    def refuse_unknown(
        self,
        raw: np.ndarray,
        user_idx: np.ndarray,
        hint: str,
        *,
        history: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Raise :class:`UnknownUserError` when the policy is ``error`` and a row would get the
        most popular items (:meth:`cold_rows`: an unknown id not ranked from its history)."""
        unknown = np.flatnonzero(self.cold_rows(user_idx, history))
        if unknown.size and self.info.cold_start == "error":
            raise UnknownUserError(
                f"{unknown.size:,} of {len(raw):,} requested users are unknown to the run (not in "
                f"its training data), the first {short_repr(raw[int(unknown[0])])}; {hint}"
            )

    def top_k(
        self,
        user_idx: np.ndarray,
        k: int,
        *,
        exclude: Sequence[np.ndarray] | None = None,
        history: Sequence[np.ndarray] | None = None,
    ) -> Candidates:
        """The top-``k`` unseen, allowed items of users ``user_idx`` [B] (-1: a user the model
        never saw), searched in chunks.

        A row with a non-empty ``history`` is ranked from it: its embedding is folded in by
        the method's rule (:attr:`fold_in`; a method without one keeps a known user's stored
        row) and its history replaces the stored seen items. Any other known user is ranked
        from the stored row, masking the stored seen items. The rest (unknown, no usable
        history, or no fold-in rule) get the most popular allowed items, scored by training
        users, their history left out too.

        Args:
            exclude: per row, item indices [n_b] never returned to it (None: none).
            history: per row, the user's item indices [h_b], unique (None, or an empty
                array: none given).

        Returns:
            :class:`Candidates` with K = min(k, I); -1 / NaN past the end of a short list.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64)
        k = min(k, self.index.n_items)
        items = np.empty((len(user_idx), k), dtype=np.int64)
        scores = np.empty((len(user_idx), k), dtype=np.float32)
        ranked = self.ranked_from_history(user_idx, history)
        plain = np.flatnonzero((user_idx >= 0) & ~ranked)
        for start in range(0, len(plain), DEFAULT_CHUNK_USERS):
            at = plain[start : start + DEFAULT_CHUNK_USERS]
            users = user_idx[at]
            if exclude is None:
                cands = candidates_for(
                    self.index,
                    self.user_emb,
                    users,
                    k,
                    self.seen,
                    allow=self.allow,
                    item_emb=self.item_emb,
                )
                items[at], scores[at] = cands.items, cands.scores
                continue
            # The rows' seen items and their own lists, as one set keyed by row.
            parts = [_row_pairs([exclude[i] for i in at.tolist()])]
            if self.seen is not None:
                parts.append(self.seen.pairs_of(users))
            rows, excluded = (np.concatenate(c) for c in zip(*parts, strict=True))
            own = PairSet.from_pairs(rows, excluded, len(at), self.index.n_items)
            items[at], scores[at] = self._search(self.user_emb[users], k, own)
        from_history = np.flatnonzero(ranked)
        for start in range(0, len(from_history), DEFAULT_CHUNK_USERS):
            at = from_history[start : start + DEFAULT_CHUNK_USERS]
            assert history is not None  # ranked rows have one
            lists = [history[i] for i in at.tolist()]
            if self.fold_in is not None:
                queries = self.fold_in.embed(lists, user_idx[at])
            else:
                queries = self.user_emb[user_idx[at]]
            masked = _joined(lists, None if exclude is None else [exclude[i] for i in at.tolist()])
            own = PairSet.from_pairs(*_row_pairs(masked), len(at), self.index.n_items)
            items[at], scores[at] = self._search(queries, k, own)
        cold = np.flatnonzero(self.cold_rows(user_idx, history))
        if cold.size:
            cold_lists = None
            if exclude is not None or history is not None:
                cold_lists = _joined(
                    [
                        np.zeros(0, np.int64) if history is None else history[i]
                        for i in cold.tolist()
                    ],
                    None if exclude is None else [exclude[i] for i in cold.tolist()],
                )
            items[cold], scores[cold] = self._popular(k, cold_lists)
        return Candidates(users=user_idx, items=items, scores=scores)

    def cold_rows(
        self, user_idx: np.ndarray, history: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """bool [B]: the rows :meth:`top_k` answers with the most popular items (an unknown
        user not ranked from a history)."""
        return (np.asarray(user_idx) < 0) & ~self.ranked_from_history(user_idx, history)

    def ranked_from_history(
        self, user_idx: np.ndarray, history: Sequence[np.ndarray] | None
    ) -> np.ndarray:
        """bool [B]: the rows :meth:`top_k` ranks from their ``history`` (a non-empty one,
        and a fold-in rule or a known user)."""
        if history is None:
            return np.zeros(len(user_idx), dtype=bool)
        usable = np.fromiter((len(h) > 0 for h in history), dtype=bool, count=len(history))
        if self.fold_in is None:
            usable &= np.asarray(user_idx) >= 0
        return usable

    def _search(self, queries: np.ndarray, k: int, exclude: PairSet) -> tuple[np.ndarray, ...]:
        return search_filtered(
            self.index, queries, k, exclude=exclude, allow=self.allow, item_emb=self.item_emb
        )

    def similar(
        self, item_idx: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None
    ) -> Candidates:
        """The ``k`` allowed items nearest to items ``item_idx`` [B] (each itself excluded, and
        ``exclude[b]`` when given), by the index's metric, searched in chunks.

        Returns:
            :class:`Candidates` (``users`` = the query items) with K = min(k, I).
        """
        item_idx = np.asarray(item_idx, dtype=np.int64)
        parts = []
        for start in range(0, len(item_idx), DEFAULT_CHUNK_USERS):
            at = np.arange(start, min(start + DEFAULT_CHUNK_USERS, len(item_idx)))
            own = None
            if exclude is not None:
                rows, excluded = _row_pairs([exclude[i] for i in at.tolist()])
                own = PairSet.from_pairs(rows, excluded, len(at), self.index.n_items)
            parts.append(
                similar_items(
                    self.index, self.item_emb, item_idx[at], k, exclude=own, allow=self.allow
                )
            )
        return Candidates.concat(parts, min(k, self.index.n_items))

    def _popular(
        self, k: int, exclude: Sequence[np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The most popular allowed items, [B, k] (B = len(exclude), or 1 for all rows alike),
        each row's ``exclude`` left out; -1 / NaN past the end."""
        order, scores = self.pop_items, self.pop_scores
        if self.allow is not None:
            keep = self.allow.mask[order]
            order, scores = order[keep], scores[keep]
        lists = [np.zeros(0, dtype=np.int64)] if exclude is None else exclude
        out_items = np.full((len(lists), k), -1, dtype=np.int64)
        out_scores = np.full((len(lists), k), np.nan, dtype=np.float32)
        for row, excluded in enumerate(lists):
            head = slice(0, k + len(excluded))
            kept = ~np.isin(order[head], excluded)
            chosen, chosen_scores = order[head][kept][:k], scores[head][kept][:k]
            out_items[row, : len(chosen)], out_scores[row, : len(chosen)] = chosen, chosen_scores
        return out_items, out_scores

    def predict(self, frame: pd.DataFrame, k: Any = None) -> pd.DataFrame:
        """Each request row's list: a user's top-k unseen items (ranked as ``recsys-cl
        recommend`` ranks them) or an item's k nearest items (as ``recsys-cl similar``), only
        allowed items and none of the row's ``exclude``.

        Args:
            frame: per row a ``user_id`` or an ``item_id`` (raw ids, read strictly by
                :mod:`recsys_cl.retrieval.request`: an integer run takes integers in the int64
                range, integral floats up to 2**53 and decimal strings; a string run takes
                strings), an optional ``k`` (per row; a missing value falls back to ``k``), an
                optional ``exclude`` (a list of at most ``info.max_list`` raw item ids) and,
                on user rows, an optional ``history`` (the same kind of list: the user's
                items; see :meth:`top_k` for how a history is used). No other column, and at
                most ``info.max_rows`` rows.
            k: the list length of rows without their own, 1..``info.max_k``; None = the
                bundle's default.

        Returns:
            the request's key columns (``user_id`` when it has a user_id column,
            ``query_item_id`` when it has an item_id column; a row's other key is null), then
            ``rank, item_id, score``: rows grouped by request row in input order (a repeated
            row is answered twice), ranks 1..n with n = min(k, eligible items); unknown users
            without a usable history get the most popular allowed items (score = training
            users) under ``popular``. With a ``history`` column, a last column
            ``history_skipped`` counts the ids of the row's history the model does not have
            (left out).

        Raises:
            CandidateRequestError: the request's shape, a missing key, a bad ``k`` or list;
                InvalidUserIdError / InvalidItemIdError: an id not of the run's kind (all one
                line, naming the request row); UnknownItemError: a query item the run does not
                have; UnknownUserError: a user id the run never trained on and not ranked from a
                history (``cold_start="error"``).
        """
        request = read_request(
            frame,
            k,
            users=self.users,
            items=self.items,
            default_k=self.info.k,
            max_k=self.info.max_k,
            max_rows=self.info.max_rows,
            max_list=self.info.max_list,
        )
        excluded, history = request.lists.get("exclude"), request.lists.get("history")
        user_history = None if history is None else [history[r] for r in request.user_rows]
        self.refuse_unknown(
            request.user_raw,
            request.user_idx,
            "this model's cold_start policy is 'error' (a user given with a history is folded in)"
            if self.fold_in is not None
            else "this model's cold_start policy is 'error'",
            history=user_history,
        )
        # The empty piece first gives an empty request typed columns.
        pieces = [_NO_ROWS]

        def of(lists: list[np.ndarray] | None, rows: np.ndarray) -> list[np.ndarray] | None:
            return None if lists is None else [lists[r] for r in rows]

        # (rows, their indices, the search answering them given (indices, k, rows)).
        searches: tuple[tuple[np.ndarray, np.ndarray, Any], ...] = (
            (
                request.user_rows,
                request.user_idx,
                lambda idx, kk, at: self.top_k(
                    idx, kk, exclude=of(excluded, at), history=of(history, at)
                ),
            ),
            (
                request.item_rows,
                request.item_idx,
                lambda idx, kk, at: self.similar(idx, kk, exclude=of(excluded, at)),
            ),
        )
        for kk in np.unique(request.ks):
            for rows, idx, search in searches:
                mine = request.ks[rows] == kk
                if mine.any():
                    pieces.append(_rows(rows[mine], search(idx[mine], int(kk), rows[mine])))
        rows, rank, items, scores = (np.concatenate(column) for column in zip(*pieces, strict=True))
        order = np.argsort(rows, kind="stable")  # back to request order; ranks stay ascending
        return self._answer(request, rows[order], rank[order], items[order], scores[order])

    def _answer(
        self,
        request: Request,
        rows: np.ndarray,
        rank: np.ndarray,
        items: np.ndarray,
        scores: np.ndarray,
    ) -> pd.DataFrame:
        item_dtype = _NUMPY_DTYPE[self.info.item_id_dtype]
        keys = {
            "user_id": (request.user_rows, request.user_raw, self.info.user_id_dtype),
            "item_id": (request.item_rows, request.item_raw, self.info.item_id_dtype),
        }
        out: dict[str, Any] = {}
        for column in request.key_columns:
            key_rows, raw, dtype = keys[column]
            if len(request.key_columns) == 1:  # every row has this key: typed as the run's
                values = np.empty(request.n_rows, dtype=_NUMPY_DTYPE[dtype])
            else:  # the rows asking by the other key have none
                values = np.full(request.n_rows, None, dtype=object)
            values[key_rows] = raw
            name = "user_id" if column == "user_id" else QUERY_ITEM_COLUMN
            out[name] = pd.Series(values[rows], dtype=values.dtype)
        out["rank"] = rank
        out["item_id"] = pd.Series(self.items.to_raw(items), dtype=item_dtype)
        out["score"] = scores
        if "history" in request.skipped:
            out[SKIPPED_COLUMN] = request.skipped["history"][rows]
        return pd.DataFrame(out, columns=list(out))


def _rows(rows: np.ndarray, cands: Candidates) -> tuple[np.ndarray, ...]:
    """(request row, rank, item index, score) of every candidate, row-major."""
    r, c = np.nonzero(cands.items >= 0)  # a row with fewer eligible items has fewer rows
    return rows[r], (c + 1).astype(np.int32), cands.items[r, c], cands.scores[r, c]


def _joined(first: Sequence[np.ndarray], second: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    """Row b's items of ``first[b]`` and ``second[b]`` together (duplicates allowed)."""
    if second is None:
        return [np.asarray(x, dtype=np.int64) for x in first]
    return [np.concatenate([a, b]).astype(np.int64) for a, b in zip(first, second, strict=True)]


def _row_pairs(lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of every entry of ``lists`` (row b's items ``lists[b]``)."""
    lengths = np.asarray([len(x) for x in lists], dtype=np.int64)
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
    items = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else rows
    return rows, items.astype(np.int64, copy=False)


__all__ = [
    "ALLOWED_FILE",
    "BUNDLE_FILE",
    "FORMAT_VERSION",
    "BundleInfo",
    "CandidateModel",
    "CandidateRequestError",
    "ColdStart",
    "QUERY_ITEM_COLUMN",
    "SKIPPED_COLUMN",
    "id_dtype",
    "is_positive_int",
    "lookup_items",
    "lookup_users",
    "too_many_rows",
]
