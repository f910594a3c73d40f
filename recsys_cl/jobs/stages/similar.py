"""The similar-items stage: a finished run folder (+ a saved index) → each requested item's
K nearest items as Parquet (``recsys-cl similar``), through the
:class:`~recsys_cl.retrieval.CandidateModel` the MLflow model serves (an ``item_id`` request
row), so the command line and the served model rank alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cl.config.retrieval import DEFAULT_K, DEFAULT_MAX_K
from recsys_cl.data import IdMap
from recsys_cl.errors import RecsysError
from recsys_cl.retrieval import (
    DEFAULT_CHUNK_USERS,
    UnknownItemError,
    candidate_schema,
)
from recsys_cl.retrieval.candidate_model import QUERY_ITEM_COLUMN, lookup_items
from recsys_cl.retrieval.ids import short_repr
from recsys_cl.retrieval.index import Device

from ..folder import RunFolder
from .recommend import AllowReport, allow_list, candidate_model, write_ranked_lists

SIMILAR_FILE = "similar_items.parquet"


@dataclass(frozen=True)
class SimilarReport:
    """What :func:`run_similar` wrote.

    Attributes:
        k: the requested K; list_length: min(K, I), the longest list written.
        n_items: query items written (de-duplicated). n_rows: Parquet rows.
        n_short: query items with fewer than ``k`` similar items (too few eligible items).
    """

    out: Path
    index: str
    k: int
    list_length: int
    n_items: int
    n_rows: int
    n_short: int
    seconds: float
    allowed: AllowReport | None


def parse_item_ids(values: Sequence[str], items: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Raw item ids (strings from the command line or a file) → (ids typed like the map, int64
    indices), duplicates dropped, order kept, read as the served model reads them.

    Raises:
        InvalidItemIdError: an entry that is not an item id of the run's type.
        UnknownItemError: an id the run does not have (the first, with the count).
    """
    texts = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    typed, index = lookup_items(items, texts, where="requested item")
    _, first = np.unique(typed, return_index=True)
    keep = np.sort(first)
    typed, index = typed[keep], index[keep]
    if (unknown := np.flatnonzero(index < 0)).size:
        raise UnknownItemError(
            f"{unknown.size:,} of {len(typed):,} requested items are not items of the run, the "
            f"first {short_repr(typed[int(unknown[0])])}: similar items need an item the run "
            "trained on"
        )
    return typed, index


def run_similar(
    run_dir: str | Path,
    *,
    index_path: str | Path | None = None,
    items: Sequence[str] | None = None,
    k: int = DEFAULT_K,
    allow_items: Sequence[Any] | None = None,
    out: str | Path | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    k_factor: int | None = None,
    device: Device = "auto",
    chunk_size: int = DEFAULT_CHUNK_USERS,
    progress: bool = True,
) -> SimilarReport:
    """Write the ``k`` items nearest to each of ``items`` (raw ids; None = every item), the
    item itself excluded and only ``allow_items`` when given, to Parquet (``query_item_id, rank,
    item_id, score``; default ``RUN_DIR/similar_items.parquet``), through the index's metric.
    """
    if k < 1:
        raise RecsysError(f"-k {k}: needs k >= 1")
    run = RunFolder(run_dir).require()
    split = run.split
    if items is None:
        raw_ids: np.ndarray = split.items.to_raw(np.arange(split.n_items))
        item_idx = np.arange(split.n_items, dtype=np.int64)
    else:
        raw_ids, item_idx = parse_item_ids(items, split.items)
        if not raw_ids.size:
            raise RecsysError("no item ids given (--items / --items-file is empty)")
    allow, allowed = (None, None) if allow_items is None else allow_list(allow_items, split.items)
    model = candidate_model(
        run,
        index_path=index_path,
        exclude="none",
        k=k,
        max_k=max(k, DEFAULT_MAX_K),
        allow=allow,
        device=device,
        fold_in=False,
    )
    model.index.set_search_params(nprobe=nprobe, ef_search=ef_search, k_factor=k_factor)
    k_eff = min(k, model.index.n_items)
    out_path = Path(out) if out is not None else run.root / SIMILAR_FILE
    written = write_ranked_lists(
        out_path,
        item_idx,
        raw_ids,
        lambda chunk: model.similar(chunk, k_eff),
        candidate_schema(split.items, split.items, key=QUERY_ITEM_COLUMN),
        split.items,
        k=k,
        desc="similar",
        unit="item",
        chunk_size=chunk_size,
        progress=progress,
    )
    return SimilarReport(
        out=out_path,
        index=model.index.describe() if index_path is not None else "exact (flat, in memory)",
        k=k,
        list_length=k_eff,
        n_items=len(item_idx),
        n_rows=written.rows,
        n_short=written.short,
        seconds=written.seconds,
        allowed=allowed,
    )


__all__ = ["SIMILAR_FILE", "SimilarReport", "parse_item_ids", "run_similar"]
