"""MLflow tracking end to end, read back with the MLflow client from a temporary SQLite store:
what a training run records, how interrupted and crashed runs end, resume into the same run,
strategy comparison runs, and that the null tracker keeps mlflow unimported."""

from __future__ import annotations

import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "faiss", reason="the training record includes the FAISS index: needs the cpu or gpu extra"
)

from mlflow.tracking import MlflowClient  # noqa: E402

from recsys_cl.cli import main  # noqa: E402
from recsys_cl.tracking.base import metric_key  # noqa: E402
from tests.conftest import make_long_tail_log  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
KS = (10, 20, 50)


def _write_config(root: Path, *, epochs: int = 4, name: str = "run", extra: str = "") -> Path:
    log = root / "log.csv"
    if not log.exists():
        make_long_tail_log(n_users=150, n_items=300, seed=11, mean_activity=15).write_csv(log)
    cfg = root / f"{name}.yaml"
    cfg.write_text(
        f"experiment: tracking-test\noutput_dir: {root / name}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model:\n  method: xsimgcl\n  dim: 16\n"
        f"train:\n  epochs: {epochs}\n  batch_size: 256\n  eval_every: 2\n"
        "  patience: 20\n  progress: false\n"
        + extra
    )
    return cfg


def _run_id(run_dir: Path) -> str:
    return json.loads((run_dir / "tracking.json").read_text())["run_id"]


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out |= _artifacts(client, run_id, info.path)
        else:
            out.add(info.path)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A 4-epoch tracked XSimGCL run: (run folder, run id, tracking uri)."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    assert main(["train", "-c", str(_write_config(root)), "--tracking-uri", uri]) == 0
    return root / "run", _run_id(root / "run"), uri


