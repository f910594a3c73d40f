"""Pure top-K ranking metrics over a hit matrix, every cut-off from one cumulative sum.

Inputs shared by every function:

- ``hits``: bool [B, K]; ``hits[b, r]`` says whether the item at rank ``r`` (0-based) of user
  ``b``'s top-K list is relevant. ``K`` may be smaller than a requested cut-off ``k`` (a catalogue
  with fewer than ``k`` rankable items): the list is then read as padded with non-relevant items,
  so ``hits@k = hits@K`` while ``k`` itself stays the divisor of Precision@k.
- ``n_relevant``: int [B], ``|R_u|``, the number of relevant (held-out) items of each user, counted
  whether or not they can appear in the list.
- ``ks``: the cut-offs, positive ints.

Every function returns float64 [B, len(ks)], column ``j`` for cut-off ``ks[j]``; averaging over
users is the caller's job (:func:`recsys_cl.metrics.evaluate` does it). Recall and NDCG are
undefined for a user with ``|R_u| = 0`` and are NaN there; the evaluator never passes such users.

Definitions follow LightGCN (He et al., SIGIR 2020) and its reference code: Recall divides by
``|R_u|`` (not ``min(|R_u|, k)``), and ideal DCG fills ``min(|R_u|, k)`` positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys_cl.errors import RecsysError

METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit_rate", "mrr")


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validate cut-offs: non-empty, positive ints; duplicates are dropped, order kept."""
    if isinstance(ks, int):
        ks = (ks,)
    out = tuple(dict.fromkeys(int(k) for k in ks))
    if not out:
        raise RecsysError("ks is empty: give at least one cut-off, e.g. ks=(20,)")
    bad = [k for k in out if k < 1]
    if bad:
        raise RecsysError(f"cut-offs must be positive, got {bad}")
    return out


def _check_hits(hits: Tensor, n_relevant: Tensor | None = None) -> None:
    if hits.dim() != 2 or hits.dtype != torch.bool:
        raise ValueError(f"hits must be bool [B, K], got {hits.dtype} {tuple(hits.shape)}")
    if n_relevant is not None and tuple(n_relevant.shape) != (hits.shape[0],):
        raise ValueError(
            f"n_relevant must be [B]=[{hits.shape[0]}], got {tuple(n_relevant.shape)}"
        )


def _hits_at(hits: Tensor, ks: Sequence[int]) -> Tensor:
    """hits@k for every k: float64 [B, len(ks)], read off one cumulative sum."""
    b, k_list = hits.shape
    if k_list == 0:
        return torch.zeros(b, len(ks), dtype=torch.float64, device=hits.device)
    cum = hits.cumsum(dim=1, dtype=torch.float64)
    cols = torch.tensor([min(k, k_list) - 1 for k in ks], device=hits.device)
    return cum[:, cols]


def _ks_tensor(ks: Sequence[int], device: torch.device) -> Tensor:
    return torch.tensor(list(ks), dtype=torch.float64, device=device)


def recall_at_k(hits: Tensor, n_relevant: Tensor, ks: Sequence[int]) -> Tensor:
    """Recall@k = |top-k ∩ R_u| / |R_u|  (LightGCN; NaN where |R_u| = 0).

    Shapes: ``hits`` bool [B, K], ``n_relevant`` int [B] -> float64 [B, len(ks)].
    """
    ks = check_ks(ks)
    _check_hits(hits, n_relevant)
    n_rel = n_relevant.to(torch.float64).unsqueeze(1)
    return _hits_at(hits, ks) / n_rel.where(n_rel > 0, torch.nan)


def precision_at_k(hits: Tensor, ks: Sequence[int]) -> Tensor:
    """Precision@k = |top-k ∩ R_u| / k.

    Shapes: ``hits`` bool [B, K] -> float64 [B, len(ks)].
    """
    ks = check_ks(ks)
    _check_hits(hits)
    return _hits_at(hits, ks) / _ks_tensor(ks, hits.device)


def hit_rate_at_k(hits: Tensor, ks: Sequence[int]) -> Tensor:
    """HitRate@k = 1[|top-k ∩ R_u| > 0].

    Shapes: ``hits`` bool [B, K] -> float64 [B, len(ks)].
    """
    ks = check_ks(ks)
    _check_hits(hits)
    return (_hits_at(hits, ks) > 0).to(torch.float64)


