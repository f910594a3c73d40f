"""The candidate bundle of a finished run folder: what the served candidate model loads.

Written here, in the jobs (it reads a run folder and its config), and read by
:class:`recsys_cl.tracking.candidate_model.CandidateModel`, which needs nothing but the bundle.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.errors import RecsysError
from recsys_cl.io import atomic_dir, write_json
from recsys_cl.retrieval import PairSet, build_index, index_paths, load_index, most_popular, save_index
from recsys_cl.tracking.candidate_model import (
    BUNDLE_FILE,
    DEFAULT_K,
    DEFAULT_MAX_K,
    DEFAULT_MAX_ROWS,
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    ITEM_FILE,
    POPULAR_FILE,
    SEEN_FILE,
    USER_FILE,
    BundleInfo,
    ColdStart,
    id_dtype,
    limits_ok,
)

from .recommend import folder_parts
from .retrieval import load_run


def write_candidate_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    index_path: str | Path | None = None,
    k: int = DEFAULT_K,
    cold_start: ColdStart = "popular",
    max_k: int = DEFAULT_MAX_K,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Path:
    """Write the candidate bundle of a finished ``recsys-cl train`` run to ``out_dir``.

    The folder is built next to ``out_dir`` and swapped in only when complete
    (:func:`recsys_cl.io.atomic_dir`), so a server never loads half a bundle.

    Args:
        index_path: a saved index of this run (checked against its embeddings and item ids,
            then copied byte for byte); None builds an exact flat index over the items.
        k: the list length of a request that names none.
        cold_start: ids the run never trained on get the most popular training items
            (``popular``, as ``recsys-cl recommend --cold-start popular``) or an
            :class:`UnknownUserError` (``error``).
        max_k, max_rows: the longest list and the most rows one request may ask for (a request
            over either is refused, one line naming the row).

    Raises:
        RecsysError: a bad ``k`` / ``cold_start``, or ``out_dir`` is something other than a
            bundle (it is replaced whole: never the run folder); DataError and the retrieval
            errors for a run or index that cannot be read or does not match.
    """
    if not limits_ok(k, max_k, max_rows) or cold_start not in ("popular", "error"):
        raise RecsysError(
            f"need 1 <= k <= max_k, max_rows >= 1 and cold_start 'popular' or 'error', got k={k!r}, "
            f"max_k={max_k!r}, max_rows={max_rows!r}, cold_start={cold_start!r}"
        )
    out = Path(out_dir)
    if out.exists() and not (out / BUNDLE_FILE).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise RecsysError(f"{out}: exists and is not a candidate bundle; refusing to replace it")
    run = load_run(run_dir)
    split = run.split
    # As `recsys-cl recommend`: a labelled run's popularity counts only its positive rows, and
    # every train + validation row is masked (what evaluation masks at test time).
    parts = folder_parts(run)
    seen = PairSet.from_tables(parts.test_exclude, split.n_users, split.n_items)
    pop_items, pop_scores = most_popular(parts.train, split.n_items)
    if index_path is None:
        index = build_index(run.item_emb, IndexSpec(), item_ids=split.items, device="cpu")
    else:
        index = load_index(index_path, item_emb=run.item_emb, item_ids=split.items, device="cpu")
    info = BundleInfo(
        k=k, cold_start=cold_start, metric=index.metric, index=index.meta.factory,
        user_id_dtype=id_dtype(split.users), item_id_dtype=id_dtype(split.items),
        n_users=split.n_users, n_items=split.n_items, dim=index.dim,
        n_seen=int(seen.keys.size), source_run=run.run_dir.resolve().name,
        max_k=max_k, max_rows=max_rows,
    )
    seen_users, seen_items = np.divmod(seen.keys, split.n_items)
    tables = {
        USER_FILE: {"user_id": split.users.raw, "embedding": run.user_emb},
        ITEM_FILE: {"item_id": split.items.raw, "embedding": run.item_emb},
        SEEN_FILE: {"user_id": split.users.to_raw(seen_users), "item_id": split.items.to_raw(seen_items)},
        POPULAR_FILE: {"item_id": split.items.to_raw(pop_items), "score": pop_scores},
    }
    with atomic_dir(out) as tmp:
        for name, columns in tables.items():
            pl.DataFrame(columns).write_parquet(tmp / name)
        if index_path is None:
            save_index(index, tmp / INDEX_FILE)
        else:
            # A byte copy keeps the saved index's checksum, which every load checks again.
            for source, target in zip(index_paths(index_path), index_paths(tmp / INDEX_FILE)):
                shutil.copyfile(source, target)
        write_json(tmp / BUNDLE_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(info)})
    return out


__all__ = ["write_candidate_bundle"]
