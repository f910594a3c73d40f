"""PyG interop: HeteroData in and out, sampled batches as Data, and LightGCNConv == LGConv."""

from __future__ import annotations

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData
from torch_geometric.nn import LGConv

from recsys_cl.graph import BipartiteGraph, NeighborSampler, build_graph, sym_spmm
from recsys_cl.graph.pyg import (
    INTERACTS,
    REV_INTERACTS,
    LightGCNConv,
    from_hetero_data,
    subgraph_to_data,
    to_hetero_data,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

pytestmark = pytest.mark.usefixtures("one_thread")


def random_graph(
    n_users: int = 30, n_items: int = 40, n: int = 200, seed: int = 1
) -> BipartiteGraph:
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (n,), generator=gen)
    items = torch.randint(n_items, (n,), generator=gen)
    return build_graph(users, items, n_users + 1, n_items + 1)  # one isolated user and item


def assert_same_graph(a: BipartiteGraph, b: BipartiteGraph) -> None:
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items)
    assert torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(a.adj.crow_indices(), b.adj.crow_indices())
    assert torch.equal(a.adj.col_indices(), b.adj.col_indices())
    assert torch.equal(a.adj.values(), b.adj.values())


# --- HeteroData -------------------------------------------------------------------------------


def test_hetero_data_round_trip_keeps_the_graph() -> None:
    graph = random_graph()
    data = to_hetero_data(graph)
    assert set(data.node_types) == {"user", "item"}
    assert set(data.edge_types) == {INTERACTS, REV_INTERACTS}
    assert (data["user"].num_nodes, data["item"].num_nodes) == (graph.n_users, graph.n_items)
    pairs = data[INTERACTS].edge_index
    assert torch.equal(pairs, torch.stack([graph.users, graph.items]))
    assert torch.equal(data[REV_INTERACTS].edge_index, pairs.flip(0))
    data.validate()
    assert_same_graph(from_hetero_data(data), graph)


def test_a_users_hetero_data_made_undirected_by_pyg_builds_the_same_graph() -> None:
    # What a PyG user holds: their own HeteroData, duplicates included, made undirected by
    # PyG's transform (which names the reverse type "rev_interacts").
    gen = torch.Generator().manual_seed(2)
    users, items = torch.randint(12, (60,), generator=gen), torch.randint(9, (60,), generator=gen)
    data = HeteroData()
    data["user"].x = torch.randn(12, 3)
    data["item"].num_nodes = 9
    data["user", "interacts", "item"].edge_index = torch.stack([users, items])
    data = T.ToUndirected()(data)
    assert REV_INTERACTS in data.edge_types
    assert_same_graph(from_hetero_data(data), build_graph(users, items, 12, 9))
    # only the reverse direction present is enough too
    reverse_only = HeteroData()
    reverse_only["user"].num_nodes, reverse_only["item"].num_nodes = 12, 9
    reverse_only[REV_INTERACTS].edge_index = torch.stack([items, users])
    assert_same_graph(from_hetero_data(reverse_only), build_graph(users, items, 12, 9))


def test_from_hetero_data_custom_edge_type() -> None:
    data = HeteroData()
    data["customer"].num_nodes, data["product"].num_nodes = 3, 4
    data["customer", "buys", "product"].edge_index = torch.tensor([[0, 2], [3, 1]])
    graph = from_hetero_data(data, ("customer", "buys", "product"))
    assert (graph.n_users, graph.n_items) == (3, 4)
    assert graph.users.tolist() == [0, 2] and graph.items.tolist() == [3, 1]


def test_from_hetero_data_rejects_missing_or_inconsistent_edges() -> None:
    graph = random_graph()
    data = to_hetero_data(graph)
    data[REV_INTERACTS].edge_index = data[REV_INTERACTS].edge_index[:, 1:]
    with pytest.raises(ValueError, match="hold different interactions"):
        from_hetero_data(data)
    empty = HeteroData()
    empty["user"].num_nodes, empty["item"].num_nodes = 2, 2
    with pytest.raises(ValueError, match="no edge type"):
        from_hetero_data(empty)


