"""The classic baselines: EASE against a NumPy oracle of its closed form, iALS through
``implicit``, their config blocks and one-line errors, the method contract every method meets
(fit, export, evaluate, index, recommend, serve) and the baseline step of train / main /
evaluate / compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_cl.cli import main
from recsys_cl.config import (
    BaselinesConfig,
    ClassicConfig,
    classic_method_names,
    load_config,
    load_sweep,
)
from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import ConfigError
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.evaluate import score_run
from recsys_cl.jobs.stages.train import run_training
from recsys_cl.models.classic import ease_item_matrix, ease_memory_bytes, fit_ease, fit_ials
from tests.conftest import make_long_tail_log, make_planted_split

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _dense(table: UserItems) -> np.ndarray:
    x = np.zeros((table.n_users, table.n_items))
    x[table.rows(), table.indices] = 1.0
    return x


def _ease_oracle(x: np.ndarray, lam: float) -> np.ndarray:
    """Steck (2019) eq. 8, as his paper's NumPy listing computes it, in float64."""
    gram = x.T @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = p / -np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def _own_community_scores_higher(user: torch.Tensor, item: torch.Tensor) -> None:
    scores = (user @ item.T).numpy()
    users, items = np.arange(scores.shape[0]), np.arange(scores.shape[1])
    same = (users[:, None] // 40) == (items[None, :] // 30)
    assert scores[same].mean() > scores[~same].mean()


# ---------------------------------------------------------------- the models themselves


@pytest.mark.parametrize("lam", [1.0, 50.0, 500.0])
def test_ease_matches_the_closed_form_oracle(lam: float) -> None:
    train, _ = make_planted_split()
    b = ease_item_matrix(train, lam)
    want = _ease_oracle(_dense(train), lam)
    assert b.dtype == torch.float32 and b.shape == (60, 60)
    assert torch.count_nonzero(b.diagonal()) == 0
    np.testing.assert_allclose(b.numpy(), want, atol=2e-5, rtol=1e-4)
    # The exported tables score exactly X B.
    fitted = fit_ease(train, lam)
    np.testing.assert_allclose(
        (fitted.user @ fitted.item.T).numpy(), _dense(train) @ want, atol=1e-4, rtol=1e-4
    )
    _own_community_scores_higher(fitted.user, fitted.item)


def test_ease_refuses_a_nonpositive_lambda() -> None:
    train, _ = make_planted_split()
    with pytest.raises(ValueError, match="lambda must be > 0"):
        ease_item_matrix(train, 0.0)


def test_ials_is_seeded_and_learns_the_communities() -> None:
    train, _ = make_planted_split()
    args = dict(factors=8, regularization=0.1, alpha=10.0, iterations=10)
    a = fit_ials(train, seed=3, **args)
    b = fit_ials(train, seed=3, **args)
    assert a.user.shape == (80, 8) and a.item.shape == (60, 8)
    assert torch.equal(a.user, b.user) and torch.equal(a.item, b.item)
    assert not torch.equal(a.user, fit_ials(train, seed=4, **args).user)
    _own_community_scores_higher(a.user, a.item)


# ---------------------------------------------------------------- configs and their errors


def test_classic_blocks_load_and_name_their_hyper_parameters() -> None:
    assert classic_method_names() == ("ease", "ials")
    cfg = load_config(None, ["data.dataset=x", "model.method=ease", "model.lambda=300"])
    assert isinstance(cfg.model, ClassicConfig) and cfg.model.describe() == "lambda=300.0"
    # The saved config writes the key as users write it, and loads back.
    assert cfg.model.model_dump()["lambda"] == 300.0
    ials = load_config(CONFIGS / "ml-100k" / "ials.yaml").model
    assert ials.describe() == "factors=64, regularization=0.1, alpha=10.0, iterations=15"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["model.method=ease", "model.lambda=0"], "model.lambda: Input should be greater than 0"),
        (["model.method=ease", "model.dim=8"], "model.dim: unknown key"),
        (["model.method=ials", "model.factors=0"], "model.factors: Input should be greater"),
        (["model.method=ease", "imbalance.loss.kind=softmax"], "remove the imbalance block"),
        (["model.method=ials", "train.sampled.fanouts=[5]"], "remove train.sampled"),
        (["baselines.ease_lambdas=[]"], "ease_lambdas must be a non-empty list"),
        (["baselines.which=[ease, ease]"], "names a baseline twice"),
    ],
)
def test_bad_classic_settings_fail_in_one_line(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.dataset=x", *sets])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_ease_memory_limit_names_what_it_needs() -> None:
    cfg = load_config(None, ["data.dataset=x", "model.method=ease", "model.max_memory_gib=1"])
    assert ease_memory_bytes(30_000, 41_000) == (2 * 41_000**2 + 30_000 * 41_000) * 4
    with pytest.raises(ConfigError) as err:
        cfg.model.check_size(30_000, 41_000)
    text = str(err.value)
    assert "17.1 GiB" in text and "model.max_memory_gib=18" in text and "\n" not in text
    cfg.model.check_size(1_000, 5_000)  # 0.2 GiB: fits


# ---------------------------------------------------------------- the method contract


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("classic_log") / "log.csv"
    make_long_tail_log(n_users=150, n_items=300, seed=5, mean_activity=15).write_csv(path)
    return path


def _run_yaml(folder: Path, log: Path, model: str, baselines: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    cfg = folder / "run.yaml"
    cfg.write_text(
        f"output_dir: {folder / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        f"model: {{{model}}}\n"
        "train:\n  epochs: 3\n  batch_size: 256\n  progress: false\n"
        f"{baselines}"
    )
    return cfg


# One case per classic method (a method added to the union must get one).
CLASSIC_CASES = {
    "ease": "method: ease, lambda: 20",
    "ials": "method: ials, factors: 8, iterations: 5",
}


def test_contract_covers_every_classic_method() -> None:
    assert set(classic_method_names()) == set(CLASSIC_CASES)


@pytest.mark.parametrize("name", sorted(CLASSIC_CASES))
def test_classic_method_contract(
    tmp_path: Path, log_csv: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model = CLASSIC_CASES[name]
    faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")
    del faiss
    from recsys_cl.jobs.stages.bundle import write_candidate_bundle
    from recsys_cl.retrieval.candidate_model import CandidateModel

    cfg = _run_yaml(tmp_path, log_csv, model, "baselines: {enabled: false}\n")
    # fit + export: train writes the run folder as for a trained method.
    assert main(["train", "-c", str(cfg), "--no-track"]) == 0
    out = capsys.readouterr().out
    assert "baselines: off" in out
    run = RunFolder(tmp_path / "run")
    summary = run.metrics()
    assert summary["best_epoch"] == 1 and summary["epochs_run"] == 1
    assert summary["fit_seconds"] > 0 and summary["selected_on"] == "val"
    state = torch.load(run.model_file, weights_only=True)
    user, item = run.embeddings()
    split = run.split
    assert user.shape[0] == split.n_users and item.shape[0] == split.n_items
    if "ease" in model:
        assert set(state) == {"item_item"} and user.shape[1] == split.n_items
    else:
        assert set(state) == {"user_factors", "item_factors"} and user.shape[1] == 8
    # evaluate: the saved tables reproduce the test metrics.
    rescored = score_run(run.root)
    for key, value in summary["test"].items():
        assert rescored.result.metrics[key] == pytest.approx(value, abs=1e-5)
    # index + recommend + serve: the candidate bundle answers, never with a seen item.
    assert main(["index", str(run.root), "--no-track"]) == 0
    bundle = write_candidate_bundle(run.root, tmp_path / "bundle", k=5)
    model_ = CandidateModel.load(bundle)
    users = model_.users.raw.to_list()[:20]
    got = model_.predict(pd.DataFrame({"user_id": users}))
    assert len(got) == 20 * 5
    seen = {
        (u, i)
        for part in (split.train, split.val)
        for u, i in zip(part["user"], part["item"], strict=True)
    }
    idx_u = np.asarray(split.users.to_index(np.asarray(got["user_id"].tolist())))
    idx_i = np.asarray(split.items.to_index(np.asarray(got["item_id"].tolist())))
    assert not any((u, i) in seen for u, i in zip(idx_u, idx_i, strict=True))
    # A finished folder is refused without --resume, refitted with it.
    capsys.readouterr()
    assert main(["train", "-c", str(cfg), "--no-track"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["train", "-c", str(cfg), "--no-track", "--resume"]) == 0
    assert run.metrics()["test"] == pytest.approx(summary["test"], abs=1e-6)


def test_classic_run_is_a_tuning_trial(tmp_path: Path, log_csv: Path) -> None:
    cfg = load_config(_run_yaml(tmp_path, log_csv, "method: ease, lambda: 30"))
    seen: list[dict] = []
    report = run_training(cfg, test=False, on_epoch_end=seen.append)
    assert report.test == {} and len(seen) == 1 and seen[0]["epoch"] == 1
    assert report.summary["best_score"] == seen[0]["ndcg@20"]
    assert not (tmp_path / "run" / "metrics.json").exists()


# ---------------------------------------------------------------- the baseline step


def test_train_prints_records_and_guards_the_baselines(
    tmp_path: Path, log_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # XSimGCL for 3 epochs: every classic baseline beats it, so the guard must speak.
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path / 'run'}\n"
        f"data:\n  path: {log_csv}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model: {method: xsimgcl, dim: 8}\n"
        "train: {epochs: 1, batch_size: 256, progress: false, beat_most_popular: false}\n"
        "baselines: {ease_lambdas: [10, 100], ials_grid: {alpha: [1], regularization: [0.1], "
        "factors: [8, 16]}, ials_iterations: 5}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert main(["train", "-c", str(cfg), "--tracking-uri", uri]) == 0
    captured = capsys.readouterr()
    rows = {line.split()[0]: line for line in captured.out.splitlines() if line.strip()}
    assert {"xsimgcl", "ease", "ials", "most-popular"} <= rows.keys()
    assert "(2 tried)" in rows["ease"] and "(2 tried)" in rows["ials"]
    assert "WARNING: the classic baseline" in captured.err

    saved = json.loads((tmp_path / "run" / "baselines.json").read_text())
    assert set(saved["baselines"]) == {"ease", "ials", "most-popular"}
    best = saved["best_classic"]
    assert best in ("ease", "ials")
    ease = saved["baselines"]["ease"]
    assert len(ease["tried"]) == 2 and ease["params"]["lambda"] in (10, 100)
    # The chosen lambda is the better of the two on validation.
    assert ease["selected"]["ndcg@20"] == max(t["ndcg@20"] for t in ease["tried"])
    want = saved["model"]["test"]["ndcg@20"] / saved["baselines"][best]["test"]["ndcg@20"] - 1
    assert saved["margin_over_best_baseline"] == pytest.approx(want)

    import mlflow

    client = mlflow.MlflowClient(uri)
    run_id = json.loads((tmp_path / "run" / "tracking.json").read_text())["run_id"]
    logged = client.get_run(run_id).data
    assert logged.metrics["quality.margin_over_best_baseline"] == pytest.approx(want)
    assert "baseline/ease/val/ndcg_at_20" in logged.metrics
    assert "baseline/most_popular/test/recall_at_20" in logged.metrics
    assert logged.tags["quality.best_baseline"] == best
    assert float(logged.tags["baseline.ease.lambda"]) == ease["params"]["lambda"]


def test_baseline_budget_and_memory_skip_with_a_reason(log_csv: Path, tmp_path: Path) -> None:
    from recsys_cl.jobs.stages.baselines import fit_baselines
    from recsys_cl.jobs.stages.parts import folder_parts
    from recsys_cl.jobs.stages.train import selection_target

    cfg = load_config(_run_yaml(tmp_path, log_csv, "method: ease, lambda: 30"))
    run_training(cfg)
    run = RunFolder(tmp_path / "run")
    parts = folder_parts(run)
    target = selection_target(cfg, parts, "x")
    tight = BaselinesConfig(ease_max_memory_gib=1e-6, budget_seconds=1e-3)
    results = fit_baselines(
        tight, parts, target, ks=(20,), select_metric="ndcg@20", seed=0
    )
    by_name = {r.name: r for r in results}
    assert "ease_max_memory_gib" in (by_name["ease"].fit.skipped or "")
    # A budget spent before the first fit still fits once, then stops.
    assert len(by_name["ials"].fit.tried) == 1 and by_name["ials"].fit.stopped is not None
    assert by_name["most-popular"].test["recall@20"] > 0


def test_coordinate_search_repeats_passes_while_the_best_moves() -> None:
    from recsys_cl.jobs.stages.baselines import _coordinate_search

    # The best b depends on a: one pass stops at (a=2, b=1); the second finds b=3, then a=3.
    def value(p: dict) -> float:
        return {(1, 1): 1.0, (2, 1): 2.0, (1, 3): 0.5, (2, 3): 3.0, (3, 3): 4.0}.get(
            (p["a"], p["b"]), 0.0
        )

    found = _coordinate_search(
        "toy",
        {"a": (1, 2, 3), "b": (1, 3)},
        fit=lambda p: (torch.tensor([[value(p)]]), torch.ones(1, 1)),
        score=lambda tables: {"m": float(tables[0][0, 0])},
        select_metric="m",
        start=0.0,
        budget_seconds=float("inf"),
    )
    assert found.params == {"a": 3, "b": 3} and found.selected == {"m": 4.0}
    # Each distinct setting fitted once, the passes stopped when nothing moved.
    signatures = [tuple(sorted(p.items())) for p, _, _ in found.tried]
    assert len(signatures) == len(set(signatures)) == 6


def test_evaluate_scores_a_tuned_baseline(
    tmp_path: Path, log_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(
        _run_yaml(tmp_path, log_csv, "method: ials, factors: 8, iterations: 3",
                  "baselines: {ease_lambdas: [30]}\n")
    )
    run_training(cfg)
    assert main(["evaluate", str(tmp_path / "run"), "--baseline", "ease", "--no-track"]) == 0
    out = capsys.readouterr().out
    assert "ease baseline (lambda=30; chosen on val" in out
    # The same number as EASE trained as the run's own method on the same split.
    ease = _run_yaml(tmp_path / "b", log_csv, "method: ease, lambda: 30")
    report = run_training(load_config(ease))
    ndcg_row = next(line for line in out.splitlines() if line.startswith("ndcg"))
    assert f"{report.test['ndcg@20']:.4f}" in ndcg_row


def test_sweep_runs_the_classic_models_beside_the_strategies() -> None:
    runs = dict(load_sweep(CONFIGS / "sweeps" / "ml-100k-imbalance.yaml", ["train.epochs=5"]))
    assert runs["ease"].model.method == "ease" and runs["ials"].model.method == "ials"
    assert runs["ease"].data == runs["none"].data and runs["ease"].seed == runs["none"].seed
    assert runs["ease"].output_dir.parent == runs["none"].output_dir.parent


@pytest.mark.slow
def test_ml100k_baselines_match_an_independent_computation(shared_datasets: Path) -> None:
    # The check: EASE lambda 500 and iALS (64, 0.1, 10, 15) on the shipped split.
    from recsys_cl.jobs.stages.data import build_split
    from recsys_cl.jobs.stages.parts import run_parts

    cfg = load_config(CONFIGS / "ml-100k" / "ease.yaml")
    split = build_split(cfg.data, str(shared_datasets), cfg.seed)
    parts = run_parts(split, None, "ml-100k")
    x = _dense(parts.train)
    scores = x @ _ease_oracle(x, 500.0)
    for excl in parts.test_exclude:
        scores[_dense(excl) > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :20]
    truth = _dense(parts.test_truth)
    has = truth.sum(1) > 0
    hits = np.take_along_axis(truth, top, 1).sum(1)
    recall = (hits[has] / truth.sum(1)[has]).mean()
    fitted = fit_ease(parts.train, 500.0)
    from recsys_cl.metrics import evaluate

    ours = evaluate(fitted.user, fitted.item, parts.test_truth, parts.test_exclude, ks=(20,))
    assert abs(ours.metrics["recall@20"] - recall) < 1e-4
    assert abs(ours.metrics["recall@20"] - 0.3500) < 0.005
