"""Positives beyond the augmented pair: NESCL's supervised contrast.

Sun et al., "Neighborhood-Enhanced Supervised Contrastive Learning for Collaborative
Filtering" (TKDE 2023) keep the graph-CL views but give each anchor more than its own other view
as a positive: the node it interacted with in the batch row (a user's positive item, an item's
user) and one of its collaborative neighbours (a user among the k users most similar to it by
cosine over the training interactions, an item likewise), drawn afresh each batch. Every
positive of an anchor is scored against the same denominator (the batch's unique users and
items; a drawn neighbour may lie outside it, as in NESCL's code), so a node's extra positives
cost one dot product each.

:class:`NeighbourPositives` holds the neighbour tables (buffers that move with the method and
stay out of its ``state_dict``, so a checkpoint is the same with or without them) and computes
the term; a contrastive method given one uses it in place of the plain InfoNCE
(:meth:`~recsys_cl.models.methods.ContrastiveMethod.cl_term`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_cl.data.user_items import UserItems
from recsys_cl.models.base import Batch
from recsys_cl.models.encoders import take_rows
from recsys_cl.rng import rand

Aggregate = Literal["out", "in"]


def top_k_cosine(rows: sp.csr_matrix, k: int, block: int = 1024) -> tuple[Tensor, Tensor]:
    """The ``k`` rows most similar to each row of a binary matrix [N, M], by cosine.

    A row is never its own neighbour, and rows sharing no column with it are not neighbours:
    a row with fewer than ``k`` of them gets only those. Computed ``block`` rows at a time
    (a dense [block, N] slice of the sparse product), so memory is O(block x N).

    Returns:
        (neighbours long [N, k'], counts long [N]) with k' = min(k, N - 1): row n's
        neighbours, most similar first, are ``neighbours[n, :counts[n]]``; the rest of the row
        is n itself.
    """
    n = rows.shape[0]
    k = min(k, max(n - 1, 0))
    norms = np.sqrt(np.asarray(rows.sum(axis=1), dtype=np.float64).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    scaled = sp.diags(inv) @ rows.astype(np.float32)
    scaled_t = scaled.T.tocsr()
    neighbours = torch.arange(n).unsqueeze(1).repeat(1, k)
    counts = torch.zeros(n, dtype=torch.int64)
    if k == 0:
        return neighbours, counts
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = torch.from_numpy((scaled[start:stop] @ scaled_t).toarray())
        sims[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
        values, index = torch.topk(sims, k, dim=1)
        found = values > 0
        neighbours[start:stop] = torch.where(found, index, neighbours[start:stop])
        counts[start:stop] = found.sum(dim=1)
    return neighbours, counts


class NeighbourPositives(nn.Module):
    """NESCL's extra positives and the supervised InfoNCE they enter.

    Args:
        user_neighbours, user_counts: [U, k] and [U] from :func:`top_k_cosine` over users.
        item_neighbours, item_counts: [I, k] and [I], over items.
        interacted: also take each batch row's partner (a user's positive item, the item's
            user) as a positive.
        aggregate: how an anchor's positives combine (Khosla et al., NeurIPS 2020): "out", the
            mean of one InfoNCE term per positive; "in", one term on the mean of the
            positives' probabilities (NESCL's reference configs).
    """

    user_neighbours: Tensor
    user_counts: Tensor
    item_neighbours: Tensor
    item_counts: Tensor

    def __init__(
        self,
        user_neighbours: Tensor,
        user_counts: Tensor,
        item_neighbours: Tensor,
        item_counts: Tensor,
        *,
        interacted: bool = True,
        aggregate: Aggregate = "out",
    ) -> None:
        super().__init__()
        for name, table, counts in (
            ("user", user_neighbours, user_counts),
            ("item", item_neighbours, item_counts),
        ):
            if table.dim() != 2 or counts.shape != table.shape[:1]:
                raise ValueError(
                    f"{name} neighbours must be [N, k] with counts [N], got "
                    f"{tuple(table.shape)} and {tuple(counts.shape)}"
                )
            # Not persistent: rebuilt from the training log, never part of a checkpoint.
            self.register_buffer(f"{name}_neighbours", table.long(), persistent=False)
            self.register_buffer(f"{name}_counts", counts.long(), persistent=False)
        if aggregate not in ("out", "in"):
            raise ValueError(f"aggregate must be 'out' or 'in', got {aggregate!r}")
        self.interacted = interacted
        self.aggregate = aggregate

    @classmethod
    def from_train(
        cls, train: UserItems, k: int, *, interacted: bool = True, aggregate: Aggregate = "out"
    ) -> NeighbourPositives:
        """Tables of the ``k`` most similar users and items by cosine over ``train``'s rows
        (k = 0: no neighbour positives, only the interacted partner when ``interacted``)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        matrix = sp.csr_matrix(
            (np.ones(train.nnz, dtype=np.float32), train.indices, train.indptr),
            shape=(train.n_users, train.n_items),
        )
        users = top_k_cosine(matrix, k)
        items = top_k_cosine(matrix.T.tocsr(), k)
        return cls(*users, *items, interacted=interacted, aggregate=aggregate)

    @property
    def k(self) -> int:
        """The most neighbours a node has to draw from (0: no neighbour positives)."""
        return int(max(self.user_neighbours.shape[1], self.item_neighbours.shape[1]))

    def draw(self, ids: Tensor, side: str, generator: torch.Generator | None) -> Tensor:
        """One neighbour per id [B] of ``side`` ('user' or 'item'), uniform over its
        neighbours; an id without any gets itself. ``generator`` may live on another device
        than ``ids`` (a CPU generator driving CUDA data): the draw is copied over."""
        table, counts = getattr(self, f"{side}_neighbours"), getattr(self, f"{side}_counts")
        if table.shape[1] == 0:  # a side with a single node has no neighbours
            return ids
        have = counts[ids]
        u = rand(tuple(ids.shape), ids.device, generator)
        pick = (u * have).long().clamp_(max=table.shape[1] - 1)
        return torch.where(have > 0, table[ids, pick], ids)

    def info_nce(
        self,
        view1: Tensor,
        view2: Tensor,
        n_users: int,
        batch: Batch,
        tau: float,
        generator: torch.Generator | None,
    ) -> Tensor:
        """The supervised InfoNCE of ``batch`` between two views [N, D] (users, then items
        from row ``n_users``), a mean over the anchors.

        Anchors are each row's user and positive item in ``view1``; the denominator of an
        anchor is its cosine to every unique user and item of the batch in ``view2``, at
        temperature ``tau`` (users and items together, as NESCL contrasts them, de-duplicated
        so that a node is counted once); its positives, in ``view2``, are itself, the row's
        partner (``interacted``) and one drawn neighbour (k > 0), combined as ``aggregate``
        says. Row weights apply.
        """
        if batch.user_ids is not None:
            raise ValueError(
                "neighbour positives take global ids: they do not apply to sampled subgraphs"
            )
        users, items = batch.users, batch.pos_items
        uniq_u, inv_u = torch.unique(users, return_inverse=True)
        uniq_i, inv_i = torch.unique(items, return_inverse=True)
        nu = uniq_u.numel()
        nodes = torch.cat([uniq_u, uniq_i + n_users])
        anchors = F.normalize(take_rows(view1, nodes), dim=1) / tau
        others = F.normalize(take_rows(view2, nodes), dim=1)
        # Each node's logit against its own other view: the self positive, and the column the
        # cross-entropy below is taken against (logsumexp of a row = cross-entropy against one
        # of its columns + that logit; the fused log-softmax, forward and backward, is the
        # faster of the two on a CPU).
        own_logit = (anchors * others).sum(dim=1)
        columns = torch.arange(nodes.numel(), device=nodes.device)
        log_denominator = F.cross_entropy(anchors @ others.T, columns, reduction="none") + own_logit
        # Each row's user anchor, then its item anchor, as positions in ``nodes``.
        anchor_at = torch.cat([inv_u, nu + inv_i])
        anchor = anchors[anchor_at]
        logits = [own_logit[anchor_at]]
        if self.interacted:
            partner = others[torch.cat([nu + inv_i, inv_u])]
            logits.append((anchor * partner).sum(dim=1))
        if self.k > 0:
            drawn = torch.cat(
                [self.draw(users, "user", generator), self.draw(items, "item", generator) + n_users]
            )
            logits.append((anchor * F.normalize(take_rows(view2, drawn), dim=1)).sum(dim=1))
        terms = torch.stack(logits)  # [P, 2B]
        if self.aggregate == "out":
            losses = log_denominator[anchor_at] - terms.mean(dim=0)  # [2B]
        else:
            mean_log = torch.logsumexp(terms, dim=0) - math.log(terms.shape[0])
            losses = log_denominator[anchor_at] - mean_log
        if batch.weights is None:
            return losses.mean()
        w = batch.weights.repeat(2)
        return (losses * w).sum() / w.sum()
