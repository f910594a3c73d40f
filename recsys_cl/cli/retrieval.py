"""``recsys-cl index``, ``recsys-cl recommend`` and ``recsys-cl serve`` (``recsys-cl similar``
is in :mod:`.similar`)."""

from __future__ import annotations

import argparse

from recsys_cl.config.retrieval import DEFAULT_K

from .command import Command
from .options import add_device, add_overrides, add_tracking


def add_allow_items(p: argparse.ArgumentParser, what: str) -> None:
    """``--allow-items FILE``: the only items ``what`` may return."""
    p.add_argument(
        "--allow-items",
        metavar="FILE",
        help=f"the only items {what} (a business allow-list): raw item ids, one per line "
        "(lines starting with # skipped), or a Parquet file with an item_id column; ids the "
        "run does not have are counted and ignored",
    )


def _index_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="output folder of a `recsys-cl train` run")
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE|NAME",
        help="YAML index spec, or a shipped spec's name (index/hnsw)",
    )
    add_overrides(
        p, "override one spec field, e.g. --set pq_m=8 (repeatable; values are YAML scalars)"
    )
    p.add_argument(
        "--spec",
        metavar="KIND",
        help="flat, ivf, ivfpq, hnsw, or a FAISS factory string (default: the config's, else flat)",
    )
    p.add_argument(
        "--metric",
        choices=["ip", "cosine"],
        help="ip: the inner product the model was trained with (default); cosine: normalize "
        "items and queries first",
    )
    p.add_argument(
        "--nlist",
        type=int,
        metavar="N",
        help="IVF lists (default: 4*sqrt(items), at most items/39 so every list can be trained)",
    )
    p.add_argument(
        "--nprobe",
        type=int,
        metavar="N",
        help="IVF lists searched per query (default 32): higher is slower and more exact",
    )
    p.add_argument(
        "--ef-search",
        type=int,
        metavar="N",
        help="HNSW search beam (default 128): higher is slower and more exact",
    )
    p.add_argument(
        "--k-factor",
        type=int,
        metavar="N",
        help="with a refine stage: candidates re-ranked per result (default 16): higher is "
        "slower and more exact",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="NAME.faiss to write (NAME.json beside it), or a folder for <kind>.faiss "
        "(default: RUN_DIR/index/)",
    )
    p.add_argument(
        "-k", type=int, default=DEFAULT_K, help=f"K of the recall check (default {DEFAULT_K})"
    )
    p.add_argument(
        "--check-queries",
        type=int,
        default=2000,
        metavar="N",
        help="users sampled for the recall check (default 2000)",
    )
    add_device(p)
    add_tracking(p)


