"""Bipartite user-item graph, normalized adjacency and symmetric propagation."""

from recsys_cl.graph.adjacency import csr_edges, csr_matrix, normalized_adjacency, sym_spmm
from recsys_cl.graph.bipartite import (
    BipartiteGraph,
    bipartite_edge_index,
    build_graph,
    interaction_adjacency,
)

__all__ = [
    "BipartiteGraph",
    "bipartite_edge_index",
    "build_graph",
    "csr_edges",
    "csr_matrix",
    "interaction_adjacency",
    "normalized_adjacency",
    "sym_spmm",
]
