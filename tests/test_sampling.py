"""Negative sampling: never a positive, uniform over the rest, reproducible by generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError
from recsys_cl.training import UniformNegativeSampler, sample_epoch


def _dense_user_items(rng: np.random.Generator, n_users: int, n_items: int, p: float) -> UserItems:
    mask = rng.random((n_users, n_items)) < p
    rows = np.arange(n_users)
    seen = rng.integers(n_items, size=n_users)
    mask[rows, seen] = True  # nobody without positives
    mask[rows, (seen + 1) % n_items] = False  # nobody without a possible negative
    users, items = mask.nonzero()
    return UserItems.from_pairs(users, items, n_users, n_items)


def test_negatives_are_never_positives() -> None:
    # Dense positives (≈80% of items) force many rejection rounds.
    train = _dense_user_items(np.random.default_rng(0), 50, 20, 0.8)
    sampler = UniformNegativeSampler(train)
    users = torch.from_numpy(train.rows())
    negs = sampler.sample(users, 4, torch.Generator().manual_seed(1))
    assert negs.shape == (len(users), 4)
    flat_users = users.repeat_interleave(4).numpy()
    assert not train.contains(flat_users, negs.reshape(-1).numpy()).any()


@pytest.mark.parametrize("rounds", [0, 16], ids=["exact-path", "rejection-path"])
def test_negatives_uniform_over_non_positives(rounds: int) -> None:
    # One user with items {0, 1} seen among 6: negatives are uniform over {2, 3, 4, 5}.
    train = UserItems.from_pairs(np.array([0, 0]), np.array([0, 1]), 1, 6)
    negs = UniformNegativeSampler(train, rejection_rounds=rounds).sample(
        torch.zeros(40_000, dtype=torch.long), 1, torch.Generator().manual_seed(0)
    )
    counts = np.bincount(negs.reshape(-1).numpy(), minlength=6)
    assert counts[:2].sum() == 0
    expected = 40_000 / 4
    chi2 = ((counts[2:] - expected) ** 2 / expected).sum()
    assert chi2 < 16.27  # chi-square, 3 dof, p = 0.001


def test_user_with_every_item_is_reported() -> None:
    train = UserItems.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 3)
    with pytest.raises(DataError, match="user index 0 has interacted with all 3 items"):
        UniformNegativeSampler(train).sample(
            torch.zeros(1, dtype=torch.long), 1, torch.Generator().manual_seed(0)
        )


def test_epoch_covers_every_edge_once_and_is_reproducible() -> None:
    train = _dense_user_items(np.random.default_rng(1), 30, 40, 0.2)
    sampler = UniformNegativeSampler(train)
    a = sample_epoch(train, sampler, 2, torch.Generator().manual_seed(5))
    b = sample_epoch(train, sampler, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a.users, b.users) and torch.equal(a.neg_items, b.neg_items)
    pairs = sorted(zip(a.users.tolist(), a.pos_items.tolist(), strict=True))
    assert pairs == sorted(zip(train.rows().tolist(), train.indices.tolist(), strict=True))
    sizes = [sl.stop - sl.start for _, sl in a.batches(64)]
    assert sum(min(s, len(a) - i * 64) for i, s in enumerate(sizes)) == len(a)
