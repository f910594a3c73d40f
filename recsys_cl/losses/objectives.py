"""The recommendation term of a method's loss, as a small module every method is handed.

A method (:class:`~recsys_cl.models.Recommender`) scores its batch with its final embeddings
and passes them here; which loss that is (BPR, in-batch or sampled softmax with or without
focal modulation and logQ correction, DirectAU's alignment and uniformity, SimpleX's cosine
contrastive loss) is the objective's business, so every method gets every variant without a
per-method case. Objectives hold no parameters: data-derived tensors (log q, the training
positives) are non-persistent buffers, moved by ``.to(device)`` and never written to a state
dict.

Shapes: ``user`` [B, D], ``pos`` [B, D], ``neg`` [B, D] or [B, M, D], ``users`` and
``pos_items`` long [B], ``weights`` float [B] or None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_cl.losses._reduce import mean_per_id, weighted_mean
from recsys_cl.losses.alignment import UNIFORMITY_T, alignment_loss, uniformity_loss
from recsys_cl.losses.pairwise import bpr_loss, margin_contrastive_loss
from recsys_cl.losses.softmax import in_batch_softmax_loss


class RecObjective(nn.Module, ABC):
    """A recommendation loss over a batch's final embeddings; see the module docstring."""

    #: whether :meth:`forward` reads ``neg`` (in-batch softmax does not; its ego L2 then skips
    #: the sampled negatives too).
    uses_negatives: bool = True

    @abstractmethod
    def forward(
        self,
        user: Tensor,
        pos: Tensor,
        neg: Tensor,
        users: Tensor,
        pos_items: Tensor,
        weights: Tensor | None,
        *,
        neg_items: Tensor | None = None,
    ) -> Tensor:
        """The scalar loss of the batch; ``neg_items``: the global ids of ``neg``'s rows
        (shape of ``neg`` less D) when they were drawn, else None."""


class BPRObjective(RecObjective):
    """BPR on inner products, optionally focal-modulated (:func:`~recsys_cl.losses.bpr_loss`).

    Args:
        focal_gamma: γ ≥ 0 (0: plain BPR).
    """

    def __init__(self, focal_gamma: float = 0.0) -> None:
        super().__init__()
        if not focal_gamma >= 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        self.focal_gamma = focal_gamma

    def forward(
        self,
        user: Tensor,
        pos: Tensor,
        neg: Tensor,
        users: Tensor,
        pos_items: Tensor,
        weights: Tensor | None,
        *,
        neg_items: Tensor | None = None,
    ) -> Tensor:
        pos_scores = (user * pos).sum(dim=-1)
        if neg.dim() == 3:
            neg_scores = (user.unsqueeze(1) * neg).sum(dim=-1)
        else:
            neg_scores = (user * neg).sum(dim=-1)
        return bpr_loss(pos_scores, neg_scores, weights, focal_gamma=self.focal_gamma)


class InBatchSoftmaxObjective(RecObjective):
    r"""Softmax over the batch's positives with logQ correction (Yi et al., RecSys 2019).

    Row b's candidates are the B positive items of the batch; its own is the target. Because
    batches are drawn from training edges, item i enters a batch with probability
    :math:`q_i` (its share of the sampled edges: pop_i / |E| for edge-uniform batches), so
    popular items are over-represented as negatives; subtracting :math:`\log q_i` from column
    i's logit removes that bias (eq. 3 of the paper). Columns holding the row's own item
    (accidental hits) and, when ``positives`` is given, any other training positive of the
    row's user, are masked, so a user's positive is never used as their negative.

    Args:
        tau: temperature > 0 (logits are inner products / τ).
        item_log_q: float [I], log q_i of each item as an in-batch candidate; None: no
            correction (plain in-batch softmax).
        positives: the training positives as CSR rows, (indptr long [U + 1], indices long
            [nnz]); None skips that mask (accidental hits are still masked).
        n_items: I, needed with ``positives``.
        focal_gamma: γ ≥ 0, focal modulation of the softmax (0: off).
    """

    uses_negatives = False
    # Buffers registered in __init__ (None when unused), declared for the type checker.
    item_log_q: Tensor | None
    positive_indptr: Tensor | None
    positive_indices: Tensor | None

    def __init__(
        self,
        tau: float,
        item_log_q: Tensor | None = None,
        positives: tuple[Tensor, Tensor] | None = None,
        n_items: int | None = None,
        focal_gamma: float = 0.0,
    ) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if not focal_gamma >= 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if positives is not None and n_items is None:
            raise ValueError("positives needs n_items")
        if item_log_q is not None and not bool(torch.isfinite(item_log_q).all()):
            raise ValueError("item_log_q must be finite (every item needs q > 0)")
        self.tau = tau
        self.focal_gamma = focal_gamma
        self.n_items = n_items
        self.register_buffer("item_log_q", item_log_q, persistent=False)
        indptr, indices = (None, None) if positives is None else positives
        self.register_buffer("positive_indptr", indptr, persistent=False)
        self.register_buffer("positive_indices", indices, persistent=False)

    def forward(
        self,
        user: Tensor,
        pos: Tensor,
        neg: Tensor,
        users: Tensor,
        pos_items: Tensor,
        weights: Tensor | None,
        *,
        neg_items: Tensor | None = None,
    ) -> Tensor:
        log_q = None if self.item_log_q is None else self.item_log_q[pos_items]
        forbidden = None
        if self.positive_indptr is not None:
            forbidden = self._positive_pairs(users, pos_items)
        return in_batch_softmax_loss(
            user,
            pos,
            self.tau,
            log_q=log_q,
            weights=weights,
            item_ids=pos_items,
            forbidden=forbidden,
            focal_gamma=self.focal_gamma,
        )

    def _positive_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        assert self.positive_indptr is not None and self.positive_indices is not None
        assert self.n_items is not None
        return positive_pairs(
            self.positive_indptr, self.positive_indices, self.n_items, users, items
        )


