"""A candidate-model request read strictly: one reader for every column, so the command line,
the Python API, the MLflow model and ``recsys-cl serve`` refuse the same mistakes in one line
naming the row.

A request is a table of B rows. Each row asks for one list:

- ``user_id``: that user's top-k unseen items, or
- ``item_id``: the k items nearest to that item (itself excluded);

exactly one of the two per row. Optional columns: ``k`` (the row's list length),
``exclude`` (a list of raw item ids never returned for the row) and, on user rows, ``history``
(the user's items as raw ids: the user's embedding is folded in from them and they are
masked; see :class:`~recsys_cl.retrieval.CandidateModel`). Ids are read by
:mod:`recsys_cl.retrieval.ids` (user ids by the run's user id type, item ids by its item id
type); any other column, a row with both or neither key, a ``k`` outside 1..max_k, a list cell
that is not a list or holds more than ``max_list`` ids, a ``history`` on an item row, or more
than ``max_rows`` rows is a :class:`CandidateRequestError`. Ids in a list the run does not have
are skipped and counted (:attr:`Request.skipped`).

Item-id lists are read by one function (:func:`_item_lists`) for every column listed in
:data:`ITEM_LIST_COLUMNS`: a new list column is one entry there, one in
:data:`REQUEST_COLUMNS`, and its use by the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from recsys_cl.data import IdMap
from recsys_cl.errors import RecsysError

from .errors import UnknownItemError
from .ids import IdKind, integer_id, short_repr, typed_ids

# What a request may hold: column -> what it means (the model's input description too).
REQUEST_COLUMNS: dict[str, str] = {
    "user_id": "raw user id: this user's top-k unseen items (one of user_id / item_id per row)",
    "item_id": "raw item id: the k items nearest to this item, itself excluded",
    "k": "list length of this row (optional; default: the k param, else the model's k)",
    "exclude": "list of raw item ids never returned for this row (optional; at most max_list)",
    "history": "list of raw item ids the user interacted with, on user_id rows (optional; at "
    "most max_list): the user's embedding is folded in from it and it replaces the stored "
    "seen items",
}
KEY_COLUMNS = ("user_id", "item_id")
ITEM_LIST_COLUMNS = ("exclude", "history")


class CandidateRequestError(RecsysError, ValueError):
    """A request the model cannot answer (no ``user_id`` or ``item_id`` column, an unknown
    column, a row with both or neither, a bad or too large ``k``, a bad or too long list, too
    many rows). A ValueError too, so generic callers such as a scoring server treat it as bad
    input. The message is one line naming the row."""


@dataclass(frozen=True)
class Request:
    """A request read and typed; rows keep their request order.

    Attributes:
        n_rows: B.
        key_columns: which of ``user_id`` / ``item_id`` the request has (the answer's key
            columns follow them).
        user_rows: int64 [Bu] positions of the rows that ask for a user's items; user_raw:
            their ids typed as the run's [Bu]; user_idx: int64 [Bu] indices, -1 for an id the
            run never trained on.
        item_rows, item_raw, item_idx: the same for rows that ask for an item's neighbours
            (every id known).
        ks: int64 [B] each row's list length.
        lists: per list column present (``exclude``, ``history``), each row's item indices:
            int64 arrays, unique, ids the run does not know left out.
        skipped: per list column present, int64 [B] the ids of each row's list the run does
            not know (left out of ``lists``).
        given: per list column present, bool [B] whether the row's cell holds a list (a
            missing cell is an empty list that was not given).
    """

    n_rows: int
    key_columns: tuple[str, ...]
    user_rows: np.ndarray
    user_raw: np.ndarray
    user_idx: np.ndarray
    item_rows: np.ndarray
    item_raw: np.ndarray
    item_idx: np.ndarray
    ks: np.ndarray
    lists: dict[str, list[np.ndarray]]
    skipped: dict[str, np.ndarray]
    given: dict[str, np.ndarray]


def too_many_rows(n_rows: int, max_rows: int) -> str:
    """The one-line refusal of a request of ``n_rows`` rows over ``max_rows``."""
    return (
        f"request row {max_rows}: over the limit of {max_rows:,} rows per request "
        f"({n_rows:,} sent); split the request"
    )


def lookup_ids(
    ids: IdMap, values: Sequence[Any], *, kind: IdKind, name: Callable[[int], str]
) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids read strictly (:func:`~recsys_cl.retrieval.ids.typed_ids`) → (ids typed like
    ``ids`` [B], int64 indices [B] with -1 for ids the map does not hold).

    Raises:
        InvalidUserIdError / InvalidItemIdError: the first entry that is not an id of the
            map's type, named by ``name(position)``.
    """
    if ids.raw.dtype == pl.Int64:
        raw = np.asarray(typed_ids(values, integer=True, kind=kind, name=name), dtype=np.int64)
        return raw, ids.to_index(raw, missing="null")
    raw = np.asarray(typed_ids(values, integer=False, kind=kind, name=name), dtype=object)
    found = ids.to_index(pl.Series("raw", raw.tolist(), dtype=pl.String), missing="null")
    return raw, found.fill_null(-1).to_numpy().astype(np.int64)


