"""Reweighting strategies: loss weights (mean 1, clip respected, the papers' formulas), focal
modulation of BPR and softmax against loop oracles, the in-batch softmax's positive mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_cl.data.user_items import UserItems
from recsys_cl.imbalance import (
    class_balanced_weights,
    inverse_propensity_weights,
    item_loss_weights,
    label_ratio_weights,
    normalize_clipped,
)
from recsys_cl.losses import (
    BPRObjective,
    CosineContrastiveObjective,
    DirectAUObjective,
    InBatchSoftmaxObjective,
    SampledSoftmaxObjective,
    alignment_loss,
    bpr_loss,
    in_batch_softmax_loss,
    uniformity_loss,
)
from recsys_cl.training import PositiveSet


def edge_mean(weights: np.ndarray, popularity: np.ndarray) -> float:
    return float((weights * popularity).sum() / popularity.sum())


# ---------------------------------------------------------------- loss weights


@settings(max_examples=60, deadline=None)
@given(
    pop=st.lists(st.integers(0, 5000), min_size=2, max_size=60).filter(lambda p: sum(p) > 0),
    gamma=st.floats(0.0, 2.0),
    w_min=st.floats(0.01, 1.0),
    w_max=st.floats(1.0, 50.0),
)
def test_inverse_propensity_weights_have_edge_mean_one_inside_the_clip(
    pop: list[int], gamma: float, w_min: float, w_max: float
) -> None:
    popularity = np.array(pop)
    w = inverse_propensity_weights(popularity, gamma, w_min=w_min, w_max=w_max)
    assert edge_mean(w, popularity) == pytest.approx(1.0, rel=1e-9)
    assert (w >= w_min - 1e-12).all() and (w <= w_max + 1e-12).all()
    # Less popular items never weigh less (w ∝ pop^-γ is non-increasing).
    live = popularity > 0
    order = np.argsort(popularity[live], kind="stable")
    assert (np.diff(w[live][order]) <= 1e-12).all()


def test_inverse_propensity_hand_case() -> None:
    # Unclipped: w ∝ pop^-1 with pop (1, 4): raw (1, 1/4); edge mean of c·raw is c·2/5 = 1.
    w = inverse_propensity_weights(np.array([1, 4]), 1.0, w_min=0.01, w_max=100.0)
    assert w == pytest.approx([2.5, 0.625])
    # Clipped at 2: the rare item sits on the clip, the other takes up the rest of the mean.
    w = inverse_propensity_weights(np.array([1, 4]), 1.0, w_min=0.01, w_max=2.0)
    assert w == pytest.approx([2.0, 0.75])
    flat = inverse_propensity_weights(np.array([3, 9, 1]), 0.0, w_min=0.5, w_max=2)
    assert flat == pytest.approx(1.0)


def test_class_balanced_weights_follow_the_effective_number() -> None:
    beta = 0.9
    pop = np.array([1, 2, 10])
    w = class_balanced_weights(pop, beta, w_min=0.01, w_max=100.0)
    raw = np.array([(1 - beta) / (1 - beta**n) for n in pop])  # Cui et al., eq. 3 / 1/E_n
    assert w / w[0] == pytest.approx(raw / raw[0])
    assert edge_mean(w, pop) == pytest.approx(1.0)
    # β = 0: no reweighting; β → 1: inverse frequency.
    assert class_balanced_weights(pop, 0.0, w_min=0.1, w_max=10) == pytest.approx(1.0)
    near_one = class_balanced_weights(pop, 1 - 1e-9, w_min=1e-6, w_max=1e6)
    assert near_one / near_one[0] == pytest.approx(1.0 / pop, rel=1e-6)


def test_combined_weights_multiply_then_normalize_once() -> None:
    pop = np.array([1, 5, 20, 100])
    both = item_loss_weights(
        pop, propensity_gamma=0.5, class_balanced_beta=0.99, w_min=1e-3, w_max=1e3
    )
    raw = pop**-0.5 * (0.01 / (1 - 0.99**pop))
    assert both / both[0] == pytest.approx(raw / raw[0])
    assert edge_mean(both, pop) == pytest.approx(1.0)


def test_impossible_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="w_min <= 1 <= w_max"):
        normalize_clipped(np.ones(3), np.ones(3), 1.5, 3.0)


def test_label_ratio_weights_balance_the_classes() -> None:
    labels = np.array([True] * 9 + [False] * 1)
    cw = label_ratio_weights(labels)
    assert (cw.positive, cw.negative) == pytest.approx((10 / 18, 10 / 2))
    assert cw.positive * 9 == pytest.approx(cw.negative * 1)  # each class: half the weight
    assert (9 * cw.positive + 1 * cw.negative) / 10 == pytest.approx(1.0)
    assert label_ratio_weights(np.ones(4, dtype=bool)).positive == 1.0


# ---------------------------------------------------------------- focal modulation


def test_focal_bpr_matches_loop_oracle() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(9, generator=g, dtype=torch.float64) * 3
    neg = torch.randn(9, 4, generator=g, dtype=torch.float64) * 3
    w = torch.rand(9, generator=g, dtype=torch.float64) * 2
    gamma = 2.0
    per_sample = []
    for b in range(9):
        terms = []
        for m in range(4):
            p = 1.0 / (1.0 + math.exp(-(float(pos[b]) - float(neg[b, m]))))
            terms.append(-((1.0 - p) ** gamma) * math.log(p))
        per_sample.append(sum(terms) / 4)
    expected = sum(float(wi) * li for wi, li in zip(w, per_sample, strict=True)) / 9
    assert float(bpr_loss(pos, neg, w, focal_gamma=gamma)) == pytest.approx(expected, rel=1e-10)
    assert float(bpr_loss(pos, neg, w, focal_gamma=0.0)) == float(bpr_loss(pos, neg, w))


def test_focal_bpr_fades_easy_pairs_and_stays_finite() -> None:
    pos = torch.tensor([50.0, 0.0, -50.0], requires_grad=True)
    neg = torch.zeros(3)
    loss = bpr_loss(pos, neg, focal_gamma=2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pos.grad).all()
    scores = pos.detach()
    per = [float(bpr_loss(scores[i : i + 1], neg[i : i + 1], focal_gamma=2.0)) for i in range(3)]
    assert per[0] < 1e-40
    assert per[1] == pytest.approx(0.25 * math.log(2))  # p = 1/2: (1/2)^2 · log 2
    assert per[2] == pytest.approx(50.0)


def test_focal_softmax_matches_loop_oracle() -> None:
    g = torch.Generator().manual_seed(1)
    user = torch.randn(6, 4, generator=g, dtype=torch.float64)
    pos = torch.randn(6, 4, generator=g, dtype=torch.float64)
    gamma, tau = 1.5, 0.5
    got = in_batch_softmax_loss(user, pos, tau, focal_gamma=gamma)
    logits = (user @ pos.T / tau).tolist()
    expected = 0.0
    for b in range(6):
        z = [math.exp(x) for x in logits[b]]
        p = z[b] / sum(z)
        expected += -((1 - p) ** gamma) * math.log(p) / 6
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_focal_softmax_row_without_negatives_is_zero_not_nan() -> None:
    user = torch.randn(2, 3, requires_grad=True)
    pos = torch.randn(2, 3)
    forbidden = torch.ones(2, 2, dtype=torch.bool)  # every other column masked
    loss = in_batch_softmax_loss(user, pos, 1.0, forbidden=forbidden, focal_gamma=2.0)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(user.grad).all()


# ---------------------------------------------------------------- objectives


def test_in_batch_softmax_never_uses_a_positive_of_the_user_as_negative() -> None:
    # User 0 likes items 0 and 1; in a batch holding both, column 1 is no negative for row 0.
    train = UserItems.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 2]), 2, 3)
    csr = (torch.from_numpy(train.indptr), torch.from_numpy(train.indices))
    objective = InBatchSoftmaxObjective(1.0, positives=csr, n_items=3)
    users, items = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(0)
    u, p = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    got = objective(u, p, p.new_zeros(()), users, items, None)
    logits = u @ p.T
    # row 0 (user 0, item 0): candidates {0, 2}; row 1 (user 0, item 1): {1, 2}; row 2: all.
    expected = torch.stack(
        [
            -torch.log_softmax(logits[0, [0, 2]], 0)[0],
            -torch.log_softmax(logits[1, [1, 2]], 0)[0],
            -torch.log_softmax(logits[2], 0)[2],
        ]
    ).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_logq_correction_is_subtracted_per_column() -> None:
    log_q = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    objective = InBatchSoftmaxObjective(0.5, item_log_q=log_q)
    g = torch.Generator().manual_seed(2)
    u, p = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    items = torch.tensor([2, 0, 1])
    got = objective(u, p, p.new_zeros(()), torch.arange(3), items, None)
    expected = in_batch_softmax_loss(u, p, 0.5, log_q=log_q[items], item_ids=items)
    assert float(got) == pytest.approx(float(expected))


def test_bpr_objective_is_plain_bpr_by_default() -> None:
    g = torch.Generator().manual_seed(3)
    u, p, n = (torch.randn(5, 4, generator=g) for _ in range(3))
    got = BPRObjective()(u, p, n, torch.arange(5), torch.arange(5), None)
    assert float(got) == pytest.approx(float(bpr_loss((u * p).sum(1), (u * n).sum(1))))


def _ssm_case(cosine: bool):  # noqa: ANN202 - (objective, tensors)
    # User 0 likes items 0 and 1, user 1 likes item 2; I = 4.
    train = UserItems.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 2]), 2, 4)
    csr = (torch.from_numpy(train.indptr), torch.from_numpy(train.indices))
    objective = SampledSoftmaxObjective(0.5, positives=csr, n_items=4, cosine=cosine)
    g = torch.Generator().manual_seed(4)
    u, p = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    neg = torch.randn(2, 2, 3, generator=g, requires_grad=True)
    # Row 0 (user 0, item 0) drew items 3 and 1; row 1 (user 1, item 2) drew 0 and 3.
    neg_items = torch.tensor([[3, 1], [0, 3]])
    return objective, u, p, neg, neg_items


@pytest.mark.parametrize("cosine", [True, False])
def test_sampled_softmax_shares_the_batch_draws_and_masks_a_users_positives(
    cosine: bool,
) -> None:
    objective, u, p, neg, neg_items = _ssm_case(cosine)
    users, pos_items = torch.tensor([0, 1]), torch.tensor([0, 2])
    got = objective(u, p, neg, users, pos_items, None, neg_items=neg_items)
    flat = neg.reshape(4, 3)
    if cosine:
        u_, p_, n_ = (torch.nn.functional.normalize(t, dim=-1) for t in (u, p, flat))
    else:
        u_, p_, n_ = u, p, flat
    s_pos = (u_ * p_).sum(1) / 0.5
    s_neg = u_ @ n_.T / 0.5
    # Candidates: the 4 draws [3, 1, 0, 3]; row 0's user holds items 0 and 1 (masked), row 1's
    # user holds item 2 (none of the draws).
    row0 = torch.cat([s_pos[:1], s_neg[0, [0, 3]]])
    row1 = torch.cat([s_pos[1:], s_neg[1]])
    expected = -(torch.log_softmax(row0, 0)[0] + torch.log_softmax(row1, 0)[0]) / 2
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # A masked draw takes no part: no gradient reaches it from the row that masks it alone.
    objective(
        u[:1], p[:1], neg[:1], users[:1], pos_items[:1], None, neg_items=neg_items[:1]
    ).backward()
    assert neg.grad is not None and float(neg.grad[0, 1].abs().sum()) == 0.0
    assert float(neg.grad[0, 0].abs().sum()) > 0.0


def test_sampled_softmax_needs_the_drawn_ids() -> None:
    objective, u, p, neg, _ = _ssm_case(True)
    with pytest.raises(ValueError, match="neg_items"):
        objective(u, p, neg, torch.tensor([0, 1]), torch.tensor([0, 2]), None)


def test_ssm_config_draws_its_negatives_and_refuses_biased_ones() -> None:
    from pydantic import ValidationError

    from recsys_cl.config.imbalance import ImbalanceConfig

    cfg = ImbalanceConfig.model_validate({"loss": {"kind": "ssm", "negatives": 4}})
    assert cfg.num_negatives == 4
    train = UserItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 3)
    assert isinstance(cfg.loss.build(train, torch.full((3,), 1 / 3)), SampledSoftmaxObjective)
    with pytest.raises(ValidationError, match="ssm"):
        ImbalanceConfig.model_validate({"loss": {"kind": "ssm"}, "negatives": {"alpha": 0.75}})


def _uniformity_oracle(rows: list[list[float]], weights: list[float] | None, t: float) -> float:
    # log of the weighted mean of exp(-t ||x_a - x_b||²) over ordered pairs a != b of the
    # normalized rows, one pair at a time.
    unit = [[v / math.sqrt(sum(c * c for c in row)) for v in row] for row in rows]
    w = weights if weights is not None else [1.0] * len(rows)
    num = den = 0.0
    for a, xa in enumerate(unit):
        for b, xb in enumerate(unit):
            if a != b:
                sq = sum((p - q) ** 2 for p, q in zip(xa, xb, strict=True))
                num += w[a] * w[b] * math.exp(-t * sq)
                den += w[a] * w[b]
    return math.log(num / den)


def test_alignment_and_uniformity_hand_cases() -> None:
    e = torch.eye(3)
    # Same direction (any length): aligned, 0; opposite: ||x - y||² = 4; orthogonal: 2.
    assert float(alignment_loss(2 * e, 5 * e)) == pytest.approx(0.0, abs=1e-7)
    assert float(alignment_loss(e, -3 * e)) == pytest.approx(4.0)
    assert float(alignment_loss(e, e.roll(1, dims=0))) == pytest.approx(2.0)
    # Two antipodal rows: log exp(-2 * 4) = -8; three orthonormal rows: log exp(-2 * 2) = -4,
    # the rows' lengths do not matter; one direction repeated: log 1 = 0, the worst.
    assert float(uniformity_loss(torch.tensor([[1.0, 0.0], [-2.0, 0.0]]))) == pytest.approx(-8.0)
    assert float(uniformity_loss(e * torch.tensor([[1.0], [3.0], [0.5]]))) == pytest.approx(-4.0)
    assert float(uniformity_loss(torch.ones(4, 3))) == pytest.approx(0.0, abs=1e-6)
    assert float(uniformity_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), t=0.5)) == (
        pytest.approx(-2.0)
    )
    # A single row has no pair: 0, with a finite gradient.
    one = torch.randn(1, 4, requires_grad=True)
    loss = uniformity_loss(one)
    assert float(loss.detach()) == 0.0


@pytest.mark.parametrize("weighted", [False, True])
def test_uniformity_matches_a_pair_loop_oracle(weighted: bool) -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    w = torch.rand(7, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    got = uniformity_loss(x, w, t=1.5)
    expected = _uniformity_oracle(x.tolist(), None if w is None else w.tolist(), 1.5)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    assert -4 * 1.5 <= float(got) <= 0.0


def test_directau_objective_is_alignment_plus_uniformity_of_the_distinct_rows() -> None:
    # Users [0, 0, 1, 2], items [5, 6, 5, 7]: rows of a repeated id are one embedding's copies,
    # so uniformity is over users {0, 1, 2} and items {5, 6, 7}, not over the 4 rows.
    g = torch.Generator().manual_seed(7)
    users, items = torch.tensor([0, 0, 1, 2]), torch.tensor([5, 6, 5, 7])
    user_table, item_table = torch.randn(3, 4, generator=g), torch.randn(8, 4, generator=g)
    u, p = user_table[users], item_table[items]
    gamma = 0.7
    got = DirectAUObjective(gamma)(u, p, p.new_zeros(()), users, items, None)
    align = (
        sum(
            sum((a - b) ** 2 for a, b in zip(ua, pa, strict=True))
            for ua, pa in zip(
                torch.nn.functional.normalize(u, dim=-1).tolist(),
                torch.nn.functional.normalize(p, dim=-1).tolist(),
                strict=True,
            )
        )
        / 4
    )
    uniform_users = _uniformity_oracle(user_table.tolist(), None, 2.0)
    uniform_items = _uniformity_oracle(item_table[[5, 6, 7]].tolist(), None, 2.0)
    expected = align + gamma * (uniform_users + uniform_items) / 2
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # γ = 0 is alignment alone; all-one weights are no weights.
    assert float(DirectAUObjective(0.0)(u, p, p, users, items, None)) == pytest.approx(align)
    ones = DirectAUObjective(gamma)(u, p, p, users, items, torch.ones(4))
    assert float(ones) == pytest.approx(float(got), rel=1e-6)


def test_directau_over_rows_counts_a_repeated_id_as_often_as_the_batch_holds_it() -> None:
    # The reference code's form (distinct=False): uniformity over the B rows, so user 0's two
    # copies are a pair at distance 0 and item 5 weighs twice; with weights, row pairs weigh
    # w_a w_b.
    g = torch.Generator().manual_seed(10)
    users, items = torch.tensor([0, 0, 1, 2]), torch.tensor([5, 6, 5, 7])
    user_table, item_table = torch.randn(3, 4, generator=g), torch.randn(8, 4, generator=g)
    u, p = user_table[users], item_table[items]
    for weights in (None, torch.tensor([0.5, 1.5, 2.0, 0.25])):
        got = DirectAUObjective(0.5, distinct=False)(u, p, p, users, items, weights)
        ws = None if weights is None else weights.tolist()
        uniform = _uniformity_oracle(u.tolist(), ws, 2.0) + _uniformity_oracle(p.tolist(), ws, 2.0)
        expected = float(alignment_loss(u, p, weights)) + 0.5 * uniform / 2
        assert float(got) == pytest.approx(expected, rel=1e-5)
    distinct = DirectAUObjective(0.5)(u, p, p, users, items, None)
    assert float(distinct) != pytest.approx(
        float(DirectAUObjective(0.5, distinct=False)(u, p, p, users, items, None))
    )


def test_directau_weights_each_distinct_row_by_its_mean_weight() -> None:
    g = torch.Generator().manual_seed(8)
    users, items = torch.tensor([0, 0, 1, 2]), torch.tensor([5, 6, 5, 7])
    user_table, item_table = torch.randn(3, 4, generator=g), torch.randn(8, 4, generator=g)
    u, p = user_table[users], item_table[items]
    w = torch.tensor([0.5, 1.5, 2.0, 0.25])
    got = DirectAUObjective(1.0)(u, p, p, users, items, w)
    per_row = (
        (torch.nn.functional.normalize(u, dim=-1) - torch.nn.functional.normalize(p, dim=-1))
        .pow(2)
        .sum(1)
    )
    align = float((w * per_row).sum()) / 4
    # user 0 holds rows 0 and 1 (mean weight 1.0); item 5 holds rows 0 and 2 (1.25).
    uniform_users = _uniformity_oracle(user_table.tolist(), [1.0, 2.0, 0.25], 2.0)
    uniform_items = _uniformity_oracle(item_table[[5, 6, 7]].tolist(), [1.25, 1.5, 0.25], 2.0)
    assert float(got) == pytest.approx(align + (uniform_users + uniform_items) / 2, rel=1e-5)


def test_directau_reads_no_negatives_and_ignores_embedding_length() -> None:
    g = torch.Generator().manual_seed(9)
    u, p = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    users, items = torch.tensor([0, 1, 1, 2, 3]), torch.tensor([4, 4, 5, 6, 7])
    objective = DirectAUObjective(2.0)
    assert not objective.uses_negatives
    base = float(objective(u, p, torch.zeros(()), users, items, None))
    assert float(objective(u, p, torch.randn(5, 4, generator=g), users, items, None)) == base
    # Everything is on the unit sphere: rescaling any row changes nothing.
    scale = torch.rand(5, 1, generator=g) + 0.5
    assert float(objective(u * 3, p * scale, p, users, items, None)) == pytest.approx(base)


def test_directau_config_builds_and_refuses_negative_strategies() -> None:
    from pydantic import ValidationError

    from recsys_cl.config.imbalance import ImbalanceConfig

    cfg = ImbalanceConfig.model_validate({"loss": {"kind": "directau", "gamma": 0.5}})
    train = UserItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 3)
    objective = cfg.loss.build(train, torch.full((3,), 1 / 3))
    assert isinstance(objective, DirectAUObjective) and objective.gamma == 0.5
    assert objective.distinct and cfg.num_negatives == 1
    rows = ImbalanceConfig.model_validate({"loss": {"kind": "directau", "distinct": False}})
    built = rows.loss.build(train, torch.full((3,), 1 / 3))
    assert isinstance(built, DirectAUObjective) and not built.distinct
    for bad in (
        {"negatives": {"alpha": 0.75}},
        {"negatives": {"hard": {"kind": "dns"}}},
        {"weights": {"label_threshold": 4.0}},
    ):
        with pytest.raises(ValidationError, match="directau|label_threshold"):
            ImbalanceConfig.model_validate({"loss": {"kind": "directau"}, **bad})
    with pytest.raises(ValidationError, match="gamma"):
        ImbalanceConfig.model_validate({"loss": {"kind": "directau", "gamma": -1}})


def test_cosine_contrastive_objective_matches_a_loop_oracle() -> None:
    g = torch.Generator().manual_seed(11)
    u, p = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    neg = torch.randn(3, 5, 4, generator=g)
    w = torch.tensor([0.5, 1.0, 2.0])
    margin, weight = 0.2, 3.0

    def cos(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    for weights in (None, w):
        got = CosineContrastiveObjective(margin, weight)(
            u, p, neg, torch.arange(3), torch.arange(3), weights
        )
        expected = 0.0
        for b in range(3):
            hinge = [max(0.0, cos(u[b].tolist(), n) - margin) for n in neg[b].tolist()]
            row = (1 - cos(u[b].tolist(), p[b].tolist())) + weight * sum(hinge) / 5
            expected += (1.0 if weights is None else float(weights[b])) * row / 3
        assert float(got) == pytest.approx(expected, rel=1e-5)


def test_cosine_contrastive_hand_cases() -> None:
    e = torch.eye(2)
    users = items = torch.arange(2)
    objective = CosineContrastiveObjective(0.5, 2.0)
    # Positive along the user, negative orthogonal (below the margin): 0, whatever the lengths.
    assert float(objective(e, 3 * e, e.roll(1, 0), users, items, None)) == pytest.approx(0.0)
    # Negative along the user: 2 x (1 - 0.5) = 1; positive opposite: 1 - (-1) = 2.
    assert float(objective(e, e, 4 * e, users, items, None)) == pytest.approx(1.0)
    assert float(objective(e, -e, e.roll(1, 0), users, items, None)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="margin"):
        CosineContrastiveObjective(1.0, 1.0)


def test_ccl_config_draws_its_negatives_and_refuses_a_miner() -> None:
    from pydantic import ValidationError

    from recsys_cl.config.imbalance import ImbalanceConfig

    cfg = ImbalanceConfig.model_validate({"loss": {"kind": "ccl", "negatives": 8, "margin": 0.4}})
    assert cfg.num_negatives == 8
    train = UserItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 3)
    objective = cfg.loss.build(train, torch.full((3,), 1 / 3))
    assert isinstance(objective, CosineContrastiveObjective) and objective.margin == 0.4
    with pytest.raises(ValidationError, match="ccl"):
        ImbalanceConfig.model_validate(
            {"loss": {"kind": "ccl"}, "negatives": {"hard": {"kind": "dns"}}}
        )
    with pytest.raises(ValidationError, match="margin"):
        ImbalanceConfig.model_validate({"loss": {"kind": "ccl", "margin": 1.0}})


def test_in_batch_positive_mask_matches_a_membership_oracle() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 80
    mask = rng.random((n_users, n_items)) < 0.15
    users_np, items_np = mask.nonzero()
    train = UserItems.from_pairs(users_np, items_np, n_users, n_items)
    objective = InBatchSoftmaxObjective(
        1.0,
        positives=(torch.from_numpy(train.indptr), torch.from_numpy(train.indices)),
        n_items=n_items,
    )
    pick = torch.from_numpy(rng.choice(train.nnz, size=64, replace=False))
    users = torch.from_numpy(train.rows())[pick]
    items = torch.from_numpy(train.indices)[pick]
    got = objective._positive_pairs(users, items)
    expected = PositiveSet(train).contains(users.unsqueeze(1).expand(64, 64), items.expand(64, 64))
    assert torch.equal(got, expected) and bool(got.diagonal().all())


def test_weights_average_one_over_the_rows_an_oversampled_epoch_holds() -> None:
    # IPS weights with tail oversampling: the epoch over-draws exactly the heavily weighted
    # tail items, so the weights must be normalized over the resampled rows, not the edges.
    import torch

    from recsys_cl.config.imbalance import ImbalanceConfig
    from recsys_cl.data.user_items import UserItems
    from recsys_cl.jobs import build_imbalance
    from tests.conftest import make_long_tail_log

    log = make_long_tail_log(n_users=300, n_items=150, seed=7, mean_activity=20)
    train = UserItems.from_pairs(log["user"].to_numpy(), log["item"].to_numpy(), 300, 150)
    cfg = ImbalanceConfig.model_validate(
        {
            "weights": {"propensity_gamma": 0.5, "w_min": 0.1, "w_max": 10.0},
            "positives": {"tail_beta": 0.5},
        }
    )
    drawn = build_imbalance(cfg, train).sampling
    assert drawn.edge_sampler is not None and drawn.item_weights is not None
    gen = torch.Generator().manual_seed(0)
    means = [
        float(drawn.item_weights[drawn.edge_sampler.sample_edges(gen).pos_items].mean())
        for _ in range(20)
    ]
    assert abs(np.mean(means) - 1.0) < 0.03, means
