"""Losses against slow loop oracles (float64, math module) and analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from recsys_cl.losses import (
    bpr_loss,
    ego_l2,
    in_batch_softmax_loss,
    info_nce,
    margin_contrastive_loss,
    sampled_softmax_loss,
    triplet_margin_loss,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def loop_mean(per_sample: list[float], weights: torch.Tensor | None) -> float:
    w = [1.0] * len(per_sample) if weights is None else weights.tolist()
    return sum(wi * li for wi, li in zip(w, per_sample, strict=True)) / len(per_sample)


def log_softmax_at(logits: list[float], target: int) -> float:
    top = max(x for x in logits if x != -math.inf)
    return logits[target] - top - math.log(sum(math.exp(x - top) for x in logits))


# ---------------------------------------------------------------- pairwise losses


def pairwise_oracle(kind: str, pos: torch.Tensor, neg: torch.Tensor, **kw: float) -> list[float]:
    neg2 = neg if neg.dim() == 2 else neg[:, None]
    out = []
    for b in range(pos.numel()):
        p = float(pos[b])
        terms = [float(n) for n in neg2[b]]
        if kind == "bpr":
            vals = [-math.log(1.0 / (1.0 + math.exp(-(p - n)))) for n in terms]
            out.append(sum(vals) / len(vals))
        elif kind == "triplet":
            vals = [max(0.0, kw["margin"] - p + n) for n in terms]
            out.append(sum(vals) / len(vals))
        else:
            vals = [max(0.0, n - kw["margin"]) for n in terms]
            out.append((1.0 - p) + kw["neg_weight"] * sum(vals) / len(vals))
    return out


@pytest.mark.parametrize("neg_shape", [(12,), (12, 5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_pairwise_losses_match_loop_oracle(neg_shape: tuple[int, ...], weighted: bool) -> None:
    g = gen(1)
    pos = torch.randn(12, generator=g, dtype=torch.float64)
    neg = torch.randn(*neg_shape, generator=g, dtype=torch.float64)
    w = torch.rand(12, generator=g, dtype=torch.float64) * 2 if weighted else None
    cases = [
        (bpr_loss(pos, neg, w), pairwise_oracle("bpr", pos, neg)),
        (triplet_margin_loss(pos, neg, 0.5, w), pairwise_oracle("triplet", pos, neg, margin=0.5)),
        (
            margin_contrastive_loss(pos, neg, 0.3, 2.0, w),
            pairwise_oracle("mcl", pos, neg, margin=0.3, neg_weight=2.0),
        ),
    ]
    for got, per_sample in cases:
        assert float(got) == pytest.approx(loop_mean(per_sample, w), rel=1e-10)


def test_bpr_analytic_cases() -> None:
    s = torch.randn(7)
    assert float(bpr_loss(s, s)) == pytest.approx(math.log(2.0), rel=1e-6)
    assert float(bpr_loss(s, s[:, None].expand(7, 3))) == pytest.approx(math.log(2.0), rel=1e-6)
    # Stable far in the tails: -log σ(-1000) = 1000, -log σ(1000) = 0, never inf or NaN.
    assert float(bpr_loss(torch.tensor([0.0]), torch.tensor([1000.0]))) == pytest.approx(1000.0)
    assert float(bpr_loss(torch.tensor([1000.0]), torch.tensor([0.0]))) == 0.0


def test_margin_losses_analytic_cases() -> None:
    pos, neg = torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])
    assert float(triplet_margin_loss(pos, neg, 1.0)) == 0.0  # every gap exceeds the margin
    assert float(triplet_margin_loss(pos, neg, 4.0)) == pytest.approx(2.0)
    cos_pos, cos_neg = torch.tensor([1.0]), torch.tensor([[0.1, -0.5]])
    assert float(margin_contrastive_loss(cos_pos, cos_neg, 0.2)) == 0.0


def test_pairwise_shape_errors() -> None:
    with pytest.raises(ValueError):
        bpr_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError):
        bpr_loss(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(ValueError):
        bpr_loss(torch.zeros(3), torch.zeros(3), torch.ones(4))


# ---------------------------------------------------------------- InfoNCE


def info_nce_oracle(v1: torch.Tensor, v2: torch.Tensor, tau: float) -> list[float]:
    def unit(v: torch.Tensor) -> list[float]:
        n = math.sqrt(sum(float(x) ** 2 for x in v))
        return [float(x) / n for x in v]

    z1 = [unit(r) for r in v1]
    z2 = [unit(r) for r in v2]
    out = []
    for b in range(len(z1)):
        logits = [
            sum(x * y for x, y in zip(z1[b], z2[c], strict=True)) / tau for c in range(len(z2))
        ]
        out.append(-log_softmax_at(logits, b))
    return out


@pytest.mark.parametrize("weighted", [False, True])
def test_info_nce_matches_loop_oracle(weighted: bool) -> None:
    g = gen(2)
    v1 = torch.randn(9, 6, generator=g, dtype=torch.float64)
    v2 = torch.randn(9, 6, generator=g, dtype=torch.float64)
    w = torch.rand(9, generator=g, dtype=torch.float64) if weighted else None
    expected = loop_mean(info_nce_oracle(v1, v2, 0.2), w)
    assert float(info_nce(v1, v2, 0.2, w)) == pytest.approx(expected, rel=1e-10)


def test_info_nce_identical_views_beat_random_views() -> None:
    g = gen(3)
    v = torch.randn(32, 16, generator=g)
    other = torch.randn(32, 16, generator=g)
    assert float(info_nce(v, v, 0.2)) < float(info_nce(v, other, 0.2))
    # Scale-invariant (rows are normalized) and bounded below by 0.
    assert float(info_nce(v, 3.0 * v, 0.2)) == pytest.approx(float(info_nce(v, v, 0.2)), rel=1e-5)
    assert float(info_nce(v, v, 0.2)) > 0


def test_info_nce_stable_at_small_temperature_and_rejects_bad_tau() -> None:
    v = torch.randn(8, 4)
    assert math.isfinite(float(info_nce(v, torch.randn(8, 4), 1e-4)))
    with pytest.raises(ValueError):
        info_nce(v, v, 0.0)
    with pytest.raises(ValueError):
        info_nce(v, v[:4], 0.2)


# ---------------------------------------------------------------- sampled softmax


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(float(x) * float(y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("with_log_q", [False, True])
def test_in_batch_softmax_matches_oracle(with_log_q: bool) -> None:
    g = gen(4)
    user = torch.randn(6, 5, generator=g, dtype=torch.float64)
    pos = torch.randn(6, 5, generator=g, dtype=torch.float64)
    log_q = torch.log(torch.rand(6, generator=g, dtype=torch.float64)) if with_log_q else None
    w = torch.rand(6, generator=g, dtype=torch.float64)
    per_sample = []
    for b in range(6):
        logits = [
            dot(user[b], pos[c]) / 0.5 - (float(log_q[c]) if log_q is not None else 0.0)
            for c in range(6)
        ]
        per_sample.append(-log_softmax_at(logits, b))
    got = in_batch_softmax_loss(user, pos, 0.5, log_q=log_q, weights=w)
    assert float(got) == pytest.approx(loop_mean(per_sample, w), rel=1e-10)


@pytest.mark.parametrize("with_log_q", [False, True])
def test_sampled_softmax_matches_oracle(with_log_q: bool) -> None:
    g = gen(5)
    user = torch.randn(4, 3, generator=g, dtype=torch.float64)
    pos = torch.randn(4, 3, generator=g, dtype=torch.float64)
    neg = torch.randn(4, 7, 3, generator=g, dtype=torch.float64)
    log_q = torch.log(torch.rand(4, 8, generator=g, dtype=torch.float64)) if with_log_q else None
    per_sample = []
    for b in range(4):
        logits = [dot(user[b], pos[b]) / 0.2] + [dot(user[b], neg[b, m]) / 0.2 for m in range(7)]
        if log_q is not None:
            logits = [x - float(q) for x, q in zip(logits, log_q[b], strict=True)]
        per_sample.append(-log_softmax_at(logits, 0))
    got = sampled_softmax_loss(user, pos, neg, 0.2, log_q=log_q)
    assert float(got) == pytest.approx(loop_mean(per_sample, None), rel=1e-10)


def test_log_q_correction_constant_is_a_no_op_and_masking_drops_accidental_hits() -> None:
    g = gen(6)
    user, pos = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    plain = in_batch_softmax_loss(user, pos, 1.0)
    shifted = in_batch_softmax_loss(user, pos, 1.0, log_q=torch.full((5,), -3.0))
    torch.testing.assert_close(plain, shifted)
    # Rows 0 and 3 share an item: with item_ids, row 0's loss ignores column 3 and vice versa.
    ids = torch.tensor([10, 11, 12, 10, 13])
    masked = in_batch_softmax_loss(user, pos, 1.0, item_ids=ids)
    per_sample = []
    for b in range(5):
        cols = [c for c in range(5) if c == b or ids[c] != ids[b]]
        logits = [dot(user[b], pos[c]) for c in cols]
        per_sample.append(-log_softmax_at(logits, cols.index(b)))
    assert float(masked) == pytest.approx(sum(per_sample) / 5, rel=1e-5)


# ---------------------------------------------------------------- weights and gradients


def test_uniform_weights_equal_unweighted_and_weights_scale() -> None:
    g = gen(7)
    pos, neg = torch.randn(10, generator=g), torch.randn(10, 3, generator=g)
    v1, v2 = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    ones = torch.ones(10)
    losses = [
        lambda w: bpr_loss(pos, neg, w),
        lambda w: triplet_margin_loss(pos, neg, 1.0, w),
        lambda w: margin_contrastive_loss(pos, neg, 0.2, 1.0, w),
        lambda w: info_nce(v1, v2, 0.2, w),
        lambda w: in_batch_softmax_loss(v1, v2, 0.2, weights=w),
    ]
    for loss in losses:
        torch.testing.assert_close(loss(ones), loss(None))
        torch.testing.assert_close(loss(2.0 * ones), 2.0 * loss(None))
        # Weights move the loss: all weight on one sample differs from the plain mean.
        only_first = torch.zeros(10)
        only_first[0] = 10.0
        assert not torch.allclose(loss(only_first), loss(None))


def test_gradients_flow_to_every_input() -> None:
    g = gen(8)
    user = torch.randn(6, 4, generator=g, requires_grad=True)
    pos = torch.randn(6, 4, generator=g, requires_grad=True)
    neg = torch.randn(6, 2, 4, generator=g, requires_grad=True)
    pos_s = (user * pos).sum(-1)
    neg_s = (user[:, None] * neg).sum(-1)
    total = (
        bpr_loss(pos_s, neg_s)
        + triplet_margin_loss(pos_s, neg_s, 10.0)
        + margin_contrastive_loss(pos_s, neg_s, -10.0)
        + info_nce(user, pos, 0.2)
        + sampled_softmax_loss(user, pos, neg, 0.2)
        + ego_l2(user, pos, neg, batch_size=6)
    )
    total.backward()
    for t in (user, pos, neg):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# ---------------------------------------------------------------- ego L2


def test_ego_l2_formula() -> None:
    a = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # squared norm 6
    b = torch.tensor([[[3.0, 0.0]], [[0.0, 4.0]]])  # [B, M, D], squared norm 25
    assert float(ego_l2(a, b, batch_size=2)) == pytest.approx(0.5 * 31 / 2)
    with pytest.raises(ValueError):
        ego_l2(a, batch_size=0)
    with pytest.raises(ValueError):
        ego_l2(batch_size=2)
