"""Vectorized, seeded sampling of training batches and negatives.

One epoch's positives and negatives are drawn at once (no Python loop per user). Negatives are
rejection-sampled: candidates that hit a user's training positive are redrawn until none is
left, so a positive is never returned as a negative.

Three plug-in points, all driven by the trainer's checkpointed CPU generator:

- :class:`EdgeSampler` chooses the epoch's (user, positive) rows: edge-uniform by default
  (:class:`EdgeUniformSampler`, every training edge once in random order); the imbalance
  strategies over-/under-sample edges or balance users (``recsys_cl.imbalance``).
- :class:`NegativeSampler` draws negatives for those rows: uniform by default.
- per-item loss weights (``item_weights`` of :func:`sample_epoch`) become ``Batch.weights``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError


@dataclass(frozen=True)
class EpochSample:
    """All (user, positive, negatives) triples of one epoch, in batch order.

    Shapes: ``users`` [E], ``pos_items`` [E], ``neg_items`` [E, M] (int64, CPU); ``weights``
    float32 [E] per-row loss weights (mean ~1) or None (all ones).
    """

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor
    weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[int, slice]]:
        """Yield ``(batch_index, slice)`` over the epoch."""
        for b, start in enumerate(range(0, len(self), batch_size)):
            yield b, slice(start, start + batch_size)


@dataclass(frozen=True)
class EpochEdges:
    """The (user, positive) rows an :class:`EdgeSampler` chose for one epoch, in batch order.

    Shapes: ``users``, ``pos_items`` int64 [E]; ``weights`` float32 [E] or None (per-row loss
    weights the sampler attaches, e.g. label-class weights); ``neg_items`` int64 [E] or None: a
    fixed negative per row (an explicit negative from a labelled log), -1 where the negative
    sampler draws it.
    """

    users: torch.Tensor
    pos_items: torch.Tensor
    weights: torch.Tensor | None = None
    neg_items: torch.Tensor | None = None


class EdgeSampler(Protocol):
    """Chooses each epoch's training rows (tail oversampling, head caps, user balance plug in)."""

    def sample_edges(self, generator: torch.Generator) -> EpochEdges:
        """This epoch's rows, drawn with ``generator`` only."""
        ...

    def item_marginal(self) -> torch.Tensor:
        """float64 [I]: the probability that a row's positive is item i (sums to 1); the
        in-batch softmax's logQ correction reads it."""
        ...


class EdgeUniformSampler:
    """Every training edge once per epoch, in a random order (edge-uniform batches)."""

    def __init__(self, train: UserItems) -> None:
        self.users = torch.from_numpy(train.rows())
        self.items = torch.from_numpy(train.indices)
        self.n_items = train.n_items

    def sample_edges(self, generator: torch.Generator) -> EpochEdges:
        order = torch.randperm(len(self.users), generator=generator)
        return EpochEdges(users=self.users[order], pos_items=self.items[order])

    def item_marginal(self) -> torch.Tensor:
        """pop_i / |E|."""
        counts = torch.bincount(self.items, minlength=self.n_items).double()
        return counts / counts.sum().clamp_min(1.0)


