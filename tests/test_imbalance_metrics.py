"""Long-tail metrics against naive per-user loops and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys_cl.data.stats import gini
from recsys_cl.data.user_items import UserItems
from recsys_cl.metrics import evaluate, popularity_groups, popularity_metrics
from recsys_cl.tracking.base import metric_dict


def random_split(seed: int, n_users: int = 30, n_items: int = 40) -> tuple[UserItems, UserItems]:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)
    pop /= pop.sum()
    train_u, train_i, test_u, test_i = [], [], [], []
    for u in range(n_users):
        picks = rng.choice(n_items, size=rng.integers(3, 15), replace=False, p=pop)
        cut = max(1, len(picks) * 3 // 4)
        train_u += [u] * cut
        train_i += picks[:cut].tolist()
        if u % 7 != 0:  # some users have no test item
            test_u += [u] * (len(picks) - cut)
            test_i += picks[cut:].tolist()
    return (
        UserItems.from_pairs(np.array(train_u), np.array(train_i), n_users, n_items),
        UserItems.from_pairs(
            np.array(test_u, dtype=np.int64), np.array(test_i, dtype=np.int64), n_users, n_items
        ),
    )


def naive(user_emb, item_emb, train, test, k, head, tail):  # noqa: ANN001, ANN201
    """Per-user loops over a full sort, the definitions written out."""
    n_items = train.n_items
    pop = np.bincount(train.indices, minlength=n_items)
    by_pop = sorted(range(n_items), key=lambda i: (-pop[i], i))
    n_head, n_tail = math.ceil(head * n_items), math.floor(tail * n_items)
    group = {i: "mid" for i in range(n_items)}
    group.update({i: "head" for i in by_pop[:n_head]})
    group.update({i: "tail" for i in by_pop[n_items - n_tail :]})
    scores = (user_emb @ item_emb.T).numpy()
    lists, out = {}, {}
    per_group = {g: {"recall": [], "ndcg": []} for g in ("head", "mid", "tail")}
    for u in range(train.n_users):
        truth = set(test.items_of(u).tolist())
        if not truth:
            continue
        seen = set(train.items_of(u).tolist())
        ranked = [i for i in np.argsort(-scores[u], kind="stable") if i not in seen][:k]
        lists[u] = ranked
        for g in per_group:
            rel = {i for i in truth if group[i] == g}
            if not rel:
                continue
            hits = [1.0 if i in rel else 0.0 for i in ranked]
            per_group[g]["recall"].append(sum(hits) / len(rel))
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            per_group[g]["ndcg"].append(dcg / idcg)
    for g, vals in per_group.items():
        for m, v in vals.items():
            out[f"{g}_{m}@{k}"] = float(np.mean(v)) if v else float("nan")
    shown = [i for items in lists.values() for i in items]
    out[f"coverage@{k}"] = len(set(shown)) / n_items
    out[f"arp@{k}"] = float(np.mean([np.mean([pop[i] for i in items]) for items in lists.values()]))
    exposure = np.bincount(np.array(shown, dtype=np.int64), minlength=n_items)
    out[f"gini@{k}"] = gini(exposure)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_tail_metrics_match_naive_loops(seed: int) -> None:
    train, test = random_split(seed)
    g = torch.Generator().manual_seed(seed)
    user = torch.randn(train.n_users, 6, generator=g, dtype=torch.float64)
    item = torch.randn(train.n_items, 6, generator=g, dtype=torch.float64)
    result = evaluate(user, item, test, train, ks=(5, 10), return_topk=True, return_per_user=True)
    report = popularity_metrics(result, test, train, head=0.2, tail=0.5)
    for k in (5, 10):
        expected = naive(user, item, train, test, k, 0.2, 0.5)
        for key, value in expected.items():
            assert report.metrics[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    # Activity groups average the overall per-user values, by the users' training activity.
    assert sum(report.users_per_activity_group.values()) == result.n_users_evaluated
    activity = popularity_groups(train.counts(), 0.2, 0.5)
    per_user = result.per_user["recall@10"].numpy()
    for a, name in enumerate(("high", "mid", "low")):
        members = activity[result.users.numpy()] == a
        expected = per_user[members].mean() if members.any() else float("nan")
        assert report.metrics[f"user_{name}_recall@10"] == pytest.approx(expected, nan_ok=True)


def test_hand_case() -> None:
    # 2 users, 5 items. Popularity (train): item 0: 2, item 1: 1, items 2-4: 0 → with head 0.2
    # and tail 0.4: head {0}, tail {3, 4} (ties by index: the higher index is less popular),
    # mid {1, 2}. Item i scores i for every user, so the ranking is 4, 3, 2, 1, 0.
    train = UserItems.from_pairs(np.array([0, 1, 1]), np.array([0, 0, 1]), 2, 5)
    test = UserItems.from_pairs(np.array([0, 0, 1]), np.array([4, 1, 2]), 2, 5)
    groups = popularity_groups(np.bincount(train.indices, minlength=5), 0.2, 0.4)
    assert groups.tolist() == [0, 1, 1, 2, 2]
    user = torch.ones(2, 1, dtype=torch.float64)
    item = torch.arange(5, dtype=torch.float64).unsqueeze(1)  # item 4 scores highest
    result = evaluate(user, item, test, train, ks=(2,), return_topk=True, return_per_user=True)
    # user 0 (train {0}): list [4, 3]; user 1 (train {0, 1}): list [4, 3].
    assert result.topk.tolist() == [[4, 3], [4, 3]]
    m = popularity_metrics(result, test, train, head=0.2, tail=0.4).metrics
    assert m["tail_recall@2"] == 1.0  # user 0's tail item 4 is ranked first
    assert m["tail_ndcg@2"] == 1.0
    assert m["mid_recall@2"] == 0.0  # users 0 (item 1) and 1 (item 2) miss their mid items
    assert math.isnan(m["head_recall@2"])  # nobody has a head test item
    assert m["coverage@2"] == pytest.approx(2 / 5)
    assert m["arp@2"] == 0.0  # items 3 and 4 have no training interaction
    # exposure (0, 0, 0, 2, 2): Gini = sum (2r - 6) x_(r) / (5 * 4) over r = 1..5 = (2*2 + 4*2)/20
    assert m["gini@2"] == pytest.approx(0.6)


def test_groups_partition_items_with_the_configured_sizes() -> None:
    counts = np.array([5, 5, 1, 9, 0, 3, 3, 3, 2, 7])
    groups = popularity_groups(counts, head=0.2, tail=0.5)
    assert np.bincount(groups, minlength=3).tolist() == [2, 3, 5]
    assert set(np.flatnonzero(groups == 0)) == {3, 9}
    # head items are at least as popular as mid ones, mid at least as tail ones
    assert counts[groups == 0].min() >= counts[groups == 1].max()
    assert counts[groups == 1].min() >= counts[groups == 2].max()
    with pytest.raises(ValueError):
        popularity_groups(counts, head=0.6, tail=0.6)


def test_unrankable_slots_are_skipped() -> None:
    # 1 user who saw 3 of 4 items: the top-3 list holds one item and two -1 slots.
    train = UserItems.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 4)
    test = UserItems.from_pairs(np.array([0]), np.array([3]), 1, 4)
    result = evaluate(
        torch.ones(1, 1), torch.ones(4, 1), test, train, ks=(3,), return_topk=True,
        return_per_user=True,
    )
    assert result.topk.tolist() == [[3, -1, -1]]
    m = popularity_metrics(result, test, train).metrics
    assert m["coverage@3"] == 0.25 and m["arp@3"] == 0.0
    assert m["tail_recall@3"] == 1.0


def test_needs_the_ranked_lists() -> None:
    train, test = random_split(0)
    result = evaluate(torch.randn(30, 4), torch.randn(40, 4), test, train, ks=(10,))
    with pytest.raises(ValueError, match="return_topk"):
        popularity_metrics(result, test, train)


def test_metric_names_for_mlflow() -> None:
    train, test = random_split(1)
    result = evaluate(
        torch.randn(30, 4), torch.randn(40, 4), test, train, ks=(20,), return_topk=True,
        return_per_user=True,
    )
    names = metric_dict(popularity_metrics(result, test, train).metrics, "test")
    assert "test/tail_recall_at_20" in names and all("@" not in n for n in names)
