"""The ``recsys-cl`` command.

Every subcommand takes ``--config FILE`` plus repeated ``--set dotted.key=value`` overrides
(values parsed as YAML scalars, never evaluated). User errors print one line and exit with
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import atexit
import faulthandler
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from recsys_cl.errors import PeerError, RecsysError
from recsys_cl.interrupts import handle_interrupts
from recsys_cl.optional import require_faiss
from recsys_cl.runtime import (
    available_cores,
    configure_threads,
    keep_freed_memory,
    requested_threads,
)

EXIT_USER_ERROR = 2
# Kept in step with recsys_cl.training.distributed.DEFAULT_TIMEOUT_S, which loads torch.
DEFAULT_TIMEOUT_S = 600.0

_EPILOG = """\
examples:
  recsys-cl data stats ml-100k
  recsys-cl data prepare --config configs/ml-100k/xsimgcl.yaml --out data/ml-100k
  recsys-cl main                                   # ml-100k end to end, tracked in MLflow
  recsys-cl train --config configs/ml-100k/xsimgcl.yaml --set train.epochs=20
  recsys-cl train --config configs/gowalla/xsimgcl.yaml --resume
  recsys-cl evaluate runs/ml-100k/xsimgcl
  recsys-cl index runs/ml-100k/xsimgcl --spec hnsw
  recsys-cl recommend runs/ml-100k/xsimgcl --index runs/ml-100k/xsimgcl/index/hnsw.faiss -k 20
  recsys-cl compare --sweep configs/sweeps/ml-100k-imbalance.yaml
  recsys-cl compare --experiment ml-100k
  recsys-cl tune -c configs/ml-100k/xsimgcl.yaml --space configs/tune/ml-100k-xsimgcl.yaml --final

Every command but `data` is recorded in MLflow (default store sqlite:///mlruns.db; see
`mlflow ui --backend-store-uri sqlite:///mlruns.db`); --no-track records nothing.

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


def _add_tracking(p: argparse.ArgumentParser, experiment: bool = True) -> None:
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


