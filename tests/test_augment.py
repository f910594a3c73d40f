"""SGL graph dropout views and SimGCL noise: properties, not seeded floats."""

from __future__ import annotations

import pytest
import torch

from recsys_cl.augment import edge_dropout, edge_keep_mask, node_dropout, random_walk, simgcl_noise
from recsys_cl.graph import BipartiteGraph, build_graph, csr_edges, normalized_adjacency

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def graph() -> BipartiteGraph:
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(60, (1500,), generator=gen)
    items = torch.randint(80, (1500,), generator=gen)
    return build_graph(users, items, 60, 80)


def edge_set(adj: torch.Tensor) -> set[tuple[int, int]]:
    row, col = csr_edges(adj.cpu())
    return set(zip(row.tolist(), col.tolist(), strict=True))


def interaction_set(adj: torch.Tensor, n_users: int) -> set[tuple[int, int]]:
    """Undirected interactions (user, item) of an adjacency's user→item half."""
    return {(r, c - n_users) for r, c in edge_set(adj) if r < n_users}


def assert_renormalized(adj: torch.Tensor) -> None:
    # The view must be D'^-1/2 A' D'^-1/2 of its own kept edges, not the full graph's degrees.
    row, col = csr_edges(adj)
    expected = normalized_adjacency(torch.stack([row, col]), adj.size(0))
    torch.testing.assert_close(adj.to_dense(), expected.to_dense())


