"""Pure ranking metrics against a per-user loop oracle and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_cl.errors import RecsysError
from recsys_cl.metrics import (
    METRICS,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)


def oracle(hit_row: list[bool], n_rel: int, k: int) -> dict[str, float]:
    """Textbook definitions, one user, one cut-off; the list is padded with misses up to k."""
    row = (list(hit_row) + [False] * k)[:k]
    n_hit = sum(row)
    dcg = sum(1.0 / math.log2(r + 2) for r, h in enumerate(row) if h)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(n_rel, k)))
    first = next((r + 1 for r, h in enumerate(row) if h), None)
    return {
        "recall": n_hit / n_rel if n_rel else math.nan,
        "ndcg": dcg / idcg if idcg else math.nan,
        "precision": n_hit / k,
        "hit_rate": float(n_hit > 0),
        "mrr": 1.0 / first if first else 0.0,
    }


def random_case(rng: np.random.Generator, n_users: int, list_len: int):
    """Hits consistent with |R_u|: at most |R_u| hits, |R_u| often 0 or below the list length."""
    n_rel = rng.choice([0, 1, 2, 3, list_len, list_len + 5], size=n_users)
    hits = np.zeros((n_users, list_len), dtype=bool)
    for b in range(n_users):
        n_hit = rng.integers(0, min(n_rel[b], list_len) + 1)
        hits[b, rng.choice(list_len, size=n_hit, replace=False)] = True
    return torch.from_numpy(hits), torch.from_numpy(n_rel)


def assert_matches_oracle(hits: torch.Tensor, n_rel: torch.Tensor, ks: tuple[int, ...]) -> None:
    got = ranking_metrics(hits, n_rel, ks)
    assert set(got) == {f"{m}@{k}" for m in METRICS for k in ks}
    for b in range(hits.shape[0]):
        for k in ks:
            want = oracle(hits[b].tolist(), int(n_rel[b]), k)
            for name, value in want.items():
                value_got = float(got[f"{name}@{k}"][b])
                if math.isnan(value):
                    assert math.isnan(value_got), (name, k, b)
                else:
                    assert value_got == pytest.approx(value, abs=1e-12), (name, k, b)


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_loop_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    list_len = int(rng.integers(1, 12))
    hits, n_rel = random_case(rng, n_users=40, list_len=list_len)
    # cut-offs below, at and above the list length (a catalogue smaller than K)
    ks = tuple(sorted({1, max(1, list_len // 2), list_len, list_len + 3}))
    assert_matches_oracle(hits, n_rel, ks)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=6),
    extra=st.lists(st.integers(0, 4), min_size=6, max_size=6),
    ks=st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True),
)
def test_metrics_match_oracle_property(rows, extra, ks) -> None:
    hits = torch.tensor(rows, dtype=torch.bool)
    n_rel = hits.sum(dim=1) + torch.tensor(extra[: len(rows)])
    assert_matches_oracle(hits, n_rel, tuple(ks))


def test_hand_computed_single_relevant_item_at_rank_3() -> None:
    hits = torch.tensor([[False, False, True, False, False]])
    n_rel = torch.tensor([1])
    ks = (2, 5)
    assert recall_at_k(hits, n_rel, ks).tolist() == [[0.0, 1.0]]
    assert precision_at_k(hits, ks).tolist() == [[0.0, 0.2]]
    assert hit_rate_at_k(hits, ks).tolist() == [[0.0, 1.0]]
    ndcg = ndcg_at_k(hits, n_rel, ks)[0]
    assert ndcg[0] == 0.0
    assert ndcg[1] == pytest.approx(1.0 / math.log2(4))
    mrr = mrr_at_k(hits, ks)[0]
    assert mrr[0] == 0.0
    assert mrr[1] == pytest.approx(1.0 / 3.0)


def test_hand_computed_recall_divides_by_all_relevant_not_min_with_k() -> None:
    # 10 relevant items, both of the top 2 hit: LightGCN recall@2 = 2/10, NDCG@2 = 1 (ideal 2 slots)
    hits = torch.tensor([[True, True, False]])
    n_rel = torch.tensor([10])
    assert recall_at_k(hits, n_rel, (2,)).item() == pytest.approx(0.2)
    assert ndcg_at_k(hits, n_rel, (2,)).item() == pytest.approx(1.0)
    # |R_u| = 2 < k = 3: the ideal DCG fills 2 positions only, so a perfect list scores 1
    assert ndcg_at_k(hits, torch.tensor([2]), (3,)).item() == pytest.approx(1.0)


def test_k_beyond_list_pads_with_misses() -> None:
    hits = torch.tensor([[True, False]])
    n_rel = torch.tensor([1])
    assert recall_at_k(hits, n_rel, (50,)).item() == 1.0
    assert precision_at_k(hits, (50,)).item() == pytest.approx(1 / 50)
    assert ndcg_at_k(hits, n_rel, (50,)).item() == pytest.approx(1.0)


def test_no_relevant_items_is_nan_for_recall_and_ndcg() -> None:
    hits = torch.zeros(1, 3, dtype=torch.bool)
    n_rel = torch.tensor([0])
    assert math.isnan(recall_at_k(hits, n_rel, (3,)).item())
    assert math.isnan(ndcg_at_k(hits, n_rel, (3,)).item())
    assert precision_at_k(hits, (3,)).item() == 0.0
    assert mrr_at_k(hits, (3,)).item() == 0.0


def test_bad_arguments_fail_clearly() -> None:
    hits = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(RecsysError, match="positive"):
        recall_at_k(hits, torch.ones(2), (0,))
    with pytest.raises(RecsysError, match="empty"):
        precision_at_k(hits, ())
    with pytest.raises(RecsysError, match="unknown metric"):
        ranking_metrics(hits, torch.ones(2), (1,), ("recal",))
    # Shapes and dtypes are caller bugs (ValueError); cut-offs may come from a user's --ks.
    with pytest.raises(ValueError, match="bool"):
        precision_at_k(hits.float(), (1,))
    with pytest.raises(ValueError, match="n_relevant"):
        recall_at_k(hits, torch.ones(3), (1,))