class NegativeSampler(Protocol):
    """What the trainer needs of a negative sampler (imbalance strategies plug in here)."""

    def sample(self, users: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """Negatives int64 [B, num] for users [B]; never a training positive of the user."""
        ...


class PositiveSet:
    """The training positives as sorted keys ``user * I + item``, for vectorized membership."""

    def __init__(self, positives: UserItems) -> None:
        self.n_items = positives.n_items
        self.keys = torch.from_numpy(positives.rows() * positives.n_items + positives.indices)

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """bool, shape of ``users``: whether ``items`` is a training positive of ``users``."""
        if len(self.keys) == 0:
            return torch.zeros(users.shape, dtype=torch.bool)
        query = users * self.n_items + items
        pos = torch.searchsorted(self.keys, query).clamp_(max=len(self.keys) - 1)
        return self.keys[pos] == query


class RejectionNegativeSampler:
    """Base of negative samplers that propose items from a fixed distribution and reject
    training positives.

    Rejection sampling handles the common case in a few vectorized rounds; after
    ``rejection_rounds`` the few draws still hitting positives (users who saw most items) are
    drawn exactly from their complement. The result follows the proposal restricted to the
    user's non-positive items. A user with no item left is an error. Subclasses define the
    proposal (:meth:`_draw`) and the exact draw over a given item set (:meth:`_draw_from`).
    """

    def __init__(self, positives: UserItems, rejection_rounds: int = 16) -> None:
        self.positives = positives
        self.rejection_rounds = rejection_rounds
        self._positive_set = PositiveSet(positives)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n items int64 from the proposal."""
        raise NotImplementedError

    def _draw_from(self, free: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
        """n items int64 from the proposal restricted to ``free`` (sorted item ids)."""
        raise NotImplementedError

    def _is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._positive_set.contains(users, items)

    def sample(self, users: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """Negatives for each user: int64 [B, num], none of them a training positive."""
        flat_users = users.repeat_interleave(num)
        items = self._draw(len(flat_users), generator)
        bad = self._is_positive(flat_users, items).nonzero().squeeze(1)
        for _ in range(self.rejection_rounds):
            if len(bad) == 0:
                break
            items[bad] = self._draw(len(bad), generator)
            bad = bad[self._is_positive(flat_users[bad], items[bad])]
        if len(bad):
            self._sample_exactly(flat_users, items, bad, generator)
        return items.view(-1, num)

    def _sample_exactly(
        self,
        flat_users: torch.Tensor,
        items: torch.Tensor,
        bad: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        # Only users with very few non-positive items get here, so a loop over them is cheap.
        for user in torch.unique(flat_users[bad]).tolist():
            slots = bad[flat_users[bad] == user]
            free = np.setdiff1d(
                np.arange(self.positives.n_items), self.positives.items_of(user), assume_unique=True
            )
            if len(free) == 0:
                raise DataError(
                    f"user index {user} has interacted with all {self.positives.n_items} "
                    "items: no item is left to sample as a negative (drop such users, e.g. with "
                    "a k-core filter on items)"
                )
            items[slots] = self._draw_from(free, len(slots), generator)


class UniformNegativeSampler(RejectionNegativeSampler):
    """Draw negatives uniformly from the items a user has not interacted with in training."""

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(self.positives.n_items, (n,), generator=generator)

    def _draw_from(self, free: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(len(free), (n,), generator=generator)
        return torch.from_numpy(free)[pick]


def sample_epoch(
    train: UserItems,
    sampler: NegativeSampler,
    num_negatives: int,
    generator: torch.Generator,
    *,
    edges: EdgeSampler | None = None,
    item_weights: torch.Tensor | None = None,
) -> EpochSample:
    """One epoch's rows, negatives and loss weights.

    Args:
        train: the training positives (rows come from it when ``edges`` is None).
        sampler: draws ``num_negatives`` negatives per row.
        generator: the CPU generator; the only source of randomness.
        edges: chooses the rows; None shuffles every training edge once (edge-uniform).
        item_weights: float [I], the loss weight of a row whose positive is item i (inverse
            propensity, class-balanced); multiplied into the edge sampler's own row weights.

    A fixed negative an edge sampler attaches to a row (``EpochEdges.neg_items`` ≥ 0) takes
    the first of the row's ``num_negatives`` slots.
    """
    if edges is None:
        edges = EdgeUniformSampler(train)
    rows = edges.sample_edges(generator)
    negs = sampler.sample(rows.users, num_negatives, generator)
    if rows.neg_items is not None:
        fixed = rows.neg_items >= 0
        negs[fixed, 0] = rows.neg_items[fixed]
    weights = rows.weights
    if item_weights is not None:
        per_row = item_weights[rows.pos_items].float()
        weights = per_row if weights is None else weights * per_row
    return EpochSample(users=rows.users, pos_items=rows.pos_items, neg_items=negs, weights=weights)