def adjacencies_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same stored entries and values (compared on the CPU; CUDA rsqrt may differ by an ulp)."""
    return edge_set(a) == edge_set(b) and torch.allclose(a.values().cpu(), b.values().cpu())


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_edge_dropout_keeps_a_symmetric_subset_of_the_right_size(graph, p: float) -> None:
    adj = edge_dropout(graph, p, torch.Generator().manual_seed(1))
    original = edge_set(graph.adj)
    kept = edge_set(adj)
    assert kept <= original
    assert {(c, r) for r, c in kept} == kept  # both directions kept or dropped together
    assert len(kept) // 2 == int((1 - p) * graph.n_interactions)
    assert adj.shape == graph.adj.shape
    assert_renormalized(adj)


def test_edge_dropout_is_reproducible_from_the_generator(graph) -> None:
    a = edge_dropout(graph, 0.2, torch.Generator().manual_seed(7))
    b = edge_dropout(graph, 0.2, torch.Generator().manual_seed(7))
    c = edge_dropout(graph, 0.2, torch.Generator().manual_seed(8))
    assert adjacencies_equal(a, b)
    assert not adjacencies_equal(a, c)


def test_edge_keep_mask_is_uniform_over_edges() -> None:
    gen = torch.Generator().manual_seed(3)
    hits = sum(edge_keep_mask(50, 0.3, torch.device("cpu"), gen).float() for _ in range(400))
    frac = hits / 400
    assert abs(float(frac.mean()) - 35 / 50) < 1e-6  # exactly int(0.7 * 50) per draw
    assert float(frac.min()) > 0.55 and float(frac.max()) < 0.85


def test_zero_ratio_returns_the_full_graph(graph) -> None:
    gen = torch.Generator().manual_seed(0)
    assert adjacencies_equal(edge_dropout(graph, 0.0, gen), graph.adj)
    assert adjacencies_equal(node_dropout(graph, 0.0, gen), graph.adj)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_invalid_ratio_is_rejected(graph, p: float) -> None:
    with pytest.raises(ValueError):
        edge_dropout(graph, p, torch.Generator())
    with pytest.raises(ValueError):
        node_dropout(graph, p, torch.Generator())


def test_node_dropout_removes_exactly_the_edges_of_dropped_nodes(graph) -> None:
    p = 0.25
    adj = node_dropout(graph, p, torch.Generator().manual_seed(2))
    kept = interaction_set(adj, graph.n_users)
    original = interaction_set(graph.adj, graph.n_users)
    assert kept <= original
    both_directions = {(u, graph.n_users + i) for u, i in kept}
    assert edge_set(adj) == both_directions | {(c, r) for r, c in both_directions}
    kept_users = {u for u, _ in kept}
    kept_items = {i for _, i in kept}
    # Every original interaction between two surviving nodes survives.
    assert {(u, i) for u, i in original if u in kept_users and i in kept_items} == kept
    # At least the dropped fraction of users and items lost all edges.
    assert graph.n_users - len(kept_users) >= int(p * graph.n_users)
    assert graph.n_items - len(kept_items) >= int(p * graph.n_items)
    assert_renormalized(adj)


def test_random_walk_gives_one_fresh_subgraph_per_layer(graph) -> None:
    views = random_walk(graph, 0.3, 3, torch.Generator().manual_seed(4))
    assert len(views) == 3
    for adj in views:
        assert edge_set(adj) <= edge_set(graph.adj)
        assert len(edge_set(adj)) // 2 == int(0.7 * graph.n_interactions)
    assert not adjacencies_equal(views[0], views[1])
    with pytest.raises(ValueError):
        random_walk(graph, 0.3, 0, torch.Generator())


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_follows_graph_device_with_cpu_generator(graph, device: str) -> None:
    moved = graph.to(device)
    adj = edge_dropout(moved, 0.2, torch.Generator().manual_seed(5))
    assert adj.device.type == device
    assert adjacencies_equal(adj, edge_dropout(graph, 0.2, torch.Generator().manual_seed(5)))


def test_noise_has_norm_eps_and_aligned_sign() -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(100, 16, generator=gen)
    before = emb.clone()
    out = simgcl_noise(emb, 0.1, gen)
    delta = out - emb
    torch.testing.assert_close(delta.norm(dim=1), torch.full((100,), 0.1))
    assert torch.equal(torch.sign(delta), torch.sign(emb))
    assert torch.equal(torch.sign(out), torch.sign(emb))  # |noise| < |emb| here, no flips
    assert torch.equal(emb, before)  # input not mutated


def test_noise_is_reproducible_and_differentiable() -> None:
    emb = torch.randn(10, 4, requires_grad=True)
    a = simgcl_noise(emb, 0.2, torch.Generator().manual_seed(3))
    b = simgcl_noise(emb, 0.2, torch.Generator().manual_seed(3))
    c = simgcl_noise(emb, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    torch.testing.assert_close(emb.grad, torch.ones(10, 4))
    with pytest.raises(ValueError):
        simgcl_noise(emb, -1.0, None)


def test_noise_skips_zero_coordinates() -> None:
    emb = torch.tensor([[0.0, 1.0, -2.0]])
    delta = simgcl_noise(emb, 0.5, torch.Generator().manual_seed(0)) - emb
    assert delta[0, 0] == 0 and delta[0, 1] > 0 and delta[0, 2] < 0
    assert float(delta.norm()) <= 0.5 + 1e-6


def test_noise_is_the_formula_of_the_paper_drawn_from_the_same_generator() -> None:
    # The noise is computed in place in ω's buffer, outside autograd; it must give exactly the
    # values of the written-out formula (SimGCL eq. 7) from the same draws, so seeded runs keep
    # their numbers, and pass the gradient through unchanged.
    emb = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    emb[0, :3] = 0.0
    emb.requires_grad_(True)
    gen = torch.Generator().manual_seed(2)
    omega = torch.rand((50, 8), generator=gen)
    oracle = emb + torch.sign(emb) * torch.nn.functional.normalize(omega, dim=-1) * 0.2
    out = simgcl_noise(emb, 0.2, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, oracle, rtol=0, atol=0)
    assert out.grad_fn is not None and out.grad_fn.next_functions[1][0] is None  # noise: const
    upstream = torch.randn(50, 8)
    (grad,) = torch.autograd.grad(out, emb, upstream)
    torch.testing.assert_close(grad, upstream, rtol=0, atol=0)