def _discounts(n: int, device: torch.device) -> Tensor:
    """1 / log2(r + 2) for ranks r = 0..n-1, float64 [n]."""
    return 1.0 / torch.log2(torch.arange(n, dtype=torch.float64, device=device) + 2.0)


def ndcg_at_k(hits: Tensor, n_relevant: Tensor, ks: Sequence[int]) -> Tensor:
    """NDCG@k = DCG@k / IDCG@k  (NaN where |R_u| = 0), with binary gains and ranks r from 0:

        DCG@k  = sum_{r < k} hits[r] / log2(r + 2)
        IDCG@k = sum_{r < min(|R_u|, k)} 1 / log2(r + 2)

    Shapes: ``hits`` bool [B, K], ``n_relevant`` int [B] -> float64 [B, len(ks)].
    """
    ks = check_ks(ks)
    _check_hits(hits, n_relevant)
    b, k_list = hits.shape
    device = hits.device
    if k_list:
        dcg_cum = (hits.to(torch.float64) * _discounts(k_list, device)).cumsum(dim=1)
        cols = torch.tensor([min(k, k_list) - 1 for k in ks], device=device)
        dcg = dcg_cum[:, cols]
    else:
        dcg = torch.zeros(b, len(ks), dtype=torch.float64, device=device)
    # ideal_cum[n] = IDCG over n positions, n = 0..max(ks)
    ideal_cum = torch.cat(
        [torch.zeros(1, dtype=torch.float64, device=device), _discounts(max(ks), device).cumsum(0)]
    )
    n_ideal = torch.minimum(
        n_relevant.to(device=device, dtype=torch.int64).unsqueeze(1),
        torch.tensor(list(ks), dtype=torch.int64, device=device),
    )
    idcg = ideal_cum[n_ideal]
    return dcg / idcg.where(idcg > 0, torch.nan)


def mrr_at_k(hits: Tensor, ks: Sequence[int]) -> Tensor:
    """MRR@k = 1 / rank of the first relevant item, ranks from 1, if that rank is <= k; else 0.

    Shapes: ``hits`` bool [B, K] -> float64 [B, len(ks)].
    """
    ks = check_ks(ks)
    _check_hits(hits)
    b, k_list = hits.shape
    device = hits.device
    if k_list == 0:
        return torch.zeros(b, len(ks), dtype=torch.float64, device=device)
    any_hit = hits.any(dim=1)
    first = hits.to(torch.uint8).argmax(dim=1).to(torch.float64) + 1.0  # argmax: first max
    first = first.where(any_hit, torch.inf).unsqueeze(1)
    within = first <= _ks_tensor(ks, device)
    return torch.where(within, 1.0 / first, torch.zeros((), dtype=torch.float64, device=device))


def ranking_metrics(
    hits: Tensor,
    n_relevant: Tensor,
    ks: Sequence[int],
    metrics: Sequence[str] = METRICS,
) -> dict[str, Tensor]:
    """Every requested metric at every cut-off, keyed ``"{metric}@{k}"``, each float64 [B].

    ``metrics`` is drawn from :data:`METRICS`; the formulas are those of the single functions.
    """
    ks = check_ks(ks)
    metrics = check_metrics(metrics)
    out: dict[str, Tensor] = {}
    for name in metrics:
        if name == "recall":
            values = recall_at_k(hits, n_relevant, ks)
        elif name == "ndcg":
            values = ndcg_at_k(hits, n_relevant, ks)
        elif name == "precision":
            values = precision_at_k(hits, ks)
        elif name == "hit_rate":
            values = hit_rate_at_k(hits, ks)
        else:
            values = mrr_at_k(hits, ks)
        for j, k in enumerate(ks):
            out[f"{name}@{k}"] = values[:, j]
    return out


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """Validate metric names against :data:`METRICS`; duplicates are dropped, order kept."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    out = tuple(dict.fromkeys(metrics))
    unknown = [m for m in out if m not in METRICS]
    if unknown:
        raise RecsysError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    return out
