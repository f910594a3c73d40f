"""Non-learned baselines expressed as embeddings, so :func:`evaluate` scores them unchanged."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from recsys_cl.data.user_items import UserItems


class ScoringEmbeddings(NamedTuple):
    """A user table [U, D] and an item table [I, D] whose inner products are the scores."""

    user_emb: Tensor
    item_emb: Tensor


def most_popular_scores(
    train: UserItems, device: torch.device | str = "cpu"
) -> ScoringEmbeddings:
    """Most-popular baseline: every user scores item i by its training popularity.

    ``user_emb`` = ones float64 [U, 1]; ``item_emb`` float64 [I, 1] with
    ``score_i = n_train_users(i) - i / I``: the popularity count, ties broken toward the lower
    item id (the offset is < 1, so it never reorders items of different popularity; float64 keeps
    it exact). Use as ``evaluate(*most_popular_scores(train), test, exclude=train)``.
    """
    popularity = np.bincount(train.indices, minlength=train.n_items).astype(np.float64)
    tie_break = np.arange(train.n_items, dtype=np.float64) / max(train.n_items, 1)
    item_emb = torch.from_numpy(popularity - tie_break).unsqueeze(1).to(device)
    user_emb = torch.ones(train.n_users, 1, dtype=torch.float64, device=device)
    return ScoringEmbeddings(user_emb=user_emb, item_emb=item_emb)
