"""The candidate bundle of a finished run folder: what the served candidate model loads.

The model is the one ``recsys-cl recommend`` ranks with (:func:`.recommend.candidate_model`),
saved with every train + validation pair masked and, when given, its allow-list; its layout is
:mod:`recsys_cl.retrieval.candidate_model`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys_cl.config.retrieval import (
    DEFAULT_K,
    DEFAULT_MAX_K,
    DEFAULT_MAX_LIST,
    DEFAULT_MAX_ROWS,
)
from recsys_cl.retrieval.candidate_model import ColdStart

from ..folder import RunFolder
from .recommend import allow_list, candidate_model


def write_candidate_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    index_path: str | Path | None = None,
    k: int = DEFAULT_K,
    cold_start: ColdStart = "popular",
    max_k: int = DEFAULT_MAX_K,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_list: int = DEFAULT_MAX_LIST,
    allow_items: Sequence[Any] | None = None,
) -> Path:
    """Write the candidate bundle of a finished ``recsys-cl train`` run to ``out_dir``
    (atomically: a server never loads half a bundle).

    Args:
        index_path: a saved index of this run (checked against its embeddings and item ids,
            then copied byte for byte); None builds an exact flat index over the items.
        k: the list length of a request that names none.
        cold_start: ids the run never trained on get the most popular training items
            (``popular``, as ``recsys-cl recommend --cold-start popular``) or an
            :class:`~recsys_cl.retrieval.UnknownUserError` (``error``).
        max_k, max_rows, max_list: the longest list, the most rows and the most ids in one
            ``exclude`` list one request may ask for (a request over any is refused, one line
            naming the row).
        allow_items: raw item ids, the only items the model ever returns (read strictly; ids
            the run does not have are left out; :func:`.recommend.allow_list`); None allows
            every item.

    Raises:
        RecsysError: a bad ``k`` / ``cold_start`` / limit, an allow-list with no item of the
            run, or ``out_dir`` is something other than a bundle (it is replaced whole: never
            the run folder); DataError and the retrieval errors for a run or index that cannot
            be read or does not match.
    """
    run = RunFolder(run_dir)
    allow = None if allow_items is None else allow_list(allow_items, run.require().split.items)[0]
    model = candidate_model(
        run,
        index_path=index_path,
        exclude="seen",
        cold_start=cold_start,
        k=k,
        max_k=max_k,
        max_rows=max_rows,
        max_list=max_list,
        allow=allow,
        device="cpu",
    )
    return model.save(out_dir, index_file=index_path)


__all__ = ["write_candidate_bundle"]
