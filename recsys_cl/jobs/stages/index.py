"""The index stage: a finished run folder → a saved FAISS index over its item embeddings.

:func:`run_index` builds an index over the run's item embeddings, saves it with its metadata
(default ``RUN_DIR/index/<kind>.faiss`` + ``.json``) and measures its build time and ANN
recall@K against exact search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys_cl.config.retrieval import DEFAULT_K, IndexSpec
from recsys_cl.retrieval import ItemIndex, ann_recall, build_index, save_index
from recsys_cl.retrieval.index import Device

from ..folder import RunFolder

# Users sampled for the ANN-vs-exact check after a build: enough for ±0.5% on the mean recall.
DEFAULT_CHECK_QUERIES = 2000


@dataclass(frozen=True)
class IndexReport:
    """What :func:`run_index` built and measured."""

    index_path: Path
    meta_path: Path
    index: ItemIndex
    file_bytes: int
    recall: float
    recall_k: int
    n_queries: int
    queries_per_second: float


def default_index_path(run: RunFolder, spec: IndexSpec, out: str | Path | None) -> Path:
    """``out`` if it names a ``.faiss`` file; else ``<folder>/<spec name>.faiss`` in ``out``
    (default ``RUN_DIR/index``)."""
    if out is not None and Path(out).suffix == ".faiss":
        return Path(out)
    if out is None:
        return run.index_file(spec.name())
    return Path(out) / f"{spec.name()}.faiss"


def run_index(
    run_dir: str | Path,
    spec: IndexSpec,
    *,
    out: str | Path | None = None,
    device: Device = "auto",
    check_k: int = DEFAULT_K,
    check_queries: int = DEFAULT_CHECK_QUERIES,
    seed: int = 0,
) -> IndexReport:
    """Build ``spec`` over the run's item embeddings, save it, and check it against exact
    search on ``check_queries`` users drawn with ``seed`` (all users when fewer)."""
    run = RunFolder(run_dir).require()
    user_emb, item_emb = run.embeddings()
    item_index = build_index(item_emb, spec, item_ids=run.split.items, device=device)
    index_path, meta_path = save_index(item_index, default_index_path(run, spec, out))
    rng = np.random.default_rng(seed)
    n_users = user_emb.shape[0]
    sample = np.sort(rng.choice(n_users, size=min(check_queries, n_users), replace=False))
    queries = user_emb[sample]
    start = time.perf_counter()
    item_index.search(queries, check_k)
    qps = len(sample) / max(time.perf_counter() - start, 1e-9)
    recall = ann_recall(item_index, item_emb, queries, check_k)
    return IndexReport(
        index_path=index_path,
        meta_path=meta_path,
        index=item_index,
        file_bytes=index_path.stat().st_size,
        recall=recall,
        recall_k=min(check_k, item_index.n_items),
        n_queries=len(sample),
        queries_per_second=qps,
    )


__all__ = ["DEFAULT_CHECK_QUERIES", "IndexReport", "default_index_path", "run_index"]
