"""The trainer on a planted two-community log: every method's shipped model block (its
defaults and each configs/*/<method>.yaml) does what it is documented to do there, the
contrastive loss falls, a non-finite loss stops training with its epoch and batch named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys_cl.config import (
    ModelConfig,
    SGLConfig,
    SimGCLConfig,
    load_config,
    trained_method_names,
)
from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import TrainingError
from recsys_cl.graph import build_graph
from recsys_cl.jobs import build_method
from recsys_cl.metrics import evaluate
from recsys_cl.models import LightGCN, LightGCNRec, LossBreakdown
from recsys_cl.training import EarlyStopping, Schedule, Trainer

from .conftest import make_planted_split

# make_planted_split's defaults: two communities of 40 users and 30 items; each user holds 12
# items of their community in train and 4 others in test.
USERS_PER, ITEMS_PER = 40, 30
# Of a user's 48 unseen items 18 are their community's: a random top-10 holds 37.5% of them.
CHANCE = 18 / 48
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


pytestmark = pytest.mark.usefixtures("one_thread")


def _shipped_models() -> list[object]:
    """Each method's default model block (what ``model.method=X`` alone gives: the papers'
    settings) and the block of every shipped ``configs/<dataset>/<method>.yaml``, one case per
    distinct block, its id naming every source that ships it."""
    cases = []
    for name in trained_method_names():
        default = load_config(None, ["data.dataset=planted", f"model.method={name}"]).model
        sources: dict[ModelConfig, list[str]] = {default: ["defaults"]}
        for path in sorted(CONFIGS.glob(f"*/{name}.yaml")):
            sources.setdefault(load_config(path).model, []).append(path.parent.name)
        cases += [pytest.param(model, id=f"{name}-{'+'.join(s)}") for model, s in sources.items()]
    return cases


def _trainer(
    method: str | ModelConfig,
    train: UserItems,
    epochs: int,
    stopping: EarlyStopping | None = None,
    **kwargs,
) -> Trainer:
    """A trainer on ``train`` (batch 128, lr 0.01, seeded); ``method`` a model block, or a
    method name for its defaults at dim 16."""
    if isinstance(method, str):
        method = load_config(
            None, ["data.dataset=planted", f"model.method={method}", "model.dim=16"]
        ).model
    torch.manual_seed(0)
    graph = build_graph(
        torch.from_numpy(train.rows()),
        torch.from_numpy(train.indices),
        train.n_users,
        train.n_items,
    )
    method = build_method(method, train.n_users, train.n_items, train=train)
    stopping = stopping if stopping is not None else EarlyStopping()
    schedule = Schedule(epochs=epochs, batch_size=128, lr=0.01, stopping=stopping)
    return Trainer(
        method,
        graph,
        train,
        schedule=schedule,
        generator=torch.Generator().manual_seed(1),
        device_generator=torch.Generator().manual_seed(2),
        progress=False,
        **kwargs,
    )


def test_every_method_has_a_shipped_model_case() -> None:
    methods = {case.values[0].method for case in _shipped_models()}
    assert methods == set(trained_method_names()) and len(methods) >= 5


@pytest.mark.parametrize("model", _shipped_models())
def test_shipped_model_blocks_on_the_planted_communities(
    model: ModelConfig, planted_split: Callable[..., tuple[UserItems, UserItems]]
) -> None:
    # Each block as shipped (dim 64, its λ), trained alike: 30 epochs of batch 128 at lr 0.01.
    train, test = planted_split()
    trainer = _trainer(model, train, epochs=30)
    fit = trainer.fit()
    assert fit.epochs_run == 30 and len(fit.history) == 30
    assert all(np.isfinite(r["loss/total"]) for r in fit.history)
    user, item = trainer.method.embeddings(trainer.graph.adj)
    result = evaluate(user, item, test, train, ks=(10,), return_topk=True)
    own = ((result.topk // ITEMS_PER) == (result.users // USERS_PER).unsqueeze(1)).float().mean()
    recall = result.metrics["recall@10"]  # chance ≈ 0.21
    seen = f"{model.method}: top-10 own-community share {float(own):.2f}, recall@10 {recall:.2f}"
    if isinstance(model, SimGCLConfig) and model.cl_weight == 0.5:
        # SimGCL's paper λ (0.5: its default and configs/gowalla's) does NOT learn this graph:
        # on a dense graph (each user holds 40% of their community) the contrastive term
        # swamps BPR, as on ML-100K, where configs/ml-100k/simgcl uses 0.01 (RESULTS.md).
        # Measured on planted seeds 0-2: own-community share 0.06-0.07, below chance, recall@10
        # 0.02-0.04. Longer runs climb partway and fall back (0.80-0.88 at 200 epochs, ~0.5 at
        # 300). The expectation documents that failure: if it starts to learn, update this.
        assert own < CHANCE and recall < 0.1, seen
    elif isinstance(model, SGLConfig):
        # SGL's paper λ (0.1, edge dropout 0.1) learns it, less sharply at dim 64 in 30 epochs
        # than at dim 16: own-community share 0.83-0.85 on seeds 0-2 (0.97 at dim 16).
        assert own > 0.75 and recall > 0.4, seen
    else:
        # MF, LightGCN, XSimGCL's paper λ (0.2), SimGCL's ML-100K λ 0.01 and XSimGCL's ML-100K
        # λ 0.1 with neighbour positives: all but perfect (own-community share 1.00 on seeds
        # 0-2, recall@10 0.51-0.58 for the plain blocks).
        assert own > 0.95 and recall > 0.45, seen


@pytest.mark.parametrize("name", ["simgcl", "xsimgcl"])
def test_contrastive_loss_falls(name: str) -> None:
    train, _ = make_planted_split()
    # With the papers' weights the contrastive term leads the optimisation, so it must fall.
    fit = _trainer(name, train, epochs=15).fit()
    cl = [r["loss/cl"] for r in fit.history]
    assert cl[-1] < 0.8 * cl[0], cl


def test_sgl_views_agree_far_better_than_chance() -> None:
    # SGL's two edge-dropped views share 90% of the graph and layer 0, so its InfoNCE starts
    # near its floor and need not fall; what must hold is agreement far above chance, where
    # InfoNCE = log(#users in batch) + log(#items in batch).
    train, _ = make_planted_split()
    trainer = _trainer("sgl", train, epochs=5)
    fit = trainer.fit()
    chance = trainer.method.contrast.cl_weight * (np.log(2 * USERS_PER) + np.log(2 * ITEMS_PER))
    assert all(r["loss/cl"] < 0.25 * chance for r in fit.history), fit.history


def test_selection_keeps_the_best_epoch_and_stops_early() -> None:
    train, _ = make_planted_split()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    seen: list[torch.Tensor] = []

    def fake_eval(method) -> dict[str, float]:
        seen.append(method.encoder.weight.detach().clone())
        return {"ndcg@20": next(scores)}

    trainer = _trainer(
        "lightgcn", train, epochs=6, evaluate=fake_eval, stopping=EarlyStopping(patience=3)
    )
    fit = trainer.fit()
    assert (fit.best_epoch, fit.best_score, fit.epochs_run, fit.stopped_early) == (2, 0.5, 5, True)
    torch.testing.assert_close(trainer.method.encoder.weight, seen[1])


class _NaNAtSecondBatch(LightGCNRec):
    calls = 0

    def loss(self, adj, batch, views, generator) -> LossBreakdown:
        out = super().loss(adj, batch, views, generator)
        type(self).calls += 1
        if type(self).calls == 2:
            nan = torch.tensor(float("nan"))
            return LossBreakdown.of(out.rec * nan, out.cl, out.reg)
        return out


def test_non_finite_loss_names_epoch_and_batch() -> None:
    train, _ = make_planted_split()
    trainer = _trainer("lightgcn", train, epochs=2)
    method = _NaNAtSecondBatch(LightGCN(train.n_users, train.n_items, 8, 1), reg=1e-4)
    trainer = Trainer(
        method,
        trainer.graph,
        train,
        schedule=Schedule(epochs=2, batch_size=128, lr=0.01),
        generator=torch.Generator().manual_seed(0),
        device_generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    with pytest.raises(TrainingError, match=r"loss is not finite at epoch 1, batch 2/8"):
        trainer.fit()


def test_resume_with_more_epochs_continues_a_finished_run(tmp_path) -> None:
    train, _ = make_planted_split()
    first = _trainer("lightgcn", train, epochs=2, checkpoint_dir=tmp_path)
    assert first.fit().epochs_run == 2
    more = _trainer("lightgcn", train, epochs=4, checkpoint_dir=tmp_path)
    fit = more.fit(resume=True)
    assert fit.epochs_run == 4 and [r["epoch"] for r in fit.history] == [1, 2, 3, 4]