def _add_baselines_switch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the classic baselines (EASE, iALS, most-popular) that are otherwise tuned "
        "on the run's validation split within baselines.budget_seconds and shown beside the "
        "model (same as --set baselines.enabled=false)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-cl",
        description="Graph contrastive learning for recommendation: prepare interaction logs, "
        "train LightGCN / SGL / SimGCL / XSimGCL embeddings, evaluate them by full ranking, turn "
        "them into FAISS candidates, and record every run in MLflow.",
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
        "(share of interactions held by the top 20% items, Gini of item popularity and of "
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
        "embeddings with raw ids, the checkpoint and metrics.json to output_dir; then fit the "
        "classic baselines (EASE, iALS, most-popular) on the same split, tuned where the model "
        "was selected, and print them beside it. ease and ials are methods too "
        "(configs/ml-100k/ease.yaml, ials.yaml): fitted once, written alike.",
    )
    _add_config_args(train, required=True)
    _add_data_dir(train)
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from output_dir's last completed epoch (same config and seed give the "
        "same result as an uninterrupted run) and the same MLflow run",
    )
    _add_baselines_switch(train)
    _add_distributed(train)
    _add_tracking(train)

    main_job = sub.add_parser(
        "main",
        help="the whole job: prepare, train, evaluate, index, candidates, one MLflow run",
        description="Prepare the data, train, select the epoch, evaluate on test (and the "
        "most-popular baseline), build the FAISS index, write every user's top-K candidates and "
        "log a servable candidate model (mlflow models serve), then fit the classic baselines "
        "(EASE, iALS, most-popular) on the same split, tuned on validation within "
        "baselines.budget_seconds, all recorded in one MLflow run. Prints the metrics, the "
        "baseline rows and the margin over the best one, the run id and how to open the UI.",
    )
    main_job.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML run config (default: configs/ml-100k/xsimgcl.yaml)",
    )
    main_job.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value by its dotted path (repeatable)",
    )
    _add_data_dir(main_job)
    main_job.add_argument("--resume", action="store_true", help="continue an interrupted run")
    main_job.add_argument(
        "--register", metavar="NAME", help="also register the candidate model under NAME in the "
        "MLflow model registry",
    )
    _add_baselines_switch(main_job)
    _add_tracking(main_job)

    cmp = sub.add_parser(
        "compare",
        help="train imbalance strategies side by side, or print a past comparison",
        description="With --sweep FILE (configs/sweeps/*.yaml): train every strategy on the same "
        "split and seed as child runs of one MLflow parent run, then write the comparison table "
        "(CSV, Markdown) and a bar chart of overall vs tail Recall@20 to the parent and print "
        "the table. With only --experiment NAME: print the latest comparison in that experiment "
        "again, from the tracking store.",
    )
    cmp.add_argument("--sweep", metavar="FILE", help="sweep YAML: a base config and strategies")
    cmp.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a base-config value for every strategy, e.g. --set train.epochs=50",
    )
    cmp.add_argument(
        "--out",
        metavar="DIR",
        help="strategies train in DIR/<name> (default: the sweep's output_dir)",
    )
    cmp.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted sweep: finished strategies are read back, an interrupted "
        "one continues from its checkpoint, all under the same MLflow parent run",
    )
    cmp.add_argument(
        "-k", type=int, default=None,
        help="cut-off of the table (default 20, else the smallest of eval.ks); one of eval.ks",
    )
    _add_data_dir(cmp)
    _add_tracking(cmp)
    _add_tune(sub)

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
        choices=["ease", "ials", "most-popular"],
        help="score a baseline on the run's split instead of its embeddings: ease and ials are "
        "tuned on the run's validation split over the config's baselines grid (see "
        "`baselines:` in the README), then scored on test once",
    )
    ev.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="time budget of the ease/ials search (default: the config's "
        "baselines.budget_seconds)",
    )
    _add_tracking(ev)
    _add_retrieval_commands(sub)
    for command in _leaf_parsers(sub):
        _add_threads(command)
    return parser


