"""Resampling and hard-negative mining: each sampler reproduces its target distribution
(chi-square on many draws), oversampling raises the tail edges' share as specified, DNS and
MixGCF pick what the papers pick, and no strategy ever returns a training positive."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys_cl.config import load_config
from recsys_cl.data.user_items import UserItems
from recsys_cl.imbalance import (
    ANNNegativeSampler,
    DNSSelector,
    LabeledEdgeSampler,
    MixGCFSelector,
    PopularityNegativeSampler,
    ResampledEdgeSampler,
    dns_select,
    item_popularity,
    label_ratio_weights,
)
from recsys_cl.jobs import build_imbalance
from recsys_cl.models import Batch, LightGCN
from recsys_cl.training import EdgeUniformSampler, UniformNegativeSampler, sample_epoch

# z of the 0.999 quantile of N(0, 1): the tests below fail by chance once in a thousand runs at
# most, and with fixed generators they are deterministic anyway.
Z_999 = 3.0902


def chi2_critical(dof: int) -> float:
    """The 0.999 quantile of chi-square(dof) by the Wilson-Hilferty approximation (within 1%
    of the exact value for dof >= 3)."""
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + Z_999 * math.sqrt(a)) ** 3


def chi2(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    live = probs > 0
    assert counts[~live].sum() == 0, "a zero-probability outcome was drawn"
    expected = probs[live] * counts.sum()
    return float(((counts[live] - expected) ** 2 / expected).sum()), int(live.sum()) - 1


def dense_positives(seed: int, n_users: int = 40, n_items: int = 25, p: float = 0.6) -> UserItems:
    """Dense rows (60% of items) make rejection sampling work hard; every user keeps at least
    one non-positive item."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < p
    rows = np.arange(n_users)
    mask[rows, rng.integers(n_items, size=n_users)] = True
    mask[rows, (np.arange(n_users) * 7) % n_items] = False
    users, items = mask.nonzero()
    return UserItems.from_pairs(users, items, n_users, n_items)


def long_tail_positives(seed: int = 0, n_users: int = 60, n_items: int = 40) -> UserItems:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 1.2
    pairs = set()
    for u in range(n_users):
        k = rng.integers(2, 10)
        for i in rng.choice(n_items, size=k, replace=False, p=pop / pop.sum()):
            pairs.add((u, int(i)))
    for i in range(n_items):  # every item has at least one edge
        pairs.add((i % n_users, i))
    users, items = map(np.array, zip(*sorted(pairs), strict=True))
    return UserItems.from_pairs(users, items, n_users, n_items)


# ---------------------------------------------------------------- popularity negatives


@pytest.mark.parametrize("rounds", [0, 16], ids=["exact-path", "rejection-path"])
@pytest.mark.parametrize("alpha", [0.0, 0.75, 1.0])
def test_popularity_negatives_reproduce_their_target_distribution(
    rounds: int, alpha: float
) -> None:
    # User 0 holds items {0, 3}; the popularity profile is independent of the positives.
    popularity = np.array([50, 30, 20, 10, 5, 3, 1, 0])
    train = UserItems.from_pairs(np.array([0, 0]), np.array([0, 3]), 1, 8)
    sampler = PopularityNegativeSampler(train, popularity, alpha, rejection_rounds=rounds)
    n = 60_000
    negs = sampler.sample(torch.zeros(n, dtype=torch.long), 1, torch.Generator().manual_seed(7))
    counts = np.bincount(negs.numpy().ravel(), minlength=8)
    target = popularity.astype(float) ** alpha
    target[[0, 3]] = 0.0
    target /= target.sum()
    assert sampler.probabilities(0) == pytest.approx(target)
    stat, dof = chi2(counts, target)
    assert stat < chi2_critical(dof), (stat, counts, target * n)


def test_popularity_alpha_shifts_negatives_towards_popular_items() -> None:
    train = long_tail_positives()
    pop = item_popularity(train)
    users = torch.from_numpy(train.rows())
    g = torch.Generator().manual_seed(0)
    mean_pop = {
        alpha: pop[PopularityNegativeSampler(train, pop, alpha).sample(users, 4, g).numpy()].mean()
        for alpha in (0.0, 0.75, 1.0)
    }
    assert mean_pop[0.0] < mean_pop[0.75] < mean_pop[1.0]


# ---------------------------------------------------------------- positive resampling


