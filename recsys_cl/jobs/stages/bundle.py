"""The candidate bundle of a finished run folder: what the served candidate model loads.

The model is the one ``recsys-cl recommend`` ranks with (:func:`.recommend.candidate_model`),
saved with every train + validation pair masked; its layout is
:mod:`recsys_cl.retrieval.candidate_model`'s.
"""

from __future__ import annotations

from pathlib import Path

from recsys_cl.config.retrieval import DEFAULT_K, DEFAULT_MAX_K, DEFAULT_MAX_ROWS
from recsys_cl.retrieval.candidate_model import ColdStart

from ..folder import RunFolder
from .recommend import candidate_model


def write_candidate_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    index_path: str | Path | None = None,
    k: int = DEFAULT_K,
    cold_start: ColdStart = "popular",
    max_k: int = DEFAULT_MAX_K,
    max_rows: int = DEFAULT_MAX_ROWS,
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
        max_k, max_rows: the longest list and the most rows one request may ask for (a request
            over either is refused, one line naming the row).

    Raises:
        RecsysError: a bad ``k`` / ``cold_start``, or ``out_dir`` is something other than a
            bundle (it is replaced whole: never the run folder); DataError and the retrieval
            errors for a run or index that cannot be read or does not match.
    """
    model = candidate_model(
        RunFolder(run_dir),
        index_path=index_path,
        exclude="seen",
        cold_start=cold_start,
        k=k,
        max_k=max_k,
        max_rows=max_rows,
        device="cpu",
    )
    return model.save(out_dir, index_file=index_path)


__all__ = ["write_candidate_bundle"]
