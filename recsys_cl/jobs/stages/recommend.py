"""The recommend and similar stages: a finished run folder (+ a saved index) → top-K
candidates Parquet.

``recsys-cl recommend RUN_DIR`` writes each user's top-K unseen items and, when every user is
scored, the candidates' Recall/NDCG on the run's test split, computed as ``recsys-cl evaluate``
computes its numbers. ``recsys-cl similar RUN_DIR`` writes each requested item's K nearest
items. The lists come from the :class:`~recsys_cl.retrieval.CandidateModel` the MLflow model
serves (:func:`candidate_model` builds it from the folder), so the command line and the served
model rank through one code path, under the same allow-list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys_cl.config.retrieval import (
    DEFAULT_K,
    DEFAULT_MAX_K,
    DEFAULT_MAX_LIST,
    DEFAULT_MAX_ROWS,
    IndexSpec,
    limits_problem,
)
from recsys_cl.data import IdMap
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.io import atomic_path
from recsys_cl.metrics import evaluate as full_ranking
from recsys_cl.progress import progress as show_progress
from recsys_cl.retrieval import (
    DEFAULT_CHUNK_USERS,
    AllowList,
    CandidateQuality,
    Candidates,
    CandidateScorer,
    PairSet,
    build_index,
    candidate_schema,
    candidate_table,
    load_index,
    most_popular,
    normalize_rows,
    write_candidates,
)
from recsys_cl.retrieval.candidate_model import (
    BundleInfo,
    CandidateModel,
    ColdStart,
    id_dtype,
    lookup_items,
    lookup_users,
)
from recsys_cl.retrieval.fold_in import FoldIn, fold_in_of
from recsys_cl.retrieval.index import Device
from recsys_cl.retrieval.request import Request, read_request

from ..folder import RunFolder
from .parts import RunParts, folder_parts

Exclude = Literal["seen", "train", "none"]


@dataclass(frozen=True)
class RecommendReport:
    """What :func:`run_recommend` wrote and measured.

    Attributes:
        k: the requested K; list_length: min(K, I), the longest list written.
        n_users: users written (requested, de-duplicated). n_rows: Parquet rows.
        n_short: users with fewer than ``k`` candidates. n_cold: users given most-popular items.
        quality: candidate Recall/NDCG@k on test (all users scored, exclude ``seen``), or None.
        exact: the evaluator's Recall/NDCG@k on the same embeddings when asked, or None.
        allowed: the allow-list's size and the ids of it the run does not have, or None.
    """

    out: Path
    index: str
    k: int
    list_length: int
    n_users: int
    n_rows: int
    n_short: int
    n_cold: int
    seconds: float
    quality: CandidateQuality | None
    exact: dict[str, float] | None
    allowed: AllowReport | None = None


@dataclass(frozen=True)
class AllowReport:
    """An allow-list as read: ``n_allowed`` of the run's ``n_items`` items, and ``n_unknown``
    listed ids the run does not have (left out: nothing could return them)."""

    n_allowed: int
    n_items: int
    n_unknown: int

    def describe(self) -> str:
        unknown = f" ({self.n_unknown:,} listed ids unknown to the run, ignored)"
        return (
            f"allow-list: {self.n_allowed:,} of {self.n_items:,} items"
            f"{unknown if self.n_unknown else ''}"
        )


def allow_list(values: Sequence[Any], items: IdMap) -> tuple[AllowList, AllowReport]:
    """The allow-list of raw item ids ``values`` (read strictly, as a request's ``exclude``;
    ids the run does not have are counted and left out).

    Raises:
        InvalidItemIdError: an entry that is not an item id of the run's type.
        RecsysError: no listed id is an item of the run.
    """
    _, index = lookup_items(items, list(values), where="allowed item")
    known = np.unique(index[index >= 0])
    if not known.size:
        raise RecsysError(
            f"allow-list: none of its {len(values):,} ids is an item of the run "
            f"({items.size:,} items); nothing could be recommended"
        )
    report = AllowReport(int(known.size), items.size, int((index < 0).sum()))
    return AllowList.of_items(known, items.size), report


def parse_user_ids(values: Sequence[str], users: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids (strings from the command line or a file) → (ids typed like the map, int64
    indices with -1 for ids the run does not know). Duplicates are dropped, order kept.

    Ids are read as the served candidate model reads them (:func:`lookup_users`): a run with
    integer ids takes canonical decimal integers in the 64-bit range only.

    Raises:
        InvalidUserIdError: the first entry that is not an integer for a run with integer ids.
    """
    texts = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    typed, index = lookup_users(users, texts, where="requested user")
    # "7", "07" and "+7" are one id: drop the duplicates typing reveals too.
    _, first = np.unique(typed, return_index=True)
    keep = np.sort(first)
    return typed[keep], index[keep]


