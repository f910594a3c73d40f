"""``recsys-cl evaluate`` and ``recsys-cl compare``."""

from __future__ import annotations

import argparse

from .command import Command
from .options import add_data_dir, add_overrides, add_tracking


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="output folder of a `recsys-cl train` run")
    p.add_argument("--ks", default=None, help="comma-separated cut-offs (default: the run's)")
    p.add_argument("--auc", action="store_true", help="also compute per-user AUC (full sort)")
    p.add_argument(
        "--baseline",
        choices=["ease", "ials", "most-popular"],
        help="score a baseline on the run's split instead of its embeddings: ease and ials are "
        "tuned on the run's validation split over the config's baselines grid (see "
        "`baselines:` in the README), then scored on test once",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="time budget of the ease/ials search (default: the config's "
        "baselines.budget_seconds)",
    )
    add_tracking(p)


def _evaluate(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.evaluate import evaluate_job

    return evaluate_job(args)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sweep", metavar="FILE|NAME",
        help="sweep YAML (a base config and strategies), or a shipped sweep's name "
        "(sweeps/ml-100k-imbalance)",
    )
    add_overrides(
        p, "override a base-config value for every strategy, e.g. --set train.epochs=50"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="strategies train in DIR/<name> (default: the sweep's output_dir)",
    )
    p.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted sweep: finished strategies are read back, an interrupted "
        "one continues from its checkpoint, all under the same MLflow parent run",
    )
    p.add_argument(
        "-k", type=int, default=None,
        help="cut-off of the table (default 20, else the smallest of eval.ks); one of eval.ks",
    )
    add_data_dir(p)
    add_tracking(p)


def _compare(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.compare import compare

    return compare(args)


EVALUATE = Command(
    name="evaluate",
    help="re-score a trained run's saved embeddings",
    description="Re-score the embeddings saved by `recsys-cl train` by full ranking on the "
    "run's test split (training and validation items masked).",
    arguments=_evaluate_arguments,
    run=_evaluate,
)

COMPARE = Command(
    name="compare",
    help="train imbalance strategies side by side, or print a past comparison",
    description="With --sweep FILE (configs/sweeps/*.yaml): train every strategy on the same "
    "split and seed as child runs of one MLflow parent run, then write the comparison table "
    "(CSV, Markdown) and a bar chart of overall vs tail Recall@20 to the parent and print "
    "the table. With only --experiment NAME: print the latest comparison in that experiment "
    "again, from the tracking store.",
    arguments=_compare_arguments,
    run=_compare,
    trains=True,
)