def test_a_training_run_records_everything(trained: tuple[Path, str, str]) -> None:
    run_dir, run_id, uri = trained
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tracking-test"
    # The store's artifacts live beside the SQLite file, not in the working directory.
    assert run.info.artifact_uri.startswith(str(Path(uri.removeprefix("sqlite:///")).parent))

    params = run.data.params
    assert params["model.method"] == "xsimgcl" and params["train.epochs"] == "4"
    assert params["model.dim"] == "16" and params["data.split.kind"] == "ratio"
    assert params["retrieval.index.kind"] == "flat"

    tags = run.data.tags
    assert tags["dataset"] == "log.csv" and tags["method"] == "xsimgcl"
    assert tags["imbalance_strategy"] == "none" and tags["protocol"] == "honest"
    assert tags["seed"] == "2024" and tags["device"] == "cpu" and tags["job"] == "train"
    assert tags["version.torch"].split("+")[0][0].isdigit() and tags["version.python"]
    assert tags["version.faiss"].startswith("faiss")
    if (REPO / ".git").exists():
        assert len(tags["git_commit"].removesuffix("-dirty")) == 40

    metrics = run.data.metrics
    summary = json.loads((run_dir / "metrics.json").read_text())
    for name in (
        "users",
        "items",
        "interactions",
        "density",
        "head_share",
        "item_gini",
        "user_gini",
    ):
        assert f"data/{name}" in metrics
    assert metrics["data/users"] == summary["n_users"]
    for metric in ("recall", "ndcg", "precision", "hit_rate", "mrr"):
        for k in KS:
            key = f"{metric}@{k}"
            assert metrics[f"test/{metric}_at_{k}"] == pytest.approx(summary["test"][key])
    for key, value in summary["test_long_tail"].items():
        assert metrics[metric_key(key, "test")] == pytest.approx(value, nan_ok=True)
    assert "test/tail_recall_at_20" in metrics and "test/head_ndcg_at_20" in metrics
    # The timings are the run's own: the median and sum of the epoch times it logged, the test
    # pass and index build its metrics.json and index file hold, all inside its wall time.
    epoch_seconds = [m.value for m in client.get_metric_history(run_id, "time/epoch_seconds")]
    assert len(epoch_seconds) == 4 and min(epoch_seconds) > 0
    assert metrics["time/median_epoch_seconds"] == pytest.approx(statistics.median(epoch_seconds))
    assert metrics["time/train_seconds"] == pytest.approx(sum(epoch_seconds))
    assert metrics["time/test_eval_seconds"] == pytest.approx(summary["test_eval_seconds"])
    build = json.loads((run_dir / "index" / "flat.json").read_text())["build_seconds"]
    assert metrics["time/index_build_seconds"] == pytest.approx(build)
    stages = ("train_seconds", "test_eval_seconds", "index_build_seconds")
    wall = (run.info.end_time - run.info.start_time) / 1000
    assert min(metrics[f"time/{s}"] for s in stages) > 0
    assert sum(metrics[f"time/{s}"] for s in stages) < wall
    assert metrics["index/ann_recall_vs_exact"] == pytest.approx(1.0)
    assert metrics["select/best_epoch"] == summary["best_epoch"]

    def steps(name: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(run_id, name))

    for term in ("rec", "cl", "reg", "total"):
        assert steps(f"loss/{term}") == [1, 2, 3, 4]
    assert steps("time/epoch_seconds") == [1, 2, 3, 4]
    assert steps("val/recall_at_20") == steps("val/ndcg_at_50") == [2, 4]
    history = {m.step: m.value for m in client.get_metric_history(run_id, "loss/total")}
    assert history[3] == pytest.approx(summary["history"][2]["loss/total"])

    artifacts = _artifacts(client, run_id)
    expected = {
        "config.yaml",
        "metrics.json",
        "checkpoint/model.pt",
        "embeddings/user_embeddings.parquet",
        "embeddings/item_embeddings.parquet",
        "embeddings/id_maps/users.parquet",
        "embeddings/id_maps/items.parquet",
        "index/flat.faiss",
        "index/flat.json",
        "candidates/candidates_sample.parquet",
        "plots/losses.png",
        "plots/validation.png",
        "plots/recall_by_popularity.png",
    }
    assert expected <= artifacts, expected - artifacts
    png = Path(client.download_artifacts(run_id, "plots/losses.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_candidate_sample_matches_the_run_folder(trained: tuple[Path, str, str]) -> None:
    import polars as pl

    run_dir, run_id, uri = trained
    sample = pl.read_parquet(
        MlflowClient(uri).download_artifacts(run_id, "candidates/candidates_sample.parquet")
    )
    assert sample.columns == ["user_id", "rank", "item_id", "score"]
    assert (
        sample["user_id"].n_unique() == 100 and sample.group_by("user_id").len()["len"].max() == 20
    )


def test_evaluate_and_index_runs_point_back_to_the_training_run(
    trained: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, run_id, uri = trained
    client = MlflowClient(uri)
    capsys.readouterr()
    assert (
        main(["evaluate", str(run_dir), "--baseline", "most-popular", "--tracking-uri", uri]) == 0
    )
    out = capsys.readouterr().out
    eval_id = out.split("MLflow run ")[1].split()[0]
    ev = client.get_run(eval_id)
    assert ev.data.tags["source_run_id"] == run_id and ev.data.tags["job"] == "evaluate"
    assert ev.data.tags["scored"] == "most-popular baseline"
    assert (
        0 < ev.data.metrics["baseline_most_popular/recall_at_20"] < 1
        and ev.info.status == "FINISHED"
    )
    assert not any(name.startswith("test/") for name in ev.data.metrics)

    assert (
        main(
            [
                "index",
                str(run_dir),
                "--spec",
                "hnsw",
                "--out",
                str(run_dir / "idx"),
                "--tracking-uri",
                uri,
            ]
        )
        == 0
    )
    index_id = capsys.readouterr().out.split("MLflow run ")[1].split()[0]
    idx = client.get_run(index_id)
    assert idx.data.tags["source_run_id"] == run_id and idx.data.tags["job"] == "index"
    assert 0.5 < idx.data.metrics["index/ann_recall_vs_exact"] <= 1
    assert {"index/hnsw.faiss", "index/hnsw.json"} <= _artifacts(client, index_id)
    # A mistake is refused before a run is opened: no FAILED run is left behind.
    before = len(client.search_runs([idx.info.experiment_id]))
    assert main(["index", str(run_dir), "-k", "0", "--tracking-uri", uri]) == 2
    assert len(client.search_runs([idx.info.experiment_id])) == before


def test_no_track_records_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = _write_config(tmp_path, epochs=1)
    assert main(["train", "-c", str(cfg), "--tracking-uri", uri, "--no-track"]) == 0
    assert (
        not (tmp_path / "mlruns.db").exists() and not (tmp_path / "run" / "tracking.json").exists()
    )
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_an_interrupted_run_ends_killed_and_resumes_into_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_job = importlib.import_module("recsys_cl.jobs.stages.train")

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = _write_config(tmp_path, epochs=4)
    real = train_job._print_epoch

    def stop_at_two(record: dict) -> None:
        real(record)
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_job, "_print_epoch", stop_at_two)
    assert main(["train", "-c", str(cfg), "--tracking-uri", uri]) == 130
    client = MlflowClient(uri)
    run_id = _run_id(tmp_path / "run")
    assert client.get_run(run_id).info.status == "KILLED"

    monkeypatch.setattr(train_job, "_print_epoch", real)
    # A resume may raise the epoch budget; MLflow params are write-once, so it becomes a tag.
    resume = ["train", "-c", str(cfg), "--tracking-uri", uri, "--resume", "--set", "train.epochs=5"]
    assert main(resume) == 0
    assert _run_id(tmp_path / "run") == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "test/recall_at_20" in run.data.metrics
    assert run.data.params["train.epochs"] == "4" and run.data.tags["resumed.train.epochs"] == "5"
    steps = sorted({m.step for m in client.get_metric_history(run_id, "loss/total")})
    assert steps == [1, 2, 3, 4, 5]


def test_a_crashed_run_ends_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_job = importlib.import_module("recsys_cl.jobs.stages.train")

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"

    def crash(record: dict) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(train_job, "_print_epoch", crash)
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["train", "-c", str(_write_config(tmp_path, epochs=2)), "--tracking-uri", uri])
    assert MlflowClient(uri).get_run(_run_id(tmp_path / "run")).info.status == "FAILED"


@pytest.mark.integration
def test_sigterm_ends_the_run_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = _write_config(tmp_path, epochs=100_000)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recsys_cl.cli", "train", "-c", str(cfg), "--tracking-uri", uri],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Watched through the run folder, not the store: a reader polling SQLite could make
        # the writer wait on its lock. An epoch's checkpoint is written after its log call.
        deadline = time.monotonic() + 120
        last = tmp_path / "run" / "checkpoints" / "last.pt"
        while time.monotonic() < deadline and proc.poll() is None and not last.exists():
            time.sleep(0.5)
        assert last.exists(), proc.stderr.read() if proc.poll() is not None else "no epoch in 120 s"
        run_id = _run_id(tmp_path / "run")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        assert code == 130, proc.stderr.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "KILLED"
    assert client.get_metric_history(run_id, "loss/total")


def test_compare_runs_children_under_one_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    base = _write_config(tmp_path, epochs=2)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"base: {base.name}\noutput_dir: {tmp_path / 'cmp'}\n"
        "strategies:\n"
        f"  none: {REPO / 'configs/imbalance/none.yaml'}\n"
        "  mild_ipw: {weights: {propensity_gamma: 0.2}}\n"
        "  pop_negatives: {negatives: {alpha: 0.75}}\n"
    )
    capsys.readouterr()
    assert main(["compare", "--sweep", str(sweep), "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tracking-test")
    parents = client.search_runs([exp.experiment_id], "tags.job = 'compare'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags["imbalance_strategy"] for c in children) == [
        "mild_ipw",
        "none",
        "pop_negatives",
    ]
    assert all(
        c.info.status == "FINISHED" and "test/tail_recall_at_20" in c.data.metrics for c in children
    )
    # Same split for every strategy: the same data profile.
    assert len({c.data.metrics["data/interactions"] for c in children}) == 1
    assert {
        "comparison/comparison.csv",
        "comparison/comparison.md",
        "comparison/comparison.png",
    } <= _artifacts(client, parent.info.run_id)
    table = Path(
        client.download_artifacts(parent.info.run_id, "comparison/comparison.csv")
    ).read_text()
    rows = table.strip().splitlines()
    assert (
        rows[0].startswith("strategy,recall@20,ndcg@20,head_recall@20,tail_recall@20")
        and len(rows) == 4
    )
    for child in children:
        recall = child.data.metrics["test/recall_at_20"]
        assert f"| {child.data.tags['imbalance_strategy']} | {recall:.4f} |" in printed

    assert main(["compare", "--experiment", "tracking-test", "--tracking-uri", uri]) == 0
    again = capsys.readouterr().out
    for line in printed.splitlines():
        if line.startswith("| ") and "strategy" not in line:
            assert line in again


def test_an_interrupted_compare_resumes_under_the_same_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train_job = importlib.import_module("recsys_cl.jobs.stages.train")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    base = _write_config(tmp_path, epochs=3)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"base: {base.name}\noutput_dir: {tmp_path / 'cmp'}\n"
        "strategies:\n  none: {}\n  mild_ipw: {weights: {propensity_gamma: 0.2}}\n"
        "  pop_negatives: {negatives: {alpha: 0.75}}\n"
    )
    real = train_job._print_epoch
    calls = {"n": 0}

    def stop_in_second_strategy(record: dict) -> None:
        real(record)
        calls["n"] += 1
        if calls["n"] == 3 + 1:  # epoch 1 of the second strategy, before its first checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(train_job, "_print_epoch", stop_in_second_strategy)
    argv = ["compare", "--sweep", str(sweep), "--tracking-uri", uri]
    assert main(argv) == 130
    client = MlflowClient(uri)
    parent_id = _run_id(tmp_path / "cmp")
    first, second = _run_id(tmp_path / "cmp" / "none"), _run_id(tmp_path / "cmp" / "mild_ipw")
    assert client.get_run(parent_id).info.status == "KILLED"
    assert client.get_run(second).info.status == "KILLED"
    # Without --resume the folders are refused; with it, the same parent and children finish.
    assert main(argv) == 2
    monkeypatch.setattr(train_job, "_print_epoch", real)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "== none: finished earlier" in out
    assert (
        _run_id(tmp_path / "cmp") == parent_id and _run_id(tmp_path / "cmp" / "mild_ipw") == second
    )
    exp = client.get_run(parent_id).info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(
        c.info.run_id for c in children if c.data.tags["imbalance_strategy"] != "pop_negatives"
    ) == sorted([first, second])
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert client.get_run(parent_id).info.status == "FINISHED"
    steps = sorted({m.step for m in client.get_metric_history(second, "loss/total")})
    assert steps == [1, 2, 3]
    table = (tmp_path / "cmp" / "comparison.csv").read_text().strip().splitlines()
    assert len(table) == 4 and table[1].startswith("none,")