def read_request(
    frame: Any,
    k: Any,
    *,
    users: IdMap,
    items: IdMap,
    default_k: int,
    max_k: int,
    max_rows: int,
    max_list: int,
) -> Request:
    """Read ``frame`` (a pandas DataFrame) and the request-wide ``k`` (None: ``default_k``).

    Raises:
        CandidateRequestError: the request's shape, a key, a ``k`` or a list cell is wrong;
            InvalidUserIdError / InvalidItemIdError: an id not of the run's type.
    """
    if not isinstance(frame, pd.DataFrame):
        raise CandidateRequestError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    _check_shape(frame, max_rows)
    row_k = default_k if k is None else _k(k, "k", max_k)
    if "k" in frame.columns:
        ks = np.asarray(
            [
                row_k if _missing(v) else _k(v, f"request row {i}: k", max_k)
                for i, v in enumerate(frame["k"].tolist())
            ],
            dtype=np.int64,
        )
    else:
        ks = np.full(len(frame), row_k, dtype=np.int64)
    key_columns = tuple(c for c in KEY_COLUMNS if c in frame.columns)
    user_rows, item_rows = _key_rows(frame, key_columns)
    user_raw, user_idx = _lookup(frame, "user_id", user_rows, users, "user")
    item_raw, item_idx = _lookup(frame, "item_id", item_rows, items, "item")
    if (unknown := np.flatnonzero(item_idx < 0)).size:
        row = int(item_rows[unknown[0]])
        raise UnknownItemError(
            f"request row {row}: item_id {short_repr(item_raw[unknown[0]])} is not an item of "
            f"this model ({items.size:,} items): similar items need an item the run trained on"
        )
    read = {
        column: _item_lists(frame[column].tolist(), column, items, max_list)
        for column in ITEM_LIST_COLUMNS
        if column in frame.columns
    }
    if "history" in read and (on_items := item_rows[read["history"][2][item_rows]]).size:
        raise CandidateRequestError(
            f"request row {int(on_items[0])}: history is a user's items and goes with user_id, "
            "not item_id"
        )
    return Request(
        n_rows=len(frame),
        key_columns=key_columns,
        user_rows=user_rows,
        user_raw=user_raw,
        user_idx=user_idx,
        item_rows=item_rows,
        item_raw=item_raw,
        item_idx=item_idx,
        ks=ks,
        lists={column: lists for column, (lists, _, _) in read.items()},
        skipped={column: skipped for column, (_, skipped, _) in read.items()},
        given={column: given for column, (_, _, given) in read.items()},
    )


def _check_shape(frame: pd.DataFrame, max_rows: int) -> None:
    """The request's columns and row count, before any value is read."""
    if not any(c in frame.columns for c in KEY_COLUMNS):
        found = ", ".join(map(str, frame.columns)) or "none"
        raise CandidateRequestError(
            "the input needs a user_id column (a user's items) or an item_id column (an item's "
            f"nearest items) (found: {found})"
        )
    unknown = [str(c) for c in frame.columns if c not in REQUEST_COLUMNS]
    if unknown:
        raise CandidateRequestError(
            f"unknown column {short_repr(unknown[0])}: this model reads user_id or item_id, "
            f"and optional {', '.join(c for c in REQUEST_COLUMNS if c not in KEY_COLUMNS)}"
        )
    if len(frame) > max_rows:
        raise CandidateRequestError(too_many_rows(len(frame), max_rows))


