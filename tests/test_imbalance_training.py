"""Imbalance strategies in training: inverse propensity lifts the tail on a long-tail log,
model-aware samplers resume bit for bit, the shipped strategy configs load, and the CLI reports
the long-tail metrics in metrics.json and `recsys-cl evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recsys_cl.cli import main
from recsys_cl.config import ImbalanceConfig, load_config
from recsys_cl.data import prepare
from recsys_cl.data.user_items import UserItems
from recsys_cl.graph import build_graph
from recsys_cl.imbalance import inverse_propensity_weights, item_popularity
from recsys_cl.jobs import build_imbalance, build_method
from recsys_cl.metrics import evaluate, popularity_metrics
from recsys_cl.models import LightGCN, LightGCNRec
from recsys_cl.training import Sampling, Schedule, Trainer
from tests.conftest import make_long_tail_log

REPO = Path(__file__).resolve().parents[1]
FRAGMENTS = sorted((REPO / "configs" / "imbalance").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_thread")


def _split(seed: int, n_users: int = 200, n_items: int = 300) -> tuple[UserItems, UserItems]:
    log = make_long_tail_log(n_users=n_users, n_items=n_items, seed=seed, mean_activity=15)
    split = prepare(log, split="ratio", test_ratio=0.2, rng=np.random.default_rng(seed))
    return split.user_items("train"), split.user_items("test")


def _graph(train: UserItems):  # noqa: ANN202 - a BipartiteGraph
    return build_graph(
        torch.from_numpy(train.rows()),
        torch.from_numpy(train.indices),
        train.n_users,
        train.n_items,
    )


# ---------------------------------------------------------------- the tail, planted


def _tail_recall(seed: int, gamma: float) -> tuple[float, float]:
    train, test = _split(seed)
    graph = _graph(train)
    init = torch.Generator().manual_seed(seed)
    method = LightGCNRec(LightGCN(train.n_users, train.n_items, 16, 2, generator=init), reg=1e-4)
    weights = None
    if gamma > 0:
        w = inverse_propensity_weights(item_popularity(train), gamma, w_min=0.1, w_max=10.0)
        weights = torch.from_numpy(w).float()
    Trainer(
        method, graph, train, schedule=Schedule(epochs=10, batch_size=256, lr=1e-2),
        progress=False,
        generator=torch.Generator().manual_seed(seed),
        device_generator=torch.Generator().manual_seed(seed + 1),
        sampling=Sampling(item_weights=weights),
    ).fit()
    user, item = method.embeddings(graph.adj)
    result = evaluate(user, item, test, train, ks=(20,), return_topk=True, return_per_user=True)
    report = popularity_metrics(result, test, train)
    return report.metrics["tail_recall@20"], report.metrics["arp@20"]


def test_inverse_propensity_raises_tail_recall_on_a_long_tail_log() -> None:
    # make_long_tail_log draws every user's items from one Zipf popularity law, so the
    # unweighted model learns to rank by popularity and hits no tail item at all (measured:
    # tail Recall@20 = 0.000 on seeds 0-3). Inverse-propensity weights (γ = 1) move the top-20
    # towards the tail: 0.037 and 0.059 on seeds 0 and 1 (0.016-0.059 on seeds 0-3). The
    # margin below is under half of the measured mean gain.
    plain = [_tail_recall(seed, 0.0) for seed in (0, 1)]
    weighted = [_tail_recall(seed, 1.0) for seed in (0, 1)]
    plain_tail = np.mean([t for t, _ in plain])
    weighted_tail = np.mean([t for t, _ in weighted])
    assert weighted_tail >= plain_tail + 0.02, (plain, weighted)
    assert np.mean([a for _, a in weighted]) < np.mean([a for _, a in plain])  # lower ARP


# ---------------------------------------------------------------- resume


RESUME_CASES = {
    "ann+tail+weights+focal": [
        "imbalance.negatives.hard.kind=ann",
        "imbalance.negatives.hard.rank_min=3",
        "imbalance.negatives.hard.rank_max=30",
        "imbalance.negatives.hard.rebuild_every=3",
        "imbalance.positives.tail_beta=0.5",
        "imbalance.weights.propensity_gamma=0.5",
        "imbalance.loss.focal_gamma=1.0",
    ],
    "mixgcf+user+popularity": [
        "imbalance.negatives.hard.kind=mixgcf",
        "imbalance.negatives.hard.candidates=4",
        "imbalance.negatives.alpha=0.75",
        "imbalance.positives.batches=user",
        "imbalance.positives.item_cap=15",
    ],
    "softmax+logq": ["imbalance.loss.kind=softmax", "imbalance.positives.tail_beta=0.5"],
}


def _fit(  # noqa: ANN202 - (state dict, per-epoch total losses)
    train: UserItems, overrides: list[str], epochs: int, folder: Path | None, resume: bool
):
    cfg = load_config(None, ["data.dataset=ml-100k", "model.dim=8", *overrides])
    parts = build_imbalance(cfg.imbalance, train)
    method = build_method(
        cfg.model, train.n_users, train.n_items, generator=torch.Generator().manual_seed(0),
        objective=parts.objective, negative_selector=parts.negative_selector,
    )
    trainer = Trainer(
        method, _graph(train), train, schedule=Schedule(epochs=epochs, batch_size=128, lr=1e-2),
        progress=False,
        generator=torch.Generator().manual_seed(1),
        device_generator=torch.Generator().manual_seed(2),
        sampling=parts.sampling, checkpoint_dir=folder,
    )
    fit = trainer.fit(resume=resume)
    return method.state_dict(), [h["loss/total"] for h in fit.history]


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_interrupted_run_with_model_aware_samplers_resumes_exactly(
    case: str, tmp_path: Path
) -> None:
    if case.startswith("ann"):
        pytest.importorskip("faiss", reason="ANN mining needs FAISS (the cpu or gpu extra)")
    train, _ = _split(5, n_users=80, n_items=120)
    overrides = RESUME_CASES[case]
    ref_state, ref_losses = _fit(train, overrides, 5, None, False)
    _fit(train, overrides, 2, tmp_path, False)  # "killed" after epoch 2
    state, losses = _fit(train, overrides, 5, tmp_path, True)
    assert losses == ref_losses
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)


# ---------------------------------------------------------------- configs


def test_every_strategy_has_a_shipped_config() -> None:
    names = {p.stem for p in FRAGMENTS}
    assert {
        "none", "inverse_propensity", "class_balanced", "focal", "popularity_negatives",
        "tail_oversampling", "head_undersampling", "user_balanced", "dns", "mixgcf", "ann",
        "softmax_logq", "ssm", "directau", "ccl", "label_weights",
    } <= names


@pytest.mark.parametrize("path", FRAGMENTS, ids=lambda p: p.name)
def test_shipped_strategy_configs_load_and_build(path: Path) -> None:
    block = load_config(path, model=ImbalanceConfig)
    # A fragment is the imbalance: block; `--set imbalance=<its text>` puts it in a run config.
    run = load_config(None, ["data.dataset=ml-100k", f"imbalance={path.read_text()}"])
    assert run.imbalance == block
    if path.stem == "ann":
        pytest.importorskip("faiss", reason="ANN mining needs FAISS (the cpu or gpu extra)")
    if path.stem == "none":
        assert block == ImbalanceConfig()
    train, _ = _split(0, n_users=40, n_items=60)
    explicit = None
    if block.weights.label_threshold is not None:
        explicit = UserItems.from_pairs(np.array([0]), np.array([59]), 40, 60)
        train = UserItems.from_pairs(
            train.rows()[train.indices != 59], train.indices[train.indices != 59], 40, 60
        )
    parts = build_imbalance(block, train, explicit)
    # Read from the file itself: a hard-negative miner (DNS, MixGCF) scores `candidates`
    # negatives per row and picks among them; a loss that draws its own (SSM, CCL) draws its
    # `negatives`, unselected; every other strategy draws one.
    raw = yaml.safe_load(path.read_text())
    hard = (raw.get("negatives") or {}).get("hard") or {}
    selects = hard.get("kind") in ("dns", "mixgcf")
    drawn = (raw.get("loss") or {}).get("negatives", 1)
    assert parts.sampling.num_negatives == (hard["candidates"] if selects else drawn)
    assert (parts.negative_selector is not None) == selects


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["imbalance.weights.gamma=1"], "imbalance.weights.gamma: unknown key"),
        (["imbalance.negatives.hard.kind=dns", "imbalance.negatives.hard.keep=16"], "keep (16)"),
        (["imbalance.loss.kind=softmax", "imbalance.negatives.alpha=0.5"], "loss 'softmax'"),
        (["imbalance.negatives.hard.kind=ann", "imbalance.negatives.alpha=0.5"], "stay 0"),
        (["imbalance.negatives.hard.kind=ann", "imbalance.negatives.hard.rank_max=5"], "(5)"),
        (["imbalance.weights.w_max=0.5"], "imbalance.weights.w_max"),
        (["imbalance.weights.label_threshold=4", "data.implicit_threshold=4"], "implicit_thr"),
        (["imbalance.positives.batches=users"], "imbalance.positives.batches"),
        (["imbalance.loss.kind=softmax", "imbalance.loss.tau=0"], "imbalance.loss.tau"),
        (["imbalance.loss.kind=ssm", "imbalance.negatives.hard.kind=dns"], "loss 'ssm'"),
        (["imbalance.loss.kind=ssm", "imbalance.loss.negatives=0"], "imbalance.loss.negatives"),
        (["imbalance.loss.kind=directau", "imbalance.negatives.alpha=0.5"], "loss 'directau'"),
        (["imbalance.loss.kind=directau", "imbalance.loss.gamma=-1"], "imbalance.loss.gamma"),
        (["imbalance.loss.kind=ccl", "imbalance.negatives.hard.kind=mixgcf"], "loss 'ccl'"),
        (["imbalance.loss.kind=ccl", "imbalance.loss.negatives=0"], "imbalance.loss.negatives"),
    ],
)
def test_bad_imbalance_blocks_fail_at_load(overrides: list[str], message: str) -> None:
    from recsys_cl.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.dataset=ml-100k", *overrides])
    assert message in str(err.value)


# ---------------------------------------------------------------- CLI


def _run_config(tmp_path: Path, *imbalance: str) -> list[str]:
    log = tmp_path / "log.csv"
    make_long_tail_log(n_users=80, n_items=120, seed=3, mean_activity=15).write_csv(log)
    sets = [
        f"output_dir={tmp_path / 'run'}", f"data.path={log}", "model.dim=8", "train.epochs=3",
        "train.batch_size=256", "train.progress=false", *imbalance,
    ]
    return [arg for s in sets for arg in ("--set", s)]


def test_train_and_evaluate_report_the_long_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    combo = (REPO / "configs" / "imbalance" / "tail_combo.yaml").read_text()
    assert main(["train", "-c", "/dev/null", *_run_config(tmp_path, f"imbalance={combo}")]) == 0
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    tail = summary["test_long_tail"]
    for key in ("tail_recall@20", "head_ndcg@20", "coverage@20", "arp@20", "gini@20",
                "user_low_recall@20"):
        assert key in tail
    assert sum(summary["long_tail_groups"]["items"].values()) == summary["n_items"]
    assert 0.2 <= summary["imbalance"]["item_weights"]["min"] <= 1.0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tail_recall"))
    assert f"{tail['tail_recall@20']:.4f}" in row
    assert "items per group: head" in out


def test_labelled_log_trains_on_explicit_negatives(tmp_path: Path) -> None:
    argv = _run_config(tmp_path, "imbalance.weights.label_threshold=4")
    assert main(["train", "-c", "/dev/null", *argv]) == 0
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    classes = summary["imbalance"]["label_classes"]
    n_pos, n_neg = classes["positive_rows"], classes["negative_rows"]
    assert n_pos > 0 and n_neg > 0
    assert n_pos * classes["positive_weight"] == pytest.approx(n_neg * classes["negative_weight"])


CUDA_STRATEGIES = {
    **RESUME_CASES,
    "dns+weights": [
        "imbalance.negatives.hard.kind=dns", "imbalance.weights.class_balanced_beta=0.9"
    ],
    "directau+weights": ["imbalance.loss.kind=directau", "imbalance.weights.propensity_gamma=0.5"],
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", list(CUDA_STRATEGIES))
def test_strategies_train_on_cuda_like_on_cpu(case: str) -> None:
    # Same strategies on the GPU: samplers stay on the CPU generator, objectives' buffers and
    # selectors follow the model; one epoch must run and give a finite, similar loss.
    if case.startswith("ann"):
        pytest.importorskip("faiss", reason="ANN mining needs faiss (the cpu or gpu extra)")
    train, _ = _split(5, n_users=80, n_items=120)
    cfg = load_config(None, ["data.dataset=ml-100k", "model.dim=8", *CUDA_STRATEGIES[case]])
    losses = {}
    for device in ("cpu", "cuda"):
        parts = build_imbalance(cfg.imbalance, train)
        method = build_method(
            cfg.model, train.n_users, train.n_items, generator=torch.Generator().manual_seed(0),
            objective=parts.objective, negative_selector=parts.negative_selector,
        ).to(device)
        fit = Trainer(
            method, _graph(train).to(device), train,
            schedule=Schedule(epochs=2, batch_size=128, lr=1e-2),
            progress=False, generator=torch.Generator().manual_seed(1),
            device_generator=torch.Generator(device).manual_seed(2),
            sampling=parts.sampling,
        ).fit()
        losses[device] = fit.history[0]["loss/total"]
    assert np.isfinite(losses["cuda"])
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=0.05)