def _exclusions(parts: RunParts, n_users: int, n_items: int, exclude: Exclude) -> PairSet | None:
    if exclude == "none":
        return None
    tables = parts.test_exclude if exclude == "seen" else [parts.train_seen]
    return PairSet.from_tables(tables, n_users, n_items)


def candidate_model(
    run: RunFolder,
    *,
    index_path: str | Path | None = None,
    exclude: Exclude = "seen",
    cold_start: ColdStart = "popular",
    k: int = DEFAULT_K,
    max_k: int = DEFAULT_MAX_K,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_list: int = DEFAULT_MAX_LIST,
    allow: AllowList | None = None,
    device: Device = "auto",
    parts: RunParts | None = None,
    fold_in: bool = True,
) -> CandidateModel:
    """The candidate model of a finished run folder.

    Args:
        index_path: a saved index of this run (checked against its embeddings and item ids);
            None searches exactly (a flat index built in memory).
        exclude: ``seen`` (train + validation items, what the evaluator masks at test time),
            ``train`` (training items only) or ``none``.
        cold_start: for ids the run never trained on, ``error`` raises
            :class:`~recsys_cl.retrieval.UnknownUserError`; ``popular`` gives them the most
            popular training items (score = number of training users; a labelled run counts
            only its positive rows).
        k, max_k, max_rows, max_list: the default list length, and the longest list, most
            rows and most ids in one list cell (``exclude``) one request may ask for.
        allow: the only items ever returned (:func:`allow_list`); None allows every item.
        parts: the run's pair sets when the caller already read them.
        fold_in: build the method's fold-in rule (:func:`run_fold_in`: reads ``model.pt`` and
            propagates the item table) for requests with a ``history``; a caller that never
            passes one (``recommend --users``, ``similar``) skips that work.

    Raises:
        RecsysError: bad limits or policy; DataError and the retrieval errors for a run or
            index that cannot be read or does not match (IndexSpecError: an allow-list over
            an index FAISS cannot filter).
    """
    if problem := limits_problem(k, max_k, max_rows, max_list):
        raise RecsysError(f"-k / retrieval limits: {problem}")
    if cold_start not in ("popular", "error"):
        raise RecsysError(f"cold_start must be 'popular' or 'error', got {cold_start!r}")
    split = run.require().split
    user_emb, item_emb = run.embeddings()
    parts = parts if parts is not None else folder_parts(run)
    if index_path is None:
        index = build_index(item_emb, IndexSpec(), item_ids=split.items, device=device)
    else:
        index = load_index(index_path, item_emb=item_emb, item_ids=split.items, device=device)
    seen = _exclusions(parts, split.n_users, split.n_items, exclude)
    pop_items, pop_scores = most_popular(parts.train, split.n_items)
    rule = run_fold_in(run, parts, item_emb) if fold_in else None
    info = BundleInfo(
        k=k,
        cold_start=cold_start,
        metric=index.metric,
        index=index.meta.factory,
        user_id_dtype=id_dtype(split.users),
        item_id_dtype=id_dtype(split.items),
        n_users=split.n_users,
        n_items=split.n_items,
        dim=index.dim,
        n_seen=0 if seen is None else int(seen.keys.size),
        source_run=run.root.resolve().name,
        max_k=max_k,
        max_rows=max_rows,
        max_list=max_list,
        n_allowed=None if allow is None else allow.n_allowed,
        fold_in=None if rule is None else rule.params(),
    )
    return CandidateModel(
        info,
        split.users,
        split.items,
        user_emb,
        item_emb,
        index,
        seen,
        pop_items,
        pop_scores,
        allow,
        rule,
    )


def run_fold_in(run: RunFolder, parts: RunParts, item_emb: np.ndarray) -> FoldIn | None:
    """The fold-in rule of a finished run (:func:`~recsys_cl.retrieval.fold_in.fold_in_of`):
    from its config, its ``model.pt`` (:meth:`RunFolder.read_model`) and its training
    pairs, the graph it propagated over."""
    train = parts.train
    return fold_in_of(run.config.model, run.read_model(), train.indptr, train.indices, item_emb)


