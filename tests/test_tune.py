"""``recsys-cl tune`` end to end on a tiny synthetic log, read back from a temporary MLflow
store and the Optuna study: a child run per trial under one parent, the best config written and
loadable, test never scored during the search (and once with --final), a hopeless trial pruned,
an interrupted search resumed to its budget without repeating trials, and space files with
mistakes refused in one line."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from mlflow.tracking import MlflowClient  # noqa: E402

from recsys_cl.cli import main  # noqa: E402
from recsys_cl.config import load_config, load_space  # noqa: E402
from recsys_cl.jobs.stages.study import STUDY_FILE, STUDY_NAME  # noqa: E402
from tests.conftest import make_long_tail_log  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SPACE = """\
trials: 3
sampler: {seed: 7, startup_trials: 2}
pruner: {kind: none}
set: [train.eval_every=2]
params:
  model.cl_weight: {type: float, low: 1.0e-3, high: 0.5, log: true}
  train.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
  model.layers: {type: int, low: 1, high: 2}
"""


def _setup(
    root: Path, space: str = SPACE, epochs: int = 4, protocol: str = "honest"
) -> tuple[Path, Path]:
    log = root / "log.csv"
    make_long_tail_log(n_users=150, n_items=300, seed=11, mean_activity=15).write_csv(log)
    cfg = root / "cfg.yaml"
    cfg.write_text(
        f"experiment: tune-test\noutput_dir: {root / 'run'}\n"
        f"data: {{path: {log}, split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}}}\n"
        "model: {method: xsimgcl, dim: 16}\n"
        f"train: {{epochs: {epochs}, batch_size: 256, patience: 20, progress: false, "
        f"protocol: {protocol}}}\n"
    )
    path = root / "space.yaml"
    path.write_text(space)
    return cfg, path


def _children(client: MlflowClient, parent_id: str) -> list:
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{parent_id}'", order_by=["attributes.start_time ASC"]
    )


def _study(out: Path):
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_FILE}")


@pytest.fixture
def test_scorings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the test-scoring function the training job uses."""
    train_job = importlib.import_module("recsys_cl.jobs.stages.train")
    real, calls = train_job.score_test, []

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_job, "score_test", spy)
    return calls