# --- LightGCNConv -----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_lightgcn_conv_equals_lgconv_on_edge_index(device: str) -> None:
    graph = random_graph().to(device)
    x = torch.randn(graph.n_nodes, 8, device=device, requires_grad=True)
    upstream = torch.randn(graph.n_nodes, 8, device=device)
    ref_conv, conv = LGConv(), LightGCNConv()
    ref = ref_conv(ref_conv(x, graph.edge_index), graph.edge_index)
    out = conv(conv(x, graph.edge_index), graph.edge_index)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    (ref_grad,) = torch.autograd.grad(ref, x, upstream)
    (grad,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_lightgcn_conv_on_the_normalized_adjacency_equals_lgconv_and_sym_spmm(device: str) -> None:
    graph = random_graph().to(device)
    x = torch.randn(graph.n_nodes, 8, device=device, requires_grad=True)
    conv = LightGCNConv()
    out = conv(x, graph.adj)
    # LGConv renormalizes from the raw edges; fed the normalized CSR it must not normalize again
    torch.testing.assert_close(out, LGConv()(x, graph.edge_index), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, LGConv(normalize=False)(x, graph.adj), atol=1e-5, rtol=1e-5)
    assert torch.equal(out, sym_spmm(graph.adj, x))
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(grad, sym_spmm(graph.adj, upstream))


def test_lightgcn_conv_weighted_edges_and_bad_input() -> None:
    edge_index = torch.tensor([[0, 1, 1, 2, 0, 3], [1, 0, 2, 1, 3, 0]])
    weight = torch.tensor([2.0, 2.0, 0.5, 0.5, 1.0, 1.0])
    x = torch.randn(5, 3)  # node 4 isolated
    torch.testing.assert_close(
        LightGCNConv()(x, edge_index, weight), LGConv()(x, edge_index, weight), atol=1e-6, rtol=1e-6
    )
    with pytest.raises(ValueError, match="must be undirected"):
        LightGCNConv()(x, edge_index[:, :3])
    with pytest.raises(ValueError, match="must be undirected"):
        LightGCNConv()(x, edge_index, torch.tensor([2.0, 1.0, 0.5, 0.5, 1.0, 1.0]))
    adj = build_graph(torch.tensor([0, 1]), torch.tensor([1, 0]), 2, 2).adj
    with pytest.raises(ValueError, match="only accepted with an edge_index"):
        LightGCNConv()(torch.randn(4, 3), adj, torch.ones(4))


def test_lightgcn_conv_explain_path_matches_fused() -> None:
    # PyG's unfused path (message per edge, then scatter) must agree with the fused product.
    graph = random_graph()
    x = torch.randn(graph.n_nodes, 4)
    conv = LightGCNConv()
    fused = conv(x, graph.adj)
    conv.fuse = False
    torch.testing.assert_close(conv(x, graph.adj), fused, atol=1e-6, rtol=1e-6)


# --- sampled batches as Data --------------------------------------------------------------------


def test_sampled_batch_as_data_propagates_like_the_full_graph_with_pyg_lgconv() -> None:
    graph = random_graph(300, 400, 900, seed=3)
    gen = torch.Generator().manual_seed(0)
    users, pos, neg = torch.tensor([1, 5, 9]), torch.tensor([2, 3, 3]), torch.tensor([7, 8, 0])
    sub = NeighborSampler(graph, [-1, -1]).sample(users, pos, neg, gen)
    data = subgraph_to_data(sub)
    data.validate()
    assert data.num_nodes == sub.n_nodes < graph.n_nodes
    assert torch.equal(data.n_id, sub.node_ids) and data.n_users == sub.n_users
    x = torch.randn(graph.n_nodes, 8, generator=torch.Generator().manual_seed(1))
    full = sym_spmm(graph.adj, sym_spmm(graph.adj, x))
    conv = LGConv(normalize=False)  # PyG's own layer over the batch's edges and weights
    local = conv(conv(x[data.n_id], data.edge_index, data.edge_weight), data.edge_index,
                 data.edge_weight)
    torch.testing.assert_close(local[data.user_index], full[users], atol=1e-5, rtol=1e-5)
    items = full[graph.n_users :]
    torch.testing.assert_close(local[data.pos_index], items[pos], atol=1e-5, rtol=1e-5)
    ours = LightGCNConv()
    torch.testing.assert_close(ours(ours(x[data.n_id], data.adj_t), data.adj_t), local,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(local[data.neg_index], items[neg], atol=1e-5, rtol=1e-5)