def positive_pairs(
    indptr: Tensor, indices: Tensor, n_items: int, users: Tensor, items: Tensor
) -> Tensor:
    """bool [R, C]: whether column c's item (``items`` [C]) is a training positive of row r's
    user (``users`` [R]), the positives given as CSR rows (``indptr``, ``indices``).

    A join instead of R x C membership searches: the CSR rows of the unique users (about R x
    mean degree pairs) are matched against the unique items through an [I] lookup table,
    giving a small [users, items] table that is then read per (r, c).
    """
    uniq_users, user_of_row = torch.unique(users, return_inverse=True)
    uniq_items, item_of_col = torch.unique(items, return_inverse=True)
    starts = indptr[uniq_users]
    lengths = indptr[uniq_users + 1] - starts
    total = int(lengths.sum())
    device = users.device
    rows = torch.repeat_interleave(
        torch.arange(len(uniq_users), device=device), lengths, output_size=total
    )
    offsets = torch.arange(total, device=device) - (torch.cumsum(lengths, 0) - lengths)[rows]
    their_items = indices[starts[rows] + offsets]
    local = torch.full((n_items,), -1, dtype=torch.int64, device=device)
    local[uniq_items] = torch.arange(len(uniq_items), device=device)
    col = local[their_items]
    hit = col >= 0
    table = torch.zeros(len(uniq_users), len(uniq_items), dtype=torch.bool, device=device)
    table[rows[hit], col[hit]] = True
    return table[user_of_row.unsqueeze(1), item_of_col.unsqueeze(0)]


class SampledSoftmaxObjective(RecObjective):
    r"""Sampled softmax over uniformly drawn negatives shared by the batch (SSM; Wu et al.,
    "On the Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS 2024).

    Every row draws M items uniformly from those its user never interacted with; the B x M
    draws are then the candidates of every row, so a batch of 2,048 rows contrasts each
    positive with B x M negatives for one [B, D] x [D, B M] product (per-row candidates would
    cost a [B, M, D] gather for M of them). A drawn item that is a training positive of the
    row's user (its own positive included) is masked out of that row. With uniform draws
    the log q correction is a constant and cancels.
    :math:`\ell_b = -\log \frac{e^{s(u_b, p_b)/\tau}}{e^{s(u_b, p_b)/\tau} + \sum_c
    e^{s(u_b, n_c)/\tau}}`, :math:`s` the cosine similarity (``cosine``, as the paper finds
    best) or the inner product.

    Args:
        tau: temperature > 0.
        positives: the training positives as CSR rows (indptr long [U + 1], indices long
            [nnz]), for the mask.
        n_items: I.
        cosine: score with cosine similarity (True) or inner products.
    """

    positive_indptr: Tensor
    positive_indices: Tensor

    def __init__(
        self, tau: float, positives: tuple[Tensor, Tensor], n_items: int, cosine: bool = True
    ) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = tau
        self.cosine = cosine
        self.n_items = n_items
        self.register_buffer("positive_indptr", positives[0], persistent=False)
        self.register_buffer("positive_indices", positives[1], persistent=False)

    def forward(
        self,
        user: Tensor,
        pos: Tensor,
        neg: Tensor,
        users: Tensor,
        pos_items: Tensor,
        weights: Tensor | None,
        *,
        neg_items: Tensor | None = None,
    ) -> Tensor:
        if neg_items is None:
            raise ValueError("the sampled softmax needs the drawn negatives' ids (neg_items)")
        neg = neg.reshape(-1, neg.size(-1))
        if self.cosine:
            user, pos, neg = (F.normalize(t, dim=-1) for t in (user, pos, neg))
        pos_logit = (user * pos).sum(dim=1, keepdim=True)
        neg_logits = user @ neg.T
        taken = positive_pairs(
            self.positive_indptr, self.positive_indices, self.n_items, users, neg_items.reshape(-1)
        )
        logits = torch.cat([pos_logit, neg_logits.masked_fill(taken, float("-inf"))], dim=1)
        target = torch.zeros(user.size(0), dtype=torch.int64, device=user.device)
        return weighted_mean(F.cross_entropy(logits / self.tau, target, reduction="none"), weights)


