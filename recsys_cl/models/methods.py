"""Training methods: BPR baselines and the graph contrastive methods SGL, SimGCL, XSimGCL.

Every method's loss is ``rec + cl + reg`` (see :class:`~recsys_cl.models.base.LossBreakdown`):
``rec`` is BPR on the batch (or the ``objective`` the method was given, over the negatives
its ``negative_selector`` keeps: every method takes both, see
:class:`~recsys_cl.models.Recommender`), ``reg`` is ``reg * ego_l2`` of the batch's layer-0
embeddings, and ``cl`` is λ times the InfoNCE at temperature τ over the batch's unique users
plus its unique positive items (:class:`Contrast`, the λ and τ every contrastive method shares,
and :func:`~recsys_cl.models.base.batch_info_nce`). All terms are means
over the batch; SGL's reference code sums BPR and InfoNCE over the batch instead, which has the
same ratio, so its λ carries over unchanged.

Paper defaults, for configs (not used as defaults here): 64 dims, Adam lr 1e-3, batch 2048,
reg 1e-4; SGL (Yelp2018) drop 0.1, τ 0.2, λ 0.1, 3 layers; SimGCL λ 0.5, ε 0.1, τ 0.2;
XSimGCL λ 0.2, ε 0.2, τ 0.15, l* 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from recsys_cl.augment.graph_dropout import edge_dropout, node_dropout, random_walk
from recsys_cl.augment.noise import SimGCLNoise
from recsys_cl.graph.bipartite import BipartiteGraph
from recsys_cl.graph.sampling import drop_subgraph_edges, drop_subgraph_nodes
from recsys_cl.losses import RecObjective
from recsys_cl.models.base import (
    Batch,
    LossBreakdown,
    NegativeSelector,
    Recommender,
    batch_info_nce,
    check_nonnegative,
)
from recsys_cl.models.encoders import MF, Adjacency, Encoder, Graph, LightGCN, LocalGraph
from recsys_cl.models.neighbours import NeighbourPositives

SGLAugmentation = Literal["edge", "node", "random_walk"]


def _require_encoder(method: object, encoder: Encoder, kind: type[Encoder]) -> None:
    # Methods that mix or contrast per-layer outputs need a propagating encoder.
    if not isinstance(encoder, kind):
        raise TypeError(
            f"{type(method).__name__} needs a {kind.__name__} encoder, "
            f"got {type(encoder).__name__}"
        )


class _NonContrastive(Recommender):
    """A method without a contrastive term: the objective on the clean pass plus ego L2."""

    encoder_type: type[Encoder] = Encoder

    def __init__(
        self,
        encoder: Encoder,
        reg: float,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
    ) -> None:
        _require_encoder(self, encoder, self.encoder_type)
        super().__init__(encoder, reg, objective, negative_selector)

    def loss(
        self, adj: Graph, batch: Batch, views: object, generator: torch.Generator | None
    ) -> LossBreakdown:
        rec, reg = self._rec_terms(self.encoder(adj), batch, generator)
        return LossBreakdown.of(rec, torch.zeros_like(rec), reg)


class LightGCNRec(_NonContrastive):
    """LightGCN trained with BPR + ego L2 (He et al., SIGIR 2020, eq. 15).

    Args:
        encoder: a :class:`LightGCN`.
        reg: ego L2 weight (1e-4 in the paper).
        objective, negative_selector: see :class:`Recommender`.
    """

    encoder_type = LightGCN


class MFRec(_NonContrastive):
    """Matrix factorization trained with BPR + ego L2 (Rendle et al., UAI 2009).

    Args:
        encoder: an :class:`MF`.
        reg: ego L2 weight.
        objective, negative_selector: see :class:`Recommender`.
    """

    encoder_type = MF


@dataclass(frozen=True)
class Contrast:
    """The hyper-parameters of the ``cl`` term, which every contrastive method shares.

    Checked here, once, for all of them; a method takes one as ``contrast=`` and adds only its
    own arguments. :meth:`term` is the ``cl`` term between two views of a batch.

    Attributes:
        cl_weight: λ, the weight of the InfoNCE term, >= 0.
        tau: τ, the InfoNCE temperature, > 0.
    """

    cl_weight: float
    tau: float

    def __post_init__(self) -> None:
        check_nonnegative(cl_weight=self.cl_weight)
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    def term(self, view1: Tensor, view2: Tensor, n_users: int, batch: Batch) -> Tensor:
        """``cl_weight`` x InfoNCE between two views [N, D] (users, then items from row
        ``n_users``) over the batch's unique users and positive items
        (:func:`~recsys_cl.models.base.batch_info_nce`)."""
        return self.cl_weight * batch_info_nce(view1, view2, n_users, batch, self.tau)


class ContrastiveMethod(Recommender):
    """Base of the contrastive methods: ``rec + cl_term(...) + reg``.

    A subclass says which encoder it needs (``encoder_type``), adds its own arguments, and
    writes :meth:`loss` (and :meth:`epoch_views` when it augments the graph once per epoch);
    its ``cl`` term is :meth:`cl_term` between two views of the batch.

    Args:
        encoder: an instance of the subclass's ``encoder_type``.
        reg: ego L2 weight.
        contrast: λ and τ.
        objective, negative_selector: see :class:`Recommender`.
        positives: NESCL's extra positives (the interacted partner, a collaborative
            neighbour); None: each node's other view only.
    """

    encoder_type: type[Encoder] = Encoder

    def __init__(
        self,
        encoder: Encoder,
        *,
        reg: float,
        contrast: Contrast,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
        positives: NeighbourPositives | None = None,
    ) -> None:
        _require_encoder(self, encoder, self.encoder_type)
        super().__init__(encoder, reg, objective, negative_selector)
        self.contrast = contrast
        self.positives = positives

    def cl_term(
        self,
        view1: Tensor,
        view2: Tensor,
        n_users: int,
        batch: Batch,
        generator: torch.Generator | None,
    ) -> Tensor:
        """The ``cl`` term between two views [N, D] of the batch: λ x the plain InfoNCE
        (:meth:`Contrast.term`), or with :attr:`positives` NESCL's supervised one
        (:meth:`~recsys_cl.models.neighbours.NeighbourPositives.info_nce`)."""
        if self.positives is None:
            return self.contrast.term(view1, view2, n_users, batch)
        return self.contrast.cl_weight * self.positives.info_nce(
            view1, view2, n_users, batch, self.contrast.tau, generator
        )


class _NoiseContrastive(ContrastiveMethod):
    """SimGCL and XSimGCL: views made by SimGCL's noise of radius ``eps`` (> 0) after every
    layer of a pass (:class:`~recsys_cl.augment.noise.SimGCLNoise`)."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        reg: float,
        contrast: Contrast,
        eps: float,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
        positives: NeighbourPositives | None = None,
    ) -> None:
        super().__init__(
            encoder,
            reg=reg,
            contrast=contrast,
            objective=objective,
            negative_selector=negative_selector,
            positives=positives,
        )
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = eps