def _k(value: Any, what: str, max_k: int) -> int:
    k = integer_id(value)
    if k is None or not 1 <= k <= max_k:
        raise CandidateRequestError(
            f"{what} must be an integer from 1 to {max_k:,} (this model's max_k), "
            f"got {short_repr(value)}"
        )
    return k


def _key_rows(frame: pd.DataFrame, key_columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(rows asking for a user's items, rows asking for an item's neighbours)."""
    given = {
        c: ~frame[c].isna().to_numpy(dtype=bool) if c in key_columns else np.zeros(len(frame), bool)
        for c in KEY_COLUMNS
    }
    both = given["user_id"] & given["item_id"]
    if both.any():
        raise CandidateRequestError(
            f"request row {int(np.argmax(both))}: both user_id and item_id are given; a row "
            "asks for one user's items or one item's nearest items"
        )
    neither = ~(given["user_id"] | given["item_id"])
    if neither.any():
        row = int(np.argmax(neither))
        if len(key_columns) == 1:
            raise CandidateRequestError(f"request row {row}: {key_columns[0]} is missing")
        raise CandidateRequestError(
            f"request row {row}: user_id and item_id are both missing; a row needs one of them"
        )
    return np.flatnonzero(given["user_id"]), np.flatnonzero(given["item_id"])


def _lookup(
    frame: pd.DataFrame, column: str, rows: np.ndarray, ids: IdMap, kind: IdKind
) -> tuple[np.ndarray, np.ndarray]:
    if column not in frame.columns:
        dtype = np.int64 if ids.raw.dtype == pl.Int64 else object
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int64)
    values = frame[column]
    if (
        len(rows) == len(frame)
        and ids.raw.dtype == pl.Int64
        and pd.api.types.is_signed_integer_dtype(values.dtype)
    ):
        # Signed integers fit int64 as they are (an unsigned column may hold values past
        # 2**63, which astype would wrap to negative ids: those are read one by one).
        raw = values.to_numpy().astype(np.int64)
        return raw, ids.to_index(raw, missing="null")
    picked = values.to_numpy(dtype=object)[rows].tolist()
    return lookup_ids(
        ids, picked, kind=kind, name=lambda i: f"request row {int(rows[i])}: {column}"
    )


def _item_lists(
    cells: list[Any], column: str, items: IdMap, max_list: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Each row's list of raw item ids → (its item indices, unique, unknown ids left out:
    nothing can return them; int64 [B] the unknown ids per row; bool [B] whether the row's
    cell held a list). A missing cell is an empty list, not given."""
    integer = items.raw.dtype == pl.Int64
    lengths, typed = [], []
    given = np.ones(len(cells), dtype=bool)
    for row, cell in enumerate(cells):
        if _missing(cell):
            given[row] = False
            values: list[Any] = []
        elif isinstance(cell, (list, tuple)) or (isinstance(cell, np.ndarray) and cell.ndim == 1):
            values = list(cell)
        else:
            raise CandidateRequestError(
                f"request row {row}: {column} must be a list of raw item ids, got "
                f"{type(cell).__name__} {short_repr(cell)}"
            )
        if len(values) > max_list:
            raise CandidateRequestError(
                f"request row {row}: {column} holds {len(values):,} ids, over this model's "
                f"max_list of {max_list:,}"
            )
        lengths.append(len(values))
        typed += typed_ids(values, integer=integer, kind="item", name=_entry(row, column))
    # Every entry is typed already: one lookup for the whole request.
    _, found = lookup_ids(items, typed, kind="item", name=_entry(-1, column))
    parts = np.split(found, np.cumsum(lengths)[:-1]) if lengths else []
    skipped = np.asarray([int((part < 0).sum()) for part in parts], dtype=np.int64)
    return [np.unique(part[part >= 0]) for part in parts], skipped, given


def _entry(row: int, column: str) -> Callable[[int], str]:
    return lambda j: f"request row {row}: {column}[{j}]"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


__all__ = [
    "ITEM_LIST_COLUMNS",
    "KEY_COLUMNS",
    "REQUEST_COLUMNS",
    "CandidateRequestError",
    "Request",
    "lookup_ids",
    "read_request",
    "too_many_rows",
]
