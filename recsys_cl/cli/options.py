"""Options shared by several ``recsys-cl`` commands."""

from __future__ import annotations

import argparse

# Kept in step with recsys_cl.training.distributed.DEFAULT_TIMEOUT_S, which loads torch.
DEFAULT_TIMEOUT_S = 600.0


def add_config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config", "-c", required=required, metavar="FILE|NAME",
        help="YAML run config, or a shipped config's name (ml-100k/xsimgcl; `recsys-cl configs` "
        "lists them)",
    )
    add_overrides(
        p,
        "override one config value by its dotted path, e.g. --set model.eps=0.1 "
        "(repeatable; values are YAML scalars)",
    )


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE``, repeatable, collected in ``args.overrides``."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding <dataset>/<files> to use instead of downloading "
        "(default: $RECSYS_CL_DATA)",
    )


def add_tracking(p: argparse.ArgumentParser, experiment: bool = True) -> None:
    group = p.add_argument_group(
        "tracking", "runs are recorded in MLflow: by default a SQLite store, sqlite:///mlruns.db "
        "in the working directory (open it with `mlflow ui --backend-store-uri "
        "sqlite:///mlruns.db`)",
    )
    group.add_argument(
        "--tracking-uri", metavar="URI",
        help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else the config's "
        "tracking.uri, else sqlite:///mlruns.db); an http:// server works the same way",
    )
    if experiment:
        group.add_argument(
            "--experiment", metavar="NAME", help="MLflow experiment (default: the config's)"
        )
    group.add_argument(
        "--run-name", metavar="NAME", help="MLflow run name (default: job:method:folder)"
    )
    group.add_argument("--no-track", action="store_true", help="record nothing in MLflow")


def add_baselines_switch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the classic baselines (EASE, iALS, most-popular) that are otherwise tuned "
        "on the run's validation split within baselines.budget_seconds and shown beside the "
        "model (same as --set baselines.enabled=false)",
    )


def add_distributed(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "distributed", "data-parallel training: each process trains on its share of every "
        "batch (README: Training on several GPUs or machines); under torchrun the ranks come "
        "from its RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT variables",
    )
    group.add_argument(
        "--nproc-per-node", type=int, metavar="N",
        help="train with N processes on this machine (one per GPU with train.device cuda, "
        "else gloo on the CPU, each with its share of the cores); default: one process",
    )
    group.add_argument(
        "--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
        help="how long a rank waits for the others before the job fails; it must outlast "
        f"what rank 0 does alone (reading data, an evaluation) (default {DEFAULT_TIMEOUT_S:g})",
    )


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads for torch and polars (default: $RECSYS_CL_THREADS, else "
        "$OMP_NUM_THREADS, else the cores this process may use); give each of several jobs "
        "sharing a machine its share",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="where FAISS searches: auto uses the GPU when FAISS sees one (the gpu extra), "
        "cpu never, gpu requires one; HNSW always runs on the CPU (default: auto)",
    )

