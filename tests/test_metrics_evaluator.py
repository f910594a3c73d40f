"""The full-ranking evaluator against a per-user loop oracle, planted answers and properties."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import RecsysError
from recsys_cl.metrics import (
    METRICS,
    _blocks,
    choose_chunk_size,
    evaluate,
    most_popular_scores,
)
from recsys_cl.tracking.base import metric_dict, mlflow_name

GOWALLA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla"


def random_items(rng: np.random.Generator, n_users: int, n_items: int, density: float) -> UserItems:
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    return UserItems.from_pairs(users, items, n_users, n_items)


def split_fixture(seed: int, n_users: int = 37, n_items: int = 23):
    """Disjoint train / valid / test sets; some users have no test items, one has almost
    every item in train (fewer rankable items than K)."""
    rng = np.random.default_rng(seed)
    part = rng.choice(4, size=(n_users, n_items), p=[0.55, 0.25, 0.1, 0.1])  # none/train/valid/test
    part[0, :-2] = 1  # user 0: 2 rankable items only
    part[0, -1] = 3
    part[1:4, :][part[1:4, :] == 3] = 0  # users 1-3: no test items
    tables = []
    for code in (1, 2, 3):
        users, items = np.nonzero(part == code)
        tables.append(UserItems.from_pairs(users, items, n_users, n_items))
    dim = 6
    user_emb = torch.randn(n_users, dim, generator=torch.Generator().manual_seed(seed))
    item_emb = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(seed + 100))
    return user_emb, item_emb, *tables


def loop_oracle(user_emb, item_emb, truth: UserItems, excludes: list[UserItems], ks, users=None):
    """One user at a time, with numpy and sets: the metric means, per-user AUC and top lists."""
    scores = (user_emb.double() @ item_emb.double().T).numpy()
    n_items = item_emb.shape[0]
    users = range(truth.n_users) if users is None else users
    per_user = {f"{m}@{k}": [] for m in METRICS for k in ks} | {"auc": []}
    tops, skipped = {}, 0
    for u in users:
        relevant = set(truth.items_of(u).tolist())
        if not relevant:
            skipped += 1
            continue
        seen = set()
        for table in excludes:
            seen |= set(table.items_of(u).tolist())
        candidates = [i for i in range(n_items) if i not in seen]
        ranked = sorted(candidates, key=lambda i: -scores[u, i])
        tops[u] = ranked[: max(ks)]
        for k in ks:
            top = ranked[:k]
            n_hit = sum(i in relevant for i in top)
            dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top) if i in relevant)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
            first = next((r + 1 for r, i in enumerate(top) if i in relevant), None)
            per_user[f"recall@{k}"].append(n_hit / len(relevant))
            per_user[f"precision@{k}"].append(n_hit / k)
            per_user[f"hit_rate@{k}"].append(float(n_hit > 0))
            per_user[f"ndcg@{k}"].append(dcg / idcg)
            per_user[f"mrr@{k}"].append(1 / first if first else 0.0)
        pos = [i for i in candidates if i in relevant]
        neg = [i for i in candidates if i not in relevant]
        if pos and neg:
            wins = sum(
                1.0 if scores[u, p] > scores[u, n] else 0.5 if scores[u, p] == scores[u, n] else 0.0
                for p in pos
                for n in neg
            )
            per_user["auc"].append(wins / (len(pos) * len(neg)))
        else:
            per_user["auc"].append(math.nan)
    means = {key: float(np.nanmean(values)) for key, values in per_user.items()}
    return means, per_user, tops, skipped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_oracle_with_train_and_valid_excluded(seed: int) -> None:
    user_emb, item_emb, train, valid, test = split_fixture(seed)
    ks = (1, 3, 10, 30)  # 30 > 23 items
    result = evaluate(
        user_emb, item_emb, test, [train, valid], ks=ks, auc=True,
        return_per_user=True, return_topk=True,
    )
    means, per_user, tops, skipped = loop_oracle(user_emb, item_emb, test, [train, valid], ks)
    assert set(result.metrics) == set(means)
    for key, value in means.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key
        np.testing.assert_allclose(result.per_user[key].numpy(), per_user[key], atol=1e-9)
    assert result.n_users_skipped == skipped >= 3
    assert result.n_users_evaluated == 37 - skipped
    assert result.top_k == 23
    for row, u in enumerate(result.users.tolist()):
        got = [i for i in result.topk[row].tolist() if i >= 0]
        assert got == tops[u]


def test_excluded_items_never_ranked_and_short_lists_padded() -> None:
    user_emb, item_emb, train, valid, test = split_fixture(3)
    result = evaluate(user_emb, item_emb, test, [train, valid], ks=(20,), return_topk=True)
    for row, u in enumerate(result.users.tolist()):
        seen = set(train.items_of(u).tolist()) | set(valid.items_of(u).tolist())
        top = result.topk[row].tolist()
        ranked = [i for i in top if i >= 0]
        assert not seen & set(ranked)
        assert len(ranked) == min(20, 23 - len(seen))
        assert all(i == -1 for i in top[len(ranked):])
    user0 = result.users.tolist().index(0)
    assert result.topk[user0].tolist()[2:] == [-1] * 18


def test_excluded_items_never_ranked_with_adversarial_scores() -> None:
    # Training items get the highest scores; masking alone must keep them out.
    rng = np.random.default_rng(5)
    train = random_items(rng, 30, 50, 0.3)
    test = random_items(rng, 30, 50, 0.1)
    dense = torch.zeros(30, 50)
    dense[torch.from_numpy(train.rows()), torch.from_numpy(train.indices)] = 100.0
    result = evaluate(dense, torch.eye(50), test, train, ks=(10,), return_topk=True)
    for row, u in enumerate(result.users.tolist()):
        assert not set(result.topk[row].tolist()) & set(train.items_of(u).tolist())


def test_users_without_ground_truth_are_skipped_and_counted() -> None:
    user_emb, item_emb, train, _valid, test = split_fixture(4)
    counts = test.counts()
    result = evaluate(user_emb, item_emb, test, train, return_per_user=True)
    assert result.n_users_skipped == int((counts == 0).sum())
    assert result.n_users_evaluated == int((counts > 0).sum())
    assert set(result.users.tolist()) == set(np.flatnonzero(counts > 0).tolist())
    assert all(len(v) == result.n_users_evaluated for v in result.per_user.values())

    subset = [1, 2, 5, 6, 9]
    sub = evaluate(user_emb, item_emb, test, train, users=subset, ks=(5,))
    means, _, _, skipped = loop_oracle(user_emb, item_emb, test, [train], (5,), users=subset)
    assert sub.n_users_skipped == skipped == 2
    assert sub.n_users_evaluated == 3
    assert sub.metrics["recall@5"] == pytest.approx(means["recall@5"])


def test_no_user_with_ground_truth_gives_nan_and_counts() -> None:
    empty = UserItems.from_pairs(np.array([]), np.array([]), 4, 5)
    result = evaluate(torch.randn(4, 2), torch.randn(5, 2), empty, None, ks=(2,))
    assert result.n_users_evaluated == 0 and result.n_users_skipped == 4
    assert math.isnan(result.metrics["recall@2"])


@pytest.mark.parametrize("chunk_size", [1, 4, 7])
def test_chunked_equals_single_chunk(chunk_size: int) -> None:
    user_emb, item_emb, train, valid, test = split_fixture(6)
    kwargs = dict(ks=(2, 5, 10), auc=True, return_per_user=True, return_topk=True)
    whole = evaluate(user_emb, item_emb, test, [train, valid], chunk_size=10_000, **kwargs)
    parts = evaluate(user_emb, item_emb, test, [train, valid], chunk_size=chunk_size, **kwargs)
    assert parts.n_users_evaluated == whole.n_users_evaluated
    for key, value in whole.metrics.items():
        assert parts.metrics[key] == pytest.approx(value, abs=1e-12)
        torch.testing.assert_close(parts.per_user[key], whole.per_user[key], equal_nan=True)
    assert torch.equal(parts.topk, whole.topk)


def test_planted_perfect_ranking() -> None:
    # Each user's one-hot embedding picks an item column that is 1 exactly on its test items.
    rng = np.random.default_rng(7)
    test = random_items(rng, 12, 40, 0.15)
    item_emb = torch.zeros(40, 12)
    item_emb[torch.from_numpy(test.indices), torch.from_numpy(test.rows())] = 1.0
    result = evaluate(torch.eye(12), item_emb, test, None, ks=(5,), auc=True, return_per_user=True)
    n_rel = torch.from_numpy(test.counts()[result.users.numpy()]).double()
    torch.testing.assert_close(result.per_user["recall@5"], n_rel.clamp(max=5) / n_rel)
    for key in ("ndcg@5", "hit_rate@5", "mrr@5", "auc"):
        assert result.metrics[key] == pytest.approx(1.0), key


def test_auc_counts_ties_as_half() -> None:
    # Integer embeddings in a tiny range make many exact score ties.
    gen = torch.Generator().manual_seed(8)
    user_emb = torch.randint(0, 2, (20, 2), generator=gen).float()
    item_emb = torch.randint(0, 2, (30, 2), generator=gen).float()
    rng = np.random.default_rng(8)
    train, test = random_items(rng, 20, 30, 0.2), random_items(rng, 20, 30, 0.2)
    result = evaluate(user_emb, item_emb, test, train, ks=(5,), auc=True, return_per_user=True)
    _, per_user, _, _ = loop_oracle(user_emb, item_emb, test, [train], (5,))
    np.testing.assert_allclose(result.per_user["auc"].numpy(), per_user["auc"], atol=1e-12)


def test_auc_row_slices_agree_with_one_slice(monkeypatch) -> None:
    user_emb, item_emb, train, valid, test = split_fixture(16)
    kwargs = dict(ks=(5,), auc=True, return_per_user=True)
    whole = evaluate(user_emb, item_emb, test, [train, valid], **kwargs)
    monkeypatch.setattr(_blocks, "AUC_SLICE_ENTRIES", 50)  # 2 rows of 23 items per slice
    sliced = evaluate(user_emb, item_emb, test, [train, valid], **kwargs)
    torch.testing.assert_close(sliced.per_user["auc"], whole.per_user["auc"], equal_nan=True)
    _, per_user, _, _ = loop_oracle(user_emb, item_emb, test, [train, valid], (5,))
    np.testing.assert_allclose(sliced.per_user["auc"].numpy(), per_user["auc"], atol=1e-12)


def test_overlap_of_ground_truth_and_exclusion_is_counted() -> None:
    rng = np.random.default_rng(9)
    train = random_items(rng, 10, 15, 0.4)
    # K = all 15 items, so the excluded (-inf) items fill the tail of the lists: never hits
    result = evaluate(torch.randn(10, 3), torch.randn(15, 3), train, train, ks=(15,))
    assert result.n_relevant_excluded == train.nnz
    assert result.metrics["recall@15"] == 0.0


def test_most_popular_baseline_ranks_by_training_popularity() -> None:
    rng = np.random.default_rng(10)
    train = random_items(rng, 25, 18, 0.3)
    test = random_items(rng, 25, 18, 0.2)
    emb = most_popular_scores(train)
    result = evaluate(*emb, test, train, ks=(5,), return_topk=True)
    popularity = np.bincount(train.indices, minlength=18)
    for row, u in enumerate(result.users.tolist()):
        seen = set(train.items_of(u).tolist())
        order = sorted((i for i in range(18) if i not in seen), key=lambda i: (-popularity[i], i))
        assert [i for i in result.topk[row].tolist() if i >= 0] == order[:5]


def test_embeddings_follow_dtype_and_are_not_modified() -> None:
    user_emb, item_emb, train, _valid, test = split_fixture(11)
    user_grad = user_emb.clone().requires_grad_(True)
    before = user_emb.clone()
    r32 = evaluate(user_grad, item_emb, test, train, ks=(5,))
    r64 = evaluate(user_emb.double(), item_emb.double(), test, train, ks=(5,))
    rhalf = evaluate(user_emb.half(), item_emb.half(), test, train, ks=(5,))
    assert r32.metrics["ndcg@5"] == pytest.approx(r64.metrics["ndcg@5"], abs=1e-6)
    assert rhalf.n_users_evaluated == r32.n_users_evaluated
    assert torch.equal(user_emb, before)


def test_result_names_for_mlflow_and_frozen() -> None:
    user_emb, item_emb, train, _valid, test = split_fixture(12)
    result = evaluate(user_emb, item_emb, test, train, ks=(20,), metrics=("recall", "ndcg"))
    assert list(result.metrics) == ["recall@20", "ndcg@20"]
    assert result.per_user is None and result.topk is None and result.users is None
    names = metric_dict(result.metrics, "test")
    assert set(names) == {"test/recall_at_20", "test/ndcg_at_20"}
    assert names["test/recall_at_20"] == result.metrics["recall@20"]
    assert mlflow_name("hit_rate@10 (val)") == "hit_rate_at_10 _val_"
    # Disjoint splits: every user with a test item is evaluated, the rest skipped, none excluded.
    has_test = int((np.diff(test.indptr) > 0).sum())
    assert 0 < has_test < test.n_users
    assert (result.n_users_evaluated, result.n_users_skipped) == (has_test, test.n_users - has_test)
    assert (result.n_relevant_excluded, result.ks, result.top_k) == (0, (20,), 20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.n_users_evaluated = 0  # type: ignore[misc]


def test_progress_bar_writes_to_stderr(capsys, monkeypatch) -> None:
    # Bars are drawn on a terminal only (recsys_cl.progress): make the captured stderr one.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    user_emb, item_emb, train, _valid, test = split_fixture(13)
    evaluate(user_emb, item_emb, test, train, ks=(5,), chunk_size=8, progress=True)
    assert "evaluate" in capsys.readouterr().err


def test_choose_chunk_size_respects_budget() -> None:
    cpu = torch.device("cpu")
    single = choose_chunk_size(40_981, cpu)
    double = choose_chunk_size(40_981, cpu, torch.float64)
    assert 1 <= double < single
    assert single * 40_981 * 4 <= 256 * 2**20
    assert choose_chunk_size(10**12, cpu) == 1


def test_bad_inputs_fail_clearly() -> None:
    user_emb, item_emb, train, _valid, test = split_fixture(14)
    # Caller bugs are ValueErrors; only bad data (NaN embeddings) is a user-facing RecsysError.
    with pytest.raises(ValueError, match="items"):
        evaluate(user_emb, item_emb[:-1], test, train)
    with pytest.raises(ValueError, match="dims differ"):
        evaluate(user_emb, item_emb[:, :-1], test, train)
    with pytest.raises(RecsysError, match="NaN"):
        evaluate(user_emb * torch.nan, item_emb, test, train)
    with pytest.raises(ValueError, match="outside"):
        evaluate(user_emb, item_emb, test, train, users=[999])
    with pytest.raises(ValueError, match="chunk_size"):
        evaluate(user_emb, item_emb, test, train, chunk_size=0)
    with pytest.raises(ValueError, match="UserItems"):
        evaluate(user_emb, item_emb, test, [train, "valid"])


def _read_head(path: Path, n_lines: int) -> tuple[np.ndarray, np.ndarray]:
    users, items = [], []
    with path.open() as lines:
        for _, line in zip(range(n_lines), lines, strict=False):
            user, *rest = map(int, line.split())
            users += [user] * len(rest)
            items += rest
    return np.array(users), np.array(items)


@pytest.mark.skipif(not (GOWALLA / "train.txt").exists(), reason=f"{GOWALLA} absent")
def test_gowalla_users_never_get_training_items() -> None:
    n_users, n_items = 200, 40_981
    train = UserItems.from_pairs(*_read_head(GOWALLA / "train.txt", n_users), n_users, n_items)
    test = UserItems.from_pairs(*_read_head(GOWALLA / "test.txt", n_users), n_users, n_items)
    pop = most_popular_scores(train)
    result = evaluate(*pop, test, train, ks=(20, 50), return_topk=True)
    assert result.n_relevant_excluded == 0
    assert result.n_users_evaluated + result.n_users_skipped == n_users
    for row, u in enumerate(result.users.tolist()):
        assert not set(result.topk[row].tolist()) & set(train.items_of(u).tolist())
    assert 0.0 < result.metrics["recall@50"] < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    user_emb, item_emb, train, valid, test = split_fixture(15, n_users=300, n_items=120)
    kwargs = dict(ks=(5, 20, 200), auc=True, return_per_user=True, return_topk=True)
    cpu = evaluate(user_emb, item_emb, test, [train, valid], **kwargs)
    gpu = evaluate(user_emb.cuda(), item_emb.cuda(), test, [train, valid], chunk_size=64, **kwargs)
    auto = evaluate(user_emb.cuda(), item_emb.cuda(), test, [train, valid], **kwargs)
    for key, value in cpu.metrics.items():
        assert gpu.metrics[key] == pytest.approx(value, abs=1e-6), key
        assert auto.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert gpu.topk.device.type == "cpu"
    assert torch.equal(gpu.topk, cpu.topk)
