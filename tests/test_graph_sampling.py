"""Sampled computation subgraphs: valid, reproducible, uniform, and exact with fanout -1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_cl.graph import (
    BipartiteGraph,
    NeighborSampler,
    build_graph,
    check_fanouts,
    csr_edges,
    propagate_subgraph,
    sample_without_replacement,
    sym_spmm,
)
from recsys_cl.models import LightGCN

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GOWALLA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla" / "train.txt"

pytestmark = pytest.mark.usefixtures("one_thread")


def sparse_graph(
    n_users: int = 300, n_items: int = 400, n: int = 900, seed: int = 0
) -> BipartiteGraph:
    """A random graph sparse enough that a small batch's 2-hop subgraph is a strict part of it."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (n,), generator=gen)
    items = torch.randint(n_items, (n,), generator=gen)
    return build_graph(users, items, n_users, n_items)


def star_graph(n_items: int) -> BipartiteGraph:
    """User 0 interacts with every item; user 1 with item 0 only."""
    users = torch.cat([torch.zeros(n_items, dtype=torch.long), torch.ones(1, dtype=torch.long)])
    items = torch.cat([torch.arange(n_items), torch.zeros(1, dtype=torch.long)])
    return build_graph(users, items, 2, n_items)


def batch(seed: int, graph: BipartiteGraph, size: int = 6) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randint(graph.n_users, (size,), generator=gen),
        torch.randint(graph.n_items, (size,), generator=gen),
        torch.randint(graph.n_items, (size, 2), generator=gen),
    )


NO_ITEMS = torch.empty(0, dtype=torch.long)


# --- fanout validation ------------------------------------------------------------------------


def test_check_fanouts_accepts_positive_and_all() -> None:
    assert check_fanouts([20, 10], 2) == (20, 10)
    assert check_fanouts((-1, 1, 5), 3) == (-1, 1, 5)
    assert check_fanouts([], 0) == ()


@pytest.mark.parametrize(
    ("fanouts", "n_layers", "message"),
    [
        ([20, 10], 3, "has 2 entries but the encoder has 3 layers"),
        ([20], 2, "has 1 entries but the encoder has 2 layers"),
        ([20, 0], 2, "fanout of hop 2 must be >= 1 or -1 (every neighbour), got 0"),
        ([-2, 5], 2, "fanout of hop 1 must be >= 1 or -1 (every neighbour), got -2"),
        ([2.5, 5], 2, "fanout of hop 1 must be an integer, got 2.5"),
        ([True, 5], 2, "fanout of hop 1 must be an integer, got True"),
    ],
)
def test_check_fanouts_rejects_bad_lists_in_one_line(fanouts, n_layers, message) -> None:
    with pytest.raises(ValueError) as info:
        check_fanouts(fanouts, n_layers)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_sampler_rejects_bad_fanouts_and_ids() -> None:
    graph = sparse_graph()
    with pytest.raises(ValueError, match="got 0"):
        NeighborSampler(graph, [5, 0])
    sampler = NeighborSampler(graph, [2])
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="pos_items has an id outside"):
        sampler.sample(torch.tensor([0]), torch.tensor([graph.n_items]), NO_ITEMS, gen)
    with pytest.raises(ValueError, match="users has an id outside"):
        sampler.sample(torch.tensor([-1]), NO_ITEMS, NO_ITEMS, gen)
    with pytest.raises(TypeError, match="int64"):
        sampler.sample(torch.tensor([0], dtype=torch.int32), NO_ITEMS, NO_ITEMS, gen)


# --- sampling without replacement ---------------------------------------------------------------


