"""Built-in quality checks: ANN recall against exact search, and ranking metrics of candidate
lists against held-out items.

- **ANN recall@K** of a query = |ANN top-K ∩ exact top-K| / |exact top-K|, averaged over the
  queries; exact search is a flat inner-product index over the same (normalized, for cosine)
  item vectors. It measures the index alone: no items are excluded.
- **Candidate metrics** read each user's candidate list exactly as
  :func:`recsys_cl.metrics.evaluate` reads its top-K list (same
  :func:`~recsys_cl.metrics.ranking.ranking_metrics`, users without held-out items left out
  and counted), so with a flat index and the same exclusions the numbers equal the evaluator's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.metrics.ranking import check_ks, check_metrics, ranking_metrics

from .candidates import Candidates, PairSet
from .index import ItemIndex, as_matrix, normalize_rows

# Queries per exact-search call in recall checks (bounds the [B, K, K] comparison too).
_RECALL_CHUNK = 4096


def exact_top_k(item_emb: Any, queries: Any, k: int, metric: str = "ip") -> np.ndarray:
    """Exact top-``k`` item indices int64 [B, min(k, I)] of ``queries`` by inner product (on
    normalized vectors for ``cosine``), through a FAISS flat index on the CPU."""
    items = as_matrix(item_emb, "item embeddings")
    q = as_matrix(queries, "queries")
    if metric == "cosine":
        items, q = normalize_rows(items), normalize_rows(q)
    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(items)
    return flat.search(q, min(k, items.shape[0]))[1].astype(np.int64)


def recall_vs_exact(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approx_b ∩ exact_b| / |exact_b| (entries -1 ignored).

    Shapes: int [B, K] each (same K).
    """
    if approx.shape != exact.shape:
        raise ValueError(f"approx {approx.shape} and exact {exact.shape} differ in shape")
    if approx.shape[0] == 0:
        return float("nan")
    total = 0.0
    for start in range(0, approx.shape[0], _RECALL_CHUNK):
        a = approx[start : start + _RECALL_CHUNK]
        e = exact[start : start + _RECALL_CHUNK]
        found = ((a[:, :, None] == e[:, None, :]) & (e[:, None, :] >= 0)).any(axis=1)
        valid = (e >= 0).sum(axis=1)
        total += float(np.sum(found.sum(axis=1) / np.maximum(valid, 1)))
    return total / approx.shape[0]


def ann_recall(index: ItemIndex, item_emb: Any, queries: Any, k: int = 20) -> float:
    """Recall@``k`` of ``index`` against exact search over ``item_emb`` for ``queries``."""
    approx = index.search(queries, k)[1]
    exact = exact_top_k(item_emb, queries, k, index.metric)
    return recall_vs_exact(approx, exact)


@dataclass(frozen=True)
class CandidateQuality:
    """Ranking metrics of candidate lists (see :class:`CandidateScorer`).

    Attributes:
        metrics: mean over evaluated users, keyed ``"{metric}@{k}"``.
        n_users_evaluated: users with at least one held-out item.
        n_users_skipped: scored users without held-out items (left out of the means).
    """

    metrics: dict[str, float]
    n_users_evaluated: int
    n_users_skipped: int


class CandidateScorer:
    """Accumulates Recall/NDCG/... of :class:`Candidates` chunks against ``ground_truth``.

    Args:
        ground_truth: held-out items per user (U x I), e.g. the test split.
        ks: cut-offs, each at most the candidate list length.
        metrics: names from :data:`recsys_cl.metrics.ranking.METRICS`.
    """

    def __init__(
        self,
        ground_truth: UserItems,
        ks: Sequence[int] = (20,),
        metrics: Sequence[str] = ("recall", "ndcg"),
    ) -> None:
        self.ks = check_ks(ks)
        self.metric_names = check_metrics(metrics)
        self._truth = PairSet.from_tables(ground_truth, ground_truth.n_users, ground_truth.n_items)
        self._keys = [f"{m}@{k}" for m in self.metric_names for k in self.ks]
        self._sums = np.zeros(len(self._keys), dtype=np.float64)
        self._n_defined = np.zeros(len(self._keys), dtype=np.int64)
        self._evaluated = 0
        self._skipped = 0

    def update(self, cands: Candidates) -> None:
        if cands.items.shape[1] < max(self.ks):
            raise ValueError(
                f"candidate lists of length {cands.items.shape[1]} "
                f"cannot give cut-off {max(self.ks)}"
            )
        n_relevant = self._truth.counts[cands.users]
        keep = n_relevant > 0
        self._skipped += int((~keep).sum())
        self._evaluated += int(keep.sum())
        if not keep.any():
            return
        users, items = cands.users[keep], cands.items[keep]
        hits = torch.from_numpy(self._truth.contains(users, items))
        values = ranking_metrics(
            hits, torch.from_numpy(n_relevant[keep]), self.ks, self.metric_names
        )
        stacked = torch.stack([values[key] for key in self._keys])
        self._sums += stacked.nansum(dim=1).numpy()
        self._n_defined += (~torch.isnan(stacked)).sum(dim=1).numpy()

    def result(self) -> CandidateQuality:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self._sums / self._n_defined
        return CandidateQuality(
            metrics={key: float(v) for key, v in zip(self._keys, means, strict=True)},
            n_users_evaluated=self._evaluated,
            n_users_skipped=self._skipped,
        )


def candidate_quality(
    cands: Candidates,
    ground_truth: UserItems,
    ks: Sequence[int] = (20,),
    metrics: Sequence[str] = ("recall", "ndcg"),
) -> CandidateQuality:
    """:class:`CandidateScorer` over one :class:`Candidates`."""
    scorer = CandidateScorer(ground_truth, ks, metrics)
    scorer.update(cands)
    return scorer.result()