def _leaf_parsers(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    leaves: list[argparse.ArgumentParser] = []
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        leaves += _leaf_parsers(nested[0]) if nested else [parser]
    return leaves


def _add_distributed(p: argparse.ArgumentParser) -> None:
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


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads for torch and polars (default: $RECSYS_CL_THREADS, else "
        "$OMP_NUM_THREADS, else the cores this process may use); give each of several jobs "
        "sharing a machine its share",
    )


_TUNE_EPILOG = """\
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


def _add_tune(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "tune",
        help="search hyper-parameters on the validation split (Optuna), one MLflow run per trial",
        description="Search the keys of a space file with Optuna's seeded TPE sampler, training "
        "each trial's config and selecting it on validation exactly as `train` does; hopeless "
        "trials are pruned from their validation curves after a warm-up. Test is never scored "
        "during the search. Every trial is an MLflow child run of one parent run, which gets "
        "the study plots, the best parameters and the best config; the best config is also "
        "written to OUT/best.yaml, a run config `recsys-cl train` takes. The study is kept in "
        "OUT/study.db, so --resume continues an interrupted search.",
        epilog=_TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_args(tune, required=True)
    tune.add_argument(
        "--space", required=True, metavar="FILE", help="search space YAML (see configs/tune/)"
    )
    tune.add_argument(
        "--trials", type=int, metavar="N",
        help="trials to finish, counting those finished before a --resume (default: the space's)",
    )
    tune.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="start no new trial after SECONDS of this invocation "
        "(default: the space's, else none)",
    )
    tune.add_argument(
        "--final",
        action="store_true",
        help="then train the best config once with the normal job and score test once "
        "(a child run tagged tune.final)",
    )
    tune.add_argument(
        "--resume", action="store_true",
        help="continue the search in --out: same study and parent run; a trial a kill left "
        "running is marked failed and its parameters queued again",
    )
    tune.add_argument(
        "--out", metavar="DIR",
        help="search folder: study.db, trials/, best.yaml, plots (default: <output_dir>/tune)",
    )
    _add_data_dir(tune)
    _add_tracking(tune)


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="where FAISS searches: auto uses the GPU when FAISS sees one (the gpu extra), "
        "cpu never, gpu requires one; HNSW always runs on the CPU (default: auto)",
    )


def _add_retrieval_commands(sub: argparse._SubParsersAction) -> None:
    idx = sub.add_parser(
        "index",
        help="build a FAISS index over a run's item embeddings",
        description="Build a FAISS index over the item embeddings of a finished `recsys-cl train`\n"
        "run, save it as NAME.faiss with its metadata in NAME.json (item ids, dimension,\n"
        "metric, spec, a SHA-256 of the embeddings), and report the build time and the ANN\n"
        "recall@K against exact search on a sample of the run's users. A spec can come from\n"
        "YAML (configs/index/*.yaml, --set overrides); the flags below override both.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="kinds:\n"
        "  flat    exact inner-product search (the reference; no parameters)\n"
        "  ivf     IVF-Flat: k-means lists, searches --nprobe of --nlist lists\n"
        "  ivfpq   IVF-PQ: IVF with product-quantized vectors (--set pq_m=16 --set pq_bits=8);\n"
        "          --set refine=sq8 re-ranks the --k-factor x K best with 8-bit codes\n"
        "  hnsw    HNSW graph (--set hnsw_m=32 --set ef_construction=200), --ef-search\n"
        "  other   any FAISS index_factory string, e.g. 'IVF1024,Flat' or 'IVF256,SQ8'\n",
    )
    idx.add_argument("run_dir", help="output folder of a `recsys-cl train` run")
    idx.add_argument(
        "--config", "-c", metavar="FILE", help="YAML index spec (see configs/index/)"
    )
    idx.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one spec field, e.g. --set pq_m=8 (repeatable; values are YAML scalars)",
    )
    idx.add_argument(
        "--spec",
        metavar="KIND",
        help="flat, ivf, ivfpq, hnsw, or a FAISS factory string (default: the config's, else flat)",
    )
    idx.add_argument(
        "--metric",
        choices=["ip", "cosine"],
        help="ip: the inner product the model was trained with (default); cosine: normalize "
        "items and queries first",
    )
    idx.add_argument(
        "--nlist", type=int, metavar="N",
        help="IVF lists (default: 4*sqrt(items), at most items/39 so every list can be trained)",
    )
    idx.add_argument(
        "--nprobe", type=int, metavar="N",
        help="IVF lists searched per query (default 32): higher is slower and more exact",
    )
    idx.add_argument(
        "--ef-search", type=int, metavar="N",
        help="HNSW search beam (default 128): higher is slower and more exact",
    )
    idx.add_argument(
        "--k-factor", type=int, metavar="N",
        help="with a refine stage: candidates re-ranked per result (default 16): higher is "
        "slower and more exact",
    )
    idx.add_argument(
        "--out", metavar="FILE",
        help="NAME.faiss to write (NAME.json beside it), or a folder for <kind>.faiss "
        "(default: RUN_DIR/index/)",
    )
    idx.add_argument("-k", type=int, default=20, help="K of the recall check (default 20)")
    idx.add_argument(
        "--check-queries", type=int, default=2000, metavar="N",
        help="users sampled for the recall check (default 2000)",
    )
    _add_device(idx)
    _add_tracking(idx)

    rec = sub.add_parser(
        "recommend",
        help="write each user's top-K unseen items to Parquet",
        description="Write the top-K items of each user, leaving out the items the user has "
        "already seen, to Parquet (user_id, rank, item_id, score) through a saved index (or "
        "exact search). The index is checked against the run's embeddings and item ids first. "
        "When every user is scored, also prints the candidates' Recall/NDCG@K on the run's "
        "test split, computed as `recsys-cl evaluate` does (train and validation items "
        "excluded), so an ANN index can be compared with exact search.",
    )
    rec.add_argument("run_dir", help="output folder of a `recsys-cl train` run")
    rec.add_argument(
        "--index", metavar="PATH",
        help="NAME.faiss written by `recsys-cl index` (or its folder if it holds one); "
        "default: exact search over the run's item embeddings",
    )
    who = rec.add_mutually_exclusive_group()
    who.add_argument(
        "--users", metavar="ID,ID", help="comma-separated raw user ids (default: all users)"
    )
    who.add_argument(
        "--users-file", metavar="FILE",
        help="raw user ids, one per line (lines starting with # skipped), or a Parquet file with a "
        "user_id column",
    )
    rec.add_argument("-k", type=int, default=20, help="candidates per user (default 20)")
    rec.add_argument(
        "--cold-start",
        choices=["error", "popular"],
        default="error",
        help="for user ids the run never trained on: error (default) stops with their count "
        "and the first one; popular gives them the most popular training items (score = "
        "number of training users)",
    )
    rec.add_argument(
        "--exclude",
        choices=["seen", "train", "none"],
        default="seen",
        help="items never recommended to a user: seen = training and validation items "
        "(default; what evaluation masks), train = training items only, none",
    )
    rec.add_argument("--nprobe", type=int, metavar="N", help="override the index's IVF nprobe")
    rec.add_argument(
        "--ef-search", type=int, metavar="N", help="override the index's HNSW efSearch"
    )
    rec.add_argument(
        "--k-factor", type=int, metavar="N",
        help="override the index's refine k_factor (candidates re-ranked per result)",
    )
    rec.add_argument(
        "--out", metavar="FILE.parquet",
        help="output file, written atomically (default: RUN_DIR/candidates.parquet)",
    )
    rec.add_argument(
        "--compare-exact", action="store_true",
        help="also run exact full-ranking evaluation and print how far the candidates' "
        "Recall/NDCG are from it",
    )
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device(rec)
    _add_tracking(rec)
    _add_serve(sub)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    srv = sub.add_parser(
        "serve",
        help="serve a logged candidate model over HTTP, refusing bad requests in one line",
        description="Serve a candidate model logged by `recsys-cl main` (POST /invocations, the\n"
        "MLflow scoring protocol, as `mlflow models serve` answers it) with a capped body, and\n"
        "every malformed request (not JSON, a fractional or boolean id, an unknown column, k or\n"
        "rows over the model's limits) answered 4xx with a one-line message naming the row.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    srv.add_argument(
        "model_uri",
        help="models:/<model_id>, models:/<name>/<version>, runs:/<run_id>/candidate_model "
        "or a folder",
    )
    srv.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    srv.add_argument(
        "--port", "-p", type=int, default=5001, help="port (default 5001; mlflow ui takes 5000)"
    )
    srv.add_argument(
        "--workers",
        "-w",
        type=int,
        default=1,
        help="server processes, each holding the model (default 1)",
    )
    srv.add_argument(
        "--max-body-mb",
        type=float,
        default=16.0,
        help="largest request body accepted, in MiB (default 16)",
    )
    srv.add_argument(
        "--tracking-uri", metavar="URI",
        help="MLflow store the model is in (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)",
    )


def _launched_rank() -> bool:
    """Whether this process is one rank of a job a launcher started (``WORLD_SIZE`` > 1)."""
    return os.environ.get("WORLD_SIZE", "1") != "1"


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    # Imported here so `recsys-cl --help` answers without loading torch.
    if _launched_rank() and args.command != "train":
        raise RecsysError(
            f"recsys-cl {args.command} runs in one process; only `recsys-cl train` is "
            "distributed (WORLD_SIZE is set)"
        )
    nproc = getattr(args, "nproc_per_node", None)
    if nproc is not None and nproc != 1:
        from recsys_cl.training.launch import launch

        return launch(nproc, _worker_argv(argv, nproc))
    if args.command == "data":
        from recsys_cl.jobs.commands import data

        return data.data_stats(args) if args.data_command == "stats" else data.data_prepare(args)
    if args.command in ("train", "main"):
        from recsys_cl.jobs.commands import train

        return train.train_job(args) if args.command == "train" else train.main_job(args)
    if args.command == "evaluate":
        from recsys_cl.jobs.commands.evaluate import evaluate_job

        return evaluate_job(args)
    if args.command == "compare":
        from recsys_cl.jobs.commands.compare import compare

        return compare(args)
    if args.command == "tune":
        from recsys_cl.jobs.commands.tune import tune

        return tune(args)
    if args.command in ("index", "recommend"):
        require_faiss(f"recsys-cl {args.command}")
        from recsys_cl.jobs.commands import retrieval

        return (
            retrieval.index_job(args) if args.command == "index" else retrieval.recommend_job(args)
        )
    if args.command == "serve":
        from recsys_cl.jobs.commands.serve import serve_job

        return serve_job(args)
    raise AssertionError(f"unhandled command {args.command}")


_MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _worker_argv(argv: list[str], nproc: int) -> list[str]:
    """The command line each launched rank runs: ``argv`` less ``--nproc-per-node``, plus
    ``--threads`` (the cores split between the ranks) unless the user chose a count."""
    if nproc < 1:
        raise RecsysError(f"--nproc-per-node must be >= 1, got {nproc}")
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--nproc-per-node":
            skip = True
        elif not token.startswith("--nproc-per-node="):
            out.append(token)
    parsed = build_parser().parse_args(out)
    # An abbreviated flag (argparse accepts --nproc) would launch ranks that launch again.
    if parsed.nproc_per_node is not None:
        raise RecsysError("write --nproc-per-node N in full")
    if parsed.threads is None and requested_threads(None) is None:
        out += ["--threads", str(max(1, available_cores() // nproc))]
    return out


# Commands whose steps allocate and free [N, D] tensors: malloc keeps freed memory for reuse
# (runtime.keep_freed_memory); a server's many threads and arenas are left as they are.
_TRAINING_COMMANDS = frozenset({"train", "main", "compare", "tune"})


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    # No telemetry; MLflow's INFO lines (store creation, migrations, model validation) and
    # artifact download bars are noise on a command line. Restored for in-process callers.
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    for name, default in _MLFLOW_ENV.items():
        os.environ.setdefault(name, default)
    try:
        # Before torch loads: OpenMP reads its wait policy and thread count once.
        fresh = "torch" not in sys.modules
        configure_threads(args.threads, load_torch=args.command != "data")
        if fresh and args.command in _TRAINING_COMMANDS:
            # Not in a caller's process (a notebook, the tests): its malloc is its own.
            keep_freed_memory()
        # SIGTERM (a scheduler stopping the job) ends a tracked run KILLED, as Ctrl-C does.
        with handle_interrupts():
            return _dispatch(args, raw)
    except PeerError:
        # Rank 0 failed and printed why; this rank only stops.
        return EXIT_USER_ERROR
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
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run() -> NoReturn:
    """The process entry point: the ``recsys-cl`` script and ``python -m recsys_cl``.

    A crash in native code (SIGSEGV, SIGABRT) prints every thread's Python stack first. A
    rank of a launched job (``WORLD_SIZE`` > 1) ends as :mod:`multiprocessing` ends its
    children: Python's exit handlers run (MLflow's, logging's), then :func:`os._exit` skips
    the interpreter's teardown and the C++ libraries' static destructors, a known source of
    "terminate called without an active exception". Once in CI, rank 0 of a resumed job died
    of that SIGABRT while shutting down, after writing every output (not reproduced in ~570
    runs since); a recurrence now names its stack.
    """
    faulthandler.enable()
    code = main()
    if _launched_rank():
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
