"""Vectorized, seeded sampling of training batches and negatives.

One epoch's positives and negatives are drawn at once (no Python loop per user). Negatives are
rejection-sampled: candidates that hit a user's training positive are redrawn until none is
left, so a positive is never returned as a negative.
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

    Shapes: ``users`` [E], ``pos_items`` [E], ``neg_items`` [E, M] (int64, CPU).
    """

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[int, slice]]:
        """Yield ``(batch_index, slice)`` over the epoch."""
        for b, start in enumerate(range(0, len(self), batch_size)):
            yield b, slice(start, start + batch_size)


class NegativeSampler(Protocol):
    """What the trainer needs of a negative sampler (imbalance strategies plug in here)."""

    def sample(self, users: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """Negatives int64 [B, num] for users [B]; never a training positive of the user."""
        ...


class UniformNegativeSampler:
    """Draw negatives uniformly from the items a user has not interacted with in training.

    Rejection sampling handles the common case in a few vectorized rounds; after
    ``rejection_rounds`` the few draws still hitting positives (users who saw most items) are
    drawn exactly from their complement. A user who has seen every item is an error.
    """

    def __init__(self, positives: UserItems, rejection_rounds: int = 16) -> None:
        self.positives = positives
        self.rejection_rounds = rejection_rounds
        self._keys = torch.from_numpy(positives.rows() * positives.n_items + positives.indices)

    def _is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if len(self._keys) == 0:
            return torch.zeros(users.shape, dtype=torch.bool)
        query = users * self.positives.n_items + items
        pos = torch.searchsorted(self._keys, query).clamp_(max=len(self._keys) - 1)
        return self._keys[pos] == query

    def sample(self, users: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """Negatives for each user: int64 [B, num], none of them a training positive."""
        n_items = self.positives.n_items
        flat_users = users.repeat_interleave(num)
        items = torch.randint(n_items, flat_users.shape, generator=generator)
        bad = self._is_positive(flat_users, items).nonzero().squeeze(1)
        for _ in range(self.rejection_rounds):
            if len(bad) == 0:
                break
            items[bad] = torch.randint(n_items, bad.shape, generator=generator)
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
            pick = torch.randint(len(free), slots.shape, generator=generator)
            items[slots] = torch.from_numpy(free)[pick]


def sample_epoch(
    train: UserItems,
    sampler: NegativeSampler,
    num_negatives: int,
    generator: torch.Generator,
) -> EpochSample:
    """Shuffle every training edge once (edge-uniform batches) and draw its negatives."""
    users = torch.from_numpy(train.rows())
    items = torch.from_numpy(train.indices)
    order = torch.randperm(len(users), generator=generator)
    users, items = users[order], items[order]
    negs = sampler.sample(users, num_negatives, generator)
    return EpochSample(users=users, pos_items=items, neg_items=negs)
