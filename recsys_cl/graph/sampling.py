r"""Sampled L-hop computation subgraphs of a training batch (GraphSAGE-style neighbour fanouts).

A batch's seeds are its users, positive items and negative items. Hop h (1..L) samples up to
``fanouts[h-1]`` neighbours of each node first reached at hop h-1 (-1: every neighbour), in the
full graph's CSR arrays, vectorized over nodes (one Python loop over the L hops only). The
result carries its own small adjacency over local ids: the sampled edges, both directions,
with the **full graph's** normalized values :math:`1/\sqrt{d_u d_i}` gathered from the full
adjacency (never renormalized with subgraph degrees). Hence with fanout -1 every node within
L-1 hops of a seed keeps all its edges, and the seeds' L-layer LightGCN outputs (and the
gradients they send to the table) equal the full-graph ones; farther nodes only contribute their
layer-0 rows, which are exact by construction.

The sub-adjacency is symmetric (each sampled edge is kept in both directions), so the existing
:func:`~recsys_cl.graph.adjacency.sym_spmm` and its cheap backward apply unchanged. A
consequence: a node also receives messages along edges that its neighbours sampled towards it,
so its in-degree in the subgraph can exceed its own fanout (never for fanout -1, where every
edge is there anyway).

Randomness comes only from the ``torch.Generator`` passed to :meth:`NeighborSampler.sample`, so
restoring its state replays the same subgraphs bit for bit (``--resume``). A sampler holds no
state that ``sample`` changes, only a per-thread [N] scratch map that each call leaves all
zeros, so one can run in a background worker with its own generator.

PyG's ``NeighborLoader``/``LinkNeighborLoader`` need ``pyg-lib`` or ``torch-sparse``, neither
of which installs for this project's torch (no ``pyg-lib`` wheel on PyPI for it; ``torch-sparse``
0.6.18 is a 2023 source release that compiles for tens of minutes), so this sampler is the only
backend. Its batch converts to a PyG ``Data`` with :func:`recsys_cl.graph.pyg.subgraph_to_data`.

Measured by ``benchmarks/bench_propagation_layer.py`` (Gowalla, B = 2048, L = 2, one thread):
fanouts [20, 10] reach 96% of the nodes and keep 45% of the adjacency entries in ~0.2 s; Gowalla
is small and hub-heavy, so sampled mode pays off only on larger graphs or smaller fanouts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys_cl.fanouts import ALL_NEIGHBOURS, check_fanouts
from recsys_cl.graph.adjacency import csr_edges, csr_from_keys, sym_spmm
from recsys_cl.graph.bipartite import BipartiteGraph
from recsys_cl.rng import randperm

__all__ = [
    "ALL_NEIGHBOURS",
    "NeighborSampler",
    "SampledSubgraph",
    "check_fanouts",
    "drop_subgraph_edges",
    "drop_subgraph_nodes",
    "propagate_subgraph",
    "sample_without_replacement",
]


@dataclass(frozen=True, eq=False)
class SampledSubgraph:
    """A batch's computation subgraph over local node ids 0..n-1 (users first, then items).

    Attributes:
        node_ids: long [n], the global node id (0..N-1, items offset by U) of each local node,
            sorted ascending, so local users are ``0..n_users-1`` and local items follow.
        n_users: how many local nodes are users.
        adj: ``torch.sparse_csr`` float [n, n], symmetric: the sampled edges with the full
            graph's normalized values (full-graph degrees).
        users: long, the batch users' local ids (the shape the users were given in).
        pos_items: long, the positive items' local node ids (shape as given).
        neg_items: long, the negative items' local node ids (shape as given, e.g. [B] or [B, K]).
        hop_nodes: number of distinct nodes reached after each hop, (|S_0|, ..., |S_L|).
    """

    node_ids: Tensor
    n_users: int
    adj: Tensor
    users: Tensor
    pos_items: Tensor
    neg_items: Tensor
    hop_nodes: tuple[int, ...]

    @property
    def n_nodes(self) -> int:
        """n, the number of local nodes."""
        return self.node_ids.numel()

    @property
    def n_items(self) -> int:
        """How many local nodes are items."""
        return self.n_nodes - self.n_users

    @property
    def n_edges(self) -> int:
        """Stored entries of ``adj`` (each undirected edge counts twice)."""
        return int(self.adj.values().numel())

    def edge_index(self) -> Tensor:
        """The sub-adjacency's (row, col) pairs over local ids, long [2, n_edges]."""
        return torch.stack(csr_edges(self.adj))


