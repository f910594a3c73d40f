r"""Resampling of the positive edges an epoch trains on (the trainer's ``EdgeSampler``).

- **tail oversampling**: E = |train| edges drawn with replacement,
  :math:`P(u, i) \propto n_i^{-\beta}` (n_i the item's training popularity; β = 0 is uniform
  over edges), so an item's expected share of the epoch is :math:`\propto n_i^{1-\beta}`;
- **head undersampling**: at most ``item_cap`` rows per item per epoch; the kept rows of an item
  are a uniformly random subset of its drawn rows;
- **user-balanced batches**: E draws of a user uniformly among the users with a training
  positive, then one of their items (uniformly, or :math:`\propto n_i^{-\beta}` with tail
  oversampling), instead of edge-uniform rows where a heavy user appears in proportion to
  their activity;
- **labelled logs**: explicit negatives (label 0) join the epoch as (user, one of their
  positives, the explicit negative) rows; class weights from the label ratio balance the two
  kinds (:class:`LabeledEdgeSampler`).

All randomness comes from the generator the trainer passes (and checkpoints). Shapes: E rows,
I items, U users.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError
from recsys_cl.imbalance.weights import ClassWeights, item_popularity
from recsys_cl.training.sampling import EdgeSampler, EpochEdges, PositiveSet


def segment_draw(
    cumulative: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    r"""One index per segment, drawn with probability proportional to its weight.

    ``cumulative`` is float64 [n], the running sum of non-negative weights; segment b is the
    index range [starts[b], ends[b]) with a positive total weight. By inverse CDF: with
    :math:`r = C_{s-1} + U \cdot (C_{e-1} - C_{s-1})`, the first k with :math:`C_k > r`
    (zero-weight indices are never chosen). Returns int64 [B].
    """
    base = torch.where(
        starts > 0, cumulative[(starts - 1).clamp(min=0)], torch.zeros((), dtype=torch.float64)
    )
    total = cumulative[ends - 1] - base
    r = base + torch.rand(starts.shape, generator=generator, dtype=torch.float64) * total
    idx = torch.searchsorted(cumulative, r, right=True)
    return torch.minimum(torch.maximum(idx, starts), ends - 1)


def cap_per_item(items: torch.Tensor, cap: int) -> torch.Tensor:
    """bool [E]: keep the first ``cap`` occurrences of each item in the given (random) order."""
    order = torch.argsort(items, stable=True)
    counts = torch.bincount(items)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(items)
    rank[order] = torch.arange(len(items)) - starts[items[order]]
    return rank < cap


class ResampledEdgeSampler:
    """Tail oversampling, head undersampling and user-balanced batches (module docstring).

    Args:
        train: the training positives.
        tail_beta: β ≥ 0 of :math:`P(u, i) \\propto n_i^{-\\beta}` (0: no oversampling).
        item_cap: at most this many rows per item per epoch (None: no cap).
        user_balanced: draw users uniformly, then one of their items.
        popularity: int [I] item popularity (default: counted on ``train``).

    With β = 0 and edge-uniform rows every edge appears exactly once (a shuffle); otherwise the
    epoch holds E = |train| draws with replacement (before the cap).
    """

    def __init__(
        self,
        train: UserItems,
        *,
        tail_beta: float = 0.0,
        item_cap: int | None = None,
        user_balanced: bool = False,
        popularity: np.ndarray | None = None,
    ) -> None:
        if not tail_beta >= 0:
            raise ValueError(f"tail_beta must be >= 0, got {tail_beta}")
        if item_cap is not None and item_cap < 1:
            raise ValueError(f"item_cap must be >= 1, got {item_cap}")
        if train.nnz == 0:
            raise DataError("no training edges to sample from")
        self.tail_beta = tail_beta
        self.item_cap = item_cap
        self.user_balanced = user_balanced
        self.n_items = train.n_items
        self.users = torch.from_numpy(train.rows())
        self.items = torch.from_numpy(train.indices)
        self.indptr = torch.from_numpy(np.ascontiguousarray(train.indptr, dtype=np.int64))
        pop = item_popularity(train) if popularity is None else np.asarray(popularity)
        item_w = np.maximum(pop.astype(np.float64), 1.0) ** (-tail_beta)
        self.edge_weights = torch.from_numpy(item_w[train.indices])
        self.cumulative = torch.cumsum(self.edge_weights, 0)
        self.active_users = torch.from_numpy(np.flatnonzero(train.counts() > 0))

    def sample_edges(self, generator: torch.Generator) -> EpochEdges:
        n_edges = len(self.items)
        if self.user_balanced:
            pick = torch.randint(len(self.active_users), (n_edges,), generator=generator)
            users = self.active_users[pick]
            starts, ends = self.indptr[users], self.indptr[users + 1]
            idx = segment_draw(self.cumulative, starts, ends, generator)
        elif self.tail_beta > 0:
            starts = torch.zeros(n_edges, dtype=torch.int64)
            ends = torch.full((n_edges,), n_edges, dtype=torch.int64)
            idx = segment_draw(self.cumulative, starts, ends, generator)
        else:
            idx = torch.randperm(n_edges, generator=generator)
        if self.item_cap is not None:
            idx = idx[cap_per_item(self.items[idx], self.item_cap)]
        return EpochEdges(users=self.users[idx], pos_items=self.items[idx])

    def edge_probabilities(self) -> torch.Tensor:
        """float64 [E]: the probability that one row (before the cap) is each training edge."""
        n_edges = len(self.items)
        if self.user_balanced:
            per_user = torch.zeros(len(self.indptr) - 1, dtype=torch.float64)
            per_user.index_add_(0, self.users, self.edge_weights)
            return self.edge_weights / per_user[self.users] / len(self.active_users)
        if self.tail_beta > 0:
            return self.edge_weights / self.edge_weights.sum()
        return torch.full((n_edges,), 1.0 / n_edges, dtype=torch.float64)

    def item_marginal(self) -> torch.Tensor:
        """float64 [I]: an item's share of the epoch's rows. Exact without a cap and for a
        capped shuffle; with a cap on draws with replacement the expected count is
        approximated by min(expected count, cap)."""
        expected = torch.bincount(
            self.items, weights=self.edge_probabilities(), minlength=self.n_items
        ) * len(self.items)
        if self.item_cap is not None:
            expected = expected.clamp(max=float(self.item_cap))
        return expected / expected.sum()


class LabeledEdgeSampler:
    """A labelled log's epoch: positive rows from ``base`` plus one row per explicit negative.

    An explicit negative (u, j) (label 0: a skipped impression, a low rating) becomes the row
    (u, i, j) with i one of u's training positives drawn uniformly and j the row's fixed
    negative (first negative slot). Rows carry the class weights of
    :func:`~recsys_cl.imbalance.weights.label_ratio_weights`: positive rows ``positive`` (times
    any weight ``base`` attaches), explicit rows ``negative``, so each class carries half of
    the loss whatever the label ratio. Explicit negatives of users without a positive cannot be
    paired and are left out (:attr:`n_unpaired`); a pair that is also a positive is an error.

    Args:
        base: the sampler of positive rows (edge-uniform, resampled, ...).
        positives: the label-1 training pairs.
        explicit_negatives: the label-0 training pairs (same U x I).
        class_weights: from :func:`~recsys_cl.imbalance.weights.label_ratio_weights`.
    """

    def __init__(
        self,
        base: EdgeSampler,
        positives: UserItems,
        explicit_negatives: UserItems,
        class_weights: ClassWeights,
    ) -> None:
        if (positives.n_users, positives.n_items) != (
            explicit_negatives.n_users,
            explicit_negatives.n_items,
        ):
            raise ValueError("positives and explicit_negatives must cover the same users and items")
        users = torch.from_numpy(explicit_negatives.rows())
        items = torch.from_numpy(explicit_negatives.indices)
        if bool(PositiveSet(positives).contains(users, items).any()):
            raise DataError("a (user, item) pair is labelled both positive and negative")
        counts = torch.from_numpy(positives.counts())
        paired = counts[users] > 0
        self.n_unpaired = int((~paired).sum())
        self.base = base
        self.neg_users = users[paired]
        self.neg_items = items[paired]
        self.pos_counts = counts
        self.pos_indptr = torch.from_numpy(np.ascontiguousarray(positives.indptr, dtype=np.int64))
        self.pos_indices = torch.from_numpy(positives.indices)
        self.class_weights = class_weights
        self.n_items = positives.n_items

    def sample_edges(self, generator: torch.Generator) -> EpochEdges:
        rows = self.base.sample_edges(generator)
        n_pos, n_neg = len(rows.users), len(self.neg_users)
        cnt = self.pos_counts[self.neg_users]
        offset = (torch.rand(n_neg, generator=generator, dtype=torch.float64) * cnt).long()
        partner = self.pos_indices[self.pos_indptr[self.neg_users] + torch.minimum(offset, cnt - 1)]
        w_pos = torch.full((n_pos,), self.class_weights.positive, dtype=torch.float32)
        if rows.weights is not None:
            w_pos = w_pos * rows.weights
        users = torch.cat([rows.users, self.neg_users])
        pos_items = torch.cat([rows.pos_items, partner])
        weights = torch.cat(
            [w_pos, torch.full((n_neg,), self.class_weights.negative, dtype=torch.float32)]
        )
        fixed = torch.cat([torch.full((n_pos,), -1, dtype=torch.int64), self.neg_items])
        order = torch.randperm(n_pos + n_neg, generator=generator)
        return EpochEdges(users[order], pos_items[order], weights[order], fixed[order])

    def item_marginal(self) -> torch.Tensor:
        """float64 [I]: the positive items' share of all rows (positive and explicit)."""
        n_pos_rows = float(self.class_weights.n_positive)
        base = self.base.item_marginal() * n_pos_rows
        share = 1.0 / self.pos_counts[self.neg_users].double()
        starts, ends = self.pos_indptr[self.neg_users], self.pos_indptr[self.neg_users + 1]
        partner_mass = torch.zeros(self.n_items, dtype=torch.float64)
        # each explicit row's partner is uniform over its user's positives
        lengths = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(starts)), lengths)
        pos = torch.arange(int(lengths.sum())) - (torch.cumsum(lengths, 0) - lengths)[rows]
        partner_mass.index_add_(0, self.pos_indices[starts[rows] + pos], share[rows])
        total = base + partner_mass
        return total / total.sum()
