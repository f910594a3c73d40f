"""``recsys-cl similar``: each item's nearest items through a run's index."""

from __future__ import annotations

import argparse

from recsys_cl.config.retrieval import DEFAULT_K

from .command import Command
from .options import add_device, add_tracking
from .retrieval import add_allow_items, add_id_list, add_run_and_index, add_search_overrides


def _similar_arguments(p: argparse.ArgumentParser) -> None:
    add_run_and_index(p)
    add_id_list(p, "item", "every item", article="an")
    p.add_argument(
        "-k", type=int, default=DEFAULT_K, help=f"similar items per item (default {DEFAULT_K})"
    )
    add_allow_items(p, "returned")
    add_search_overrides(p)
    p.add_argument(
        "--out",
        metavar="FILE.parquet",
        help="output file, written atomically (default: RUN_DIR/similar_items.parquet)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_tracking(p)


def _similar(args: argparse.Namespace) -> int:
    from recsys_cl.jobs.commands.retrieval import similar_job

    return similar_job(args)


SIMILAR = Command(
    name="similar",
    help="write each item's K nearest items to Parquet",
    description="Write the K items nearest to each requested item (the item itself excluded) "
    "to Parquet (query_item_id, rank, item_id, score) through a saved index (or exact "
    "search), by the index's metric: the inner product the model was trained with, or cosine "
    "for an index built with --metric cosine. The index is checked against the run's "
    "embeddings and item ids first; an unknown item id is an error naming it. The served "
    "candidate model answers the same lists for request rows with an item_id.",
    arguments=_similar_arguments,
    run=_similar,
    needs_faiss=True,
)