@dataclass(frozen=True, eq=False)
class SGLViews:
    """SGL's two augmented graphs: for one epoch, each one adjacency [N, N] (ND, ED) or a list
    of L of them (RW); in sampled mode, for one batch, each a :class:`LocalGraph` over the
    batch's subgraph holding the same."""

    view1: Adjacency | LocalGraph
    view2: Adjacency | LocalGraph


class SGL(ContrastiveMethod):
    """SGL (Wu et al., SIGIR 2021): BPR on the full graph + InfoNCE between two dropout views.

    The two views are drawn once per epoch (:meth:`epoch_views`) and each batch propagates the
    encoder three times: over the full graph (for BPR) and over each view (for InfoNCE between
    the views' final embeddings, eq. 9-10). Negatives are the other unique users (items) of the
    batch as in SELFRec; SGL's own code contrasts against all users (items).

    Args:
        encoder: a :class:`LightGCN` (with ``include_layer0=True`` as in SGL).
        reg: ego L2 weight (1e-4).
        contrast: λ (0.1 on Yelp2018) and τ (0.2).
        drop_ratio: ρ, the fraction of interactions (edge, random_walk) or nodes (node) dropped
            (0.1).
        aug: "edge" (SGL-ED), "node" (SGL-ND) or "random_walk" (SGL-RW: a fresh edge-dropped
            graph per layer).

    In sampled mode the views are drawn per batch on its subgraph (:meth:`batch_views`): the
    same dropout applied to the subgraph's edges or nodes, each kept value divided by 1 - ρ
    in place of renormalizing by the view's degrees, which a subgraph does not know
    (:func:`~recsys_cl.graph.sampling.drop_subgraph_edges` says why).
    """

    encoder_type = LightGCN

    def __init__(
        self,
        encoder: LightGCN,
        *,
        reg: float,
        contrast: Contrast,
        drop_ratio: float,
        aug: SGLAugmentation,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
        positives: NeighbourPositives | None = None,
    ) -> None:
        super().__init__(
            encoder,
            reg=reg,
            contrast=contrast,
            objective=objective,
            negative_selector=negative_selector,
            positives=positives,
        )
        if not 0.0 <= drop_ratio < 1.0:
            raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
        if aug not in ("edge", "node", "random_walk"):
            raise ValueError(f"aug must be 'edge', 'node' or 'random_walk', got {aug!r}")
        if aug == "random_walk" and encoder.n_layers == 0:
            raise ValueError("random_walk needs an encoder with at least one layer")
        self.drop_ratio = drop_ratio
        self.aug = aug

    def _view(self, graph: BipartiteGraph, generator: torch.Generator) -> Adjacency:
        if self.aug == "edge":
            return edge_dropout(graph, self.drop_ratio, generator)
        if self.aug == "node":
            return node_dropout(graph, self.drop_ratio, generator)
        return random_walk(graph, self.drop_ratio, self.encoder.n_layers, generator)

    def epoch_views(self, graph: BipartiteGraph, generator: torch.Generator) -> SGLViews:
        """Two independent augmented graphs on ``graph``'s device."""
        return SGLViews(self._view(graph, generator), self._view(graph, generator))

    def _local_view(self, graph: LocalGraph, generator: torch.Generator | None) -> LocalGraph:
        if not isinstance(graph.adj, Tensor):
            raise TypeError("SGL views start from one subgraph adjacency, not per-layer ones")
        if self.aug == "node":
            return graph.with_adj(
                drop_subgraph_nodes(graph.adj, graph.n_users, self.drop_ratio, generator)
            )
        if self.aug == "edge":
            return graph.with_adj(drop_subgraph_edges(graph.adj, self.drop_ratio, generator))
        return graph.with_adj(
            [
                drop_subgraph_edges(graph.adj, self.drop_ratio, generator)
                for _ in range(self.encoder.n_layers)
            ]
        )

    def batch_views(self, graph: LocalGraph, generator: torch.Generator | None) -> SGLViews:
        """Two independent augmentations of a batch's subgraph (sampled mode)."""
        return SGLViews(self._local_view(graph, generator), self._local_view(graph, generator))

    def loss(
        self, adj: Graph, batch: Batch, views: SGLViews, generator: torch.Generator | None
    ) -> LossBreakdown:
        if not isinstance(views, SGLViews):
            raise TypeError("SGL.loss needs the SGLViews returned by epoch_views")
        rec, reg = self._rec_terms(self.encoder(adj), batch, generator)
        p1 = self.encoder(views.view1)
        p2 = self.encoder(views.view2)
        cl = self.cl_term(p1.final, p2.final, p1.n_users, batch, generator)
        return LossBreakdown.of(rec, cl, reg)


