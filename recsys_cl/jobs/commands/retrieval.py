"""The FAISS commands: ``recsys-cl index``, ``recsys-cl recommend`` and ``recsys-cl similar`` on
a finished run folder, and the retrieval stages of a tracked job (``train``, ``main``,
``compare``): build and check the configured index, write candidates through it, and record
both in the run.

Each folder command does its work first and then records it in an MLflow run of its own,
tagged with the training run it read (``source_run_id``), so a mistake leaves no failed run.
Imported only when FAISS is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cl.config import RunConfig, apply_overrides, read_yaml, validate
from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.io import atomic_path, read_table
from recsys_cl.tracking.base import Tracker, metric_dict

from ..folder import RunFolder
from ..stages.index import IndexReport, run_index
from ..stages.recommend import AllowReport, RecommendReport, run_recommend
from ..stages.similar import SimilarReport, run_similar
from .runs import folder_run, print_tracking


def record_index(tracker: Tracker, cfg: RunConfig) -> IndexReport:
    """Build, save and check the configured index over the run's items; record it."""
    report = run_index(cfg.output_dir, cfg.retrieval.index, check_k=cfg.retrieval.k)
    log_index(tracker, report)
    return report


def log_index(tracker: Tracker, report: IndexReport) -> None:
    tracker.log_metrics(
        {
            "time/index_build_seconds": report.index.meta.build_seconds,
            "index/ann_recall_vs_exact": report.recall,
            "index/queries_per_second": report.queries_per_second,
            "index/file_bytes": float(report.file_bytes),
        }
    )
    tracker.set_tags({"index": report.index.describe()})
    tracker.log_artifact(report.index_path, "index")
    tracker.log_artifact(report.meta_path, "index")


def _sample_users(cfg: RunConfig) -> list[str]:
    users = RunFolder(cfg.output_dir).split.users
    n = min(cfg.retrieval.sample_users, users.size)
    return [str(u) for u in users.raw.head(n).to_list()]


def record_candidates(
    tracker: Tracker, cfg: RunConfig, index_path: Path, *, every_user: bool
) -> RecommendReport:
    """Candidates through the saved index: for every user (``candidates.parquet``, with their
    Recall/NDCG on test) or for the first ``retrieval.sample_users`` users; the sample of
    ``sample_users`` users is recorded either way."""
    run = RunFolder(cfg.output_dir)
    report = run_recommend(
        run.root,
        index_path=index_path,
        users=None if every_user else _sample_users(cfg),
        k=cfg.retrieval.k,
        out=run.candidates if every_user else run.candidates_sample,
        progress=cfg.train.progress,
    )
    sample = run.candidates_sample
    if every_user:
        # The file lists users in index order: the sample is its first users' rows, read
        # lazily rather than loading every user's candidates back.
        keep = pl.Series(run.split.users.raw.head(cfg.retrieval.sample_users))
        with atomic_path(sample) as tmp:
            pl.scan_parquet(report.out).filter(
                pl.col("user_id").is_in(keep.implode())
            ).sink_parquet(tmp)
    tracker.log_artifact(sample, "candidates")
    tracker.log_metrics({"time/candidates_seconds": report.seconds})
    if report.quality is not None:
        tracker.log_metrics(metric_dict(report.quality.metrics, "candidates"))
    return report


# ------------------------------------------------------------------ recsys-cl index


def index_job(args: argparse.Namespace) -> int:
    """``recsys-cl index``: the index is built first, so a mistake leaves no failed run."""
    report = _build_index(args)
    with folder_run(args, "index") as tracker:
        log_index(tracker, report)
        print_tracking(tracker)
    return 0