def run_recommend(
    run_dir: str | Path,
    *,
    index_path: str | Path | None = None,
    users: Sequence[str] | None = None,
    k: int = DEFAULT_K,
    cold_start: ColdStart = "error",
    exclude: Exclude = "seen",
    allow_items: Sequence[Any] | None = None,
    out: str | Path | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    k_factor: int | None = None,
    device: Device = "auto",
    chunk_size: int = DEFAULT_CHUNK_USERS,
    progress: bool = True,
    compare_exact: bool = False,
    requests: str | Path | None = None,
) -> RecommendReport:
    """Write the top-``k`` unseen items of ``users`` (raw ids; None = every user) to Parquet
    (default ``RUN_DIR/candidates.parquet``); see :func:`candidate_model` for the options.

    Args:
        allow_items: raw item ids, the only items recommended (:func:`allow_list`).
        compare_exact: also run the full-ranking evaluator (needs all users, exclude ``seen``
            and no allow-list: the evaluator ranks every item).
        requests: instead of ``users``, a Parquet request table answered row by row as the
            served model answers it (:meth:`CandidateModel.predict`: ``user_id`` and the
            optional ``history``, ``exclude`` and ``k`` columns); the output has its columns.
    """
    if compare_exact and not (
        users is None and requests is None and exclude == "seen" and allow_items is None
    ):
        raise RecsysError(
            "--compare-exact needs every user scored (no --users or --requests), --exclude "
            "seen and no --allow-items"
        )
    if requests is not None and users is not None:
        raise RecsysError("give --requests or --users / --users-file, not both")
    run = RunFolder(run_dir).require()
    parts = folder_parts(run)
    allow, allowed = (
        (None, None) if allow_items is None else allow_list(allow_items, run.split.items)
    )
    model = candidate_model(
        run,
        index_path=index_path,
        exclude=exclude,
        cold_start=cold_start,
        k=k,
        max_k=max(k, DEFAULT_MAX_K),
        allow=allow,
        device=device,
        parts=parts,
        fold_in=requests is not None,
    )
    model.index.set_search_params(nprobe=nprobe, ef_search=ef_search, k_factor=k_factor)
    split = run.split
    k_eff = min(k, model.index.n_items)
    out_path = Path(out) if out is not None else run.candidates
    if requests is not None:
        return _answer_requests(
            model, Path(requests), out_path, k, chunk_size, progress, index_path, allowed
        )

    if users is None:
        raw_ids: np.ndarray = split.users.to_raw(np.arange(split.n_users))
        user_idx = np.arange(split.n_users, dtype=np.int64)
    else:
        raw_ids, user_idx = parse_user_ids(users, split.users)
        if not raw_ids.size:
            raise RecsysError("no user ids given (--users / --users-file is empty)")
        model.refuse_unknown(
            raw_ids, user_idx, "pass --cold-start popular to give them the most popular items"
        )

    scorer = None
    if users is None and exclude == "seen" and parts.test_truth.nnz:
        scorer = CandidateScorer(parts.test_truth, ks=(k_eff,))

    def search(chunk: np.ndarray) -> Candidates:
        cands = model.top_k(chunk, k_eff)
        if scorer is not None:
            scorer.update(cands)
        return cands

    written = write_ranked_lists(
        out_path,
        user_idx,
        raw_ids,
        search,
        candidate_schema(split.users, split.items),
        split.items,
        k=k,
        desc="recommend",
        unit="user",
        chunk_size=chunk_size,
        progress=progress,
    )

    exact = None
    if compare_exact:
        exact = _exact_metrics(model.user_emb, model.item_emb, parts, model.index.metric, k_eff)
    return RecommendReport(
        out=out_path,
        index=model.index.describe() if index_path is not None else "exact (flat, in memory)",
        k=k,
        list_length=k_eff,
        n_users=len(user_idx),
        n_rows=written.rows,
        n_short=written.short,
        n_cold=int((user_idx < 0).sum()),
        seconds=written.seconds,
        quality=scorer.result() if scorer is not None else None,
        exact=exact,
        allowed=allowed,
    )


def read_requests(path: Path) -> pd.DataFrame:
    """A request table from a Parquet file (list columns as arrays per cell).

    Raises:
        DataError: no such file, or not a Parquet file.
    """
    if not path.is_file():
        raise DataError(f"{path}: requests file not found")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a Parquet request table ({exc})") from None


