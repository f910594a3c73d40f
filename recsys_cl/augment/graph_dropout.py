"""SGL graph augmentations (Wu et al., SIGIR 2021, §3.2.1): node/edge dropout, random walk.

Each returns the renormalized :math:`D^{-1/2} A' D^{-1/2}` (``torch.sparse_csr`` [N, N]) of a
subgraph A' of the interaction graph; the node set and matrix size stay N = U + I, so the
encoder's embedding table applies unchanged. Dropout acts on undirected interactions: an
interaction is kept or dropped in both directions together, as SGL masks the user-item matrix R
before building the symmetric A. Like the SGL reference code (``randint_choice`` without
replacement), edge dropout keeps exactly ``int((1 - p) * E)`` interactions and node dropout
drops exactly ``int(p * U)`` users and ``int(p * I)`` items, chosen uniformly, rather than
flipping an independent coin per element.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recsys_cl.graph.bipartite import BipartiteGraph, interaction_adjacency
from recsys_cl.rng import randperm


def _check_ratio(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop ratio must be in [0, 1), got {p}")


def edge_keep_mask(
    n_interactions: int, p: float, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """Bool [E]: True for the ``int((1 - p) * E)`` interactions kept, chosen uniformly."""
    _check_ratio(p)
    n_keep = int((1.0 - p) * n_interactions)
    keep = torch.zeros(n_interactions, dtype=torch.bool, device=device)
    keep[randperm(n_interactions, device, generator)[:n_keep]] = True
    return keep


def _node_keep_mask(
    n: int, p: float, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    keep = torch.ones(n, dtype=torch.bool, device=device)
    keep[randperm(n, device, generator)[: int(p * n)]] = False
    return keep


def _subgraph_adjacency(graph: BipartiteGraph, keep: Tensor) -> Tensor:
    return interaction_adjacency(
        graph.users[keep], graph.items[keep], graph.n_users, graph.n_items
    )


def edge_dropout(graph: BipartiteGraph, p: float, generator: torch.Generator | None) -> Tensor:
    """SGL edge dropout (ED, eq. 7): drop a fraction p of interactions, renormalize.

    Returns ``torch.sparse_csr`` float32 [N, N] on ``graph``'s device.
    """
    keep = edge_keep_mask(graph.n_interactions, p, graph.device, generator)
    return _subgraph_adjacency(graph, keep)


def node_dropout(graph: BipartiteGraph, p: float, generator: torch.Generator | None) -> Tensor:
    """SGL node dropout (ND, eq. 6): drop a fraction p of users and of items with all their
    interactions, renormalize. Dropped nodes keep their index with an all-zero row and column.

    Returns ``torch.sparse_csr`` float32 [N, N] on ``graph``'s device.
    """
    _check_ratio(p)
    keep_user = _node_keep_mask(graph.n_users, p, graph.device, generator)
    keep_item = _node_keep_mask(graph.n_items, p, graph.device, generator)
    keep = keep_user[graph.users] & keep_item[graph.items]
    return _subgraph_adjacency(graph, keep)


def random_walk(
    graph: BipartiteGraph, p: float, n_layers: int, generator: torch.Generator | None
) -> list[Tensor]:
    """SGL random walk (RW): an independent edge-dropped subgraph for each of ``n_layers`` layers.

    Returns a list of L ``torch.sparse_csr`` float32 [N, N] matrices, layer 1 first.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return [edge_dropout(graph, p, generator) for _ in range(n_layers)]
