"""The recommend stage: a finished run folder (+ a saved index) → top-K candidates Parquet.

``recsys-cl recommend RUN_DIR`` writes each user's top-K unseen items through a saved index (or
exact search) and, when every user is scored, the candidates' Recall/NDCG on the run's test
split, computed as ``recsys-cl evaluate`` computes its numbers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from recsys_cl.config import RunConfig, read_yaml, validate
from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.data import IdMap
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.metrics import evaluate as full_ranking
from recsys_cl.retrieval import (
    DEFAULT_CHUNK_USERS,
    CandidateQuality,
    CandidateScorer,
    ItemIndex,
    PairSet,
    UnknownUserError,
    build_index,
    candidate_schema,
    candidate_table,
    candidates_for,
    load_index,
    most_popular,
    normalize_rows,
    typed_user_ids,
    write_candidates,
)

from .retrieval import DEFAULT_K, RunEmbeddings, load_run
from .parts import RunParts, run_parts

ColdStart = Literal["error", "popular"]
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


def parse_user_ids(values: Sequence[str], users: IdMap) -> tuple[list[Any], np.ndarray]:
    """Raw ids (strings from the command line or a file) → (ids typed like the map, int64
    indices with -1 for ids the run does not know). Duplicates are dropped, order kept.

    Ids are read as the served candidate model reads them (:func:`typed_user_ids`): a run with
    integer ids takes canonical decimal integers in the 64-bit range only.

    Raises:
        InvalidUserIdError: the first entry that is not an integer for a run with integer ids.
    """
    texts = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    integer = users.raw.dtype == pl.Int64
    # "7", "07" and "+7" are one id: drop the duplicates typing reveals too.
    typed = list(dict.fromkeys(typed_user_ids(texts, integer=integer, where="requested user")))
    if not integer:
        found = users.to_index(pl.Series("raw", typed, dtype=pl.String), missing="null")
        return typed, found.fill_null(-1).to_numpy().astype(np.int64)
    return typed, users.to_index(np.asarray(typed, dtype=np.int64), missing="null")


def read_users_file(path: str | Path) -> list[str]:
    """User ids from a text file (one per line; blank lines and lines starting with ``#``
    skipped) or a Parquet file with a ``user_id`` column."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: users file not found")
    if p.suffix == ".parquet":
        try:
            frame = pl.read_parquet(p, columns=["user_id"])
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{p}: needs a readable user_id column ({str(exc).splitlines()[0]})") from None
        return [str(v) for v in frame["user_id"].to_list() if v is not None]
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"{p}: not a UTF-8 text file of user ids (or a .parquet file with a user_id column)"
        ) from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _exclusions(parts: RunParts, n_users: int, n_items: int, exclude: Exclude) -> PairSet | None:
    if exclude == "none":
        return None
    tables = parts.test_exclude if exclude == "seen" else [parts.train_seen]
    return PairSet.from_tables(tables, n_users, n_items)


def folder_parts(run: RunEmbeddings) -> RunParts:
    """What the run trained and is scored on, as `recsys-cl evaluate` reads it: a labelled run
    (imbalance.weights.label_threshold) scores only its positive test rows."""
    cfg_path = run.run_dir / "config.yaml"
    cfg = validate(read_yaml(cfg_path), RunConfig, str(cfg_path))
    return run_parts(run.split, cfg.imbalance.weights.label_threshold, str(run.run_dir / "data"))


def _open_index(
    run: RunEmbeddings, index_path: str | Path | None, device: str
) -> ItemIndex:
    if index_path is None:
        return build_index(run.item_emb, IndexSpec(), item_ids=run.split.items, device=device)  # type: ignore[arg-type]
    return load_index(index_path, item_emb=run.item_emb, item_ids=run.split.items, device=device)  # type: ignore[arg-type]


