"""The recsys-cl command: exit code 2 with one line for user errors, end-to-end train,
evaluate and a SIGKILL-safe --resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recsys_cl.cli import main
from tests.conftest import make_long_tail_log, user_error, write_run_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def log_csv(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    make_long_tail_log(n_users=80, n_items=120, seed=3, mean_activity=15).write_csv(path)
    return path



def test_user_errors_exit_2_with_one_line(
    tmp_path: Path, log_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_run_config(tmp_path, log_csv)
    assert "model.epsilon: unknown key" in user_error(
        capsys, ["train", "-c", str(cfg), "--set", "model.epsilon=0.1"]
    )
    assert "nope.yaml: config file not found" in user_error(capsys, ["train", "-c", "nope.yaml"])
    assert "neither a known dataset" in user_error(capsys, ["data", "stats", "no-such-data"])
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\n1,2\n,3\n")
    assert "bad.csv" in user_error(capsys, ["data", "stats", str(bad)])
    assert "--set 'oops'" in user_error(capsys, ["train", "-c", str(cfg), "--set", "oops"])
    assert "ml-100k is one log with no given train/test files" in user_error(
        capsys, ["data", "stats", "--set", "data.dataset=ml-100k", "--set", "data.split.kind=given"]
    )


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--help"],
        ["data", "--help"],
        ["data", "stats", "--help"],
        ["train", "--help"],
        ["evaluate", "--help"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_train_then_evaluate_reproduces_the_test_metrics(
    tmp_path: Path, log_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_run_config(tmp_path, log_csv)
    assert main(["train", "-c", str(cfg)]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["protocol"] == "honest" and summary["selected_on"] == "val"
    assert 1 <= summary["best_epoch"] <= 4 and len(summary["history"]) == 4
    for name in ("config.yaml", "model.pt", "user_embeddings.parquet", "item_embeddings.parquet"):
        assert (run / name).is_file()
    torch.load(run / "model.pt", weights_only=True)
    capsys.readouterr()

    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    ndcg_row = next(line for line in out.splitlines() if line.startswith("ndcg"))
    assert f"{summary['test']['ndcg@20']:.4f}" in ndcg_row

    # A second train into the same folder would overwrite a finished run: refused.
    assert "already holds a run" in user_error(capsys, ["train", "-c", str(cfg)])


def test_data_prepare_writes_a_loadable_split(tmp_path: Path, log_csv: Path) -> None:
    from recsys_cl.data import load_split

    cfg = write_run_config(tmp_path, log_csv)
    assert main(["data", "prepare", "-c", str(cfg), "--out", str(tmp_path / "prep")]) == 0
    split = load_split(tmp_path / "prep")
    assert split.val is not None and split.train.height > split.test.height > 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys_cl.cli", *args]


def _env() -> dict[str, str]:
    # One thread: identical arithmetic in the killed, resumed and uninterrupted runs.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.mark.integration
def test_sigkilled_run_resumes_to_the_same_result(tmp_path: Path, log_csv: Path) -> None:
    epochs = 12
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "kill"
    ref_dir.mkdir()
    kill_dir.mkdir()
    ref_cfg = write_run_config(ref_dir, log_csv, epochs=epochs, eval_every=2)
    kill_cfg = write_run_config(kill_dir, log_csv, epochs=epochs, eval_every=2)
    subprocess.run(_cli("train", "-c", str(ref_cfg)), check=True, env=_env(), cwd=REPO,
                   capture_output=True)

    proc = subprocess.Popen(_cli("train", "-c", str(kill_cfg)), env=_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = kill_dir / "run" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = torch.load(last, weights_only=True)["state"]["epoch"]
    assert 1 <= done < epochs
    assert not (kill_dir / "run" / "metrics.json").exists()

    resumed = subprocess.run(_cli("train", "-c", str(kill_cfg), "--resume"), env=_env(),
                             cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ref = json.loads((ref_dir / "run" / "metrics.json").read_text())
    got = json.loads((kill_dir / "run" / "metrics.json").read_text())
    assert got["best_epoch"] == ref["best_epoch"]
    assert got["test"] == pytest.approx(ref["test"], rel=1e-6)
    assert [h["loss/total"] for h in got["history"]] == pytest.approx(
        [h["loss/total"] for h in ref["history"]], rel=1e-6
    )


def test_resume_refuses_another_runs_checkpoint(
    tmp_path: Path, log_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_run_config(tmp_path, log_csv, epochs=2)
    assert main(["train", "-c", str(cfg)]) == 0
    err = user_error(capsys, ["train", "-c", str(cfg), "--resume", "--set", "model.tau=0.3"])
    assert "checkpoint is from a different run (model.tau" in err


def test_real_dataset_stats(shared_datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "ml-100k", "--data-dir", str(shared_datasets)]) == 0
    out = capsys.readouterr().out
    assert "943" in out and "1,682" in out and "100,000" in out and "head share" in out
    assert main(["data", "stats", "gowalla", "--data-dir", str(shared_datasets)]) == 0
    out = capsys.readouterr().out
    for figure in ("29,858", "40,981", "1,027,370", "810,128", "217,242"):
        assert figure in out


def test_own_csv_with_threshold_and_leave_one_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without a column map, timestamp and rating are picked up, so the implicit threshold and a
    # time-ordered split work on a user's own CSV.
    log = tmp_path / "ratings.csv"
    make_long_tail_log(n_users=60, n_items=80, seed=4, mean_activity=14).write_csv(log)
    argv = ["data", "prepare", "--set", f"data.path={log}", "--set", "data.implicit_threshold=3",
            "--set", "data.split.kind=leave_one_out", "--set", "data.min_user_interactions=3",
            "--out", str(tmp_path / "prep")]
    assert main(argv) == 0, capsys.readouterr().err
    from recsys_cl.data import load_split

    split = load_split(tmp_path / "prep")
    assert split.method == "leave_one_out"
    assert (split.train["rating"] >= 3).all() and split.val is not None


def test_every_command_help_reads_cleanly_and_offers_threads() -> None:
    from recsys_cl.cli import _leaf_parsers, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    leaves = _leaf_parsers(sub)
    assert {p.prog for p in leaves} >= {"recsys-cl data stats", "recsys-cl train", "recsys-cl main"}
    for parser in leaves:
        text = parser.format_help()
        assert "%%" not in text, parser.prog
        assert "--threads N" in text, parser.prog
