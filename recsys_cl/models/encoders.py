"""Embedding encoders: LightGCN (He et al., SIGIR 2020) over a normalized adjacency, and MF.

Shapes: U users, I items, N = U + I nodes (items after users), D dims, L layers.
The graph is a ``forward`` argument, as in PyG's ``LightGCN``: augmented views (SGL) are just
other adjacencies, so an encoder holds nothing but its embedding table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recsys_cl.augment.noise import simgcl_noise
from recsys_cl.graph.adjacency import sym_spmm

Adjacency = Tensor | Sequence[Tensor]


@dataclass(frozen=True, eq=False)
class Propagation:
    """The output of an encoder pass.

    Attributes:
        user: float [U, D], final user embeddings (the layer mean for LightGCN).
        item: float [I, D], final item embeddings.
        ego_user: float [U, D], layer-0 user embeddings (the table itself; for L2 reg).
        ego_item: float [I, D], layer-0 item embeddings.
        contrast_user: float [U, D], output of layer l* when ``contrast_layer`` was set
            (XSimGCL's cross-layer view), else None.
        contrast_item: float [I, D] or None, likewise.
        layers: the per-layer outputs, each float [N, D] (users then items), whose mean is
            ``user``/``item``: E^(0)..E^(L) for LightGCN (E^(1)..E^(L) when layer 0 is left
            out of the mean), the table for MF. Hard-negative selectors that mix per-layer
            embeddings (MixGCF) read them; they are the tensors the pass computed anyway.
    """

    user: Tensor
    item: Tensor
    ego_user: Tensor
    ego_item: Tensor
    contrast_user: Tensor | None = None
    contrast_item: Tensor | None = None
    layers: tuple[Tensor, ...] = ()


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

    def forward(
        self,
        adj: Adjacency | None,
        *,
        noise_eps: float = 0.0,
        generator: torch.Generator | None = None,
        contrast_layer: int | None = None,
    ) -> Propagation:
        raise NotImplementedError

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[: self.n_users], x[self.n_users :]

    def _init_table(self, init_std: float | None, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            for block in self._split(self.weight):
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

    def forward(
        self,
        adj: Adjacency | None,
        *,
        noise_eps: float = 0.0,
        generator: torch.Generator | None = None,
        contrast_layer: int | None = None,
    ) -> Propagation:
        """Propagate the table over ``adj``.

        Args:
            adj: one symmetric normalized adjacency [N, N] (sparse CSR preferred) used by every
                layer, or a sequence of L of them, one per layer (SGL random walk).
            noise_eps: when > 0, SimGCL noise of this radius is added to each layer's output
                (after propagation, before it feeds the next layer and the mean; SimGCL eq. 7).
            generator: source of the noise; None uses the global RNG.
            contrast_layer: l* in 1..L; that layer's (noisy) output is also returned as
                ``contrast_user``/``contrast_item`` (XSimGCL eq. 8).

        Returns:
            :class:`Propagation` with [U, D] / [I, D] tensors.
        """
        if contrast_layer is not None and not 1 <= contrast_layer <= self.n_layers:
            raise ValueError(f"contrast_layer must be in 1..{self.n_layers}, got {contrast_layer}")
        x = self.weight
        total = x if self.include_layer0 else None
        layers = [x] if self.include_layer0 else []
        contrast = None
        for layer, layer_adj in enumerate(self._layer_adjs(adj), start=1):
            x = sym_spmm(layer_adj, x)
            if noise_eps > 0:
                x = simgcl_noise(x, noise_eps, generator)
            total = x if total is None else total + x
            layers.append(x)
            if layer == contrast_layer:
                contrast = x
        assert total is not None  # guaranteed by the constructor check
        final = total / (self.n_layers + int(self.include_layer0))
        user, item = self._split(final)
        ego_user, ego_item = self._split(self.weight)
        contrast_user, contrast_item = (None, None) if contrast is None else self._split(contrast)
        return Propagation(
            user, item, ego_user, ego_item, contrast_user, contrast_item, tuple(layers)
        )


class MF(Encoder):
    """Matrix factorization: the embedding table is the final embedding (no propagation).

    Same ``forward`` signature as :class:`LightGCN`; ``adj`` is ignored. ``noise_eps`` > 0 adds
    SimGCL noise once to the table's output (SimGCL on an MF encoder); ``contrast_layer`` must be
    None since there are no layers. Initialized with Xavier uniform, like LightGCN by default.
    """

    def __init__(
        self, n_users: int, n_items: int, dim: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(n_users, n_items, dim)
        self.n_layers = 0
        self._init_table(None, generator)

    def forward(
        self,
        adj: Adjacency | None = None,
        *,
        noise_eps: float = 0.0,
        generator: torch.Generator | None = None,
        contrast_layer: int | None = None,
    ) -> Propagation:
        """Return the table split into users [U, D] and items [I, D] as a Propagation."""
        if contrast_layer is not None:
            raise ValueError("MF has no layers to contrast")
        x = self.weight
        if noise_eps > 0:
            x = simgcl_noise(x, noise_eps, generator)
        user, item = self._split(x)
        ego_user, ego_item = self._split(self.weight)
        return Propagation(user, item, ego_user, ego_item, layers=(x,))