class SimGCL(_NoiseContrastive):
    """SimGCL (Yu et al., SIGIR 2022): InfoNCE between two noise-perturbed propagations.

    Each batch runs one clean pass (BPR, as in the reference code) and two passes with
    independent sign-aligned noise of radius ε added after every layer (eq. 7); InfoNCE is
    between the two noisy passes' final embeddings. No per-epoch views.

    Args:
        encoder: a :class:`LightGCN` (the reference code averages layers 1..L:
            ``include_layer0=False``) or an :class:`MF`.
        reg: ego L2 weight (1e-4).
        contrast: λ (0.5 in the paper's best settings) and τ (0.2).
        eps: noise radius ε (0.1).
        objective, negative_selector: see :class:`Recommender`.
    """

    def loss(
        self, adj: Graph, batch: Batch, views: object, generator: torch.Generator | None
    ) -> LossBreakdown:
        rec, reg = self._rec_terms(self.encoder(adj), batch, generator)
        p1 = self.encoder(adj, perturb=SimGCLNoise(self.eps, generator))
        p2 = self.encoder(adj, perturb=SimGCLNoise(self.eps, generator))
        cl = self.cl_term(p1.final, p2.final, p1.n_users, batch, generator)
        return LossBreakdown.of(rec, cl, reg)


class XSimGCL(_NoiseContrastive):
    """XSimGCL (Yu et al., TKDE 2023): one noisy pass serves BPR and a cross-layer InfoNCE.

    A single propagation with noise of radius ε after every layer gives both the final
    embeddings (scored by BPR) and layer l*'s output; InfoNCE contrasts the two (eq. 8-9), so a
    batch costs one pass instead of SimGCL's three. Evaluation uses the clean pass.

    Args:
        encoder: a :class:`LightGCN` (reference code: ``include_layer0=False``).
        reg: ego L2 weight (1e-4).
        contrast: λ (0.2) and τ (0.15).
        eps: noise radius ε (0.2).
        contrast_layer: l* in 1..L (1).
        objective, negative_selector: see :class:`Recommender`.
    """

    encoder_type = LightGCN

    def __init__(
        self,
        encoder: LightGCN,
        *,
        reg: float,
        contrast: Contrast,
        eps: float,
        contrast_layer: int,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
        positives: NeighbourPositives | None = None,
    ) -> None:
        super().__init__(
            encoder,
            reg=reg,
            contrast=contrast,
            eps=eps,
            objective=objective,
            negative_selector=negative_selector,
            positives=positives,
        )
        if not 1 <= contrast_layer <= encoder.n_layers:
            raise ValueError(
                f"contrast_layer must be in 1..{encoder.n_layers}, got {contrast_layer}"
            )
        self.contrast_layer = contrast_layer

    def loss(
        self, adj: Graph, batch: Batch, views: object, generator: torch.Generator | None
    ) -> LossBreakdown:
        noise = SimGCLNoise(self.eps, generator, keep_layer=self.contrast_layer)
        prop = self.encoder(adj, perturb=noise)
        rec, reg = self._rec_terms(prop, batch, generator)
        assert noise.kept is not None  # 1 <= contrast_layer <= L, checked at construction
        # Rows as the pass laid them out: U users in full mode, the subgraph's n_u in sampled.
        cl = self.cl_term(prop.final, noise.kept, prop.n_users, batch, generator)
        return LossBreakdown.of(rec, cl, reg)