def test_tracking_errors_are_one_line(
    trained: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = trained[2]
    capsys.readouterr()
    assert main(["compare", "--experiment", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("recsys-cl: error: --experiment 'nope': no such experiment")
        and err.count("\n") == 1
    )
    assert main(["compare", "--experiment", "tracking-test", "--tracking-uri", uri]) == 2
    assert "no comparison runs" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["compare", "--experiment", "x", "--tracking-uri", missing]) == 2
    assert (
        "no tracking store there" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    )


@pytest.mark.integration
def test_the_null_tracker_path_does_not_import_mlflow() -> None:
    code = (
        "import sys, recsys_cl.jobs, recsys_cl.tracking.base, recsys_cl.jobs.commands.train; "
        "print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_main_job_records_every_stage_and_a_registered_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = _write_config(tmp_path, epochs=3)
    capsys.readouterr()
    assert main(["main", "-c", str(cfg), "--tracking-uri", uri, "--register", "main-test"]) == 0
    out = capsys.readouterr().out
    run_id = _run_id(tmp_path / "run")
    for stage in ("prepare", "train", "evaluate", "index", "candidates"):
        assert f"== {stage}\n" in out
    # Ends with the metrics table, the run id and how to open the UI.
    assert "\nrecall  " in out and f"MLflow run {run_id} in {uri}" in out
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith(f"open the UI: mlflow ui --backend-store-uri {uri}")
    )

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["job"] == "main"
    metrics = run.data.metrics
    # Each stage timed on its own: positive, and together within the run's wall time.
    stages = [metrics[f"time/{stage}_seconds"] for stage in ("prepare", "evaluate", "candidates")]
    stages += [metrics["time/train_seconds"], metrics["time/index_build_seconds"]]
    assert min(stages) > 0 and sum(stages) < (run.info.end_time - run.info.start_time) / 1000
    assert 0 < metrics["baseline_most_popular/recall_at_20"] < 1
    # Every user's candidates through the exact index score what the evaluator scores.
    assert metrics["candidates/recall_at_20"] == pytest.approx(
        metrics["test/recall_at_20"], abs=1e-6
    )
    assert (tmp_path / "run" / "candidates.parquet").is_file()
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run_id and str(model.status) == "READY"
    assert f"candidate model: models:/{model.model_id}" in out
    # The run's test and candidate metrics are the model's too (the Models view compares them),
    # and the run has a Source, which the model copies.
    linked = {m.key: m.value for m in client.get_logged_model(model.model_id).metrics}
    assert linked["test/recall_at_20"] == metrics["test/recall_at_20"]
    assert linked["candidates/ndcg_at_20"] == metrics["candidates/ndcg_at_20"]
    assert not any(key.startswith(("loss/", "val/", "time/")) for key in linked)
    assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.source.name"]
    assert model.tags["mlflow.source.name"] == run.data.tags["mlflow.source.name"]
    (version,) = client.search_model_versions("name = 'main-test'")
    assert version.run_id == run_id and version.source == f"models:/{model.model_id}"


def test_main_with_auc_then_resumed_when_finished_keeps_its_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = str(_write_config(tmp_path, epochs=2))
    argv = [
        "main",
        "-c",
        cfg,
        "--tracking-uri",
        uri,
        "--set",
        "eval.auc=true",
        "--register",
        "resumed",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out.split("candidate model: ")[1].split()[0]
    run_id = _run_id(tmp_path / "run")
    client = MlflowClient(uri)
    experiment = client.get_run(run_id).info.experiment_id
    assert 0 < client.get_run(run_id).data.metrics["test/auc"] < 1
    # Resuming a finished run redoes the stages after training and reuses the logged model
    # and its registered version.
    assert main([*argv, "--resume"]) == 0
    assert capsys.readouterr().out.split("candidate model: ")[1].split()[0] == first
    assert _run_id(tmp_path / "run") == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_logged_models([experiment])) == 1
    assert [str(v.version) for v in client.search_model_versions("name = 'resumed'")] == ["1"]
    # A resume that changes the candidates (retrieval.k) logs a new model: the newest wins.
    assert main([*argv, "--resume", "--set", "retrieval.k=5"]) == 0
    newest = capsys.readouterr().out.split("candidate model: ")[1].split()[0]
    assert newest != first and len(client.search_logged_models([experiment])) == 2


def test_register_mistakes_fail_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = str(_write_config(tmp_path, epochs=1))
    capsys.readouterr()
    assert main(["main", "-c", cfg, "--tracking-uri", uri, "--register", "m", "--no-track"]) == 2
    assert "--register needs tracking" in capsys.readouterr().err
    for name in ("a/b", "..x", "."):
        assert main(["main", "-c", cfg, "--tracking-uri", uri, "--register", name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--register {name!r}" in err
    assert main(["train", "-c", cfg, "--tracking-uri", "sqllite:///x.db"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("recsys-cl: error: tracking store sqllite:///x.db") and err.count("\n") == 1
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlruns.db").exists()


def test_a_relative_store_is_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys_cl.tracking.mlflow_tracker import resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("sqlite:///mlruns.db") == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_runs_record_the_command_line_as_their_source() -> None:
    from recsys_cl.tracking.mlflow_tracker import source_tags

    tags = source_tags(
        ["/opt/venv/bin/recsys-cl", "main", "--set", "train.epochs=20", "--run-name", "a b"]
    )
    assert tags["mlflow.source.name"] == "recsys-cl main --set train.epochs=20 --run-name 'a b'"
    assert tags["mlflow.source.type"] == "LOCAL"
    # A password in a URI argument is not written into the store for all to read.
    tags = source_tags(["recsys-cl", "main", "--tracking-uri", "postgresql://ml:s3cret@db:5432/mlflow",
                        "--tracking-uri=http://u:pw@host:5000", "--tracking-uri", "http://127.0.0.1:5000"])
    assert "s3cret" not in tags["mlflow.source.name"] and ":pw@" not in tags["mlflow.source.name"]
    assert tags["mlflow.source.name"] == (
        "recsys-cl main --tracking-uri 'postgresql://ml:***@db:5432/mlflow' "
        "'--tracking-uri=http://u:***@host:5000' --tracking-uri http://127.0.0.1:5000"
    )
