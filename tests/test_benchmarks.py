"""The benchmark scripts' command lines: every registered dataset is accepted, and a mistake is
one line with exit code 2 (not a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_TRAIN = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
BENCH_SERVING = BENCH_TRAIN.with_name("bench_serving.py")


def _bench_train(*args: str, data: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if data is not None:
        env["RECSYS_CL_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, str(BENCH_TRAIN), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
        (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
        (["--device", "tpu"], "--device 'tpu'"),
    ],
)
@pytest.mark.integration
def test_bench_train_reports_bad_arguments_in_one_line(args: list[str], message: str) -> None:
    proc = _bench_train(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_bench_train_picks_each_datasets_split() -> None:
    sys.path.insert(0, str(BENCH_TRAIN.parent))
    try:
        from bench_train import bench_config
    finally:
        sys.path.remove(str(BENCH_TRAIN.parent))
    given = bench_config("gowalla", "lightgcn", 2)
    assert (given.data.split.kind, given.train.protocol) == ("given", "paper")
    shipped = bench_config("ml-100k", "lightgcn", 2)  # configs/ml-100k/lightgcn.yaml: ratio
    assert (shipped.data.split.kind, shipped.model.method) == ("ratio", "lightgcn")
    assert bench_config("ml-1m", "mf", 2).model.layers == 0  # no shipped config: the default split


@pytest.mark.integration
def test_bench_train_runs_on_ml_100k(shared_datasets: Path) -> None:
    proc = _bench_train(
        "--dataset",
        "ml-100k",
        "--method",
        "mf",
        "--epochs",
        "1",
        "--eval-repeats",
        "1",
        "--json",
        data=shared_datasets,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"dataset": "ml-100k", "split": "ratio"' in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model-uri", "models:/m-1", "--clients", "0"],
            "argument --clients: must be positive, got 0",
        ),
        (["--model-uri", "models:/m-1", "--modes", "bulk"], "--modes 'bulk'"),
        (["--clients", "2"], "the following arguments are required: --model-uri"),
    ],
)
@pytest.mark.integration
def test_bench_serving_reports_bad_arguments_in_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_SERVING), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
