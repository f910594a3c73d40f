"""Candidate lists as Parquet: ``user_id, rank, item_id, score`` (``recsys-cl recommend``) or
``query_item_id, rank, item_id, score`` (``recsys-cl similar``), written chunk by chunk.

Rows are grouped by query (user or item) in request order, ranks 1..n within a query (n ≤ K; a
query with fewer eligible items has fewer rows). The ids are the raw ids, typed like the run's
id maps (int64 or string). The file is written to a temporary sibling one row group per
chunk and renamed into place only when complete (:func:`recsys_cl.io.atomic_path`), so a reader
sees the previous file or the whole new one, never a part.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_cl.data import IdMap
from recsys_cl.io import atomic_path

COLUMNS = ("user_id", "rank", "item_id", "score")


def _arrow_type(ids: IdMap) -> pa.DataType:
    return pa.int64() if ids.raw.dtype == pl.Int64 else pa.string()


def candidate_schema(users: IdMap, items: IdMap, *, key: str = "user_id") -> pa.Schema:
    """The output schema for a run's id maps: the query column ``key`` typed by ``users`` (the
    item map, for ``key="query_item_id"``), then rank, item_id, score."""
    return pa.schema(
        [
            (key, _arrow_type(users)),
            ("rank", pa.int32()),
            ("item_id", _arrow_type(items)),
            ("score", pa.float32()),
        ]
    )


def candidate_table(
    user_ids: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    item_ids: IdMap,
    schema: pa.Schema,
) -> pa.Table:
    """One chunk's rows: ``user_ids`` raw query ids [B] (users, or items for similar items);
    ``items`` int64 [B, K] indices (-1 = none, only at the end of a row); ``scores`` float32
    [B, K]."""
    rows, cols = np.nonzero(items >= 0)  # row-major: by user, then rank
    picked = items[rows, cols]
    columns = [
        pa.array(np.asarray(user_ids)[rows], type=schema.field(0).type),
        pa.array((cols + 1).astype(np.int32)),
        pa.array(item_ids.to_raw(picked), type=schema.field("item_id").type),
        pa.array(scores[rows, cols].astype(np.float32)),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_candidates(path: str | Path, tables: Iterable[pa.Table], schema: pa.Schema) -> int:
    """Write ``tables`` (each of ``schema``) as one Parquet file, atomically; returns rows.

    An exception from ``tables`` (or an interrupt) leaves ``path`` as it was.
    """
    n_rows = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table)
                n_rows += table.num_rows
    return n_rows
