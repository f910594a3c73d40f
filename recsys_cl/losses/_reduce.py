"""Per-sample weighting and mean reduction shared by every loss."""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_mean(per_sample: Tensor, weights: Tensor | None) -> Tensor:
    r""":math:`\frac{1}{B}\sum_b w_b \ell_b` for per-sample losses [B] and weights [B].

    Divides by B, not by :math:`\sum w`: the imbalance strategies give weights of mean ~1, and
    dividing by their sum would undo any deliberate change of the batch's total weight. All-one
    weights give the plain mean exactly. Returns a scalar.
    """
    if weights is None:
        return per_sample.mean()
    if weights.shape != per_sample.shape:
        raise ValueError(
            f"weights {tuple(weights.shape)} must match per-sample losses {tuple(per_sample.shape)}"
        )
    return (weights.to(per_sample.dtype) * per_sample).sum() / per_sample.numel()


def mean_per_id(inverse: Tensor, n: int, weights: Tensor) -> Tensor:
    """The mean of ``weights`` [B] over the occurrences of each of n ids (``inverse`` [B]: each
    occurrence's id in 0..n-1, as ``torch.unique(..., return_inverse=True)`` gives); [n]."""
    total = weights.new_zeros(n).index_add_(0, inverse, weights)
    return total / torch.bincount(inverse, minlength=n).to(total.dtype)


def check_pair_scores(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Check pos [B] and neg [B] or [B, M]; return neg as [B, M] (M = 1 for [B])."""
    if pos_scores.dim() != 1:
        raise ValueError(f"pos_scores must be [B], got {tuple(pos_scores.shape)}")
    if neg_scores.dim() == 1:
        neg_scores = neg_scores.unsqueeze(1)
    if neg_scores.dim() != 2 or neg_scores.size(0) != pos_scores.size(0):
        raise ValueError(
            f"neg_scores must be [B] or [B, M] with B={pos_scores.size(0)}, "
            f"got {tuple(neg_scores.shape)}"
        )
    return neg_scores
