"""Without FAISS (an extra), the features that need it say so in one line; training does not."""

from __future__ import annotations

import importlib.util

import pytest

from recsys_cl.cli import main
from recsys_cl.config import load_config
from recsys_cl.data.user_items import UserItems
from recsys_cl.jobs import build_imbalance
from recsys_cl.optional import MissingDependencyError


@pytest.fixture
def no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):  # noqa: ANN202
        return None if name == "faiss" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("command", ["index", "recommend"])
def test_retrieval_commands_name_the_extra(
    no_faiss: None, command: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"recsys-cl {command} needs FAISS: pip install 'recsys-cl[cpu]'" in err


def test_ann_negatives_fail_at_start_up_without_faiss(no_faiss: None) -> None:
    import numpy as np

    cfg = load_config(None, ["data.dataset=ml-100k", "imbalance.negatives.hard.kind=ann"])
    train = UserItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 3)
    with pytest.raises(MissingDependencyError, match="imbalance.negatives.hard: ann needs FAISS"):
        build_imbalance(cfg.imbalance, train)
    # Other strategies build without FAISS.
    plain = load_config(None, ["data.dataset=ml-100k", "imbalance.negatives.hard.kind=dns"])
    build_imbalance(plain.imbalance, train)


def test_training_is_tracked_without_faiss_and_main_names_the_extra(
    no_faiss: None, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from tests.conftest import make_long_tail_log

    make_long_tail_log(n_users=60, n_items=80, seed=1).write_csv(tmp_path / "log.csv")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path / 'run'}\n"
        f"data: {{path: {tmp_path / 'log.csv'}, "
        "split: {kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model: {method: mf, dim: 8}\ntrain: {epochs: 1, progress: false}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert main(["train", "-c", str(cfg), "--tracking-uri", uri]) == 0
    (run,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("recsys_cl").experiment_id]
    )
    assert run.data.tags["index"] == "skipped: FAISS is not installed"
    assert "test/recall_at_20" in run.data.metrics and not (tmp_path / "run" / "index").exists()
    capsys.readouterr()
    assert main(["main", "-c", str(cfg), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "recsys-cl main needs FAISS: pip install 'recsys-cl[cpu]'" in err
    )