class NeighborSampler:
    """Sample batch computation subgraphs of a :class:`BipartiteGraph` with per-hop fanouts.

    Args:
        graph: the full training graph; its normalized CSR adjacency supplies both the
            neighbour lists and the (full-degree) edge values.
        fanouts: one per layer, each >= 1 or -1 (see :func:`check_fanouts`).

    The sampler keeps references to ``graph.adj``'s index and value arrays (no copy) and samples
    on their device.
    """

    def __init__(self, graph: BipartiteGraph, fanouts: Sequence[int]) -> None:
        self.fanouts = check_fanouts(fanouts, len(tuple(fanouts)))
        if graph.adj.layout != torch.sparse_csr:
            raise ValueError(f"graph.adj must be sparse CSR, got {graph.adj.layout}")
        self.n_users = graph.n_users
        self.n_items = graph.n_items
        self._crow = graph.adj.crow_indices()
        self._col = graph.adj.col_indices()
        self._values = graph.adj.values()
        # Per thread (a background worker may sample beside the main thread): int32 [N],
        # allocated on first use, all zeros between calls.
        self._local = threading.local()

    @property
    def device(self) -> torch.device:
        return self._col.device

    def sample(
        self,
        users: Tensor,
        pos_items: Tensor,
        neg_items: Tensor,
        generator: torch.Generator | None,
    ) -> SampledSubgraph:
        """The L-hop computation subgraph of a batch.

        Args:
            users: long, user ids in 0..U-1 (any shape, typically [B]).
            pos_items: long, item ids in 0..I-1 (any shape, typically [B]).
            neg_items: long, item ids in 0..I-1 (any shape, e.g. [B] or [B, K]).
            generator: the only source of randomness (None: the global RNG). A CPU generator
                with data on another device draws on the CPU and copies the draws over.

        Returns:
            A :class:`SampledSubgraph` whose ``users``/``pos_items``/``neg_items`` have the
            shapes of the inputs.
        """
        n = self.n_users + self.n_items
        users = users.to(self.device)
        pos_nodes = pos_items.to(self.device) + self.n_users
        neg_nodes = neg_items.to(self.device) + self.n_users
        for name, ids, lo, hi in (
            ("users", users, 0, self.n_users),
            ("pos_items", pos_nodes, self.n_users, n),
            ("neg_items", neg_nodes, self.n_users, n),
        ):
            if ids.dtype != torch.int64:
                raise TypeError(f"{name} must be int64, got {ids.dtype}")
            if ids.numel() and (int(ids.min()) < lo or int(ids.max()) >= hi):
                raise ValueError(f"{name} has an id outside [0, {hi - lo})")
        seeds = torch.cat([users.flatten(), pos_nodes.flatten(), neg_nodes.flatten()])
        scratch = self._scratch(n)
        try:
            return self._sample(scratch, seeds, users, pos_nodes, neg_nodes, generator)
        except BaseException:
            self._local.scratch = None  # possibly left dirty: the next call allocates anew
            raise

    def _scratch(self, n: int) -> Tensor:
        """This thread's int32 [N] scratch map, all zeros between calls (see :meth:`_sample`)."""
        scratch: Tensor | None = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = torch.zeros(n, dtype=torch.int32, device=self.device)
            self._local.scratch = scratch
        return scratch

    def _sample(
        self,
        scratch: Tensor,
        seeds: Tensor,
        users: Tensor,
        pos_nodes: Tensor,
        neg_nodes: Tensor,
        generator: torch.Generator | None,
    ) -> SampledSubgraph:
        """:meth:`sample`'s work, with ``scratch`` marking the reached nodes.

        ``scratch`` is written only at the reached nodes and zeroed there again before
        returning, so no step costs O(N) (boolean masks, ``nonzero`` and a ``cumsum`` over all
        N nodes were most of a batch's sampling time on a 13M-interaction graph); the frontiers
        and ``node_ids`` come out sorted ascending, as before.
        """
        frontier = torch.unique(seeds)  # sorted
        scratch[frontier] = 1
        hop_nodes = [frontier.numel()]
        frontiers = [frontier]
        sampled: list[tuple[Tensor, Tensor, Tensor]] = []
        for fanout in self.fanouts:
            rows, positions = self._sample_positions(frontier, fanout, generator)
            reached = self._col[positions]
            sampled.append((rows, positions, reached))
            # Each unreached node once: every candidate writes its own (1-based) index, the one
            # that reads its own index back stands for the node (whichever write won).
            fresh = reached[scratch[reached] == 0]
            index = torch.arange(1, fresh.numel() + 1, dtype=torch.int32, device=self.device)
            scratch[fresh] = index
            frontier = fresh[scratch[fresh] == index].sort().values
            frontiers.append(frontier)
            hop_nodes.append(hop_nodes[-1] + frontier.numel())

        # sorted: users (< U) first, then items
        node_ids = torch.cat(frontiers).sort().values if len(frontiers) > 1 else frontier
        scratch[node_ids] = torch.arange(node_ids.numel(), dtype=torch.int32, device=self.device)
        none = frontier.new_empty(0)  # zero layers: seeds only
        dst = scratch[torch.cat([none, *(rows for rows, _, _ in sampled)])].long()
        src = scratch[torch.cat([none, *(reached for _, _, reached in sampled)])].long()
        positions = torch.cat([none, *(positions for _, positions, _ in sampled)])
        local_users = scratch[users].long()
        local_pos = scratch[pos_nodes].long()
        local_neg = scratch[neg_nodes].long()
        scratch[node_ids] = 0
        adj = _symmetric_csr(dst, src, self._values[positions], node_ids.numel())
        return SampledSubgraph(
            node_ids=node_ids,
            n_users=int((node_ids < self.n_users).sum()),
            adj=adj,
            users=local_users,
            pos_items=local_pos,
            neg_items=local_neg,
            hop_nodes=tuple(hop_nodes),
        )

    def _sample_positions(
        self, frontier: Tensor, fanout: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """The sampled edges of ``frontier`` nodes: (their node, position in the CSR columns)."""
        start = self._crow[frontier]
        degree = self._crow[frontier + 1] - start
        if fanout == ALL_NEIGHBOURS:
            seg, positions = _segment_positions(start, degree)
            return frontier[seg], positions
        whole = degree <= fanout
        seg, kept = _segment_positions(start[whole], degree[whole])
        big = ~whole
        chosen = sample_without_replacement(degree[big], fanout, generator)  # [M, fanout]
        return (
            torch.cat([frontier[whole][seg], frontier[big].repeat_interleave(fanout)]),
            torch.cat([kept, (start[big][:, None] + chosen).flatten()]),
        )


def sample_without_replacement(
    n: Tensor, k: int, generator: torch.Generator | None
) -> Tensor:
    """For each row m, k distinct offsets drawn uniformly from 0..n[m]-1.

    Robert Floyd's algorithm ("A sample of brilliance", CACM 1987), vectorized over rows with a
    loop over the k draws: draw j = n-k+t takes a uniform t' in 0..j and keeps j instead when
    t' was already taken, which yields every k-subset with equal probability. Cost O(M k^2)
    comparisons, independent of the degrees, so hub nodes cost no more than others.

    Args:
        n: long [M], each >= k.
        k: >= 1.
        generator: source of the draws (None: the global RNG).

    Returns:
        long [M, k] on ``n``'s device; the order within a row is not uniform, the set is.
    """
    if n.numel() and int(n.min()) < k:
        raise ValueError(f"cannot draw {k} distinct offsets from a row with fewer")
    chosen = torch.empty(n.numel(), k, dtype=torch.int64, device=n.device)
    if not n.numel():
        return chosen
    draw_on = n.device if generator is None else generator.device
    # float64 keeps floor(u * (j + 1)) uniform for any degree below 2**53.
    uniform = torch.rand(k, n.numel(), generator=generator, device=draw_on, dtype=torch.float64)
    last = n - k + torch.arange(k, device=n.device)[:, None]  # [k, M]: j of each draw
    draws = torch.floor(uniform.to(n.device) * (last + 1)).long().minimum(last)
    for t in range(k):
        taken = (chosen[:, :t] == draws[t, :, None]).any(1)
        chosen[:, t] = torch.where(taken, last[t], draws[t])
    return chosen


def propagate_subgraph(
    table_rows: Tensor, sub_adj: Tensor, n_layers: int, include_layer0: bool = True
) -> tuple[Tensor, ...]:
    """LightGCN layers over a sampled subgraph: E^(l+1) = A_sub E^(l) for l < L.

    Args:
        table_rows: float [n, D], the embedding table gathered at ``SampledSubgraph.node_ids``.
        sub_adj: the subgraph's symmetric adjacency [n, n].
        n_layers: L >= 0.
        include_layer0: whether E^(0) is the first returned layer.

    Returns:
        The layer outputs, each [n, D]: E^(0)..E^(L), or E^(1)..E^(L) without layer 0. Their
        mean is LightGCN's final embedding.
    """
    x = table_rows
    layers = [x] if include_layer0 else []
    for _ in range(n_layers):
        x = sym_spmm(sub_adj, x)
        layers.append(x)
    return tuple(layers)


def drop_subgraph_edges(
    adj: Tensor, p: float, generator: torch.Generator | None
) -> Tensor:
    r"""SGL edge dropout (ED) on a sampled subgraph's adjacency.

    Keeps ``int((1 - p) * E)`` of the subgraph's E undirected edges, chosen uniformly, in both
    directions together (as :func:`recsys_cl.augment.graph_dropout.edge_dropout` does on the
    full graph), and divides the kept values by ``1 - p``.

    Why that scale: full-graph SGL renormalizes a view by its own degrees, giving a kept edge
    :math:`1/\sqrt{d'_u d'_i}` with :math:`d'` the degree after dropout. A subgraph does not
    know :math:`d'` (it holds a sample of most nodes' edges), but edge dropout keeps each edge
    with probability 1 - p, so :math:`E[d'] = (1 - p) d` and the value becomes
    :math:`1/((1 - p)\sqrt{d_u d_i})`: the full-graph value over 1 - p. With p = 0 the view
    is the subgraph itself.

    Args:
        adj: the subgraph's symmetric ``torch.sparse_csr`` [n, n].
        p: drop ratio in [0, 1).
        generator: the only source of randomness.

    Returns:
        ``torch.sparse_csr`` [n, n], symmetric, its edges a subset of ``adj``'s.
    """
    _check_ratio(p)
    rows, cols = csr_edges(adj)
    upper = rows < cols  # each undirected edge once (no self-loops in a bipartite graph)
    rows, cols, values = rows[upper], cols[upper], adj.values()[upper]
    n_keep = int((1.0 - p) * rows.numel())
    keep = randperm(rows.numel(), adj.device, generator)[:n_keep]
    return _symmetric_csr(rows[keep], cols[keep], values[keep] / (1.0 - p), adj.size(0))


def drop_subgraph_nodes(
    adj: Tensor, n_users: int, p: float, generator: torch.Generator | None
) -> Tensor:
    """SGL node dropout (ND) on a sampled subgraph's adjacency.

    Drops ``int(p * n_users)`` of the local users and ``int(p * n_items)`` of the local items,
    chosen uniformly, with all their edges (dropped nodes keep their local id and an empty row),
    and divides the kept values by ``1 - p``: a kept node keeps each neighbour with
    probability about 1 - p, so its expected degree in the view is (1 - p) d, the same rule as
    :func:`drop_subgraph_edges`.

    Args:
        adj: the subgraph's symmetric ``torch.sparse_csr`` [n, n] (local users first).
        n_users: how many local nodes are users.
        p: drop ratio in [0, 1).
        generator: the only source of randomness.
    """
    _check_ratio(p)
    n = adj.size(0)
    keep_node = torch.ones(n, dtype=torch.bool, device=adj.device)
    for lo, hi in ((0, n_users), (n_users, n)):
        dropped = randperm(hi - lo, adj.device, generator)[: int(p * (hi - lo))]
        keep_node[lo + dropped] = False
    rows, cols = csr_edges(adj)
    kept = (rows < cols) & keep_node[rows] & keep_node[cols]
    return _symmetric_csr(rows[kept], cols[kept], adj.values()[kept] / (1.0 - p), n)


def _check_ratio(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop ratio must be in [0, 1), got {p}")


def _segment_positions(start: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
    """For each m, ``start[m] + 0..length[m]-1``, concatenated; with the m of each entry."""
    seg = torch.repeat_interleave(torch.arange(length.numel(), device=start.device), length)
    offsets = torch.cumsum(length, 0) - length
    return seg, start[seg] + torch.arange(seg.numel(), device=start.device) - offsets[seg]


def _symmetric_csr(dst: Tensor, src: Tensor, values: Tensor, n: int) -> Tensor:
    """CSR [n, n] holding every (dst, src) and (src, dst) entry once.

    An edge can be sampled from both of its ends (a seed's item sampling the seed back): such
    a pair is stored once, not summed as :func:`csr_matrix` would. Its two copies carry the full
    graph's (i, j) and (j, i) values, equal up to rounding; ``amax`` picks one deterministically
    on every device.
    """
    row = torch.cat([dst, src])
    col = torch.cat([src, dst])
    # One sort of the (row, col) keys, duplicates found by adjacent differences: cheaper than
    # torch.unique with return_inverse, and the same entries and values.
    keys, order = torch.sort(row * n + col)
    first = torch.ones_like(keys, dtype=torch.bool)
    torch.ne(keys[1:], keys[:-1], out=first[1:])
    uniq = keys[first]
    group = torch.cumsum(first, 0) - 1
    kept = values.new_zeros(uniq.numel()).scatter_reduce_(
        0, group, torch.cat([values, values])[order], "amax", include_self=False
    )
    return csr_from_keys(uniq, kept, n)