def _index(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.retrieval import index_job

    return index_job(args)


def add_run_and_index(p: argparse.ArgumentParser) -> None:
    """The run folder and the optional ``--index`` of the commands that search a run."""
    p.add_argument("run_dir", help="output folder of a `recsys-cl train` run")
    p.add_argument(
        "--index",
        metavar="PATH",
        help="NAME.faiss written by `recsys-cl index` (or its folder if it holds one); "
        "default: exact search over the run's item embeddings",
    )


def add_id_list(p: argparse.ArgumentParser, kind: str, default: str, article: str = "a") -> None:
    """``--{kind}s ID,ID`` or ``--{kind}s-file FILE``: the raw ids a command answers for."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        f"--{kind}s", metavar="ID,ID", help=f"comma-separated raw {kind} ids (default: {default})"
    )
    which.add_argument(
        f"--{kind}s-file",
        metavar="FILE",
        help=f"raw {kind} ids, one per line (lines starting with # skipped), or a Parquet file "
        f"with {article} {kind}_id column",
    )


def add_search_overrides(p: argparse.ArgumentParser) -> None:
    """``--nprobe``, ``--ef-search`` and ``--k-factor``: the index's search settings, for once."""
    p.add_argument("--nprobe", type=int, metavar="N", help="override the index's IVF nprobe")
    p.add_argument("--ef-search", type=int, metavar="N", help="override the index's HNSW efSearch")
    p.add_argument(
        "--k-factor",
        type=int,
        metavar="N",
        help="override the index's refine k_factor (candidates re-ranked per result)",
    )


def _recommend_arguments(p: argparse.ArgumentParser) -> None:
    add_run_and_index(p)
    add_id_list(p, "user", "all users")
    p.add_argument(
        "--requests",
        metavar="FILE.parquet",
        help="instead of --users: a Parquet request table answered row by row as the served "
        "model answers it: user_id, and optional list columns history (the user's items: a "
        "user the run never saw is folded in from them, and they replace a known user's seen "
        "items) and exclude (items never returned), and k; the output adds history_skipped, "
        "the unknown ids of each row's history",
    )
    p.add_argument(
        "-k", type=int, default=DEFAULT_K, help=f"candidates per user (default {DEFAULT_K})"
    )
    p.add_argument(
        "--cold-start",
        choices=["error", "popular"],
        default="error",
        help="for user ids the run never trained on: error (default) stops with their count "
        "and the first one; popular gives them the most popular training items (score = "
        "number of training users)",
    )
    p.add_argument(
        "--exclude",
        choices=["seen", "train", "none"],
        default="seen",
        help="items never recommended to a user: seen = training and validation items "
        "(default; what evaluation masks), train = training items only, none",
    )
    add_allow_items(p, "ever recommended")
    add_search_overrides(p)
    p.add_argument(
        "--out",
        metavar="FILE.parquet",
        help="output file, written atomically (default: RUN_DIR/candidates.parquet)",
    )
    p.add_argument(
        "--compare-exact",
        action="store_true",
        help="also run exact full-ranking evaluation and print how far the candidates' "
        "Recall/NDCG are from it",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_tracking(p)


def _recommend(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.retrieval import recommend_job

    return recommend_job(args)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_uri",
        help="models:/<model_id>, models:/<name>/<version>, runs:/<run_id>/candidate_model "
        "or a folder",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--port", "-p", type=int, default=5001, help="port (default 5001; mlflow ui takes 5000)"
    )
    p.add_argument(
        "--workers",
        "-w",
        type=int,
        default=1,
        help="server processes, each holding the model (default 1)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=16.0,
        help="largest request body accepted, in MiB (default 16)",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store the model is in (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)",
    )


def _serve(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.serve import serve_job

    return serve_job(args)


INDEX = Command(
    name="index",
    help="build a FAISS index over a run's item embeddings",
    description="Build a FAISS index over the item embeddings of a finished `recsys-cl train`\n"
    "run, save it as NAME.faiss with its metadata in NAME.json (item ids, dimension,\n"
    "metric, spec, a SHA-256 of the embeddings), and report the build time and the ANN\n"
    "recall@K against exact search on a sample of the run's users. A spec can come from\n"
    "YAML (configs/index/*.yaml, --set overrides); the flags below override both.",
    epilog="kinds:\n"
    "  flat    exact inner-product search (the reference; no parameters)\n"
    "  ivf     IVF-Flat: k-means lists, searches --nprobe of --nlist lists\n"
    "  ivfpq   IVF-PQ: IVF with product-quantized vectors (--set pq_m=16 --set pq_bits=8);\n"
    "          --set refine=sq8 re-ranks the --k-factor x K best with 8-bit codes\n"
    "  hnsw    HNSW graph (--set hnsw_m=32 --set ef_construction=200), --ef-search\n"
    "  other   any FAISS index_factory string, e.g. 'IVF1024,Flat' or 'IVF256,SQ8'\n",
    raw=True,
    arguments=_index_arguments,
    run=_index,
    needs_faiss=True,
)

RECOMMEND = Command(
    name="recommend",
    help="write each user's top-K unseen items to Parquet",
    description="Write the top-K items of each user, leaving out the items the user has "
    "already seen, to Parquet (user_id, rank, item_id, score) through a saved index (or "
    "exact search). The index is checked against the run's embeddings and item ids first. "
    "When every user is scored, also prints the candidates' Recall/NDCG@K on the run's "
    "test split, computed as `recsys-cl evaluate` does (train and validation items "
    "excluded), so an ANN index can be compared with exact search.",
    arguments=_recommend_arguments,
    run=_recommend,
    needs_faiss=True,
)

SERVE = Command(
    name="serve",
    help="serve a logged candidate model over HTTP, refusing bad requests in one line",
    description="Serve a candidate model logged by `recsys-cl main` (POST /invocations, the\n"
    "MLflow scoring protocol, as `mlflow models serve` answers it) with a capped body, and\n"
    "every malformed request (not JSON, a fractional or boolean id, an unknown column, k or\n"
    "rows over the model's limits) answered 4xx with a one-line message naming the row.",
    raw=True,
    arguments=_serve_arguments,
    run=_serve,
    needs_faiss=True,
)
