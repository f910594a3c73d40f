"""Bipartite graph, normalized adjacency and symmetric propagation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch_geometric.nn import LGConv

from recsys_cl.graph import (
    BipartiteGraph,
    build_graph,
    csr_edges,
    normalized_adjacency,
    sym_spmm,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")
GOWALLA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla" / "train.txt"


def random_interactions(
    n_users: int, n_items: int, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randint(n_users, (n,), generator=gen),
        torch.randint(n_items, (n,), generator=gen),
    )


def dense_oracle(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """D^-1/2 A D^-1/2 with a Python loop over the unique pairs, in float64."""
    n = n_users + n_items
    a = torch.zeros(n, n, dtype=torch.float64)
    for u, i in set(zip(users.tolist(), items.tolist(), strict=True)):
        a[u, n_users + i] = 1.0
        a[n_users + i, u] = 1.0
    deg = a.sum(1)
    inv = torch.tensor([d**-0.5 if d > 0 else 0.0 for d in deg.tolist()], dtype=torch.float64)
    return inv[:, None] * a * inv[None, :]


@pytest.fixture
def small_graph() -> tuple[BipartiteGraph, torch.Tensor, torch.Tensor]:
    # user 6 and item 8 get no interactions: isolated nodes
    users, items = random_interactions(6, 8, 30, seed=0)
    return build_graph(users, items, n_users=7, n_items=9), users, items


def test_adjacency_matches_dense_oracle_and_is_symmetric(small_graph) -> None:
    graph, users, items = small_graph
    assert graph.adj.layout == torch.sparse_csr
    assert graph.adj.dtype == torch.float32
    dense = graph.adj.to_dense().double()
    torch.testing.assert_close(dense, dense_oracle(users, items, 7, 9), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dense, dense.T)


def test_isolated_nodes_have_zero_rows_not_nan(small_graph) -> None:
    graph, _, _ = small_graph
    dense = graph.adj.to_dense()
    assert torch.isfinite(dense).all()
    isolated_user, isolated_item = 6, graph.n_users + 8
    for node in (isolated_user, isolated_item):
        assert (dense[node] == 0).all() and (dense[:, node] == 0).all()
    x = torch.randn(graph.n_nodes, 4)
    out = sym_spmm(graph.adj, x)
    assert torch.isfinite(out).all() and (out[isolated_user] == 0).all()


def test_sqrt_degree_is_eigenvector_with_eigenvalue_one(small_graph) -> None:
    # A_norm d^1/2 = D^-1/2 A 1 = d^1/2: a property of the symmetric normalization itself.
    graph, _, _ = small_graph
    row, _ = csr_edges(graph.adj)
    deg = torch.bincount(row, minlength=graph.n_nodes).float()
    out = sym_spmm(graph.adj, deg.sqrt()[:, None])[:, 0]
    torch.testing.assert_close(out, deg.sqrt())


def test_edge_index_layout_and_deduplication() -> None:
    users = torch.tensor([2, 0, 0, 1, 2, 0])
    items = torch.tensor([1, 2, 0, 1, 1, 2])  # (2,1) and (0,2) repeat
    graph = build_graph(users, items, n_users=3, n_items=3)
    assert graph.n_interactions == 4
    assert graph.users.tolist() == [0, 0, 1, 2]
    assert graph.items.tolist() == [0, 2, 1, 1]
    e = graph.n_interactions
    assert graph.edge_index.shape == (2, 2 * e)
    torch.testing.assert_close(graph.edge_index[:, e:], graph.edge_index[:, :e].flip(0))
    assert graph.adj.values().numel() == 2 * e


def test_normalized_adjacency_weights_and_duplicates_sum() -> None:
    edge_index = torch.tensor([[0, 1, 0, 1, 2, 1], [1, 0, 1, 0, 1, 2]])
    weight = torch.tensor([1.0, 1.0, 2.0, 2.0, 4.0, 4.0])
    adj = normalized_adjacency(edge_index, 4, weight).to_dense()
    a = torch.zeros(4, 4)
    a[0, 1] = a[1, 0] = 3.0
    a[1, 2] = a[2, 1] = 4.0
    inv = torch.tensor([3.0**-0.5, 7.0**-0.5, 4.0**-0.5, 0.0])
    torch.testing.assert_close(adj, inv[:, None] * a * inv[None, :])


@pytest.mark.parametrize(
    ("users", "items", "error"),
    [
        (torch.tensor([0, 3]), torch.tensor([0, 1]), ValueError),
        (torch.tensor([0, 1]), torch.tensor([0, -1]), ValueError),
        (torch.tensor([0, 1]), torch.tensor([0]), ValueError),
        (torch.tensor([0, 1], dtype=torch.int32), torch.tensor([0, 1]), TypeError),
    ],
)
def test_build_graph_rejects_bad_input(users, items, error) -> None:
    with pytest.raises(error):
        build_graph(users, items, n_users=3, n_items=2)


@pytest.mark.parametrize("device", DEVICES)
def test_csr_propagation_equals_lgconv_on_edge_index(device: str) -> None:
    users, items = random_interactions(30, 40, 200, seed=1)
    graph = build_graph(users, items, 31, 41).to(device)
    x = torch.randn(graph.n_nodes, 8, device=device, requires_grad=True)
    upstream = torch.randn(graph.n_nodes, 8, device=device)

    conv = LGConv()  # normalize=True: PyG computes gcn_norm from edge_index itself
    ref = conv(conv(x, graph.edge_index), graph.edge_index)
    (ref_grad,) = torch.autograd.grad(ref, x, upstream)
    out = sym_spmm(graph.adj, sym_spmm(graph.adj, x))
    (grad,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)

    via_pyg_csr = LGConv(normalize=False)(x, graph.adj)
    torch.testing.assert_close(via_pyg_csr, sym_spmm(graph.adj, x), atol=1e-6, rtol=1e-6)


def test_sym_spmm_other_layouts_and_grad_through_adjacency() -> None:
    users, items = random_interactions(5, 6, 15, seed=2)
    adj = build_graph(users, items, 5, 6).adj
    x = torch.randn(11, 3)
    expected = adj.to_dense() @ x
    torch.testing.assert_close(sym_spmm(adj.to_sparse_coo(), x), expected)
    torch.testing.assert_close(sym_spmm(adj.to_dense(), x), expected)
    # An adjacency that requires grad takes the stock path, so its own gradient exists.
    dense = adj.to_dense().requires_grad_(True)
    sym_spmm(dense, x).sum().backward()
    torch.testing.assert_close(dense.grad, x.sum(1)[None, :].expand(11, 11))


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_keeps_graph(device: str) -> None:
    users, items = random_interactions(4, 4, 8, seed=3)
    graph = build_graph(users, items, 4, 4)
    moved = graph.to(device)
    assert moved.adj.device.type == device and moved.edge_index.device.type == device
    assert moved.n_users == 4 and moved.n_interactions == graph.n_interactions
    assert graph.to("cpu") is graph


@pytest.mark.skipif(not GOWALLA.exists(), reason=f"Gowalla not found at {GOWALLA}")
def test_gowalla_graph_is_a_valid_normalized_adjacency() -> None:
    users: list[int] = []
    items: list[int] = []
    with GOWALLA.open() as f:
        for line in f:
            parts = [int(p) for p in line.split()]
            users.extend([parts[0]] * (len(parts) - 1))
            items.extend(parts[1:])
    u, i = torch.tensor(users), torch.tensor(items)
    graph = build_graph(u, i, int(u.max()) + 1, int(i.max()) + 1)
    assert graph.n_interactions == len(set(zip(users, items, strict=True)))
    values = graph.adj.values()
    assert values.numel() == 2 * graph.n_interactions
    assert bool(((values > 0) & (values <= 1)).all())
    row, _ = csr_edges(graph.adj)
    root = torch.bincount(row, minlength=graph.n_nodes).double().sqrt()
    out = sym_spmm(graph.adj.double(), root[:, None])[:, 0]
    torch.testing.assert_close(out, root)
