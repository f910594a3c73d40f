"""The method interface the trainer is generic over: Batch in, LossBreakdown out.

A method (:class:`Recommender`) wraps an encoder and defines two things: the augmented views
(per epoch over the full graph, :meth:`Recommender.epoch_views`, or per batch over its
sampled subgraph, :meth:`Recommender.batch_views`) and the per-batch loss
(:meth:`Recommender.loss`). The trainer does the rest identically for every method.

Sampled-subgraph mode hands ``loss`` a :class:`~recsys_cl.models.encoders.LocalGraph` and a
:class:`Batch` whose ids are local positions in it; a method indexes the propagation with the
batch as in full mode. Only what is keyed by the global id (an objective's log q and
training-positive masks) reads :attr:`Batch.global_users` / :attr:`Batch.global_pos_items`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from recsys_cl.graph.bipartite import BipartiteGraph
from recsys_cl.losses import BPRObjective, RecObjective, ego_l2, info_nce, mean_per_id
from recsys_cl.models.encoders import Encoder, Graph, LocalGraph, Propagation, take_rows


@dataclass(frozen=True, eq=False)
class Batch:
    """One training batch of (user, positive item, negative item(s)) triples.

    Attributes:
        users: long [B], in 0..U-1.
        pos_items: long [B], in 0..I-1.
        neg_items: long [B] or [B, M], in 0..I-1.
        weights: optional float [B] per-sample weights (mean ~1), applied by every loss term
            that is a sum over samples.
        user_ids, pos_item_ids, neg_item_ids: the global ids of ``users``, ``pos_items`` and
            ``neg_items`` (same shapes) when those are local positions in a sampled subgraph
            (sampled mode); None when the ids above are global already.
    """

    users: Tensor
    pos_items: Tensor
    neg_items: Tensor
    weights: Tensor | None = None
    user_ids: Tensor | None = None
    pos_item_ids: Tensor | None = None
    neg_item_ids: Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("users", "pos_items", "neg_items"):
            if getattr(self, name).dtype != torch.int64:
                raise TypeError(f"{name} must be int64, got {getattr(self, name).dtype}")
        b = self.users.shape
        if self.users.dim() != 1 or self.pos_items.shape != b:
            raise ValueError(
                f"users {tuple(b)} and pos_items {tuple(self.pos_items.shape)} must be equal [B]"
            )
        if self.neg_items.dim() not in (1, 2) or self.neg_items.size(0) != b[0]:
            raise ValueError(f"neg_items must be [B] or [B, M], got {tuple(self.neg_items.shape)}")
        if self.weights is not None and self.weights.shape != b:
            raise ValueError(f"weights must be [B], got {tuple(self.weights.shape)}")
        for name in ("user_ids", "pos_item_ids"):
            ids = getattr(self, name)
            if ids is not None and ids.shape != b:
                raise ValueError(f"{name} must be [B], got {tuple(ids.shape)}")
        if self.neg_item_ids is not None and self.neg_item_ids.shape != self.neg_items.shape:
            raise ValueError(
                f"neg_item_ids must be shaped like neg_items {tuple(self.neg_items.shape)}, "
                f"got {tuple(self.neg_item_ids.shape)}"
            )

    @property
    def global_users(self) -> Tensor:
        """long [B], the users' global ids (0..U-1) in either mode."""
        return self.users if self.user_ids is None else self.user_ids

    @property
    def global_pos_items(self) -> Tensor:
        """long [B], the positive items' global ids (0..I-1) in either mode."""
        return self.pos_items if self.pos_item_ids is None else self.pos_item_ids

    @property
    def global_neg_items(self) -> Tensor:
        """long [B] or [B, M], the negative items' global ids (0..I-1) in either mode."""
        return self.neg_items if self.neg_item_ids is None else self.neg_item_ids

    @property
    def size(self) -> int:
        """B."""
        return self.users.size(0)

    def to(self, device: torch.device | str) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            self.users.to(device),
            self.pos_items.to(device),
            self.neg_items.to(device),
            move(self.weights),
            move(self.user_ids),
            move(self.pos_item_ids),
            move(self.neg_item_ids),
        )


@dataclass(frozen=True, eq=False)
class LossBreakdown:
    """The terms of a batch loss, each a scalar tensor already multiplied by its weight.

    ``total = rec + cl + reg``; ``cl`` is zero for non-contrastive methods. Backpropagate
    ``total``; log :meth:`as_floats`.
    """

    rec: Tensor
    cl: Tensor
    reg: Tensor
    total: Tensor

    @classmethod
    def of(cls, rec: Tensor, cl: Tensor, reg: Tensor) -> LossBreakdown:
        return cls(rec=rec, cl=cl, reg=reg, total=rec + cl + reg)

    def as_floats(self) -> dict[str, float]:
        """``{"rec", "cl", "reg", "total"}`` as Python floats (detached)."""
        return {
            "rec": float(self.rec.detach()),
            "cl": float(self.cl.detach()),
            "reg": float(self.reg.detach()),
            "total": float(self.total.detach()),
        }


@dataclass(frozen=True, eq=False)
class SelectedNegatives:
    """The negatives a :class:`NegativeSelector` hands the loss.

    Attributes:
        item: float [B, D] or [B, K, D], final-space embeddings scored against the user (with
            gradients: they may be mixtures of real items, as in MixGCF).
        ego: float, same shape: their layer-0 part, penalised by ``ego_l2``.
    """

    item: Tensor
    ego: Tensor


