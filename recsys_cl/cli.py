"""The ``recsys-cl`` command.

Every subcommand takes ``--config FILE`` plus repeated ``--set dotted.key=value`` overrides
(values parsed as YAML scalars, never evaluated). User errors print one line and exit with
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from recsys_cl.errors import RecsysError

EXIT_USER_ERROR = 2

_EPILOG = """\
examples:
  recsys-cl data stats ml-100k
  recsys-cl data prepare --config configs/ml-100k/xsimgcl.yaml --out data/ml-100k
  recsys-cl train --config configs/ml-100k/xsimgcl.yaml --set train.epochs=20
  recsys-cl train --config configs/gowalla/xsimgcl.yaml --resume
  recsys-cl evaluate runs/ml-100k/xsimgcl

Benchmark datasets are read from --data-dir or $RECSYS_CL_DATA (a folder holding <name>/<files>)
when given, else downloaded once into $RECSYS_CL_CACHE (default ~/.cache/recsys_cl) and
checksummed.
"""


def _add_config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config", "-c", required=required, metavar="FILE", help="YAML run config (see configs/)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value by its dotted path, e.g. --set model.eps=0.1 "
        "(repeatable; values are YAML scalars)",
    )


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding <dataset>/<files> to use instead of downloading "
        "(default: $RECSYS_CL_DATA)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-cl",
        description="Graph contrastive learning for recommendation: prepare interaction logs, "
        "train LightGCN / SGL / SimGCL / XSimGCL embeddings, evaluate them by full ranking.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser(
        "data", help="inspect and prepare interaction logs", description="Inspect and prepare "
        "interaction logs: the class-imbalance profile, cleaning, id maps and splits."
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    stats = data_sub.add_parser(
        "stats",
        help="print a dataset's size and popularity / activity profile",
        description="Print users, items, interactions, density and the long-tail profile "
        "(share of interactions held by the top 20%% items, Gini of item popularity and of "
        "user activity). With --config, also the split that config produces.",
    )
    stats.add_argument(
        "dataset", nargs="?", help="a registered dataset (gowalla, yelp2018, amazon-book, "
        "ml-100k, ml-1m) or the path of an interaction file",
    )
    _add_config_args(stats)
    _add_data_dir(stats)
    prep = data_sub.add_parser(
        "prepare",
        help="clean and split a log; write train/val/test and id maps",
        description="Read, clean (implicit threshold, de-duplication, k-core), split and write "
        "the prepared dataset (Parquet parts, id maps, manifest) atomically to --out.",
    )
    _add_config_args(prep)
    _add_data_dir(prep)
    prep.add_argument("--out", metavar="DIR", help="output folder (default: <output_dir>/data)")

    train = sub.add_parser(
        "train",
        help="train embeddings and evaluate them",
        description="Train the configured method, select the best epoch (on validation for "
        "protocol 'honest', on test for protocol 'paper'), evaluate on test and write "
        "embeddings with raw ids, the checkpoint and metrics.json to output_dir.",
    )
    _add_config_args(train, required=True)
    _add_data_dir(train)
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from output_dir's last completed epoch (same config and seed give the "
        "same result as an uninterrupted run)",
    )

    ev = sub.add_parser(
        "evaluate",
        help="re-score a trained run's saved embeddings",
        description="Re-score the embeddings saved by `recsys-cl train` by full ranking on the "
        "run's test split (training and validation items masked).",
    )
    ev.add_argument("run_dir", help="output folder of a `recsys-cl train` run")
    ev.add_argument("--ks", default=None, help="comma-separated cut-offs (default: the run's)")
    ev.add_argument("--auc", action="store_true", help="also compute per-user AUC (full sort)")
    ev.add_argument(
        "--baseline",
        choices=["most-popular"],
        help="score a baseline on the run's split instead of its embeddings",
    )
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    # Imported here so `recsys-cl --help` answers without loading torch.
    from recsys_cl import jobs

    if args.command == "data" and args.data_command == "stats":
        return jobs.data_stats(args)
    if args.command == "data" and args.data_command == "prepare":
        return jobs.data_prepare(args)
    if args.command == "train":
        return jobs.train(args)
    if args.command == "evaluate":
        return jobs.evaluate(args)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except RecsysError as exc:
        print(f"recsys-cl: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        # The environment, not a bug: a folder that cannot be written, a full disk.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"recsys-cl: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("recsys-cl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
