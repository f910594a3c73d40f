"""Softmax (cross-entropy) losses: InfoNCE between two views; for ranking, softmax over the
batch's positives (:func:`in_batch_softmax_loss`) or over sampled negatives
(:func:`sampled_softmax_loss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_cl.losses._reduce import weighted_mean


def info_nce(view1: Tensor, view2: Tensor, tau: float, weights: Tensor | None = None) -> Tensor:
    r"""InfoNCE / NT-Xent with in-batch negatives (SGL eq. 9; SimGCL eq. 2), mean reduction.

    Rows are L2-normalized, :math:`z = v / \lVert v \rVert`; row b of ``view1`` is the anchor, row
    b of ``view2`` its positive, and the other rows of ``view2`` its negatives:
    :math:`\ell_b = -\log \frac{\exp(z^1_b \cdot z^2_b / \tau)}
    {\sum_{c} \exp(z^1_b \cdot z^2_c / \tau)}`,
    computed as ``F.cross_entropy`` on the [B, B] logits with targets on the diagonal. One
    direction only (view1 → view2), as in the SGL and SELFRec reference code. The methods call
    it on the de-duplicated users and, separately, the de-duplicated items of a batch, so a
    row's negatives never include itself.

    Args:
        view1, view2: float [B, D], rows aligned.
        tau: temperature > 0.
        weights: optional float [B].

    Returns:
        scalar; identical views give a lower value than unrelated ones.
    """
    if view1.shape != view2.shape or view1.dim() != 2:
        raise ValueError(
            f"views must be equal [B, D], got {tuple(view1.shape)}, {tuple(view2.shape)}"
        )
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    # 1/τ scales the [B, D] anchors rather than the [B, B] logits: one pass over B x D
    # elements instead of B x B, forward and backward (the logits agree to float rounding).
    z1 = F.normalize(view1, dim=1) / tau
    z2 = F.normalize(view2, dim=1)
    logits = z1 @ z2.T
    target = torch.arange(view1.size(0), device=view1.device)
    return weighted_mean(F.cross_entropy(logits, target, reduction="none"), weights)


def in_batch_softmax_loss(
    user: Tensor,
    pos: Tensor,
    tau: float,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    item_ids: Tensor | None = None,
    forbidden: Tensor | None = None,
    focal_gamma: float = 0.0,
) -> Tensor:
    r"""Softmax cross-entropy of each positive item against the batch's other positives.

    Row b's candidates are all B positives of the batch, its own is the target:
    :math:`s_{bc} = u_b \cdot p_c / \tau - \log q_c` and
    :math:`\ell_b = -\log\mathrm{softmax}(s_b)_b` via ``F.cross_entropy``. Subtracting
    ``log_q`` (the log of each candidate's sampling probability) is the logQ correction of
    Yi et al. (RecSys 2019, eq. 3): it removes the bias towards popular items that in-batch
    candidates, drawn in proportion to popularity, carry.

    Args:
        user: float [B, D].
        pos: float [B, D], the positive item of each user (and the batch's candidates).
        tau: temperature > 0.
        log_q: optional float [B], log q of each batch positive (one per column).
        weights: optional float [B].
        item_ids: optional long [B] item ids of ``pos``; another column holding the row's own
            positive item is masked out (an "accidental hit" is no negative).
        forbidden: optional bool [B, B]: candidates that are no negative of the row (e.g.
            another training positive of its user); masked out like accidental hits. The target
            column is never masked.
        focal_gamma: γ ≥ 0, focal modulation (Lin et al., ICCV 2017):
            :math:`\ell_b = -(1 - p_b)^\gamma \log p_b` with :math:`p_b` the target's softmax
            probability; :math:`\log(1 - p_b)` is the logsumexp of the other logits minus the
            logsumexp of all, so no probability is ever exponentiated. γ = 0 is plain softmax.

    Returns:
        scalar, the (weighted) mean over rows.
    """
    _check_softmax_args(user, pos, tau, focal_gamma)
    batch = user.size(0)
    logits = (user / tau) @ pos.T  # 1/τ on [B, D], not on [B, B] (see info_nce)
    if log_q is not None:
        logits = logits - log_q.reshape(1, batch)
    if item_ids is not None:
        hit = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
        hit.fill_diagonal_(False)
        logits = logits.masked_fill(hit, float("-inf"))
    if forbidden is not None:
        if forbidden.shape != (batch, batch):
            raise ValueError(f"forbidden must be [B, B], got {tuple(forbidden.shape)}")
        eye = torch.eye(batch, dtype=torch.bool, device=user.device)
        logits = logits.masked_fill(forbidden & ~eye, float("-inf"))
    target = torch.arange(batch, device=user.device)
    return _softmax_cross_entropy(logits, target, weights, focal_gamma)


def sampled_softmax_loss(
    user: Tensor,
    pos: Tensor,
    neg: Tensor,
    tau: float,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    forbidden: Tensor | None = None,
    focal_gamma: float = 0.0,
) -> Tensor:
    r"""Softmax cross-entropy of each positive item against its own sampled negatives.

    Row b's candidates are its positive (the target, column 0) and its M negatives:
    :math:`s_b = [u_b \cdot p_b, u_b \cdot n_{b1}, \dots, u_b \cdot n_{bM}] / \tau - \log q_b`,
    :math:`\ell_b = -\log\mathrm{softmax}(s_b)_0` via ``F.cross_entropy``; ``log_q`` is the
    logQ correction as in :func:`in_batch_softmax_loss`.

    Args:
        user: float [B, D].
        pos: float [B, D], the positive item of each user.
        neg: float [B, M, D], sampled negatives per user.
        tau: temperature > 0.
        log_q: optional float [B, 1 + M] (or broadcastable), positive first, then the negatives.
        weights: optional float [B].
        forbidden: optional bool [B, M]: negatives that are no negative of the row; masked out.
            The positive is never masked.
        focal_gamma: γ ≥ 0, focal modulation as in :func:`in_batch_softmax_loss`.

    Returns:
        scalar, the (weighted) mean over rows.
    """
    _check_softmax_args(user, pos, tau, focal_gamma)
    batch = user.size(0)
    if neg.dim() != 3 or neg.size(0) != batch or neg.size(2) != user.size(1):
        raise ValueError(f"neg must be [B, M, D], got {tuple(neg.shape)}")
    pos_logit = (user * pos).sum(dim=1, keepdim=True)
    neg_logits = torch.einsum("bd,bmd->bm", user, neg)
    logits = torch.cat([pos_logit, neg_logits], dim=1) / tau
    if log_q is not None:
        logits = logits - log_q
    if forbidden is not None:
        if forbidden.shape != neg_logits.shape:
            raise ValueError(f"forbidden must be [B, M], got {tuple(forbidden.shape)}")
        keep_pos = torch.zeros(batch, 1, dtype=torch.bool, device=user.device)
        logits = logits.masked_fill(torch.cat([keep_pos, forbidden], dim=1), float("-inf"))
    target = torch.zeros(batch, dtype=torch.int64, device=user.device)
    return _softmax_cross_entropy(logits, target, weights, focal_gamma)


def _check_softmax_args(user: Tensor, pos: Tensor, tau: float, focal_gamma: float) -> None:
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not focal_gamma >= 0:
        raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
    if user.shape != pos.shape or user.dim() != 2:
        raise ValueError(
            f"user and pos must be equal [B, D], got {tuple(user.shape)}, {tuple(pos.shape)}"
        )


def _softmax_cross_entropy(
    logits: Tensor, target: Tensor, weights: Tensor | None, focal_gamma: float
) -> Tensor:
    """(Focal-modulated) cross-entropy of ``logits`` [B, C] for ``target`` [B], weighted mean."""
    per_sample = F.cross_entropy(logits, target, reduction="none")
    if focal_gamma > 0:
        per_sample = _focal_factor(logits, target, focal_gamma) * per_sample
    return weighted_mean(per_sample, weights)


def _focal_factor(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    r""":math:`(1 - p_b)^\gamma` per row of ``logits`` [B, C] for the ``target`` [B] column.

    :math:`\log(1 - p_b) = \mathrm{lse}(\text{others}) - \mathrm{lse}(\text{all})`. A row
    whose other logits are all -inf has p = 1 and factor 0; its logsumexp is replaced by a
    finite stand-in before the exp so no NaN reaches the gradient.
    """
    rows = torch.arange(logits.size(0), device=logits.device)
    others = logits.clone()
    others[rows, target] = float("-inf")
    lone = torch.isneginf(others).all(dim=1)
    others = others.masked_fill(lone.unsqueeze(1), 0.0)
    log_rest = torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)
    return torch.exp(gamma * log_rest).masked_fill(lone, 0.0)