class CosineContrastiveObjective(RecObjective):
    r"""SimpleX's cosine contrastive loss (CCL; Mao et al., CIKM 2021) over each row's drawn
    negatives (:func:`~recsys_cl.losses.margin_contrastive_loss` on cosine similarities):
    :math:`\ell_b = (1 - \cos(u_b, p_b)) + w \frac{1}{M}\sum_m \max(0, \cos(u_b, n_{bm}) - m)`.

    The trainer draws the M negatives per row (``imbalance.loss.negatives``) from the items
    the user never had. The model still scores with inner products of the unnormalized
    embeddings.

    Args:
        margin: m in [-1, 1): a negative below it adds nothing.
        negative_weight: w ≥ 0, the weight of the negatives' mean.
    """

    def __init__(self, margin: float, negative_weight: float) -> None:
        super().__init__()
        if not -1.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [-1, 1), got {margin}")
        if not negative_weight >= 0:
            raise ValueError(f"negative_weight must be >= 0, got {negative_weight}")
        self.margin = margin
        self.negative_weight = negative_weight

    def forward(
        self,
        user: Tensor,
        pos: Tensor,
        neg: Tensor,
        users: Tensor,
        pos_items: Tensor,
        weights: Tensor | None,
        *,
        neg_items: Tensor | None = None,
    ) -> Tensor:
        user, pos, neg = (F.normalize(t, dim=-1) for t in (user, pos, neg))
        pos_cos = (user * pos).sum(dim=-1)
        neg_cos = (user.unsqueeze(1) * neg).sum(dim=-1) if neg.dim() == 3 else (user * neg).sum(-1)
        return margin_contrastive_loss(
            pos_cos, neg_cos, self.margin, neg_weight=self.negative_weight, weights=weights
        )


class DirectAUObjective(RecObjective):
    r"""Alignment plus γ x uniformity on L2-normalized embeddings (DirectAU; Wang et al.,
    "Towards Representation Alignment and Uniformity in Collaborative Filtering", KDD 2022).

    :math:`\mathcal{L} = \ell_{align}(u, p) + \gamma\,(\ell_{uniform}(U) + \ell_{uniform}(P))
    / 2`: :func:`~recsys_cl.losses.alignment_loss` over the B (user, positive) rows and
    :func:`~recsys_cl.losses.uniformity_loss` over the batch's users U and positive items P.
    With ``distinct`` (the default) U and P are the distinct ids, each once, so every user and
    item in the batch weighs alike; without it they are the B rows as they come, as in the
    reference code: a user or item then weighs by how often the batch holds it (the empirical
    p_user, p_item of the paper's expectation, popular items most), and two copies of one row
    are a pair at distance 0. No negatives are used. With ``weights``, alignment is the
    weighted mean over rows; in uniformity a row (``distinct``: a distinct id, with the mean
    weight of its rows, as the contrastive term's InfoNCE does) weighs its weight. The model
    still scores with inner products of the unnormalized embeddings, as the reference code
    does.

    Args:
        gamma: γ ≥ 0, the weight of uniformity (the reference code searches 0.01-10).
        t: the uniformity kernel's scale > 0 (2, Wang & Isola, ICML 2020).
        distinct: uniformity over the distinct users and items (True) or over the rows.
    """

    uses_negatives = False

    def __init__(self, gamma: float, t: float = UNIFORMITY_T, distinct: bool = True) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if not t > 0:
            raise ValueError(f"t must be > 0, got {t}")
        self.gamma = gamma
        self.t = t
        self.distinct = distinct

    def forward(
        self,
        user: Tensor,
        pos: Tensor,
        neg: Tensor,
        users: Tensor,
        pos_items: Tensor,
        weights: Tensor | None,
        *,
        neg_items: Tensor | None = None,
    ) -> Tensor:
        align = alignment_loss(user, pos, weights)
        if self.gamma == 0:
            return align
        if self.distinct:
            uniform = uniformity_loss(*distinct_rows(users, user, weights), t=self.t)
            uniform = uniform + uniformity_loss(*distinct_rows(pos_items, pos, weights), t=self.t)
        else:
            uniform = uniformity_loss(user, weights, t=self.t)
            uniform = uniform + uniformity_loss(pos, weights, t=self.t)
        return align + self.gamma * uniform / 2


def distinct_rows(
    ids: Tensor, rows: Tensor, weights: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """The rows [n, D] of the n distinct ``ids`` [B] (``rows`` [B, D] holds the same row for
    every occurrence of an id; the first is taken) and, with ``weights`` [B], each id's mean
    weight [n]."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    n, b = uniq.numel(), ids.numel()
    position = torch.arange(b, device=ids.device)
    first = torch.full((n,), b, dtype=position.dtype, device=ids.device)
    first = first.scatter_reduce(0, inverse, position, reduce="amin")
    return rows[first], None if weights is None else mean_per_id(inverse, n, weights)
