"""``recsys-cl data stats`` and ``recsys-cl data prepare``."""

from __future__ import annotations

import argparse

from .command import Command
from .options import add_config_args, add_data_dir


def _stats_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dataset", nargs="?", help="a registered dataset (gowalla, yelp2018, amazon-book, "
        "ml-100k, ml-1m) or the path of an interaction file",
    )
    add_config_args(p)
    add_data_dir(p)


def _stats(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.data import data_stats

    return data_stats(args)


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    add_data_dir(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default: <output_dir>/data)")


def _prepare(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.data import data_prepare

    return data_prepare(args)


DATA = Command(
    name="data",
    help="inspect and prepare interaction logs",
    description="Inspect and prepare interaction logs: the class-imbalance profile, cleaning, "
    "id maps and splits.",
    actions=(
        Command(
            name="stats",
            help="print a dataset's size and popularity / activity profile",
            description="Print users, items, interactions, density and the long-tail profile "
            "(share of interactions held by the top 20% items, Gini of item popularity and of "
            "user activity). With --config, also the split that config produces.",
            arguments=_stats_arguments,
            run=_stats,
            loads_torch=False,
        ),
        Command(
            name="prepare",
            help="clean and split a log; write train/val/test and id maps",
            description="Read, clean (implicit threshold, de-duplication, k-core), split and "
            "write the prepared dataset (Parquet parts, id maps, manifest) atomically to --out.",
            arguments=_prepare_arguments,
            run=_prepare,
            loads_torch=False,
        ),
    ),
)
