"""``recsys-cl train`` and ``recsys-cl main``."""

from __future__ import annotations

import argparse

from .command import Command
from .options import (
    add_baselines_switch,
    add_config_args,
    add_data_dir,
    add_distributed,
    add_overrides,
    add_tracking,
)
from .retrieval import add_allow_items


def _train_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p, required=True)
    add_data_dir(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from output_dir's last completed epoch (same config and seed give the "
        "same result as an uninterrupted run) and the same MLflow run",
    )
    p.add_argument(
        "--warm-start",
        metavar="RUN_DIR",
        help="start from a finished run of the same method, dim and layers "
        "(train.warm_start): its users' and items' rows are copied by raw id, new ones drawn "
        "as usual, removed ones dropped and counted; the optimizer starts fresh",
    )
    add_baselines_switch(p)
    add_distributed(p)
    add_tracking(p)


def _train(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.train import train_job

    return train_job(args)


def _main_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE|NAME",
        help="YAML run config, or a shipped config's name (default: ml-100k/xsimgcl)",
    )
    add_overrides(p, "override one config value by its dotted path (repeatable)")
    add_data_dir(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument(
        "--register",
        metavar="NAME",
        help="also register the candidate model under NAME in the MLflow model registry",
    )
    add_allow_items(p, "the logged candidate model ever returns")
    add_baselines_switch(p)
    add_tracking(p)


def _main(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.train import main_job

    return main_job(args)


TRAIN = Command(
    name="train",
    help="train embeddings and evaluate them",
    description="Train the configured method, select the best epoch (on validation for "
    "protocol 'honest', on test for protocol 'paper'), evaluate on test and write "
    "embeddings with raw ids, the checkpoint and metrics.json to output_dir; then fit the "
    "classic baselines (EASE, iALS, most-popular) on the same split, tuned where the model "
    "was selected, and print them beside it. ease and ials are methods too "
    "(configs/ml-100k/ease.yaml, ials.yaml): fitted once, written alike.",
    arguments=_train_arguments,
    run=_train,
    trains=True,
    distributed=True,
)

MAIN = Command(
    name="main",
    help="the whole job: prepare, train, evaluate, index, candidates, one MLflow run",
    description="Prepare the data, train, select the epoch, evaluate on test (and the "
    "most-popular baseline), build the FAISS index, write every user's top-K candidates and "
    "log a servable candidate model (mlflow models serve), then fit the classic baselines "
    "(EASE, iALS, most-popular) on the same split, tuned on validation within "
    "baselines.budget_seconds, all recorded in one MLflow run. Prints the metrics, the "
    "baseline rows and the margin over the best one, the run id and how to open the UI.",
    arguments=_main_arguments,
    run=_main,
    trains=True,
)