def run_recommend(
    run_dir: str | Path,
    *,
    index_path: str | Path | None = None,
    users: Sequence[str] | None = None,
    k: int = DEFAULT_K,
    cold_start: ColdStart = "error",
    exclude: Exclude = "seen",
    out: str | Path | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    device: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_USERS,
    progress: bool = True,
    compare_exact: bool = False,
) -> RecommendReport:
    """Write the top-``k`` unseen items of ``users`` (raw ids; None = every user) to Parquet.

    Args:
        index_path: a saved index of this run (checked against its embeddings and item ids);
            None searches exactly (a flat index built in memory).
        cold_start: for ids the run never trained on, ``error`` raises
            :class:`UnknownUserError`; ``popular`` gives them the most popular training items
            (score = number of training users).
        exclude: ``seen`` (train + validation items, what the evaluator masks at test time),
            ``train`` (training items only) or ``none``.
        out: the Parquet file (default ``RUN_DIR/candidates.parquet``).
        compare_exact: also run the full-ranking evaluator (needs all users, exclude ``seen``).
    """
    if k < 1:
        raise RecsysError(f"-k must be positive, got {k}")
    if compare_exact and not (users is None and exclude == "seen"):
        raise RecsysError("--compare-exact needs every user scored (no --users) and --exclude seen")
    run = load_run(run_dir)
    split = run.split
    index = _open_index(run, index_path, device)
    index.set_search_params(nprobe=nprobe, ef_search=ef_search)
    k_eff = min(k, index.n_items)
    parts = folder_parts(run)
    seen = _exclusions(parts, split.n_users, split.n_items, exclude)

    if users is None:
        raw_ids: np.ndarray = split.users.to_raw(np.arange(split.n_users))
        user_idx = np.arange(split.n_users, dtype=np.int64)
    else:
        typed, user_idx = parse_user_ids(users, split.users)
        if not typed:
            raise RecsysError("no user ids given (--users / --users-file is empty)")
        unknown = np.flatnonzero(user_idx < 0)
        if unknown.size and cold_start == "error":
            raise UnknownUserError(
                f"{unknown.size:,} of {len(typed):,} requested users are unknown to the run "
                f"(not in its training data), the first {typed[int(unknown[0])]!r}; pass "
                "--cold-start popular to give them the most popular items"
            )
        raw_ids = np.asarray(typed, dtype=np.int64 if split.users.raw.dtype == pl.Int64 else object)

    all_users = users is None
    scorer = None
    if all_users and exclude == "seen" and parts.test_truth.nnz:
        scorer = CandidateScorer(parts.test_truth, ks=(k_eff,))
    pop_items, pop_scores = most_popular(parts.train, k_eff)
    schema = candidate_schema(split.users, split.items)
    out_path = Path(out) if out is not None else run.run_dir / "candidates.parquet"
    counts = {"short": 0, "cold": int((user_idx < 0).sum())}

    def tables() -> Iterator[pa.Table]:
        with tqdm(total=len(user_idx), desc="recommend", unit="user", disable=not progress) as bar:
            for start in range(0, len(user_idx), chunk_size):
                chunk = user_idx[start : start + chunk_size]
                items = np.empty((len(chunk), k_eff), dtype=np.int64)
                scores = np.empty((len(chunk), k_eff), dtype=np.float32)
                known = chunk >= 0
                cands = candidates_for(index, run.user_emb, chunk[known], k_eff, seen)
                items[known], scores[known] = cands.items, cands.scores
                items[~known], scores[~known] = pop_items, pop_scores
                if scorer is not None:
                    scorer.update(cands)
                counts["short"] += int(((items >= 0).sum(axis=1) < k).sum())
                yield candidate_table(raw_ids[start : start + chunk_size], items, scores, split.items, schema)
                bar.update(len(chunk))

    start = time.perf_counter()
    n_rows = write_candidates(out_path, tables(), schema)
    seconds = time.perf_counter() - start

    exact = _exact_metrics(run, parts, index.metric, k_eff) if compare_exact else None
    return RecommendReport(
        out=out_path,
        index=index.describe() if index_path is not None else "exact (flat, in memory)",
        k=k,
        list_length=k_eff,
        n_users=len(user_idx),
        n_rows=n_rows,
        n_short=counts["short"],
        n_cold=counts["cold"],
        seconds=seconds,
        quality=scorer.result() if scorer is not None else None,
        exact=exact,
    )


def _exact_metrics(run: RunEmbeddings, parts: RunParts, metric: str, k: int) -> dict[str, float]:
    user, item = run.user_emb, run.item_emb
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


def _requested_users(args: argparse.Namespace) -> list[str] | None:
    if args.users is not None:
        return args.users.split(",")
    if args.users_file is not None:
        return read_users_file(args.users_file)
    return None


def recommend(args: argparse.Namespace) -> RecommendReport:
    report = run_recommend(
        args.run_dir,
        index_path=args.index,
        users=_requested_users(args),
        k=args.k,
        cold_start=args.cold_start,
        exclude=args.exclude,
        out=args.out,
        nprobe=args.nprobe,
        ef_search=args.ef_search,
        device=args.device,
        progress=not args.no_progress,
        compare_exact=args.compare_exact,
    )
    rate = report.n_users / max(report.seconds, 1e-9)
    print(
        f"top-{report.k} for {report.n_users:,} users through {report.index} in "
        f"{report.seconds:.2f} s ({rate:,.0f} users/s)"
    )
    print(
        f"{report.n_rows:,} rows; {report.n_short:,} users with fewer than {report.k} candidates; "
        f"{report.n_cold:,} unknown users given the most popular items"
    )
    k = report.list_length
    if report.quality is not None:
        q = report.quality
        print(
            f"candidates vs test ({q.n_users_evaluated:,} users with test items, train+val "
            f"excluded): recall@{k} {q.metrics[f'recall@{k}']:.4f}  ndcg@{k} {q.metrics[f'ndcg@{k}']:.4f}"
        )
        if report.exact is not None:
            parts = []
            for name in ("recall", "ndcg"):
                key = f"{name}@{k}"
                exact, cand = report.exact[key], q.metrics[key]
                change = (cand - exact) / exact * 100 if exact else 0.0
                parts.append(f"{key} {exact:.4f} (candidates {change:+.2f}%)")
            print("exact full ranking:  " + "  ".join(parts))
    print(f"wrote {report.out}")
    return report


__all__ = [
    "RecommendReport",
    "folder_parts",
    "parse_user_ids",
    "read_users_file",
    "recommend",
    "run_recommend",
]
