"""``recsys-cl tune``."""

from __future__ import annotations

import argparse

from .command import Command
from .options import add_config_args, add_data_dir, add_tracking

_EPILOG = """\
examples:
  recsys-cl tune -c configs/ml-100k/xsimgcl.yaml --space configs/tune/ml-100k-xsimgcl.yaml
  recsys-cl tune -c configs/ml-100k/xsimgcl.yaml --space configs/tune/ml-100k-xsimgcl.yaml \\
      --trials 10 --timeout 1800 --out runs/ml-100k/tune-quick --final
  recsys-cl tune -c configs/ml-100k/xsimgcl.yaml --space configs/tune/ml-100k-xsimgcl.yaml --resume
  recsys-cl train -c runs/ml-100k/xsimgcl/tune/best.yaml      # the best config, by hand

The space file (configs/tune/*.yaml) names the run-config keys to sample (float / int with
low, high, log, step; categorical with choices), the validation metric (default: the config's
train.select_metric), the TPE sampler's seed, the median pruner's warm-up in epochs (curves of
contrastive methods dip before they climb: no trial is pruned before it), the default budget
and overrides fixed for every trial (a shorter train.epochs, say). Only the honest protocol is
accepted: trials are scored on validation, and test is scored once, by --final.
"""


def _arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p, required=True)
    p.add_argument(
        "--space", required=True, metavar="FILE|NAME",
        help="search space YAML, or a shipped space's name (tune/ml-100k-xsimgcl; "
        "`recsys-cl configs` lists them)",
    )
    p.add_argument(
        "--trials", type=int, metavar="N",
        help="trials to finish, counting those finished before a --resume (default: the space's)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="start no new trial after SECONDS of this invocation "
        "(default: the space's, else none)",
    )
    p.add_argument(
        "--final",
        action="store_true",
        help="then train the best config once with the normal job and score test once "
        "(a child run tagged tune.final)",
    )
    p.add_argument(
        "--resume", action="store_true",
        help="continue the search in --out: same study and parent run; a trial a kill left "
        "running is marked failed and its parameters queued again",
    )
    p.add_argument(
        "--out", metavar="DIR",
        help="search folder: study.db, trials/, best.yaml, plots (default: <output_dir>/tune)",
    )
    add_data_dir(p)
    add_tracking(p)


def _tune(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.tune import tune

    return tune(args)


TUNE = Command(
    name="tune",
    help="search hyper-parameters on the validation split (Optuna), one MLflow run per trial",
    description="Search the keys of a space file with Optuna's seeded TPE sampler, training "
    "each trial's config and selecting it on validation exactly as `train` does; hopeless "
    "trials are pruned from their validation curves after a warm-up. Test is never scored "
    "during the search. Every trial is an MLflow child run of one parent run, which gets "
    "the study plots, the best parameters and the best config; the best config is also "
    "written to OUT/best.yaml, a run config `recsys-cl train` takes. The study is kept in "
    "OUT/study.db, so --resume continues an interrupted search.",
    epilog=_EPILOG,
    raw=True,
    arguments=_arguments,
    run=_tune,
    trains=True,
)
