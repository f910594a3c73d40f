"""PyTorch Geometric as the graph's public face: HeteroData in and out, Data for sampled batches,
and a ``MessagePassing`` LightGCN layer that runs the library's symmetric CSR product.

Node and edge type names follow PyG's conventions: node types ``"user"`` and ``"item"``, the
interactions as ``("user", "interacts", "item")`` and their reverse as
``("item", "rev_interacts", "user")``, the name ``torch_geometric.transforms.ToUndirected``
gives a reverse edge type.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.nn import MessagePassing

from recsys_cl.graph.adjacency import (
    csr_edges,
    csr_matrix,
    normalized_adjacency,
    sym_spmm,
)
from recsys_cl.graph.bipartite import BipartiteGraph, build_graph
from recsys_cl.graph.sampling import SampledSubgraph

USER = "user"
ITEM = "item"
INTERACTS = (USER, "interacts", ITEM)
REV_INTERACTS = (ITEM, "rev_interacts", USER)

EdgeType = tuple[str, str, str]


def to_hetero_data(graph: BipartiteGraph) -> HeteroData:
    """The graph as a ``HeteroData``: ``user``/``item`` node counts and both edge directions.

    ``data[INTERACTS].edge_index`` is long [2, E] (user id, item id in 0..I-1), sorted by
    (user, item); ``data[REV_INTERACTS].edge_index`` is the same flipped. The tensors are views
    of ``graph.edge_index`` shifted back to item ids (one [2, E] copy).
    """
    data = HeteroData()
    data[USER].num_nodes = graph.n_users
    data[ITEM].num_nodes = graph.n_items
    pairs = torch.stack([graph.users, graph.items])
    data[INTERACTS].edge_index = pairs
    data[REV_INTERACTS].edge_index = pairs.flip(0)
    return data


def from_hetero_data(data: HeteroData, edge_type: EdgeType = INTERACTS) -> BipartiteGraph:
    """Build a :class:`BipartiteGraph` from a ``HeteroData`` holding user-item interactions.

    Args:
        data: must know both node counts (``num_nodes``, set or inferable from ``x``) and hold
            ``edge_type`` or its reverse ``(dst, "rev_" + relation, src)``. When both are
            present they must hold the same pairs. Edge attributes are not carried over: the
            graph is unweighted and repeated pairs count once (see :func:`build_graph`).
        edge_type: the (user type, relation, item type) triple of the interactions.

    Raises:
        ValueError: when the edge type or a node count is missing, or the two directions differ.
    """
    src_type, relation, dst_type = edge_type
    reverse: EdgeType = (dst_type, f"rev_{relation}", src_type)
    forward_ei = data[edge_type].edge_index if edge_type in data.edge_types else None
    reverse_ei = data[reverse].edge_index if reverse in data.edge_types else None
    if forward_ei is None and reverse_ei is None:
        raise ValueError(
            f"HeteroData has no edge type {edge_type} nor its reverse {reverse}; "
            f"it has {data.edge_types}"
        )
    pairs = forward_ei if forward_ei is not None else reverse_ei.flip(0)  # type: ignore[union-attr]
    n_users = data[src_type].num_nodes if src_type in data.node_types else None
    n_items = data[dst_type].num_nodes if dst_type in data.node_types else None
    if n_users is None or n_items is None:
        raise ValueError(
            f"HeteroData must give num_nodes for node types {src_type!r} and {dst_type!r}"
        )
    if (
        forward_ei is not None
        and reverse_ei is not None
        and not _same_pairs(forward_ei, reverse_ei.flip(0), int(n_items))
    ):
        raise ValueError(f"edge types {edge_type} and {reverse} hold different interactions")
    return build_graph(pairs[0].long(), pairs[1].long(), int(n_users), int(n_items))


def subgraph_to_data(batch: SampledSubgraph) -> Data:
    """A sampled batch as a homogeneous PyG ``Data`` over its local node ids (no copies of the
    adjacency; one [2, nnz] index tensor is materialized).

    Attributes of the result: ``edge_index`` long [2, nnz] and ``edge_weight`` float [nnz] (the
    full-degree normalized values, so ``LGConv(normalize=False)`` reproduces the propagation),
    ``adj_t`` (the symmetric CSR itself), ``n_id`` (global node ids, PyG's loader name),
    ``num_nodes``, ``n_users`` and the batch positions ``user_index``, ``pos_index``,
    ``neg_index``.
    """
    return Data(
        edge_index=batch.edge_index(),
        edge_weight=batch.adj.values(),
        adj_t=batch.adj,
        n_id=batch.node_ids,
        num_nodes=batch.n_nodes,
        n_users=batch.n_users,
        user_index=batch.users,
        pos_index=batch.pos_items,
        neg_index=batch.neg_items,
    )


class LightGCNConv(MessagePassing):
    r"""LightGCN's propagation :math:`x'_i = \sum_{j \in N(i)} x_j / \sqrt{d_i d_j}` (PyG ``LGConv``
    semantics) whose ``message_and_aggregate`` is :func:`~recsys_cl.graph.adjacency.sym_spmm`.

    ``forward(x, edge_index)`` accepts either

    - a sparse (CSR preferred) **already normalized, symmetric** adjacency, such as
      ``BipartiteGraph.adj`` or ``SampledSubgraph.adj``; it is used as is (unlike
      ``LGConv(normalize=True)``, which would renormalize it, so a sampled subgraph keeps its
      full-graph degrees). Equals ``LGConv(normalize=False)(x, adj)``;
    - a long [2, E] ``edge_index`` (optionally ``edge_weight`` [E]) of an undirected graph, both
      directions present with equal weights; it is normalized on every call as
      ``LGConv(normalize=True)`` does. A directed ``edge_index`` raises ``ValueError``, since
      the cheap backward relies on the symmetry.

    No parameters; ``aggr="add"``.
    """

    def __init__(self) -> None:
        super().__init__(aggr="add")

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """x: float [N, D]; returns float [N, D]."""
        if edge_index.layout == torch.strided:
            adj_t = _symmetric_normalized(edge_index, x.size(0), edge_weight, x.dtype)
        elif edge_weight is not None:
            raise ValueError("edge_weight is only accepted with an edge_index, not an adjacency")
        else:
            adj_t = edge_index
        return self.propagate(adj_t, x=x, edge_weight=None)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        # Only the unfused path (PyG's explain mode) calls this; PyG fills edge_weight with the
        # adjacency's values there.
        return edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return sym_spmm(adj_t, x)


def _symmetric_normalized(
    edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None, dtype: torch.dtype
) -> Tensor:
    # Rows are message targets (edge_index[1]), as PyG's adj_t; degrees are then in-degrees,
    # as gcn_norm's for flow="source_to_target".
    adj_t = normalized_adjacency(edge_index.flip(0), num_nodes, edge_weight, dtype=dtype)
    row, col = csr_edges(adj_t)
    transposed = csr_matrix(col, row, adj_t.values(), num_nodes)
    symmetric = torch.equal(adj_t.crow_indices(), transposed.crow_indices()) and torch.equal(
        adj_t.col_indices(), transposed.col_indices()
    )
    if not symmetric or not torch.allclose(adj_t.values(), transposed.values()):
        raise ValueError(
            "edge_index must be undirected: both directions of every edge, with equal weights"
        )
    return adj_t


def _same_pairs(a: Tensor, b: Tensor, n_cols: int) -> bool:
    key_a = torch.unique(a[0].long() * n_cols + a[1].long())
    key_b = torch.unique(b[0].long() * n_cols + b[1].long())
    return torch.equal(key_a, key_b)