def _answer_requests(
    model: CandidateModel,
    path: Path,
    out_path: Path,
    k: int,
    chunk_size: int,
    progress: bool,
    index_path: str | Path | None,
    allowed: AllowReport | None,
) -> RecommendReport:
    """``recommend --requests``: every row of the request file answered by ``model.predict``
    in chunks (the whole file is read strictly first, so an error names its row), written
    atomically."""
    frame = read_requests(path)
    if not len(frame):
        raise RecsysError(f"{path}: the request table has no rows")
    longest = max(
        (
            len(c)
            for col in ("history", "exclude")
            if col in frame
            for c in frame[col]
            if _is_list(c)
        ),
        default=0,
    )
    # The file is the whole request: the served model's per-request limits do not apply.
    info = replace(
        model.info,
        max_rows=max(len(frame), model.info.max_rows),
        max_list=max(longest, model.info.max_list),
    )
    whole = replace(model, info=info)
    try:
        request = read_request(
            frame,
            k,
            users=model.users,
            items=model.items,
            default_k=k,
            max_k=info.max_k,
            max_rows=info.max_rows,
            max_list=info.max_list,
        )
    except RecsysError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    if len(request.item_rows):
        raise RecsysError(f"{path}: recommend answers user_id rows; use `recsys-cl similar`")
    # Refused for the whole file before anything is written (each chunk would count its own).
    history = _user_history(request)
    model.refuse_unknown(
        request.user_raw,
        request.user_idx,
        "pass --cold-start popular to give them the most popular items, or a history",
        history=history,
    )
    n_rows = short = 0
    start = time.perf_counter()
    with (
        atomic_path(out_path) as tmp,
        show_progress(total=len(frame), desc="recommend", unit="row", enabled=progress) as bar,
    ):
        writer = None
        try:
            for lo in range(0, len(frame), chunk_size):
                answer = whole.predict(frame.iloc[lo : lo + chunk_size], k)
                table = pa.Table.from_pandas(answer, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                n_rows += table.num_rows
                rows = min(chunk_size, len(frame) - lo)
                short += _short_lists(answer["rank"].to_numpy(), rows, k)
                bar.update(rows)
        finally:
            if writer is not None:
                writer.close()
    return RecommendReport(
        out=out_path,
        index=model.index.describe() if index_path is not None else "exact (flat, in memory)",
        k=k,
        list_length=min(k, model.index.n_items),
        n_users=len(frame),
        n_rows=n_rows,
        n_short=short,
        n_cold=int(model.cold_rows(request.user_idx, history).sum()),
        seconds=time.perf_counter() - start,
        quality=None,
        exact=None,
        allowed=allowed,
    )


def _short_lists(rank: np.ndarray, n_rows: int, k: int) -> int:
    """Lists shorter than ``k`` among ``n_rows`` answered rows whose ranks are ``rank`` (each
    list starts at rank 1; a row with no candidates has no rows)."""
    starts = np.flatnonzero(rank == 1)
    lengths = np.diff(np.append(starts, len(rank)))
    return int((lengths < k).sum()) + n_rows - len(starts)


def _user_history(request: Request) -> list[np.ndarray] | None:
    history = request.lists.get("history")
    return None if history is None else [history[r] for r in request.user_rows]


def _is_list(cell: Any) -> bool:
    return isinstance(cell, (list, tuple, np.ndarray))


@dataclass(frozen=True)
class Written:
    """What :func:`write_ranked_lists` wrote: rows, lists shorter than k, seconds."""

    rows: int
    short: int
    seconds: float


def write_ranked_lists(
    out_path: Path,
    idx: np.ndarray,
    raw_ids: np.ndarray,
    search: Callable[[np.ndarray], Candidates],
    schema: pa.Schema,
    items: IdMap,
    *,
    k: int,
    desc: str,
    unit: str,
    chunk_size: int,
    progress: bool,
) -> Written:
    """Write ``search(chunk)`` for every ``chunk_size`` rows of ``idx`` (whose raw ids are
    ``raw_ids``) as candidate rows to ``out_path``, atomically, with a progress bar; the
    chunked loop of ``recommend`` (users) and ``similar`` (items)."""
    short = 0

    def tables() -> Iterator[pa.Table]:
        nonlocal short
        with show_progress(total=len(idx), desc=desc, unit=unit, enabled=progress) as bar:
            for start in range(0, len(idx), chunk_size):
                chunk = idx[start : start + chunk_size]
                cands = search(chunk)
                short += int((cands.counts() < k).sum())
                raw = raw_ids[start : start + chunk_size]
                yield candidate_table(raw, cands.items, cands.scores, items, schema)
                bar.update(len(chunk))

    start = time.perf_counter()
    rows = write_candidates(out_path, tables(), schema)
    return Written(rows=rows, short=short, seconds=time.perf_counter() - start)


def _exact_metrics(
    user: np.ndarray, item: np.ndarray, parts: RunParts, metric: str, k: int
) -> dict[str, float]:
    if metric == "cosine":
        user, item = normalize_rows(user), normalize_rows(item)
    result = full_ranking(
        torch.from_numpy(user),
        torch.from_numpy(item),
        parts.test_truth,
        parts.test_exclude,
        ks=(k,),
        metrics=("recall", "ndcg"),
    )
    return result.metrics


__all__ = [
    "AllowReport",
    "Exclude",
    "RecommendReport",
    "Written",
    "allow_list",
    "candidate_model",
    "parse_user_ids",
    "run_recommend",
    "write_ranked_lists",
]
