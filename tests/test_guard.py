"""The baseline guard: a run whose selected model does not beat most-popular on validation says
so in one line (with the next step) and is tagged; a run that beats it is tagged and quiet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from recsys_cl.cli import main

from .conftest import make_long_tail_log

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(root: Path, log: Path, method: str, train: str) -> Path:
    cfg = root / f"{method}.yaml"
    cfg.write_text(
        f"experiment: guard-test\noutput_dir: {root / method}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.2}}\n"
        f"model:\n  method: {method}\n  dim: 16\n"
        f"train: {{batch_size: 256, eval_every: 1, progress: false, {train}}}\n"
    )
    return cfg


def _communities(path: Path) -> Path:
    """Two user communities, each drawing 12 items from its own 40 with a popularity skew:
    most-popular ranks the other community's hits first half the time; a graph model need not."""
    rng = np.random.default_rng(5)
    weights = 1.0 / np.arange(1, 41) ** 0.8
    users, items = [], []
    for u in range(160):
        picks = rng.choice(40, 12, replace=False, p=weights / weights.sum()) + 40 * (u % 2)
        users += [u] * 12
        items += picks.tolist()
    pl.DataFrame({"user": users, "item": items}).write_csv(path)
    return path


def test_main_job_warns_when_the_model_is_worse_than_most_popular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    make_long_tail_log(n_users=150, n_items=300, seed=11, mean_activity=15).write_csv(log)
    # A learning rate that leaves the random initial embeddings as they were.
    cfg = _config(tmp_path, log, "lightgcn", "epochs: 1, lr: 1.0e-9")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    capsys.readouterr()
    assert main(["main", "-c", str(cfg), "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("WARNING:")]
    # The classic baselines beat an untrained model too: one line each guard.
    assert len(warnings) == 2, err
    popular = next(w for w in warnings if "most popular items on val" in w)
    assert f"recsys-cl tune --config {cfg}" in popular
    assert any(w.startswith("WARNING: the classic baseline") for w in warnings)

    summary = json.loads((tmp_path / "lightgcn" / "metrics.json").read_text())
    assert summary["best_score"] < summary["most_popular_score"]
    run_id = json.loads((tmp_path / "lightgcn" / "tracking.json").read_text())["run_id"]
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["quality.beats_most_popular"] == "false"
    floor = run.data.metrics["select/most_popular_score"]
    assert floor == pytest.approx(summary["most_popular_score"])
    # The main job's baseline rows and margin are in the run.
    assert run.data.metrics["quality.margin_over_best_baseline"] < 0
    assert "baseline/ials/test/recall_at_20" in run.data.metrics


def test_a_model_that_beats_most_popular_is_tagged_and_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, _communities(tmp_path / "log.csv"), "lightgcn", "epochs: 15, lr: 0.01")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    capsys.readouterr()
    assert main(["train", "-c", str(cfg), "--tracking-uri", uri]) == 0
    assert "WARNING" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "lightgcn" / "metrics.json").read_text())
    assert summary["best_score"] > summary["most_popular_score"]
    run_id = json.loads((tmp_path / "lightgcn" / "tracking.json").read_text())["run_id"]
    assert MlflowClient(uri).get_run(run_id).data.tags["quality.beats_most_popular"] == "true"