def test_a_search_records_each_trial_under_one_parent_and_never_scores_test(
    tmp_path: Path, test_scorings: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, space = _setup(tmp_path)
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert (
        main(
            [
                "tune",
                "-c",
                str(cfg),
                "--space",
                str(space),
                "--out",
                str(out),
                "--tracking-uri",
                uri,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert test_scorings == []  # the search never scored test

    client = MlflowClient(uri)
    parent_id = json.loads((out / "tracking.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["job"] == "tune"
    children = _children(client, parent_id)
    assert [c.info.run_name for c in children] == ["trial-0", "trial-1", "trial-2"]
    study = _study(out)
    for child, trial in zip(children, study.trials, strict=True):
        assert child.data.tags["tune.state"] == trial.state.name == "COMPLETE"
        # The sampled values are the child's params, its curve is logged per evaluation and no
        # test metric exists.
        assert float(child.data.params["model.cl_weight"]) == pytest.approx(
            trial.params["model.cl_weight"]
        )
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val/ndcg_at_20")] == [
            2,
            4,
        ]
        assert child.data.metrics["tune/best_ndcg_at_20"] == pytest.approx(trial.value)
        assert not [name for name in child.data.metrics if name.startswith("test/")]
        assert f"trial {trial.number:>3}  COMPLETE  ndcg@20={trial.value:.4f}" in printed
    best = max(study.trials, key=lambda t: t.value)
    assert parent.data.metrics["best/val_ndcg_at_20"] == pytest.approx(best.value)
    assert parent.data.params["best.train.lr"] == str(best.params["train.lr"])
    artifacts = {
        a.path for folder in ("plots", "tune") for a in client.list_artifacts(parent_id, folder)
    }
    assert {
        "plots/history.png",
        "plots/params.png",
        "tune/best.yaml",
        "tune/trials.csv",
    } <= artifacts

    # best.yaml is a run config `train` accepts, holding the best trial's values.
    loaded = load_config(out / "best.yaml")
    assert loaded.train.lr == pytest.approx(best.params["train.lr"])
    assert loaded.model.layers == best.params["model.layers"] and loaded.train.eval_every == 2
    assert loaded.output_dir == out / f"final-{best.number}"
    assert not (out / "trials" / "0" / "metrics.json").exists()


def test_final_trains_the_best_config_and_scores_test_once(
    tmp_path: Path, test_scorings: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, space = _setup(tmp_path, SPACE.replace("trials: 3", "trials: 2"))
    out = tmp_path / "out"
    assert (
        main(
            [
                "tune",
                "-c",
                str(cfg),
                "--space",
                str(space),
                "--out",
                str(out),
                "--no-track",
                "--final",
            ]
        )
        == 0
    )
    assert test_scorings == [1]
    best = max(_study(out).trials, key=lambda t: t.value)
    summary = json.loads((out / f"final-{best.number}" / "metrics.json").read_text())
    assert summary["best_score"] == pytest.approx(best.value)  # same config, same seed, same split
    printed = capsys.readouterr().out
    recall_row = next(line for line in printed.splitlines() if line.startswith("recall "))
    assert "test, scored once" in printed and f"{summary['test']['recall@20']:.4f}" in recall_row


def test_a_hopeless_trial_is_pruned(tmp_path: Path) -> None:
    """Two queued trials: a learning rate that learns, then one too small to move the
    embeddings; after the warm-up the second is below the first's curve and is pruned."""
    space = SPACE.replace(
        "pruner: {kind: none}", "pruner: {kind: median, warmup_epochs: 3, startup_trials: 1}"
    )
    space = space.replace("low: 1.0e-3, high: 3.0e-2", "low: 1.0e-8, high: 3.0e-2")
    cfg, space_path = _setup(tmp_path, space, epochs=8)
    out = tmp_path / "out"
    out.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{out / STUDY_FILE}", study_name=STUDY_NAME, direction="maximize"
    )
    fixed = {"model.cl_weight": 0.01, "model.layers": 1}
    study.enqueue_trial({**fixed, "train.lr": 0.03})
    study.enqueue_trial({**fixed, "train.lr": 1.0e-8})
    assert (
        main(
            [
                "tune",
                "-c",
                str(cfg),
                "--space",
                str(space_path),
                "--out",
                str(out),
                "--no-track",
                "--resume",
                "--trials",
                "2",
            ]
        )
        == 0
    )
    good, hopeless = _study(out).trials
    assert good.state.name == "COMPLETE" and hopeless.state.name == "PRUNED"
    # Evaluated at epoch 2 (inside the warm-up: kept), pruned at 4, the first evaluation after.
    assert sorted(hopeless.intermediate_values) == [2, 4]
    assert "| 1 | PRUNED |" in (out / "trials.md").read_text()


def test_an_interrupted_search_resumes_to_its_budget_without_repeating_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train_job = importlib.import_module("recsys_cl.jobs.stages.train")
    cfg, space = _setup(tmp_path)
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path / 'mlruns.db'}"
    real, calls = train_job._print_epoch, {"n": 0}

    def stop_in_second_trial(record: dict) -> None:
        real(record)
        calls["n"] += 1
        if calls["n"] == 4 + 2:  # epoch 2 of trial 1
            raise KeyboardInterrupt

    monkeypatch.setattr(train_job, "_print_epoch", stop_in_second_trial)
    argv = ["tune", "-c", str(cfg), "--space", str(space), "--out", str(out), "--tracking-uri", uri]
    assert main(argv) == 130
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
    interrupted = study.trials[1].params
    assert main(argv) == 2  # the folder holds a search: refused without --resume
    monkeypatch.setattr(train_job, "_print_epoch", real)
    assert main([*argv, "--resume"]) == 0

    trials = _study(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].params == interrupted and trials[2].user_attrs["requeued_from"] == 1
    client = MlflowClient(uri)
    parent_id = json.loads((out / "tracking.json").read_text())["run_id"]
    children = {c.info.run_name: c for c in _children(client, parent_id)}
    assert sorted(children) == ["trial-0", "trial-1", "trial-2", "trial-3"]
    assert (
        children["trial-1"].info.status == "FAILED"
        and children["trial-1"].data.tags["tune.interrupted"] == "true"
    )
    assert all(children[n].info.status == "FINISHED" for n in ("trial-0", "trial-2", "trial-3"))
    assert client.get_run(parent_id).info.status == "FINISHED"
    table = (out / "trials.md").read_text()
    assert "| 1 | FAIL (interrupted) |" in table and table.count("| COMPLETE |") == 3
    # A further --resume with the budget met runs nothing new; a raised budget with a spent
    # timeout starts nothing either.
    assert main([*argv, "--resume"]) == 0
    assert main([*argv, "--resume", "--trials", "5", "--timeout", "0.001"]) == 0
    assert "timeout: " in capsys.readouterr().out
    assert len(_study(out).trials) == 4


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            SPACE.replace("pruner: {kind: none}", "pruner: {kind: none, warmpu: 3}"),
            r"space.yaml: pruner.warmpu: unknown key$",
        ),
        (
            SPACE.replace("low: 1, high: 2", "low: 3, high: 2"),
            r"space.yaml: params.model.layers: low \(3\) must be < high \(2\)",
        ),
        (
            SPACE.replace("model.layers:", "model.layerz:"),
            r"space.yaml: params.model.layerz: not a key of the run config",
        ),
        (
            SPACE.replace("low: 1.0e-3, high: 0.5, log: true", "low: -1.0, high: 0.5"),
            r"space.yaml: params.model.cl_weight: the run config rejects -1.0 \(model.cl_weight: ",
        ),
        (
            SPACE.replace("model.layers:", "data.min_user_interactions:"),
            r"params: data.min_user_interactions: not searchable",
        ),
        (
            SPACE.replace("set: [train.eval_every=2]", "set: [train.lr=0.1]"),
            r"params.train.lr is also fixed by set",
        ),
    ],
    ids=[
        "unknown-space-key",
        "low-above-high",
        "unknown-config-key",
        "rejected-value",
        "data-key",
        "fixed-and-searched",
    ],
)
def test_a_bad_space_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str, message: str
) -> None:
    cfg, space_path = _setup(tmp_path, space)
    assert (
        main(
            [
                "tune",
                "-c",
                str(cfg),
                "--space",
                str(space_path),
                "--out",
                str(tmp_path / "out"),
                "--no-track",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_the_paper_protocol_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, space = _setup(tmp_path, protocol="paper")
    assert main(["tune", "-c", str(cfg), "--space", str(space), "--no-track"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs train.protocol honest" in err


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "tune").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_spaces_load_against_their_ml100k_config(path: Path) -> None:
    from recsys_cl.config import classic_method_names, search_base

    # configs/tune/ml-100k-<method>[-<what>].yaml searches configs/ml-100k/<method>.yaml.
    method = path.stem.split("-")[2]
    space = load_space(path)
    raw, base = search_base(REPO / "configs" / "ml-100k" / f"{method}.yaml", space, path)
    assert base.train.protocol == "honest" and base.model.method == method
    if method in classic_method_names():
        assert space.pruner.kind == "none"  # one evaluation per fit
    else:
        assert base.train.epochs < 400
        assert space.pruner.kind == "median" and space.pruner.warmup_epochs >= 20


def test_tune_module_exports_resolve() -> None:
    # `from recsys_cl.jobs.commands.tune import *` raised AttributeError while __all__ named
    # write_best and the function was called writebest_trial.
    module = importlib.import_module("recsys_cl.jobs.commands.tune")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
