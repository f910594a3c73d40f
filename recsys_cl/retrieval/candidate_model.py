"""The candidate model: top-K unseen items for raw user ids, and the bundle it is saved as.

One object serves both paths: ``recsys-cl recommend`` builds it from a run folder and writes
its lists to Parquet, and the MLflow model (:mod:`recsys_cl.serving.pyfunc_code`, a thin shell)
loads it from a *candidate bundle*, a folder that needs neither the run nor its config::

    bundle.json               format, default k, request limits, cold-start policy, metric,
                              id types, counts
    user_embeddings.parquet   user_id (raw) + embedding, in index order (= the run's id map)
    item_embeddings.parquet   item_id (raw) + embedding, in index order
    seen.parquet              user_id, item_id: the masked pairs (train + validation)
    popular.parquet           item_id, score: every item, most training users first
    index.faiss, index.json   the FAISS index and its metadata (:mod:`recsys_cl.retrieval.store`)

Nothing is pickled and this module never imports ``mlflow``, so the model is tested and usable
without a tracking server.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl

from recsys_cl.config.retrieval import (
    DEFAULT_MAX_K,
    DEFAULT_MAX_ROWS,
    is_positive_int,
    limits_problem,
)
from recsys_cl.data import IdMap, UserItems
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.io import atomic_dir, read_table, write_json

from .candidates import DEFAULT_CHUNK_USERS, Candidates, PairSet, candidates_for
from .errors import UnknownUserError
from .ids import integer_id, short_repr, typed_user_ids
from .index import Device, ItemIndex
from .store import index_paths, load_index, save_index

ColdStart = Literal["popular", "error"]

FORMAT = "recsys_cl.candidate_bundle"
# 2 added the request limits; a version 1 bundle reads with the default limits.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
INPUT_COLUMNS = ("user_id", "k")
BUNDLE_FILE = "bundle.json"
USER_FILE = "user_embeddings.parquet"
ITEM_FILE = "item_embeddings.parquet"
SEEN_FILE = "seen.parquet"
POPULAR_FILE = "popular.parquet"
INDEX_FILE = "index.faiss"
OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score")
_IN_BUNDLE = "missing from the candidate bundle"
# Output id columns: object (Python str) for string ids, the same on pandas 2 and 3.
_NUMPY_DTYPE = {"int64": np.dtype(np.int64), "string": np.dtype(object)}
# (request row, rank, item index, score) of no candidates.
_NO_ROWS = tuple(np.zeros(0, dtype=t) for t in (np.int64, np.int32, np.int64, np.float32))


class CandidateRequestError(RecsysError, ValueError):
    """A request the model cannot answer (no ``user_id`` column, an unknown column, a missing
    id, a bad or too large ``k``, too many rows). A ValueError too, so generic callers such as a
    scoring server treat it as bad input. The message is one line naming the row."""


@dataclass(frozen=True)
class BundleInfo:
    """``bundle.json``: enough to describe the model (its MLflow signature) without loading
    embeddings or the index. Id dtypes are ``int64`` or ``string``; ``source_run`` is the run
    folder's name (not its path: the bundle travels to other machines); ``max_k`` and
    ``max_rows`` bound a request's list length and rows."""

    k: int
    cold_start: ColdStart
    metric: str
    index: str
    user_id_dtype: str
    item_id_dtype: str
    n_users: int
    n_items: int
    dim: int
    n_seen: int
    source_run: str
    max_k: int = DEFAULT_MAX_K
    max_rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def read(cls, bundle_dir: str | Path) -> BundleInfo:
        """Read and check ``bundle_dir/bundle.json``.

        Raises:
            DataError: no bundle there, or a file of another format, version or shape.
        """
        path = Path(bundle_dir) / BUNDLE_FILE
        if not path.is_file():
            raise DataError(f"{path}: not found; is {Path(bundle_dir)} a candidate bundle?")
        try:
            raw = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT:
            raise DataError(f"{path}: not a {FORMAT} file")
        if (version := raw.pop("format_version", None)) not in _READABLE_VERSIONS:
            raise DataError(
                f"{path}: format_version {version!r}, this version reads {_READABLE_VERSIONS}"
            )
        if version == 1 and is_positive_int(raw.get("k")):
            # Version 1 had no limits: its default list length must stay servable.
            raw.setdefault("max_k", max(DEFAULT_MAX_K, raw["k"]))
        try:
            info = cls(**raw)
        except TypeError as exc:
            raise DataError(f"{path}: unexpected keys ({exc})") from None
        if info.cold_start not in ("popular", "error"):
            raise DataError(f"{path}: cold_start must be popular or error, got {raw}")
        if problem := limits_problem(info.k, info.max_k, info.max_rows):
            raise DataError(f"{path}: {problem}")
        return info