def test_tail_oversampling_draws_edges_with_probability_pop_to_minus_beta() -> None:
    train = long_tail_positives()
    pop = item_popularity(train)
    beta = 0.8
    sampler = ResampledEdgeSampler(train, tail_beta=beta)
    g = torch.Generator().manual_seed(1)
    draws = torch.cat([sampler.sample_edges(g).pos_items for _ in range(60)]).numpy()
    # An item's expected share: (its edges) x pop^-β, normalized = pop^(1-β) / sum.
    share = pop.astype(float) ** (1 - beta)
    share /= share.sum()
    assert sampler.item_marginal().numpy() == pytest.approx(share)
    stat, dof = chi2(np.bincount(draws, minlength=train.n_items), share)
    assert stat < chi2_critical(dof)

    # The tail's (bottom half of items) share of the rows rises from its edge share to the
    # target share, and each epoch still holds |train| rows.
    tail = np.argsort(-pop, kind="stable")[len(pop) // 2 :]
    uniform_share = pop[tail].sum() / pop.sum()
    target = share[tail].sum()
    observed = np.isin(draws, tail).mean()
    n = len(draws)
    assert abs(observed - target) < Z_999 * math.sqrt(target * (1 - target) / n)
    assert target > 1.5 * uniform_share
    assert len(sampler.sample_edges(g).users) == train.nnz


def test_user_balanced_rows_draw_users_uniformly() -> None:
    train = long_tail_positives(seed=2)
    sampler = ResampledEdgeSampler(train, user_balanced=True)
    g = torch.Generator().manual_seed(3)
    rows = [sampler.sample_edges(g) for _ in range(40)]
    users = torch.cat([r.users for r in rows]).numpy()
    uniform = np.full(train.n_users, 1 / train.n_users)
    stat, dof = chi2(np.bincount(users, minlength=train.n_users), uniform)
    assert stat < chi2_critical(dof)
    # every row is a real training edge
    pairs = torch.cat([r.pos_items for r in rows]).numpy()
    assert train.contains(users, pairs).all()
    # the item marginal the logQ correction reads matches the draws
    counts = np.bincount(pairs, minlength=train.n_items)
    stat, dof = chi2(counts, sampler.item_marginal().numpy())
    assert stat < chi2_critical(dof)


def test_head_undersampling_caps_rows_per_item() -> None:
    train = long_tail_positives()
    pop = item_popularity(train)
    cap = 5
    sampler = ResampledEdgeSampler(train, item_cap=cap)
    rows = sampler.sample_edges(torch.Generator().manual_seed(0))
    counts = np.bincount(rows.pos_items.numpy(), minlength=train.n_items)
    assert (counts == np.minimum(pop, cap)).all()  # a shuffle keeps min(pop, cap) of each item
    assert train.contains(rows.users.numpy(), rows.pos_items.numpy()).all()
    marginal = np.minimum(pop, cap) / np.minimum(pop, cap).sum()
    assert sampler.item_marginal().numpy() == pytest.approx(marginal)
    # which rows of a capped item survive changes from epoch to epoch
    again = sampler.sample_edges(torch.Generator().manual_seed(1))
    assert set(zip(rows.users.tolist(), rows.pos_items.tolist(), strict=True)) != set(
        zip(again.users.tolist(), again.pos_items.tolist(), strict=True)
    )


def test_labeled_rows_pair_explicit_negatives_with_a_positive_and_balance_classes() -> None:
    pos = UserItems.from_pairs(np.array([0, 0, 0, 1, 2]), np.array([0, 1, 2, 3, 4]), 4, 6)
    # user 3 has an explicit negative but no positive to pair it with
    neg = UserItems.from_pairs(np.array([0, 1, 3]), np.array([5, 0, 1]), 4, 6)
    cw = label_ratio_weights(np.array([True] * 5 + [False] * 3))
    sampler = LabeledEdgeSampler(EdgeUniformSampler(pos), pos, neg, cw)
    assert sampler.n_unpaired == 1
    sample = sample_epoch(
        pos, UniformNegativeSampler(pos), 2, torch.Generator().manual_seed(0), edges=sampler
    )
    assert len(sample) == 5 + 2
    assert sample.weights is not None
    explicit = torch.isclose(sample.weights, torch.tensor(cw.negative))
    assert int(explicit.sum()) == 2
    got = sorted(
        zip(sample.users[explicit].tolist(), sample.neg_items[explicit, 0].tolist(), strict=True)
    )
    assert got == [(0, 5), (1, 0)]
    assert pos.contains(sample.users.numpy(), sample.pos_items.numpy()).all()
    flat_users = sample.users.repeat_interleave(2).numpy()
    assert not pos.contains(flat_users, sample.neg_items.reshape(-1).numpy()).any()


# ---------------------------------------------------------------- the invariant, for all


STRATEGIES = {
    "uniform": [],
    "popularity": ["imbalance.negatives.alpha=1.0"],
    "dns": ["imbalance.negatives.hard.kind=dns", "imbalance.negatives.hard.candidates=8"],
    "mixgcf": ["imbalance.negatives.hard.kind=mixgcf", "imbalance.negatives.hard.candidates=8"],
    "dns+popularity+tail+user": [
        "imbalance.negatives.hard.kind=dns",
        "imbalance.negatives.alpha=0.75",
        "imbalance.positives.tail_beta=1.0",
        "imbalance.positives.batches=user",
    ],
    "ann": [
        "imbalance.negatives.hard.kind=ann",
        "imbalance.negatives.hard.rank_min=2",
        "imbalance.negatives.hard.rank_max=6",
    ],
    "weights+cap": ["imbalance.weights.propensity_gamma=1.0", "imbalance.positives.item_cap=3"],
    "softmax": ["imbalance.loss.kind=softmax"],
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_no_strategy_returns_a_training_positive_as_negative(name: str) -> None:
    if name == "ann":
        pytest.importorskip("faiss", reason="ANN mining needs FAISS (the cpu or gpu extra)")
    train = dense_positives(seed=4)
    cfg = load_config(None, ["data.dataset=ml-100k", *STRATEGIES[name]]).imbalance
    parts = build_imbalance(cfg, train)
    drawn = parts.sampling
    gen = torch.Generator().manual_seed(0)
    g = torch.Generator().manual_seed(5)
    user_emb = torch.randn(train.n_users, 8, generator=g)
    item_emb = torch.randn(train.n_items, 8, generator=g)
    for epoch in (1, 2, 3):
        for hook in drawn.epoch_hooks:
            hook.on_epoch_start(epoch, lambda: (user_emb, item_emb))
        sample = sample_epoch(
            train, drawn.sampler, drawn.num_negatives, gen,
            edges=drawn.edge_sampler, item_weights=drawn.item_weights,
        )
        m = drawn.num_negatives
        flat_users = sample.users.repeat_interleave(m).numpy()
        assert not train.contains(flat_users, sample.neg_items.reshape(-1).numpy()).any()
        assert train.contains(sample.users.numpy(), sample.pos_items.numpy()).all()
        if parts.negative_selector is not None:
            # What DNS keeps, scored by a model, is never one of the user's positives either.
            if isinstance(parts.negative_selector, DNSSelector):
                chosen = dns_select(user_emb[sample.users], item_emb, sample.neg_items, 1)
                rows = sample.users.repeat_interleave(
                    chosen.reshape(len(sample.users), -1).shape[1]
                )
                assert not train.contains(rows.numpy(), chosen.reshape(-1).numpy()).any()


def test_ann_negatives_are_the_rank_window_among_non_positives() -> None:
    # One user; item i scores 10 - i, so the ranking is 0, 1, ..., 9. Positives {0, 2} are
    # skipped: the non-positive ranking is 1, 3, 4, 5, 6, ... and ranks 2..4 are {3, 4, 5}.
    train = UserItems.from_pairs(np.array([0, 0]), np.array([0, 2]), 1, 10)
    sampler = ANNNegativeSampler(train, rank_min=2, rank_max=4, rebuild_every=3)
    user = torch.ones(1, 1)
    item = (10.0 - torch.arange(10.0)).unsqueeze(1)
    calls = []

    def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return user, item

    for epoch in range(1, 6):
        sampler.on_epoch_start(epoch, embeddings)
    assert len(calls) == 2  # built at epochs 1 and 4
    negs = sampler.sample(torch.zeros(3000, dtype=torch.long), 1, torch.Generator().manual_seed(0))
    counts = np.bincount(negs.numpy().ravel(), minlength=10)
    assert set(np.flatnonzero(counts)) == {3, 4, 5}
    stat, dof = chi2(counts, np.isin(np.arange(10), [3, 4, 5]) / 3.0)
    assert stat < chi2_critical(max(dof, 3))
    # The table survives a checkpoint round trip.
    state = sampler.state_dict()
    other = ANNNegativeSampler(train, rank_min=2, rank_max=4, rebuild_every=3)
    other.load_state_dict(state)
    users = torch.zeros(5, dtype=torch.long)
    assert torch.equal(
        other.sample(users, 2, torch.Generator().manual_seed(1)),
        sampler.sample(users, 2, torch.Generator().manual_seed(1)),
    )


def test_ann_window_slides_down_for_users_with_few_non_positives() -> None:
    train = UserItems.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 5)
    sampler = ANNNegativeSampler(train, rank_min=3, rank_max=10, rebuild_every=1)
    sampler.build(torch.ones(1, 1), torch.arange(5.0, 0.0, -1.0).unsqueeze(1))
    negs = sampler.sample(torch.zeros(200, dtype=torch.long), 1, torch.Generator().manual_seed(0))
    assert set(negs.unique().tolist()) == {3, 4}


# ---------------------------------------------------------------- DNS and MixGCF


def _propagation(n_users: int, n_items: int, seed: int):  # noqa: ANN202 - a Propagation
    init = torch.Generator().manual_seed(seed)
    encoder = LightGCN(n_users, n_items, 8, 2, include_layer0=True, generator=init)
    g = torch.Generator().manual_seed(seed + 1)
    users = torch.randint(n_users, (40,), generator=g)
    items = torch.randint(n_items, (40,), generator=g)
    adj_users = torch.cat([users, torch.arange(n_users) % n_users])
    adj_items = torch.cat([items, torch.arange(n_users) % n_items])
    from recsys_cl.graph import build_graph

    graph = build_graph(adj_users, adj_items, n_users, n_items)
    return encoder(graph.adj)


def test_dns_negatives_score_higher_under_the_model_than_uniform_ones() -> None:
    train = dense_positives(seed=6, n_users=30, n_items=60, p=0.2)
    prop = _propagation(30, 60, seed=0)
    users = torch.from_numpy(train.rows())
    cands = UniformNegativeSampler(train).sample(users, 16, torch.Generator().manual_seed(2))
    batch = Batch(users, torch.from_numpy(train.indices), cands)
    selected = DNSSelector()(prop, batch, None)
    user = prop.user[users]
    assert selected.item.requires_grad  # the embeddings train; the choice does not
    user, item = user.detach(), prop.item.detach()
    dns_scores = (user * selected.item.detach()).sum(-1)
    uniform_scores = (user * item[cands[:, 0]]).sum(-1)
    all_scores = (user.unsqueeze(1) * item[cands]).sum(-1)
    assert torch.allclose(dns_scores, all_scores.max(dim=1).values)  # the top candidate
    assert float(dns_scores.mean()) > float(uniform_scores.mean())
    top2 = dns_select(user, prop.item, cands, 2)
    assert torch.equal(top2[:, 0], dns_select(user, prop.item, cands, 1)[:, 0])


def test_mixgcf_synthesizes_negatives_by_positive_and_hop_mixing() -> None:
    n_users, n_items, m = 12, 20, 5
    prop = _propagation(n_users, n_items, seed=3)
    g = torch.Generator().manual_seed(4)
    users = torch.randint(n_users, (6,), generator=g)
    pos = torch.randint(n_items, (6,), generator=g)
    cands = torch.randint(n_items, (6, m), generator=g)
    batch = Batch(users, pos, cands)
    out = MixGCFSelector()(prop, batch, torch.Generator().manual_seed(9))
    assert out.item.shape == (6, 8) and out.item.requires_grad

    # Loop oracle, with the same α draws (B x L' uniforms from the same generator).
    alpha = torch.rand((6, 1, len(prop.layers), 1), generator=torch.Generator().manual_seed(9))
    user_emb = prop.user.detach()
    for b in range(6):
        layers = []
        for layer_id, layer in enumerate(prop.layers):
            item_layer = layer.detach()[n_users:]
            a = float(alpha[b, 0, layer_id, 0])
            mixed = [a * item_layer[pos[b]] + (1 - a) * item_layer[j] for j in cands[b]]
            scores = [float(user_emb[users[b]] @ e) for e in mixed]
            layers.append(mixed[int(np.argmax(scores))])
        expected = torch.stack(layers).mean(0)
        assert torch.allclose(out.item[b].detach(), expected, atol=1e-6)
