"""Encoders and methods: propagation contracts, and a contract suite run for every method on a
planted two-community graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError
from functools import partial
from typing import Literal, get_args, get_origin

import pytest
import torch
from torch_geometric.nn import LGConv

from recsys_cl.augment import SimGCLNoise, simgcl_noise
from recsys_cl.config import (
    ContrastiveConfig,
    GraphMethodConfig,
    MethodConfig,
    model_configs,
    trained_method_names,
)
from recsys_cl.graph import BipartiteGraph, build_graph
from recsys_cl.losses import info_nce
from recsys_cl.models import (
    MF,
    SGL,
    Batch,
    Contrast,
    ContrastiveMethod,
    LightGCN,
    LightGCNRec,
    LossBreakdown,
    MFRec,
    Propagation,
    Recommender,
    SGLViews,
    SimGCL,
    XSimGCL,
)

from .conftest import make_planted_split

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")

# Two communities: users 0..9 like items 0..7, users 10..19 like items 8..15.
N_USERS, N_ITEMS, GROUP_USERS, GROUP_ITEMS = 20, 16, 10, 8


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def community_of_user(u: torch.Tensor) -> torch.Tensor:
    return u // GROUP_USERS


def community_of_item(i: torch.Tensor) -> torch.Tensor:
    return i // GROUP_ITEMS


# Each user interacts with 5 of the 8 items of its own community, none of the other's.
PLANTED_TRAIN = make_planted_split(GROUP_USERS, GROUP_ITEMS, train_per=5, test_per=0)[0]


@pytest.fixture(scope="module")
def planted() -> BipartiteGraph:
    """The graph of :data:`PLANTED_TRAIN`."""
    users = torch.from_numpy(PLANTED_TRAIN.rows())
    return build_graph(users, torch.from_numpy(PLANTED_TRAIN.indices), N_USERS, N_ITEMS)


def sample_batch(graph: BipartiteGraph, size: int, gen: torch.Generator, n_neg: int = 1) -> Batch:
    """Interactions as positives, items of the other community as negatives."""
    idx = torch.randint(graph.n_interactions, (size,), generator=gen, device="cpu").to(graph.device)
    users = graph.users[idx]
    other = 1 - community_of_user(users)
    shape = (size,) if n_neg == 1 else (size, n_neg)
    offsets = torch.randint(GROUP_ITEMS, shape, generator=gen).to(graph.device)
    neg = offsets + GROUP_ITEMS * (other if n_neg == 1 else other[:, None])
    return Batch(users=users, pos_items=graph.items[idx], neg_items=neg)


# ---------------------------------------------------------------- encoders


def test_propagation_shapes_and_frozen(planted) -> None:
    enc = LightGCN(N_USERS, N_ITEMS, dim=8, n_layers=2)
    prop = enc(planted.adj)
    assert isinstance(prop, Propagation)
    for t, rows in [
        (prop.user, N_USERS),
        (prop.item, N_ITEMS),
        (prop.ego_user, N_USERS),
        (prop.ego_item, N_ITEMS),
    ]:
        assert t.shape == (rows, 8)
    assert [t.shape for t in prop.layers] == [(N_USERS + N_ITEMS, 8)] * 3
    with pytest.raises(FrozenInstanceError):
        prop.final = prop.ego  # type: ignore[misc]


@pytest.mark.parametrize("ego", [False, True])
def test_propagation_rows_equal_indexing_in_value_and_gradient(planted, ego: bool) -> None:
    # rows() gathers users, items [B] and items [B, M] in one index_select; what it returns,
    # and the gradient it sends back to the table, are those of indexing each one apart.
    g = torch.Generator().manual_seed(3)
    users = torch.randint(N_USERS, (6,), generator=g)
    pos = torch.randint(N_ITEMS, (6,), generator=g)
    neg = torch.randint(N_ITEMS, (6, 3), generator=g)
    weights = [
        torch.randn(6, 8, generator=g),
        torch.randn(6, 8, generator=g),
        torch.randn(6, 3, 8, generator=g),
    ]

    def encoder() -> LightGCN:
        return LightGCN(
            N_USERS, N_ITEMS, dim=8, n_layers=2, generator=torch.Generator().manual_seed(0)
        )

    def grads(pick) -> tuple[list[torch.Tensor], torch.Tensor]:  # noqa: ANN001 - a callable
        enc = encoder()
        rows = pick(enc(planted.adj))
        sum((r * w).sum() for r, w in zip(rows, weights, strict=True)).backward()
        assert enc.weight.grad is not None
        return [r.detach() for r in rows], enc.weight.grad

    def apart(prop: Propagation) -> list[torch.Tensor]:
        user, item = (prop.ego_user, prop.ego_item) if ego else (prop.user, prop.item)
        return [user[users], item[pos], item[neg]]

    want_rows, want_grad = grads(apart)
    got_rows, got_grad = grads(lambda prop: prop.rows(users, pos, neg, ego=ego))
    for got, want in zip(got_rows, want_rows, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    (items_only,) = encoder()(planted.adj).rows(None, neg, ego=ego)
    torch.testing.assert_close(items_only, want_rows[2])


@pytest.mark.parametrize("device", DEVICES)
def test_lightgcn_equals_lgconv_layer_mean(planted, device: str) -> None:
    graph = planted.to(device)
    enc = LightGCN(N_USERS, N_ITEMS, dim=8, n_layers=3).to(device)
    conv = LGConv()
    x = enc.weight
    layers = [x]
    for _ in range(3):
        layers.append(conv(layers[-1], graph.edge_index))
    expected = torch.stack(layers).mean(0)
    prop = enc(graph.adj)
    torch.testing.assert_close(torch.cat([prop.user, prop.item]), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([prop.ego_user, prop.ego_item]), x)


def test_include_layer0_changes_the_mean_as_expected(planted) -> None:
    with_0 = LightGCN(N_USERS, N_ITEMS, dim=8, n_layers=2, include_layer0=True)
    without = LightGCN(N_USERS, N_ITEMS, dim=8, n_layers=2, include_layer0=False)
    without.load_state_dict(with_0.state_dict())
    a, b = with_0(planted.adj), without(planted.adj)
    # mean(E0, E1, E2) = (E0 + 2 * mean(E1, E2)) / 3
    torch.testing.assert_close(a.user, (a.ego_user + 2 * b.user) / 3)
    torch.testing.assert_close(a.item, (a.ego_item + 2 * b.item) / 3)
    with pytest.raises(ValueError):
        LightGCN(N_USERS, N_ITEMS, dim=8, n_layers=0, include_layer0=False)


def test_per_layer_adjacencies_and_layer_outputs(planted) -> None:
    enc = LightGCN(N_USERS, N_ITEMS, dim=4, n_layers=2, include_layer0=False)
    same = enc([planted.adj, planted.adj])
    torch.testing.assert_close(same.user, enc(planted.adj).user)
    with pytest.raises(ValueError):
        enc([planted.adj])
    # Without noise, layer l's output is A^l E0.
    dense = planted.adj.to_dense()
    prop = enc(planted.adj)
    layer2 = dense @ dense @ enc.weight
    torch.testing.assert_close(prop.layers[1], layer2, atol=1e-6, rtol=1e-5)


def test_layer_hook_sees_each_computed_layer_in_order_and_replaces_it(planted) -> None:
    enc = LightGCN(N_USERS, N_ITEMS, dim=4, n_layers=3, include_layer0=True)
    seen: list[tuple[int, tuple[int, ...]]] = []

    def double(layer: int, x: torch.Tensor) -> torch.Tensor:
        seen.append((layer, tuple(x.shape)))
        return 2 * x

    hooked, clean = enc(planted.adj, perturb=double), enc(planted.adj)
    # The table (layer 0) is a parameter, not computed: only layers 1..L pass through the hook.
    assert seen == [(layer, (N_USERS + N_ITEMS, 4)) for layer in (1, 2, 3)]
    # Each replaced output feeds the next layer: layer l is 2^l A^l E0, the mean follows.
    for layer in (1, 2, 3):
        torch.testing.assert_close(hooked.layers[layer], 2**layer * clean.layers[layer])
    expected = (clean.layers[0] + sum(2**k * clean.layers[k] for k in (1, 2, 3))) / 4
    torch.testing.assert_close(torch.cat([hooked.user, hooked.item]), expected)
    mf_seen: list[int] = []
    MF(N_USERS, N_ITEMS, dim=4)(None, perturb=lambda layer, x: mf_seen.append(layer) or x)
    assert mf_seen == [0]


def test_noisy_pass_is_reproducible_and_perturbs_each_layer(planted) -> None:
    enc = LightGCN(N_USERS, N_ITEMS, dim=8, n_layers=2, include_layer0=False)
    clean = enc(planted.adj)
    hook_a = SimGCLNoise(0.1, seeded(1), keep_layer=1)
    a = enc(planted.adj, perturb=hook_a)
    b = enc(planted.adj, perturb=SimGCLNoise(0.1, seeded(1), keep_layer=1))
    assert torch.equal(a.user, b.user)
    assert not torch.allclose(a.user, clean.user)
    layer1 = torch.sparse.mm(planted.adj, enc.weight)
    # Layer 1's noisy output is exactly ε away from its clean output, per row; it is the one
    # the hook kept.
    assert hook_a.kept is a.layers[0]
    dist = (hook_a.kept - layer1).norm(dim=1)
    torch.testing.assert_close(dist, torch.full_like(dist, 0.1), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        SimGCLNoise(0.0, None)


def test_init_schemes() -> None:
    xavier = LightGCN(1000, 2000, dim=64, n_layers=1).requires_grad_(False)
    bound_u = (6 / (1000 + 64)) ** 0.5
    assert float(xavier.weight[:1000].abs().max()) <= bound_u
    assert float(xavier.weight[:1000].abs().max()) > 0.9 * bound_u
    normal = LightGCN(1000, 2000, dim=64, n_layers=1, init_std=0.1).requires_grad_(False)
    assert float(normal.weight.std()) == pytest.approx(0.1, rel=0.02)
    with pytest.raises(ValueError):
        LightGCN(10, 10, dim=4, n_layers=1, init_std=0.0)


def test_mf_ignores_adjacency_and_has_no_layers(planted) -> None:
    mf = MF(N_USERS, N_ITEMS, dim=4)
    prop = mf(planted.adj)
    torch.testing.assert_close(prop.user, mf.weight[:N_USERS])
    torch.testing.assert_close(mf(None).item, prop.item)
    noisy = mf(None, perturb=SimGCLNoise(0.1, torch.Generator().manual_seed(0)))
    assert not torch.allclose(noisy.user, prop.user)


# ---------------------------------------------------------------- result types


def test_batch_validation_and_loss_breakdown() -> None:
    long3 = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError):
        Batch(long3, torch.zeros(2, dtype=torch.long), long3)
    with pytest.raises(ValueError):
        Batch(long3, long3, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        Batch(long3, long3, long3, torch.ones(2))
    with pytest.raises(TypeError):
        Batch(torch.zeros(3), long3, long3)
    assert Batch(long3, long3, torch.zeros(3, 4, dtype=torch.long)).size == 3
    parts = LossBreakdown.of(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.25))
    assert parts.as_floats() == {"rec": 1.0, "cl": 0.5, "reg": 0.25, "total": 1.75}


# ---------------------------------------------------------------- method contract suite

MethodFactory = Callable[[], Recommender]
SGL_ARGS = {"reg": 1e-4, "contrast": Contrast(cl_weight=0.1, tau=0.2), "drop_ratio": 0.1}


def _config_cases() -> dict[str, MethodFactory]:
    """One case per trained method of the ``ModelConfig`` union, built by its own config
    model at its defaults (dim 16, 2 layers), and one per value of each multi-valued
    ``Literal`` field (SGL's ``aug``): a new method joins the suite with no edit here."""
    cases: dict[str, MethodFactory] = {}
    for model in model_configs():
        if not issubclass(model, MethodConfig):
            continue
        variants: list[dict[str, object]] = [{}]
        for field, info in model.model_fields.items():
            values = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
            if field != "method" and len(values) > 1:
                variants = [{**v, field: value} for v in variants for value in values]
        for variant in variants:
            name = "_".join([model.model_fields["method"].default, *map(str, variant.values())])
            fields = {"dim": 16, **variant}
            if issubclass(model, GraphMethodConfig):
                fields["layers"] = 2
            cases[name] = partial(
                lambda m, f: m(**f).build(n_users=N_USERS, n_items=N_ITEMS), model, fields
            )
        if issubclass(model, ContrastiveConfig):  # and with NESCL's neighbour positives
            cases[f"{model.model_fields['method'].default}_neighbours"] = partial(
                lambda m: m(dim=16, layers=2, neighbour_positives={"k": 3}).build(
                    N_USERS, N_ITEMS, train=PLANTED_TRAIN
                ),
                model,
            )
    return cases


METHODS: dict[str, MethodFactory] = _config_cases()


def test_contract_suite_covers_every_configured_method() -> None:
    # Built from the union, so this holds by construction; it guards the generator itself.
    assert {name.split("_")[0] for name in METHODS} == set(trained_method_names())
    assert {"sgl_edge", "sgl_node", "sgl_random_walk"} <= set(METHODS)
    assert isinstance(METHODS["xsimgcl"](), XSimGCL) and isinstance(METHODS["mf"](), MFRec)


def train(method: Recommender, graph: BipartiteGraph, steps: int, seed: int) -> list[LossBreakdown]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(method.parameters(), lr=0.05)
    views = method.epoch_views(graph, gen)
    history = []
    for _ in range(steps):
        parts = method.loss(graph.adj, sample_batch(graph, 64, gen), views, gen)
        opt.zero_grad()
        parts.total.backward()
        opt.step()
        history.append(parts)
    return history


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_loss_is_finite_decreases_and_learns_the_communities(planted, name: str) -> None:
    torch.manual_seed(0)  # only the initial table; all training randomness uses generators
    method = METHODS[name]()
    history = train(method, planted, steps=30, seed=1)
    for parts in history:
        assert all(torch.isfinite(v) for v in (parts.rec, parts.cl, parts.reg, parts.total))
        torch.testing.assert_close(parts.total, parts.rec + parts.cl + parts.reg)
    first = sum(p.total.item() for p in history[:3]) / 3
    last = sum(p.total.item() for p in history[-3:]) / 3
    assert last < first
    assert (history[0].cl.item() > 0) == isinstance(method, ContrastiveMethod)

    user, item = method.embeddings(planted.adj)
    assert user.shape == (N_USERS, 16) and item.shape == (N_ITEMS, 16) and not user.requires_grad
    before = user.clone()
    train(method, planted, steps=1, seed=2)
    assert torch.equal(user, before)  # a snapshot, not a view of the trained table
    scores = user @ item.T
    user_group = community_of_user(torch.arange(N_USERS))
    same = user_group[:, None] == community_of_item(torch.arange(N_ITEMS))[None, :]
    assert float(scores[same].mean()) > float(scores[~same].mean())


@pytest.mark.parametrize("name", ["lightgcn", "simgcl", "xsimgcl", "sgl_edge"])
def test_gradients_reach_the_table_and_uniform_weights_change_nothing(planted, name: str) -> None:
    method = METHODS[name]()
    batch = sample_batch(planted, 32, torch.Generator().manual_seed(0), n_neg=3)
    weighted = Batch(batch.users, batch.pos_items, batch.neg_items, torch.ones(32))
    views = method.epoch_views(planted, torch.Generator().manual_seed(1))
    plain = method.loss(planted.adj, batch, views, torch.Generator().manual_seed(2))
    same = method.loss(planted.adj, weighted, views, torch.Generator().manual_seed(2))
    torch.testing.assert_close(plain.total, same.total)
    plain.total.backward()
    grad = method.encoder.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_sgl_views_match_the_augmentation(planted) -> None:
    gen = torch.Generator().manual_seed(0)
    edge = METHODS["sgl_edge"]().epoch_views(planted, gen)
    rw = METHODS["sgl_random_walk"]().epoch_views(planted, gen)
    assert isinstance(edge, SGLViews) and isinstance(edge.view1, torch.Tensor)
    assert isinstance(rw.view1, list) and len(rw.view1) == 2
    assert METHODS["lightgcn"]().epoch_views(planted, gen) is None
    with pytest.raises(TypeError):
        METHODS["sgl_edge"]().loss(planted.adj, sample_batch(planted, 4, gen), None, gen)


def test_method_arguments_are_validated() -> None:
    lgn = LightGCN(N_USERS, N_ITEMS, 8, 2)
    with pytest.raises(TypeError):
        LightGCNRec(MF(N_USERS, N_ITEMS, 8), reg=1e-4)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SGL(MF(N_USERS, N_ITEMS, 8), **SGL_ARGS, aug="edge")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SGL(lgn, **SGL_ARGS, aug="mask")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SGL(lgn, **{**SGL_ARGS, "drop_ratio": 1.0}, aug="edge")
    contrast = Contrast(cl_weight=0.2, tau=0.15)
    for eps in (0.0, -0.1):
        with pytest.raises(ValueError, match="eps"):
            SimGCL(lgn, reg=1e-4, contrast=contrast, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            XSimGCL(lgn, reg=1e-4, contrast=contrast, eps=eps, contrast_layer=1)
    for layer in (0, 3):
        with pytest.raises(ValueError, match="contrast_layer"):
            XSimGCL(lgn, reg=1e-4, contrast=contrast, eps=0.2, contrast_layer=layer)
    with pytest.raises(TypeError):  # the shared hyper-parameters go in by keyword only
        SimGCL(lgn, 1e-4, contrast, 0.1)  # type: ignore[misc]
    with pytest.raises(ValueError):
        LightGCNRec(lgn, reg=-1.0)


CONTRASTIVE_CLASSES: dict[str, Callable[..., ContrastiveMethod]] = {
    "sgl": lambda enc, contrast: SGL(enc, reg=1e-4, contrast=contrast, drop_ratio=0.1, aug="edge"),
    "simgcl": lambda enc, contrast: SimGCL(enc, reg=1e-4, contrast=contrast, eps=0.1),
    "xsimgcl": lambda enc, contrast: XSimGCL(
        enc, reg=1e-4, contrast=contrast, eps=0.1, contrast_layer=1
    ),
}


@pytest.mark.parametrize(("field", "bad"), [("cl_weight", -0.1), ("tau", 0.0), ("tau", -1.0)])
def test_contrast_validates_cl_weight_and_tau(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field):
        Contrast(**{"cl_weight": 0.1, "tau": 0.2, field: bad})
    with pytest.raises(FrozenInstanceError):
        Contrast(cl_weight=0.1, tau=0.2).tau = 0.3  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(CONTRASTIVE_CLASSES))
def test_every_contrastive_method_takes_one_contrast(planted, name: str) -> None:
    enc = LightGCN(N_USERS, N_ITEMS, 8, 2)
    contrast = Contrast(cl_weight=0.1, tau=0.2)
    method = CONTRASTIVE_CLASSES[name](enc, contrast)
    assert method.contrast is contrast
    # No state beyond the encoder's table: saved models (model.pt) load as before.
    assert list(method.state_dict()) == ["encoder.weight"]
    # The cl term is contrast.term between the method's two views: λ = 0 leaves it 0.
    batch = sample_batch(planted, 8, seeded(0))
    views = method.epoch_views(planted, seeded(1))
    zero = CONTRASTIVE_CLASSES[name](enc, Contrast(cl_weight=0.0, tau=0.2))
    assert zero.loss(planted.adj, batch, views, seeded(2)).cl.item() == 0.0


def _noisy_pass(enc: LightGCN, adj: torch.Tensor, eps: float, gen: torch.Generator):  # noqa: ANN202
    """A hand-written noisy LightGCN pass (the layer loop with the noise inline): the final
    node embeddings [N, D] and every layer output."""
    x, layers = enc.weight, []
    for _ in range(enc.n_layers):
        x = simgcl_noise(torch.sparse.mm(adj, x), eps, gen)
        layers.append(x)
    return torch.stack(layers).mean(0), layers


def test_simgcl_and_xsimgcl_draw_their_noise_as_a_hand_written_pass(planted) -> None:
    # The noise comes from the method's hook; it must be drawn layer by layer, pass by pass, in
    # the order an inline loop draws it, so seeded runs keep their numbers.
    batch = sample_batch(planted, 32, seeded(0))
    enc = LightGCN(N_USERS, N_ITEMS, 8, 2, include_layer0=False)
    users, items = torch.unique(batch.users), torch.unique(batch.pos_items)

    def cl(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
        return info_nce(a[:N_USERS][users], b[:N_USERS][users], tau) + info_nce(
            a[N_USERS:][items], b[N_USERS:][items], tau
        )

    simgcl = SimGCL(enc, reg=1e-4, contrast=Contrast(cl_weight=0.5, tau=0.2), eps=0.1)
    got = simgcl.loss(planted.adj, batch, None, seeded(3))
    gen = seeded(3)
    (v1, _), (v2, _) = (_noisy_pass(enc, planted.adj, 0.1, gen) for _ in range(2))
    torch.testing.assert_close(got.cl, 0.5 * cl(v1, v2, 0.2), rtol=0, atol=1e-6)

    xsimgcl = XSimGCL(
        enc, reg=1e-4, contrast=Contrast(cl_weight=0.2, tau=0.15), eps=0.2, contrast_layer=2
    )
    got = xsimgcl.loss(planted.adj, batch, None, seeded(4))
    final, layers = _noisy_pass(enc, planted.adj, 0.2, seeded(4))
    torch.testing.assert_close(got.cl, 0.2 * cl(final, layers[1], 0.15), rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_methods_run_on_cuda(planted) -> None:
    graph = planted.to("cuda")
    for name in sorted(METHODS):
        torch.manual_seed(0)
        method = METHODS[name]().to("cuda")
        history = train(method, graph, steps=5, seed=0)
        assert all(torch.isfinite(p.total) for p in history)
        assert history[0].total.device.type == "cuda"