def test_sample_without_replacement_distinct_in_range_and_complete_when_k_equals_n() -> None:
    n = torch.tensor([3, 7, 50, 1000, 3])
    out = sample_without_replacement(n, 3, torch.Generator().manual_seed(0))
    assert out.shape == (5, 3)
    assert bool((out >= 0).all()) and bool((out < n[:, None]).all())
    assert all(len(set(row)) == 3 for row in out.tolist())
    assert sorted(out[0].tolist()) == [0, 1, 2] and sorted(out[4].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot draw 3"):
        sample_without_replacement(torch.tensor([2]), 3, None)


def test_sample_without_replacement_draws_every_subset_equally_often() -> None:
    # 2 of 5: ten subsets, each with probability 1/10.
    rows = 20_000
    out = sample_without_replacement(
        torch.full((rows,), 5), 2, torch.Generator().manual_seed(1)
    )
    lo, hi = out.min(1).values, out.max(1).values
    counts = torch.bincount(lo * 5 + hi, minlength=25)
    subsets = counts[counts > 0]
    assert subsets.numel() == 10
    expected = rows / 10
    chi2 = float(((subsets - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001


# --- subgraph validity ------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fanouts", [[3, 2], [-1, 2], [1, -1, 1]])
def test_subgraph_is_a_valid_relabelled_part_of_the_graph(device: str, fanouts: list[int]) -> None:
    graph = sparse_graph().to(device)
    users, pos, neg = (t.to(device) for t in batch(0, graph))
    sub = NeighborSampler(graph, fanouts).sample(users, pos, neg, torch.Generator().manual_seed(3))
    ids = sub.node_ids
    assert ids.device.type == device
    assert torch.equal(ids, torch.unique(ids)) and sub.n_nodes < graph.n_nodes
    assert bool((ids[: sub.n_users] < graph.n_users).all())
    assert bool((ids[sub.n_users :] >= graph.n_users).all())
    # the batch positions point back at the batch's nodes, shapes kept
    assert torch.equal(ids[sub.users], users)
    assert torch.equal(ids[sub.pos_items], pos + graph.n_users)
    assert sub.neg_items.shape == neg.shape and torch.equal(ids[sub.neg_items], neg + graph.n_users)
    # every edge is a full-graph edge with the full graph's normalized value; symmetric
    local = sub.adj.to_dense()
    full = graph.adj.to_dense()[ids][:, ids]
    kept = local != 0
    assert bool(kept.any()) and torch.equal(local[kept], full[kept])
    assert torch.equal(local, local.T)
    seeds = torch.cat([users, pos + graph.n_users, neg.flatten() + graph.n_users])
    assert sub.hop_nodes[0] == torch.unique(seeds).numel()
    assert sub.hop_nodes[-1] == sub.n_nodes and len(sub.hop_nodes) == len(fanouts) + 1


def test_fanout_caps_neighbours_and_picks_them_uniformly() -> None:
    graph = star_graph(10)
    sampler = NeighborSampler(graph, [3])
    gen = torch.Generator().manual_seed(0)
    picked = torch.zeros(graph.n_items)
    rounds = 3000
    for _ in range(rounds):
        sub = sampler.sample(torch.tensor([0]), NO_ITEMS, NO_ITEMS, gen)
        assert sub.n_nodes == 4 and sub.n_edges == 6  # the user and 3 items, both directions
        picked[sub.node_ids[1:] - graph.n_users] += 1
    # each item is in a 3-of-10 sample with probability 0.3; binomial sd = sqrt(3000*.3*.7) = 25
    assert bool(((picked - 0.3 * rounds).abs() < 5 * 25.1).all()), picked


def test_all_neighbours_and_large_fanout_keep_everything() -> None:
    graph = star_graph(10)
    for fanout in (-1, 10, 50):
        sub = NeighborSampler(graph, [fanout]).sample(torch.tensor([0]), NO_ITEMS, NO_ITEMS, None)
        assert sub.n_nodes == 11 and sub.n_edges == 20


def test_zero_layers_keep_the_seeds_only() -> None:
    graph = star_graph(4)
    sub = NeighborSampler(graph, []).sample(torch.tensor([1]), torch.tensor([0, 3]), NO_ITEMS, None)
    assert sub.node_ids.tolist() == [1, 2, 5] and sub.n_edges == 0 and sub.hop_nodes == (3,)


def test_an_edge_sampled_from_both_ends_counts_once() -> None:
    # Seed user 1 and its item 0: hop 1 takes edge (1, item 0) from both ends.
    graph = star_graph(4)
    sub = NeighborSampler(graph, [-1]).sample(torch.tensor([1]), torch.tensor([0]), NO_ITEMS, None)
    full = graph.adj.to_dense()[sub.node_ids][:, sub.node_ids]
    torch.testing.assert_close(sub.adj.to_dense(), full)  # a doubled entry would show here


# --- reproducibility --------------------------------------------------------------------------


def test_same_generator_state_replays_the_same_subgraphs() -> None:
    graph = sparse_graph()
    sampler = NeighborSampler(graph, [2, 2])
    gen = torch.Generator().manual_seed(7)
    sampler.sample(*batch(0, graph), gen)  # advance, as an epoch in progress would
    state = gen.get_state()
    first = [sampler.sample(*batch(s, graph), gen) for s in (1, 2)]
    resumed = torch.Generator()
    resumed.set_state(state)
    again = [sampler.sample(*batch(s, graph), resumed) for s in (1, 2)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.node_ids, b.node_ids)
        assert torch.equal(a.adj.crow_indices(), b.adj.crow_indices())
        assert torch.equal(a.adj.col_indices(), b.adj.col_indices())
        assert torch.equal(a.adj.values(), b.adj.values())
    other = sampler.sample(*batch(1, graph), torch.Generator().manual_seed(8))
    assert not torch.equal(other.adj.col_indices(), first[0].adj.col_indices())


# --- exactness with every neighbour ------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("n_layers", "include_layer0"), [(1, True), (2, True), (2, False), (3, True)]
)
def test_all_neighbour_subgraph_gives_full_graph_embeddings_and_gradients(
    device: str, n_layers: int, include_layer0: bool
) -> None:
    graph = sparse_graph().to(device)
    users, pos, neg = (t.to(device) for t in batch(4, graph))
    encoder = LightGCN(graph.n_users, graph.n_items, 16, n_layers,
                       include_layer0=include_layer0,
                       generator=torch.Generator().manual_seed(0)).to(device)
    sub = NeighborSampler(graph, [-1] * n_layers).sample(
        users, pos, neg, torch.Generator().manual_seed(0)
    )
    assert sub.n_nodes < graph.n_nodes  # a strict part, so an exact match is not trivial

    full = encoder(graph.adj)
    full_scores = _bpr_scores(full.user[users], full.item[pos], full.item[neg])
    (full_grad,) = torch.autograd.grad(full_scores.sum(), encoder.weight)

    layers = propagate_subgraph(encoder.weight[sub.node_ids], sub.adj, n_layers, include_layer0)
    final = torch.stack(layers).mean(0)
    torch.testing.assert_close(final[sub.users], full.user[users], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final[sub.pos_items], full.item[pos], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final[sub.neg_items], full.item[neg], atol=1e-5, rtol=1e-5)
    sub_scores = _bpr_scores(final[sub.users], final[sub.pos_items], final[sub.neg_items])
    (sub_grad,) = torch.autograd.grad(sub_scores.sum(), encoder.weight)
    torch.testing.assert_close(sub_grad, full_grad, atol=1e-5, rtol=1e-5)


def _bpr_scores(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    margin = (user * pos).sum(-1) - (user[:, None] * neg).sum(-1).mean(1)
    return torch.nn.functional.logsigmoid(margin)


def test_subgraph_degrees_renormalized_would_not_match() -> None:
    # The planted contrast: with the subgraph's own degrees the seeds' outputs differ, which is
    # why the sampler keeps the full graph's normalized values.
    graph = sparse_graph()
    users, pos, neg = batch(4, graph)
    sub = NeighborSampler(graph, [-1, -1]).sample(users, pos, neg, None)
    x = torch.randn(graph.n_nodes, 4, generator=torch.Generator().manual_seed(0))
    full = sym_spmm(graph.adj, sym_spmm(graph.adj, x))
    row, col = csr_edges(sub.adj)
    ones = torch.ones(row.numel())
    deg = torch.zeros(sub.n_nodes).index_add_(0, row, ones)
    own = torch.sparse_coo_tensor(torch.stack([row, col]), (deg[row] * deg[col]).rsqrt(),
                                  (sub.n_nodes, sub.n_nodes), check_invariants=True)
    renormalized = sym_spmm(own, sym_spmm(own, x[sub.node_ids]))
    exact = sym_spmm(sub.adj, sym_spmm(sub.adj, x[sub.node_ids]))
    torch.testing.assert_close(exact[sub.users], full[users], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(renormalized[sub.users], full[users], atol=1e-3)


# --- Gowalla ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gowalla() -> BipartiteGraph:
    if not GOWALLA.exists():
        pytest.skip(f"Gowalla not found at {GOWALLA}")
    users: list[int] = []
    items: list[int] = []
    with GOWALLA.open() as f:
        for line in f:
            parts = [int(p) for p in line.split()]
            users.extend([parts[0]] * (len(parts) - 1))
            items.extend(parts[1:])
    u, i = torch.tensor(users), torch.tensor(items)
    return build_graph(u, i, int(u.max()) + 1, int(i.max()) + 1)


def test_gowalla_batch_subgraph_is_bounded_by_its_fanouts(gowalla: BipartiteGraph) -> None:
    users, pos, neg = batch(0, gowalla, size=256)
    neg = neg[:, 0]
    sampler = NeighborSampler(gowalla, [20, 10])
    sub = sampler.sample(users, pos, neg, torch.Generator().manual_seed(0))
    s0, s1, s2 = sub.hop_nodes
    assert s1 - s0 <= 20 * s0 and s2 - s1 <= 10 * (s1 - s0)
    assert sub.n_nodes < gowalla.n_nodes
    # each sampled edge stored in both directions, each with the full graph's value
    ids = sub.node_ids
    row, col = csr_edges(sub.adj)
    grow, gcol = ids[row], ids[col]
    full_row, full_col = csr_edges(gowalla.adj)
    n = gowalla.n_nodes
    pos_in_full = torch.searchsorted(full_row * n + full_col, grow * n + gcol)
    assert torch.equal(full_col[pos_in_full], gcol) and torch.equal(full_row[pos_in_full], grow)
    assert torch.equal(gowalla.adj.values()[pos_in_full], sub.adj.values())
    # a seed user with more than 20 items: its own sampled items are 20, plus those that
    # reached it back from hop 2, never more than its full degree
    deg_full = torch.bincount(full_row, minlength=n)
    deg_sub = torch.bincount(row, minlength=sub.n_nodes)
    assert bool((deg_sub <= deg_full[ids]).all())