def spec_from_args(args: argparse.Namespace) -> IndexSpec:
    """``--config`` and ``--set`` first, then the explicit flags on top."""
    raw: dict[str, Any] = read_yaml(args.config) if args.config else {}
    raw = apply_overrides(raw, args.overrides)
    if args.spec is not None:
        raw.pop("factory", None)
        raw.update(IndexSpec.from_cli(args.spec))
    flags = {
        "metric": args.metric,
        "nlist": args.nlist,
        "nprobe": args.nprobe,
        "ef_search": args.ef_search,
        "k_factor": args.k_factor,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    source = args.config or "index options"
    return validate(raw, IndexSpec, str(source))


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def _build_index(args: argparse.Namespace) -> IndexReport:
    # Checked before anything is built or written.
    if args.k < 1:
        raise RecsysError(f"-k {args.k}: the recall check needs k >= 1")
    if args.check_queries < 1:
        raise RecsysError(f"--check-queries {args.check_queries}: needs at least 1 user")
    spec = spec_from_args(args)
    report = run_index(
        args.run_dir,
        spec,
        out=args.out,
        device=args.device,
        check_k=args.k,
        check_queries=args.check_queries,
    )
    idx = report.index
    print(
        f"built {idx.meta.factory} ({idx.metric}) over {idx.n_items:,} items x {idx.dim} on "
        f"{idx.device} in {idx.meta.build_seconds:.2f} s; {_mib(report.file_bytes)} on disk"
    )
    if idx.device_note:
        print(f"note: {idx.device_note}")
    print(f"search: {idx.describe()}")
    print(
        f"ANN recall@{report.recall_k} vs exact: {report.recall:.4f} over {report.n_queries:,} "
        f"users ({report.queries_per_second:,.0f} queries/s in one batch)"
    )
    print(f"wrote {report.index_path} (+ {report.meta_path.name})")
    return report


# -------------------------------------------------------------- recsys-cl recommend


def recommend_job(args: argparse.Namespace) -> int:
    """``recsys-cl recommend``: candidates first, then their run (a mistake leaves none)."""
    report = _recommend(args)
    with folder_run(args, "recommend") as tracker:
        tracker.log_metrics({"time/candidates_seconds": report.seconds})
        tracker.set_tags({"index": report.index, "candidates_file": str(report.out)})
        if report.quality is not None:
            tracker.log_metrics(metric_dict(report.quality.metrics, "candidates"))
        print_tracking(tracker)
    return 0


def read_ids_file(path: str | Path, column: str = "user_id", what: str = "user") -> list[str]:
    """Raw ids from a text file (one per line; blank lines and lines starting with ``#``
    skipped) or a Parquet file with a ``column`` column; each read as the command line's ids
    are (strictly, by the run's id type) by the caller."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {what}s file not found")
    if p.suffix == ".parquet":
        frame = read_table(p, [column], exact=False)
        return [str(v) for v in frame[column].to_list() if v is not None]
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"{p}: not a UTF-8 text file of {what} ids (or a .parquet file with a {column} column)"
        ) from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_users_file(path: str | Path) -> list[str]:
    """User ids from a text file or a Parquet file with a ``user_id`` column."""
    return read_ids_file(path, "user_id", "user")


def read_items_file(path: str | Path, what: str = "item") -> list[str]:
    """Item ids (an allow-list, query items) from a text file or a Parquet file with an
    ``item_id`` column."""
    return read_ids_file(path, "item_id", what)


def allow_items_of(args: argparse.Namespace) -> list[str] | None:
    """``--allow-items FILE`` read, or None."""
    path = getattr(args, "allow_items", None)
    return None if path is None else read_items_file(path, "allowed item")


def _requested_users(args: argparse.Namespace) -> list[str] | None:
    if args.users is not None:
        return args.users.split(",")
    if args.users_file is not None:
        return read_users_file(args.users_file)
    return None


def _search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``recommend`` and ``similar`` share (index, k, allow-list, output, index
    search overrides, device, progress), as :func:`run_recommend` / :func:`run_similar`
    keywords."""
    return {
        "index_path": args.index,
        "k": args.k,
        "allow_items": allow_items_of(args),
        "out": args.out,
        "nprobe": args.nprobe,
        "ef_search": args.ef_search,
        "k_factor": args.k_factor,
        "device": args.device,
        "progress": not args.no_progress,
    }


def _recommend(args: argparse.Namespace) -> RecommendReport:
    report = run_recommend(
        args.run_dir,
        users=_requested_users(args),
        cold_start=args.cold_start,
        exclude=args.exclude,
        compare_exact=args.compare_exact,
        requests=args.requests,
        **_search_options(args),
    )
    rate = report.n_users / max(report.seconds, 1e-9)
    _print_allowed(report.allowed)
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
            f"excluded): recall@{k} {q.metrics[f'recall@{k}']:.4f}  "
            f"ndcg@{k} {q.metrics[f'ndcg@{k}']:.4f}"
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


def _print_allowed(allowed: AllowReport | None) -> None:
    if allowed is not None:
        print(allowed.describe())


# ---------------------------------------------------------------- recsys-cl similar


def similar_job(args: argparse.Namespace) -> int:
    """``recsys-cl similar``: the lists first, then their run (a mistake leaves none)."""
    report = _similar(args)
    with folder_run(args, "similar") as tracker:
        tracker.log_metrics({"time/similar_seconds": report.seconds})
        tracker.set_tags({"index": report.index, "similar_file": str(report.out)})
        print_tracking(tracker)
    return 0


def _similar(args: argparse.Namespace) -> SimilarReport:
    items = (
        args.items.split(",")
        if args.items is not None
        else read_items_file(args.items_file)
        if args.items_file is not None
        else None
    )
    report = run_similar(args.run_dir, items=items, **_search_options(args))
    _print_allowed(report.allowed)
    rate = report.n_items / max(report.seconds, 1e-9)
    print(
        f"{report.k} similar items for {report.n_items:,} items through {report.index} in "
        f"{report.seconds:.2f} s ({rate:,.0f} items/s)"
    )
    print(f"{report.n_rows:,} rows; {report.n_short:,} items with fewer than {report.k}")
    print(f"wrote {report.out}")
    return report


__all__ = [
    "allow_items_of",
    "index_job",
    "log_index",
    "read_ids_file",
    "read_items_file",
    "read_users_file",
    "recommend_job",
    "record_candidates",
    "record_index",
    "similar_job",
    "spec_from_args",
]
