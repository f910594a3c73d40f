"""NESCL's neighbour positives (``model.neighbour_positives``): the cosine neighbour tables
and the supervised InfoNCE against hand-written oracles, the config's rules, and a run end to
end. The method contract suite (``tests/test_models.py``) trains every contrastive method with
them too (the ``*_neighbours`` cases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from recsys_cl.cli import main
from recsys_cl.config import RunConfig, XSimGCLConfig
from recsys_cl.data.user_items import UserItems
from recsys_cl.models import Batch, NeighbourPositives, XSimGCL, top_k_cosine
from tests.conftest import make_long_tail_log, write_run_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_log(n_users: int, n_items: int, density: float, seed: int) -> UserItems:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[0] = False  # a user with no items: no neighbours
    users, items = np.nonzero(dense)
    return UserItems.from_pairs(users, items, n_users, n_items)


def _csr(train: UserItems) -> sp.csr_matrix:
    return sp.csr_matrix(
        (np.ones(train.nnz, dtype=np.float32), train.indices, train.indptr),
        shape=(train.n_users, train.n_items),
    )


@pytest.mark.parametrize("block", [1, 4, 1024])
def test_top_k_cosine_matches_a_dense_oracle(block: int) -> None:
    x = _csr(_random_log(30, 25, 0.15, seed=0)).toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = np.nan_to_num(x @ x.T / np.outer(norms, norms))
    np.fill_diagonal(sims, 0.0)
    k = 5
    neighbours, counts = top_k_cosine(sp.csr_matrix(x), k, block=block)
    assert neighbours.shape == (30, k) and counts.shape == (30,)
    for n in range(30):
        found = int(counts[n])
        assert found == min(k, int((sims[n] > 0).sum()))
        got = neighbours[n, :found].numpy()
        # most similar first, and no row more similar was left out
        assert np.all(np.diff(sims[n, got]) <= 1e-6)
        if found:
            assert sims[n, got].min() >= np.sort(sims[n])[::-1][found - 1] - 1e-6
        assert n not in got.tolist()
        assert np.all(neighbours[n, found:].numpy() == n)
    assert counts[0] == 0  # the empty user


def test_draw_is_uniform_over_the_neighbours_and_falls_back_to_self() -> None:
    table = torch.tensor([[1, 2, 0], [0, 1, 1], [2, 2, 2]])
    positives = NeighbourPositives(
        table, torch.tensor([2, 1, 0]), table.clone(), torch.tensor([3, 3, 3])
    )
    ids = torch.tensor([0] * 2000 + [1, 2])
    drawn = positives.draw(ids, "user", torch.Generator().manual_seed(0))
    first = drawn[:2000]
    assert set(first.tolist()) == {1, 2} and 0.45 < float((first == 1).float().mean()) < 0.55
    assert drawn[2000] == 0 and drawn[2001] == 2  # its one neighbour; none: itself


def test_each_side_draws_over_all_its_neighbours_when_the_other_side_is_small() -> None:
    # 3 users cap the user table at 2 neighbours; the items keep 5 each, and every one of them
    # is drawn. A single user has no neighbours at all: users draw themselves.
    rng = np.random.default_rng(0)
    dense = rng.random((3, 12)) < 0.7
    dense[:, :2] = True  # items 0 and 1 share all three users with many items
    train = UserItems.from_pairs(*np.nonzero(dense), 3, 12)
    positives = NeighbourPositives.from_train(train, 5)
    assert positives.user_neighbours.shape == (3, 2) and positives.k == 5
    item = torch.zeros(3000, dtype=torch.long)
    drawn = positives.draw(item, "item", torch.Generator().manual_seed(0))
    own = positives.item_neighbours[0, : int(positives.item_counts[0])]
    assert int(positives.item_counts[0]) == 5 and set(drawn.tolist()) == set(own.tolist())
    single = NeighbourPositives.from_train(UserItems.from_pairs(np.zeros(4), np.arange(4), 1, 4), 5)
    users = torch.zeros(4, dtype=torch.long)
    assert torch.equal(single.draw(users, "user", None), users)


def _oracle(
    view1: torch.Tensor,
    view2: torch.Tensor,
    n_users: int,
    batch: Batch,
    tau: float,
    positives: NeighbourPositives,
    seed: int,
) -> torch.Tensor:
    """The supervised InfoNCE written as a loop over (anchor, positive) pairs."""
    gen = torch.Generator().manual_seed(seed)
    nbr_users = positives.draw(batch.users, "user", gen) if positives.k else None
    nbr_items = positives.draw(batch.pos_items, "item", gen) if positives.k else None
    nodes = sorted(set(batch.users.tolist())) + [
        n_users + i for i in sorted(set(batch.pos_items.tolist()))
    ]
    z1, z2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    w = batch.weights if batch.weights is not None else torch.ones(batch.size)
    total, weight = torch.zeros(()), torch.zeros(())
    for b in range(batch.size):
        u, i = int(batch.users[b]), n_users + int(batch.pos_items[b])
        for anchor, partner, side in ((u, i, 0), (i, u, 1)):
            pos = [anchor]
            if positives.interacted:
                pos.append(partner)
            if positives.k:
                drawn = nbr_users[b] if side == 0 else n_users + nbr_items[b]
                pos.append(int(drawn))
            denominator = torch.logsumexp(torch.stack([z1[anchor] @ z2[n] / tau for n in nodes]), 0)
            logits = torch.stack([z1[anchor] @ z2[p] / tau for p in pos])
            if positives.aggregate == "out":  # the mean of one term per positive
                loss = (denominator - logits).mean()
            else:  # one term on the mean probability
                loss = -torch.log(torch.exp(logits - denominator).mean())
            total = total + w[b] * loss
            weight = weight + w[b]
    return total / weight


@pytest.mark.parametrize(
    ("k", "interacted", "weighted", "aggregate"),
    [
        (3, True, False, "out"),
        (3, False, False, "out"),
        (0, True, False, "out"),
        (3, True, True, "out"),
        (3, True, False, "in"),
        (3, True, True, "in"),
    ],
)
def test_info_nce_matches_the_loop_oracle(
    k: int, interacted: bool, weighted: bool, aggregate: Literal["out", "in"]
) -> None:
    n_users, n_items, dim = 12, 10, 6
    train = _random_log(n_users, n_items, 0.3, seed=1)
    positives = NeighbourPositives.from_train(train, k, interacted=interacted, aggregate=aggregate)
    gen = torch.Generator().manual_seed(2)
    view1 = torch.randn(n_users + n_items, dim, generator=gen)
    view2 = torch.randn(n_users + n_items, dim, generator=gen)
    users = torch.tensor([1, 1, 3, 5, 7, 7, 11])  # repeated users and items
    items = torch.tensor([0, 4, 4, 9, 2, 3, 0])
    weights = torch.rand(7, generator=gen) + 0.5 if weighted else None
    batch = Batch(users, items, items, weights)
    got = positives.info_nce(view1, view2, n_users, batch, 0.3, torch.Generator().manual_seed(7))
    want = _oracle(view1, view2, n_users, batch, 0.3, positives, seed=7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_the_tables_stay_out_of_the_checkpoint_and_sampled_batches_are_refused() -> None:
    train = _random_log(12, 10, 0.3, seed=1)
    method = XSimGCLConfig(dim=8, neighbour_positives={"k": 2}).build(12, 10, train=train)
    assert isinstance(method, XSimGCL) and method.positives is not None
    assert list(method.state_dict()) == ["encoder.weight"]
    plain = XSimGCLConfig(dim=8).build(12, 10)
    plain.load_state_dict(method.state_dict())  # a checkpoint loads either way
    assert plain.positives is None
    local = Batch(
        torch.tensor([0]),
        torch.tensor([0]),
        torch.tensor([1]),
        user_ids=torch.tensor([3]),
        pos_item_ids=torch.tensor([2]),
        neg_item_ids=torch.tensor([1]),
    )
    with pytest.raises(ValueError, match="sampled subgraphs"):
        method.positives.info_nce(torch.ones(22, 8), torch.ones(22, 8), 12, local, 0.2, None)


def test_the_config_rules() -> None:
    with pytest.raises(ValidationError, match="adds no positive"):
        XSimGCLConfig(neighbour_positives={"k": 0, "interacted": False})
    with pytest.raises(ValidationError):
        XSimGCLConfig(neighbour_positives={"k": -1})
    with pytest.raises(ValidationError):
        XSimGCLConfig(neighbour_positives={"aggregate": "sum"})
    with pytest.raises(ValueError, match="training log"):
        XSimGCLConfig(neighbour_positives={"k": 2}).build(12, 10)
    with pytest.raises(ValidationError, match="train.sampled"):
        RunConfig.model_validate(
            {
                "data": {"dataset": "ml-100k"},
                "model": {"method": "xsimgcl", "neighbour_positives": {"k": 5}},
                "train": {"sampled": {"fanouts": [10, 5]}},
            }
        )


def test_a_run_with_neighbour_positives_end_to_end(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    make_long_tail_log(n_users=80, n_items=120, seed=3, mean_activity=15).write_csv(log)
    cfg = write_run_config(tmp_path, log, epochs=3)
    argv = ["train", "-c", str(cfg), "--no-track", "--no-baselines"]
    assert main([*argv, "--set", "model.neighbour_positives.k=5"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
    assert all(r["loss/cl"] > 0 and np.isfinite(r["loss/total"]) for r in metrics["history"])
    assert metrics["test"]["recall@20"] > 0
    # The saved config keeps the block, so evaluate/resume rebuild the same method.
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "neighbour_positives" in saved and "k: 5" in saved
