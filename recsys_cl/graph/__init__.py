"""Bipartite user-item graph, normalized adjacency, symmetric propagation and sampled subgraphs.

PyTorch Geometric interop (HeteroData in and out, ``Data`` batches, the ``LightGCNConv``
MessagePassing layer) lives in :mod:`recsys_cl.graph.pyg`, imported by name: it is not
re-exported here so that importing the graph does not load PyG (seconds) on every CLI path.
"""

from recsys_cl.graph.adjacency import (
    csr_edges,
    csr_matrix,
    normalized_adjacency,
    sym_spmm,
)
from recsys_cl.graph.bipartite import (
    BipartiteGraph,
    bipartite_edge_index,
    build_graph,
    interaction_adjacency,
)
from recsys_cl.graph.sampling import (
    NeighborSampler,
    SampledSubgraph,
    check_fanouts,
    propagate_subgraph,
    sample_without_replacement,
)

__all__ = [
    "BipartiteGraph",
    "NeighborSampler",
    "SampledSubgraph",
    "bipartite_edge_index",
    "build_graph",
    "check_fanouts",
    "csr_edges",
    "csr_matrix",
    "interaction_adjacency",
    "normalized_adjacency",
    "propagate_subgraph",
    "sample_without_replacement",
    "sym_spmm",
]