class NegativeSelector(Protocol):
    """Hard-negative mining inside the batch's own forward pass (DNS, MixGCF).

    The trainer draws ``batch.neg_items`` [B, M] as candidates; the method calls the selector
    with the propagation it just computed (``prop.layers`` holds the per-layer embeddings), so
    the candidates are judged by the current model at no extra propagation. Implementations
    choose under ``torch.no_grad`` (selection is detached from the graph) and return embeddings
    that do carry gradients. ``generator`` is the trainer's device generator (checkpointed), the
    only source of any randomness.
    """

    def __call__(
        self, prop: Propagation, batch: Batch, generator: torch.Generator | None
    ) -> SelectedNegatives: ...


def check_nonnegative(**values: float) -> None:
    """Raise ValueError naming the first value that is negative or NaN."""
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class Recommender(nn.Module, ABC):
    """A training method around an encoder.

    Args:
        encoder: the :class:`~recsys_cl.models.encoders.Encoder` whose table is learned.
        reg: weight of :func:`~recsys_cl.losses.ego_l2` (1e-4 in LightGCN, SGL, SimGCL).
        objective: the recommendation term (default: plain BPR). Imbalance strategies that
            change the loss (focal modulation, in-batch softmax with logQ) plug in here, the
            same way for every method.
        negative_selector: turns the batch's candidate negatives into the ones the loss uses
            (DNS, MixGCF); None uses ``batch.neg_items`` as drawn.
    """

    def __init__(
        self,
        encoder: Encoder,
        reg: float,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
    ) -> None:
        super().__init__()
        check_nonnegative(reg=reg)
        self.encoder = encoder
        self.reg = reg
        # A parameter-free submodule: it moves with .to(device) and adds nothing to state_dict.
        self.objective = objective if objective is not None else BPRObjective()
        self.negative_selector = negative_selector

    def epoch_views(self, graph: BipartiteGraph, generator: torch.Generator) -> Any:
        """Per-epoch augmentation, passed back to :meth:`loss` as ``views``; None by default."""
        return None

    def batch_views(self, graph: LocalGraph, generator: torch.Generator | None) -> Any:
        """Sampled mode's augmentation of one batch's subgraph, passed to :meth:`loss` as
        ``views`` in place of :meth:`epoch_views` (which would augment the full graph that
        the batch no longer propagates over); None by default."""
        return None

    @abstractmethod
    def loss(
        self, adj: Graph, batch: Batch, views: Any, generator: torch.Generator | None
    ) -> LossBreakdown:
        """The batch loss over the full graph ``adj`` [N, N] and this epoch's ``views``, or
        (sampled mode) over the batch's :class:`LocalGraph`, with ``batch`` in its local ids
        and ``views`` from :meth:`batch_views`."""

    @torch.no_grad()
    def embeddings(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        """Clean (no noise, no augmentation) user [U, D] and item [I, D] embeddings.

        Returned as copies that own their memory: for MF the final embeddings are the table
        itself, and a view of it would silently change with later optimizer steps (e.g. a
        "best epoch" snapshot).
        """
        prop = self.encoder(adj)
        return prop.user.detach().clone(), prop.item.detach().clone()

    def _rec_terms(
        self, prop: Propagation, batch: Batch, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """(recommendation loss, weighted ego L2) of ``batch`` scored with ``prop``'s final
        embeddings: the objective (BPR by default) over the negatives the selector keeps (or
        ``batch.neg_items`` as drawn); the ego L2 covers the user, the positive and the
        negatives the objective used."""
        drawn = self.objective.uses_negatives and self.negative_selector is None
        items = (batch.pos_items, batch.neg_items) if drawn else (batch.pos_items,)
        scored, ego = prop.rows_and_ego(batch.users, *items)
        user, pos = scored[0], scored[1]
        if drawn:
            neg = scored[2]
        elif not self.objective.uses_negatives:
            neg = pos.new_zeros(())
        else:
            assert self.negative_selector is not None
            selected = self.negative_selector(prop, batch, generator)
            neg = selected.item
            ego = [*ego, selected.ego]
        rec = self.objective(
            user,
            pos,
            neg,
            batch.global_users,
            batch.global_pos_items,
            batch.weights,
            neg_items=batch.global_neg_items if drawn else None,
        )
        reg = self.reg * ego_l2(*ego, batch_size=batch.size)
        return rec, reg


def unique_with_weights(ids: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """De-duplicate ids [B]; each unique id gets the mean weight of its occurrences.

    Returns (unique ids [B'], weights [B'] or None).
    """
    uniq, inverse = torch.unique(ids, return_inverse=True)
    return uniq, None if weights is None else mean_per_id(inverse, uniq.numel(), weights)


def batch_info_nce(view1: Tensor, view2: Tensor, n_users: int, batch: Batch, tau: float) -> Tensor:
    """InfoNCE over the batch's unique users plus over its unique positive items.

    As in the SGL, SimGCL and XSimGCL reference code: the two views' rows of each unique user
    (and item) are positives, the other unique users (items) in-batch negatives; de-duplicating
    keeps a row from being its own negative. Views: [N, D], users then items (item rows start
    at ``n_users``); each is read with one gather (see :meth:`Propagation.rows`). Returns a
    scalar.
    """
    users, w_users = unique_with_weights(batch.users, batch.weights)
    items, w_items = unique_with_weights(batch.pos_items, batch.weights)
    ids = torch.cat([users, items + n_users])
    rows1, rows2 = take_rows(view1, ids), take_rows(view2, ids)
    n = users.numel()
    return info_nce(rows1[:n], rows2[:n], tau, w_users) + info_nce(
        rows1[n:], rows2[n:], tau, w_items
    )
