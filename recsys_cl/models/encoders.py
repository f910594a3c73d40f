"""Embedding encoders: LightGCN (He et al., SIGIR 2020) over a normalized adjacency, and MF.

Shapes: U users, I items, N = U + I nodes (items after users), D dims, L layers.
The graph is a ``forward`` argument, as in PyG's ``LightGCN``: augmented views (SGL) are just
other adjacencies, so an encoder holds nothing but its embedding table. What a method does to
the layers of one pass (SimGCL's noise, XSimGCL's cross-layer view) is a :class:`LayerHook` it
hands to ``forward``: the encoder knows no method.

Sampled-subgraph training passes a :class:`LocalGraph` instead of the full adjacency: the
pass starts from the table rows of the subgraph's nodes and every output comes out in the
subgraph's local numbering (n nodes, users first), so methods and losses run unchanged on
either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_cl.graph.adjacency import sym_spmm

Adjacency = Tensor | Sequence[Tensor]


@dataclass(frozen=True, eq=False)
class LocalGraph:
    """A sampled subgraph as an encoder input: an adjacency over local ids and their table rows.

    Attributes:
        adj: symmetric normalized adjacency [n, n] over local ids (sparse CSR), or a sequence
            of L of them over the same nodes (SGL random walk on a subgraph).
        node_ids: long [n], the global node id (0..N-1, items offset by U) of each local node,
            ascending, so local users are ``0..n_users-1`` and local items follow.
        n_users: how many local nodes are users (n_u; the local items are n - n_u).
        sparse_grad: give the table a row-sparse gradient (only the n rows) instead of a dense
            [N, D] one, for optimizers that update only the rows a batch touched
            (``torch.optim.SparseAdam``); a dense-gradient optimizer needs False.
    """

    adj: Adjacency
    node_ids: Tensor
    n_users: int
    sparse_grad: bool = False

    @property
    def n_nodes(self) -> int:
        """n."""
        return self.node_ids.numel()

    def with_adj(self, adj: Adjacency) -> LocalGraph:
        """The same nodes over another adjacency (an augmented view of the subgraph)."""
        return replace(self, adj=adj)


Graph = Adjacency | LocalGraph
"""What an encoder propagates over: the full graph's adjacency or a batch's subgraph."""


class LayerHook(Protocol):
    """Called by an encoder on each layer output it computes, in order, during one pass.

    ``layer`` is l (1..L for LightGCN, after propagation and before the output feeds the next
    layer and the mean; 0 for MF, whose one layer is the table) and ``x`` is float [n, D], the
    layer's rows (n = N for the full graph). The returned [n, D] tensor replaces ``x``. Hooks
    see nothing but these tensors, so they work unchanged on any [n, D] pass (a sampled
    subgraph's as well as the full graph's). A hook may keep what it is given (XSimGCL's
    layer l*): make one per pass.
    """

    def __call__(self, layer: int, x: Tensor) -> Tensor: ...


def take_rows(source: Tensor, ids: Tensor) -> Tensor:
    """``source[ids]`` for rows ``ids`` [K] of ``source`` [N, D], as one gather.

    On a CPU ``index_select``, whose backward is one ``index_add`` (a third of advanced
    indexing's cost there); elsewhere advanced indexing, whose CUDA backward is deterministic
    where ``index_add``'s atomics are not.
    """
    if source.device.type == "cpu":
        return source.index_select(0, ids)
    return source[ids]


@dataclass(frozen=True, eq=False)
class Propagation:
    """The output of an encoder pass.

    Over a :class:`LocalGraph` every row is a local node's: U, I and N below read n_u,
    n - n_u and n, and a batch indexes them with local positions.

    Attributes:
        final: float [N, D], final embeddings, users then items (the layer mean for LightGCN).
        ego: float [N, D], layer-0 embeddings (the table's rows; for L2 reg).
        n_users: U, the row where the items start.
        layers: the per-layer outputs, each float [N, D] (users then items), whose mean is
            ``final``: E^(0)..E^(L) for LightGCN (E^(1)..E^(L) when layer 0 is left out of
            the mean), the table for MF. Hard-negative selectors that mix per-layer embeddings
            (MixGCF) read them; they are the tensors the pass computed anyway.
    """

    final: Tensor
    ego: Tensor
    n_users: int
    layers: tuple[Tensor, ...] = ()

    @property
    def user(self) -> Tensor:
        """float [U, D], the final user embeddings (a view of ``final``)."""
        return self.final[: self.n_users]

    @property
    def item(self) -> Tensor:
        """float [I, D], the final item embeddings (a view of ``final``)."""
        return self.final[self.n_users :]

    @property
    def ego_user(self) -> Tensor:
        """float [U, D], the layer-0 user embeddings (a view of ``ego``)."""
        return self.ego[: self.n_users]

    @property
    def ego_item(self) -> Tensor:
        """float [I, D], the layer-0 item embeddings (a view of ``ego``)."""
        return self.ego[self.n_users :]

    def rows(self, users: Tensor | None, *items: Tensor, ego: bool = False) -> list[Tensor]:
        """The rows of ``users`` (if given) and of each id tensor in ``items``, in that order,
        from ``final`` (or ``ego``), each shaped like its ids plus D, in one gather.

        Indexing ``user[ids]`` once per id tensor costs more than it looks on a CPU: each one's
        backward allocates a zero gradient of the whole [N, D] table to scatter into (18 MB on
        Gowalla). A batch's six (user, positive, negative; final and ego) take 22.1 ms forward
        and backward on 2 threads, one gather from each source 3.2 ms (``bench_gather.py``).
        """
        ids = ([] if users is None else [users]) + list(items)
        if not ids:
            return []
        nodes = [] if users is None else [users.reshape(-1)]
        flat = torch.cat(nodes + [i.reshape(-1) + self.n_users for i in items])
        source = self.ego if ego else self.final
        parts = take_rows(source, flat).split([i.numel() for i in ids])
        return [part.view(*i.shape, source.size(1)) for part, i in zip(parts, ids, strict=True)]

    def rows_and_ego(
        self, users: Tensor | None, *items: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """:meth:`rows` from ``final`` and from ``ego``: one gather each, or one in all where
        they are the same tensor (MF without noise, whose final rows are its table's)."""
        final = self.rows(users, *items)
        return final, final if self.ego is self.final else self.rows(users, *items, ego=True)


class Encoder(nn.Module):
    """Base of encoders: an [N, D] embedding table and a ``forward`` giving a Propagation."""

    n_users: int
    n_items: int
    dim: int
    n_layers: int

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        if n_users <= 0 or n_items <= 0 or dim <= 0:
            raise ValueError(f"n_users, n_items, dim must be > 0, got {n_users}, {n_items}, {dim}")
        self.n_users = n_users
        self.n_items = n_items
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(n_users + n_items, dim))

    def forward(self, adj: Graph | None, *, perturb: LayerHook | None = None) -> Propagation:
        raise NotImplementedError

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Node rows [N, D] as (user [U, D], item [I, D]) views."""
        return x[: self.n_users], x[self.n_users :]

    def _init_table(self, init_std: float | None, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            for block in self.split(self.weight):
                if init_std is None:
                    # Separate Xavier bounds for the [U, D] and [I, D] tables, as two
                    # nn.Embedding tables get in the SGL/SELFRec reference code.
                    nn.init.xavier_uniform_(block, generator=generator)
                else:
                    nn.init.normal_(block, std=init_std, generator=generator)


class LightGCN(Encoder):
    r"""LightGCN: :math:`E^{(l+1)} = \tilde A E^{(l)}`, final = mean of the layer outputs.

    Args:
        n_users: U.
        n_items: I.
        dim: D (64 in LightGCN, SGL, SimGCL and XSimGCL).
        n_layers: L >= 0 propagation layers.
        include_layer0: whether :math:`E^{(0)}` enters the layer mean. True is LightGCN's eq. 4
            (and SGL's); the SimGCL/XSimGCL reference code (SELFRec) averages layers 1..L only.
        init_std: None (default) draws the table with Xavier uniform, as the LightGCN paper
            (§4.1.2) and the SGL/SELFRec code do; a float draws N(0, init_std²), which is what
            the LightGCN reference PyTorch code does with 0.1.
        generator: draws the initial table (None: the global RNG).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        n_layers: int,
        include_layer0: bool = True,
        init_std: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(n_users, n_items, dim)
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        if n_layers == 0 and not include_layer0:
            raise ValueError("n_layers=0 with include_layer0=False averages no layer")
        if init_std is not None and not (init_std > 0 and math.isfinite(init_std)):
            raise ValueError(f"init_std must be a positive number or None, got {init_std}")
        self.n_layers = n_layers
        self.include_layer0 = include_layer0
        self._init_table(init_std, generator)

    def _layer_adjs(self, adj: Adjacency | None) -> list[Tensor]:
        if adj is None:
            if self.n_layers:
                raise ValueError("LightGCN needs an adjacency")
            return []
        if isinstance(adj, Tensor):
            return [adj] * self.n_layers
        adjs = list(adj)
        if len(adjs) != self.n_layers:
            raise ValueError(f"got {len(adjs)} per-layer adjacencies for {self.n_layers} layers")
        return adjs

    def forward(self, adj: Graph | None, *, perturb: LayerHook | None = None) -> Propagation:
        """Propagate the table over ``adj``.

        Args:
            adj: one symmetric normalized adjacency [N, N] (sparse CSR preferred) used by every
                layer, or a sequence of L of them, one per layer (SGL random walk); or a
                :class:`LocalGraph`, whose pass starts from the table rows of its nodes.
            perturb: called on each layer l = 1..L's output after propagation; what it returns
                feeds the next layer and the mean (SimGCL's noise, eq. 7). None: a clean pass.

        Returns:
            :class:`Propagation` whose [N, D] rows are users then items ([n, D] in local order,
            n_u users first, over a :class:`LocalGraph`).
        """
        if isinstance(adj, LocalGraph):
            # The gather's backward scatters into the table's rows: the gradient reaches
            # exactly the subgraph's nodes, as the full pass's does for them. Row-sparse, it
            # costs O(n D) instead of allocating the [N, D] table's worth.
            x = F.embedding(adj.node_ids, self.weight, sparse=adj.sparse_grad)
            n_users = adj.n_users
            layer_adjs = self._layer_adjs(adj.adj)
        else:
            x, n_users = self.weight, self.n_users
            layer_adjs = self._layer_adjs(adj)
        ego = x
        total = x if self.include_layer0 else None
        layers = [x] if self.include_layer0 else []
        for layer, layer_adj in enumerate(layer_adjs, start=1):
            x = sym_spmm(layer_adj, x)
            if perturb is not None:
                x = perturb(layer, x)
            total = x if total is None else total + x
            layers.append(x)
        assert total is not None  # guaranteed by the constructor check
        final = total / (self.n_layers + int(self.include_layer0))
        return Propagation(final, ego, n_users, tuple(layers))


class MF(Encoder):
    """Matrix factorization: the embedding table is the final embedding (no propagation).

    Same ``forward`` signature as :class:`LightGCN`; ``adj`` is ignored. ``perturb`` is called
    once, as layer 0, on the table's output (SimGCL on an MF encoder). Initialized with Xavier
    uniform, like LightGCN by default.
    """

    def __init__(
        self, n_users: int, n_items: int, dim: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(n_users, n_items, dim)
        self.n_layers = 0
        self._init_table(None, generator)

    def forward(
        self, adj: Graph | None = None, *, perturb: LayerHook | None = None
    ) -> Propagation:
        """Return the table (users then items, [N, D]) as a Propagation's final and ego rows.

        Raises:
            TypeError: ``adj`` is a :class:`LocalGraph`: MF has no graph to sample, and
                ignoring it would return global rows to a batch in local numbering.
        """
        if isinstance(adj, LocalGraph):
            raise TypeError("MF propagates no graph: sampled-subgraph training needs LightGCN")
        x: Tensor = self.weight
        if perturb is not None:
            x = perturb(0, x)
        return Propagation(x, self.weight, self.n_users, layers=(x,))
