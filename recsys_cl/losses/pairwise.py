"""Losses on (positive score, negative scores) pairs: BPR, triplet hinge, margin contrastive.

Shapes: ``pos_scores`` [B]; ``neg_scores`` [B] (one negative each) or [B, M] (M negatives
each); optional ``weights`` [B]. Each sample's loss is the mean over its M negatives, then the
batch is reduced by :func:`~recsys_cl.losses._reduce.weighted_mean` (mean over B).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_cl.losses._reduce import check_pair_scores, weighted_mean


def bpr_loss(
    pos_scores: Tensor,
    neg_scores: Tensor,
    weights: Tensor | None = None,
    focal_gamma: float = 0.0,
) -> Tensor:
    r"""Bayesian personalized ranking (Rendle et al., UAI 2009), mean reduction.

    :math:`\ell_b = \frac{1}{M}\sum_m -\log\sigma(s^+_b - s^-_{bm})`, computed with
    ``F.logsigmoid`` (no overflow for large score gaps). Equal scores give :math:`\log 2`.

    ``focal_gamma`` = γ > 0 applies focal modulation (Lin et al., ICCV 2017) to each pair, read
    as the binary event "the positive outranks the negative" with :math:`p = \sigma(x)`,
    :math:`x = s^+ - s^-`: :math:`-(1 - p)^\gamma \log p`. The factor is computed as
    :math:`\exp(\gamma \log\sigma(-x))`, finite with finite gradients for any score gap;
    pairs already ranked well (p → 1) fade out, hard pairs keep their weight. γ = 0 is plain
    BPR exactly. Returns a scalar.
    """
    if not focal_gamma >= 0:
        raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
    neg = check_pair_scores(pos_scores, neg_scores)
    gap = pos_scores.unsqueeze(1) - neg
    per_pair = -F.logsigmoid(gap)
    if focal_gamma > 0:
        per_pair = torch.exp(focal_gamma * F.logsigmoid(-gap)) * per_pair
    return weighted_mean(per_pair.mean(dim=1), weights)


def triplet_margin_loss(
    pos_scores: Tensor, neg_scores: Tensor, margin: float, weights: Tensor | None = None
) -> Tensor:
    r"""Hinge (triplet) ranking loss on scores, mean reduction.

    :math:`\ell_b = \frac{1}{M}\sum_m \max(0,\ m - s^+_b + s^-_{bm})`. For a distance-based
    triplet loss (CML-style) pass negated distances as scores. Returns a scalar.
    """
    neg = check_pair_scores(pos_scores, neg_scores)
    per_sample = F.relu(margin - pos_scores.unsqueeze(1) + neg).mean(dim=1)
    return weighted_mean(per_sample, weights)


def margin_contrastive_loss(
    pos_scores: Tensor,
    neg_scores: Tensor,
    margin: float,
    neg_weight: float = 1.0,
    weights: Tensor | None = None,
) -> Tensor:
    r"""Cosine contrastive loss of SimpleX (Mao et al., CIKM 2021, eq. 2), mean reduction.

    :math:`\ell_b = (1 - s^+_b) + w \cdot \frac{1}{M}\sum_m \max(0,\ s^-_{bm} - m)`, meant for
    cosine scores in [-1, 1]: positives are pulled to similarity 1, negatives pushed below the
    margin m and ignored once there. ``neg_weight`` is SimpleX's w (1.0 weighs both parts
    equally; the paper tunes it per dataset). Returns a scalar.
    """
    neg = check_pair_scores(pos_scores, neg_scores)
    per_sample = (1.0 - pos_scores) + neg_weight * F.relu(neg - margin).mean(dim=1)
    return weighted_mean(per_sample, weights)
