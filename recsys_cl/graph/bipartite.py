"""The user-item interaction graph: N = U + I nodes, items offset by U, both edge directions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys_cl.graph.adjacency import normalized_adjacency


@dataclass(frozen=True, eq=False)
class BipartiteGraph:
    """A bipartite user-item graph and its normalized adjacency.

    Attributes:
        n_users: U.
        n_items: I.
        edge_index: long [2, 2E] over N = U + I nodes. Columns ``0..E-1`` are the E unique
            interactions as user → item (item node = U + item), sorted by (user, item);
            columns ``E..2E-1`` are the same edges reversed, in the same order. Augmentations
            rely on this layout to drop both directions of an interaction together.
        adj: ``torch.sparse_csr`` float32 [N, N], :math:`D^{-1/2} A D^{-1/2}`.
    """

    n_users: int
    n_items: int
    edge_index: Tensor
    adj: Tensor

    @property
    def n_nodes(self) -> int:
        """N = U + I."""
        return self.n_users + self.n_items

    @property
    def n_interactions(self) -> int:
        """E, the number of unique (user, item) interactions (undirected edges)."""
        return self.edge_index.size(1) // 2

    @property
    def users(self) -> Tensor:
        """User of each interaction, long [E] (a view of ``edge_index``)."""
        return self.edge_index[0, : self.n_interactions]

    @property
    def items(self) -> Tensor:
        """Item of each interaction, long [E] in 0..I-1."""
        return self.edge_index[1, : self.n_interactions] - self.n_users

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    def to(self, device: torch.device | str) -> BipartiteGraph:
        """A copy with both tensors on ``device`` (self is returned when already there)."""
        device = torch.device(device)
        if self.edge_index.device == device and self.adj.device == device:
            return self
        return BipartiteGraph(
            n_users=self.n_users,
            n_items=self.n_items,
            edge_index=self.edge_index.to(device),
            adj=self.adj.to(device),
        )


def bipartite_edge_index(users: Tensor, items: Tensor, n_users: int) -> Tensor:
    """Both directions of each (user, item) pair: long [2, 2E], user→item columns first."""
    item_nodes = items + n_users
    return torch.stack([torch.cat([users, item_nodes]), torch.cat([item_nodes, users])])


def interaction_adjacency(users: Tensor, items: Tensor, n_users: int, n_items: int) -> Tensor:
    """Normalized CSR adjacency [N, N] of the interactions (users[e], items[e]), long [E] each.

    Used for the full graph and for every augmented view, so each view is renormalized with its
    own degrees (SGL, eq. 6-7). Pairs must be unique; nodes left without edges get zero rows.
    """
    return normalized_adjacency(bipartite_edge_index(users, items, n_users), n_users + n_items)


def build_graph(users: Tensor, items: Tensor, n_users: int, n_items: int) -> BipartiteGraph:
    """Build the graph of interactions (users[e], items[e]).

    Args:
        users: long [E], in 0..U-1.
        items: long [E], in 0..I-1 (same length). Duplicate pairs are kept once, since a
            repeated pair would double an edge weight the LightGCN normalization does not expect.
        n_users: U; users without interactions become isolated nodes (zero rows).
        n_items: I.

    Returns:
        A :class:`BipartiteGraph` on the inputs' device.
    """
    if users.shape != items.shape or users.dim() != 1:
        raise ValueError(
            f"users {tuple(users.shape)} and items {tuple(items.shape)} must be 1-D of equal length"
        )
    if users.dtype != torch.int64 or items.dtype != torch.int64:
        raise TypeError(f"users and items must be int64, got {users.dtype} and {items.dtype}")
    if n_users <= 0 or n_items <= 0:
        raise ValueError(f"n_users ({n_users}) and n_items ({n_items}) must be positive")
    if users.numel():
        if int(users.min()) < 0 or int(users.max()) >= n_users:
            raise ValueError(f"user index out of range [0, {n_users})")
        if int(items.min()) < 0 or int(items.max()) >= n_items:
            raise ValueError(f"item index out of range [0, {n_items})")
    key = torch.unique(users * n_items + items, sorted=True)
    uniq_users = torch.div(key, n_items, rounding_mode="floor")
    uniq_items = key - uniq_users * n_items
    return BipartiteGraph(
        n_users=n_users,
        n_items=n_items,
        edge_index=bipartite_edge_index(uniq_users, uniq_items, n_users),
        adj=interaction_adjacency(uniq_users, uniq_items, n_users, n_items),
    )