def too_many_rows(n_rows: int, max_rows: int) -> str:
    """The one-line refusal of a request of ``n_rows`` rows over ``max_rows``."""
    return (
        f"request row {max_rows}: over the limit of {max_rows:,} rows per request "
        f"({n_rows:,} sent); split the request"
    )


def id_dtype(ids: IdMap) -> str:
    return "int64" if ids.raw.dtype == pl.Int64 else "string"


def _read_embeddings(path: Path, key: str, n: int, dim: int) -> tuple[IdMap, np.ndarray]:
    frame = read_table(path, [key, "embedding"], missing=_IN_BUNDLE)
    try:
        ids = IdMap(frame[key])
        emb = np.ascontiguousarray(np.stack(list(frame["embedding"].to_numpy())), dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: not embeddings in id order ({exc})") from None
    if emb.shape != (n, dim) or not np.isfinite(emb).all():
        raise DataError(f"{path}: expected {n} finite rows of D={dim}, found shape {emb.shape}")
    return ids, emb


def _indices(ids: IdMap, values: pl.Series, path: Path) -> np.ndarray:
    return ids.to_index(values, source=f"{path}: {values.name}").to_numpy().astype(np.int64)


def lookup_users(
    users: IdMap, values: Sequence[Any], *, where: str = "request row"
) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids read strictly (:mod:`recsys_cl.retrieval.ids`) → (ids typed like the run's
    [B], int64 indices [B] with -1 for ids the run never trained on).

    Raises:
        InvalidUserIdError: the first entry that is not an id of the run's kind, named by
            ``where`` and its position.
    """
    if users.raw.dtype == pl.Int64:
        raw = np.asarray(typed_user_ids(values, integer=True, where=where), dtype=np.int64)
        return raw, users.to_index(raw, missing="null")
    raw = np.asarray(typed_user_ids(values, integer=False, where=where), dtype=object)
    found = users.to_index(pl.Series("raw", raw.tolist(), dtype=pl.String), missing="null")
    return raw, found.fill_null(-1).to_numpy().astype(np.int64)


@dataclass(frozen=True, eq=False)
class CandidateModel:
    """Top-K unseen items for raw user ids: what ``recsys-cl recommend`` writes and the MLflow
    model serves, through one object. Build it with :meth:`load` (a bundle) or directly from a
    run's parts (the recommend stage does), and write it with :meth:`save`.

    Attributes:
        info: the bundle's ``bundle.json`` (default k, limits, cold-start policy, id types).
        users, items: raw ids in index order. user_emb: float32 [U, D]; item_emb: float32 [I, D].
        index: the item index.
        seen: the masked (user, item) pairs (None masks nothing).
        pop_items: int64 [I] item indices, most popular first; pop_scores: float32 [I].
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

    @classmethod
    def load(cls, bundle_dir: str | Path, *, device: Device = "auto") -> CandidateModel:
        """Read and check a bundle written by :meth:`save`.

        Raises:
            DataError: a missing or inconsistent file (named in the message);
                IndexFileError / IndexMismatchError: an index that does not match its items.
        """
        root = Path(bundle_dir)
        info = BundleInfo.read(root)
        users, user_emb = _read_embeddings(root / USER_FILE, "user_id", info.n_users, info.dim)
        items, item_emb = _read_embeddings(root / ITEM_FILE, "item_id", info.n_items, info.dim)
        seen = read_table(root / SEEN_FILE, ["user_id", "item_id"], missing=_IN_BUNDLE)
        seen_users = _indices(users, seen["user_id"], root / SEEN_FILE)
        pairs = UserItems.from_pairs(
            seen_users, _indices(items, seen["item_id"], root / SEEN_FILE), users.size, items.size
        )
        popular = read_table(root / POPULAR_FILE, ["item_id", "score"], missing=_IN_BUNDLE)
        pop_items = _indices(items, popular["item_id"], root / POPULAR_FILE)
        if np.unique(pop_items).size != items.size or pop_items.size != items.size:
            raise DataError(f"{root / POPULAR_FILE}: must rank each of the {items.size} items once")
        index = load_index(root / INDEX_FILE, item_emb=item_emb, item_ids=items, device=device)
        seen_set = PairSet.from_tables(pairs, users.size, items.size)
        pop_scores = popular["score"].to_numpy()
        return cls(info, users, items, user_emb, item_emb, index, seen_set, pop_items, pop_scores)

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
        if out.exists() and not (out / BUNDLE_FILE).is_file() and (
            not out.is_dir() or any(out.iterdir())
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

    def refuse_unknown(self, raw: np.ndarray, user_idx: np.ndarray, hint: str) -> None:
        """Raise :class:`UnknownUserError` when the policy is ``error`` and an id is unknown."""
        unknown = np.flatnonzero(user_idx < 0)
        if unknown.size and self.info.cold_start == "error":
            raise UnknownUserError(
                f"{unknown.size:,} of {len(raw):,} requested users are unknown to the run (not in "
                f"its training data), the first {raw[int(unknown[0])]!r}; {hint}"
            )

    def top_k(self, user_idx: np.ndarray, k: int) -> Candidates:
        """The top-``k`` unseen items of users ``user_idx`` [B] (-1: an unknown user, who gets
        the most popular items, scored by training users), searched in chunks.

        Returns:
            :class:`Candidates` with K = min(k, I); -1 / NaN past the end of a short list.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64)
        k = min(k, self.index.n_items)
        items = np.empty((len(user_idx), k), dtype=np.int64)
        scores = np.empty((len(user_idx), k), dtype=np.float32)
        known_at = np.flatnonzero(user_idx >= 0)
        for start in range(0, len(known_at), DEFAULT_CHUNK_USERS):
            at = known_at[start : start + DEFAULT_CHUNK_USERS]
            cands = candidates_for(self.index, self.user_emb, user_idx[at], k, self.seen)
            items[at], scores[at] = cands.items, cands.scores
        cold = user_idx < 0
        items[cold], scores[cold] = self.pop_items[:k], self.pop_scores[:k]
        return Candidates(users=user_idx, items=items, scores=scores)

    def predict(self, frame: pd.DataFrame, k: Any = None) -> pd.DataFrame:
        """Each requested user's top-k unseen items, ranked as ``recsys-cl recommend`` ranks them.

        Args:
            frame: a ``user_id`` column of raw ids, read strictly (:mod:`recsys_cl.retrieval.ids`:
                an integer run takes integers in the int64 range, integral floats up to 2**53
                and decimal strings; a string run takes strings), and an optional ``k`` column
                (per row; a missing value falls back to ``k``). No other column, and at most
                ``info.max_rows`` rows.
            k: the list length of rows without their own, 1..``info.max_k``; None = the
                bundle's default.

        Returns:
            ``user_id, rank, item_id, score``: rows grouped by request row in input order (a
            repeated row is answered twice), ranks 1..n with n = min(k, unseen items); unknown
            users get the most popular items (score = training users) under ``popular``.

        Raises:
            CandidateRequestError: no ``user_id`` column, another column, too many rows, a
                missing id or a bad ``k``; InvalidUserIdError: an id not of the run's kind
                (both one line, naming the request row).
            UnknownUserError: an id the run never trained on (``cold_start="error"``).
        """
        if not isinstance(frame, pd.DataFrame):
            raise CandidateRequestError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        self._check_shape(frame)
        default_k = self.info.k if k is None else self._k(k, "k")
        if "k" in frame.columns:
            ks = np.asarray(
                [default_k if _missing(v) else self._k(v, f"request row {i}: k")
                 for i, v in enumerate(frame["k"].tolist())],
                dtype=np.int64,
            )
        else:
            ks = np.full(len(frame), default_k, dtype=np.int64)
        raw, user_idx = self._lookup(frame["user_id"])
        self.refuse_unknown(raw, user_idx, "this model's cold_start policy is 'error'")
        # The empty piece first gives an empty request typed columns.
        pieces = [_NO_ROWS] + [
            self._rows(rows, self.top_k(user_idx[rows], int(kk)))
            for kk in np.unique(ks)
            for rows in (np.flatnonzero(ks == kk),)
        ]
        rows, rank, items, scores = (np.concatenate(column) for column in zip(*pieces, strict=True))
        order = np.argsort(rows, kind="stable")  # back to request order; ranks stay ascending
        item_dtype = _NUMPY_DTYPE[self.info.item_id_dtype]
        return pd.DataFrame(
            {
                "user_id": pd.Series(raw[rows[order]], dtype=raw.dtype),
                "rank": rank[order],
                "item_id": pd.Series(self.items.to_raw(items[order]), dtype=item_dtype),
                "score": scores[order],
            },
            columns=list(OUTPUT_COLUMNS),
        )

    @staticmethod
    def _rows(rows: np.ndarray, cands: Candidates) -> tuple[np.ndarray, ...]:
        """(request row, rank, item index, score) of every candidate, row-major."""
        r, c = np.nonzero(cands.items >= 0)  # a user with fewer unseen items has fewer rows
        return rows[r], (c + 1).astype(np.int32), cands.items[r, c], cands.scores[r, c]

    def _check_shape(self, frame: pd.DataFrame) -> None:
        """The request's columns and row count, before any value is read."""
        unknown = [str(c) for c in frame.columns if c not in INPUT_COLUMNS]
        if "user_id" not in frame.columns:
            found = ", ".join(map(str, frame.columns)) or "none"
            raise CandidateRequestError(
                f"the input needs a user_id column of raw user ids (found: {found})"
            )
        if unknown:
            raise CandidateRequestError(
                f"unknown column {short_repr(unknown[0])}: this model reads user_id and an "
                "optional k"
            )
        if len(frame) > self.info.max_rows:
            raise CandidateRequestError(too_many_rows(len(frame), self.info.max_rows))

    def _k(self, value: Any, what: str) -> int:
        k = integer_id(value)
        if k is None or not 1 <= k <= self.info.max_k:
            raise CandidateRequestError(
                f"{what} must be an integer from 1 to {self.info.max_k:,} (this model's max_k), "
                f"got {short_repr(value)}"
            )
        return k

    def _lookup(self, column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        missing = column.isna().to_numpy()
        if missing.any():
            raise CandidateRequestError(
                f"request row {int(np.argmax(missing))}: user_id is missing"
            )
        if self.users.raw.dtype == pl.Int64 and pd.api.types.is_signed_integer_dtype(column.dtype):
            # Signed integers fit int64 as they are (an unsigned column may hold values past
            # 2**63, which astype would wrap to negative ids: those are read one by one).
            raw = column.to_numpy().astype(np.int64)
            return raw, self.users.to_index(raw, missing="null")
        return self.lookup(column.tolist())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


__all__ = [
    "BundleInfo",
    "CandidateModel",
    "CandidateRequestError",
    "ColdStart",
    "id_dtype",
    "is_positive_int",
    "lookup_users",
    "too_many_rows",
]
