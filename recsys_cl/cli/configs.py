"""``recsys-cl configs``: the configs that ship with recsys_cl."""

from __future__ import annotations

import argparse

from .command import Command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "prefix", nargs="?", default="",
        help="only names that start with it (ml-100k/, tune/, sweeps/, index/, imbalance/)",
    )


def _configs(args: argparse.Namespace) -> int:
    from recsys_cl.config.shipped import shipped_config_names

    for name in shipped_config_names():
        if name.startswith(args.prefix):
            print(name)
    return 0


CONFIGS = Command(
    name="configs",
    help="list the shipped configs, which any --config, --space or --sweep takes by name",
    description="List the configs that ship with recsys_cl, by the name every config option "
    "takes from any folder (`recsys-cl train -c ml-100k/lightgcn`); a file that exists at "
    "that path is read first.",
    arguments=_arguments,
    run=_configs,
    loads_torch=False,
)
