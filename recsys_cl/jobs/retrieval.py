"""The index stage: a finished run folder → a saved FAISS index over its item embeddings.

``recsys-cl index RUN_DIR`` builds an index over the run's item embeddings, saves it with its
metadata (default ``RUN_DIR/index/<kind>.faiss`` + ``.json``) and reports its build time and
ANN recall@K against exact search. The recommend stage is in :mod:`.recommend`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cl.config import apply_overrides, read_yaml, validate
from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.data import Split, load_split
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.retrieval import ItemIndex, ann_recall, build_index, save_index

from .evaluate import load_embeddings

# Users sampled for the ANN-vs-exact check after a build: enough for ±0.5% on the mean recall.
DEFAULT_CHECK_QUERIES = 2000
DEFAULT_K = 20


@dataclass(frozen=True)
class RunEmbeddings:
    """A finished run's split and embeddings: user [U, D] and item [I, D] float32, index order."""

    run_dir: Path
    split: Split
    user_emb: np.ndarray
    item_emb: np.ndarray


def load_run(run_dir: str | Path) -> RunEmbeddings:
    """The split and embeddings of a finished ``recsys-cl train`` run folder.

    Raises:
        DataError: not a run folder, or its files are missing or inconsistent.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"{run}: run folder not found (the output_dir of `recsys-cl train`)")
    split = load_split(run / "data")
    user = load_embeddings(run / "user_embeddings.parquet", "user_id", split.users).numpy()
    item = load_embeddings(run / "item_embeddings.parquet", "item_id", split.items).numpy()
    if user.shape[1] != item.shape[1]:
        raise DataError(f"{run}: user D={user.shape[1]} and item D={item.shape[1]} differ")
    return RunEmbeddings(run_dir=run, split=split, user_emb=user, item_emb=item)


# ---------------------------------------------------------------------------- index


@dataclass(frozen=True)
class IndexReport:
    """What :func:`run_index` built and measured."""

    index_path: Path
    meta_path: Path
    index: ItemIndex
    file_bytes: int
    recall: float
    recall_k: int
    n_queries: int
    queries_per_second: float


def default_index_path(run_dir: Path, spec: IndexSpec, out: str | Path | None) -> Path:
    """``out`` if it names a ``.faiss`` file; else ``<folder>/<spec name>.faiss`` in ``out``
    (default ``RUN_DIR/index``)."""
    if out is not None and Path(out).suffix == ".faiss":
        return Path(out)
    folder = Path(out) if out is not None else run_dir / "index"
    return folder / f"{spec.name()}.faiss"


def run_index(
    run_dir: str | Path,
    spec: IndexSpec,
    *,
    out: str | Path | None = None,
    device: str = "auto",
    check_k: int = DEFAULT_K,
    check_queries: int = DEFAULT_CHECK_QUERIES,
    seed: int = 0,
) -> IndexReport:
    """Build ``spec`` over the run's item embeddings, save it, and check it against exact
    search on ``check_queries`` users drawn with ``seed`` (all users when fewer)."""
    run = load_run(run_dir)
    item_index = build_index(run.item_emb, spec, item_ids=run.split.items, device=device)  # type: ignore[arg-type]
    index_path, meta_path = save_index(item_index, default_index_path(run.run_dir, spec, out))
    rng = np.random.default_rng(seed)
    n_users = run.user_emb.shape[0]
    sample = np.sort(rng.choice(n_users, size=min(check_queries, n_users), replace=False))
    queries = run.user_emb[sample]
    start = time.perf_counter()
    item_index.search(queries, check_k)
    qps = len(sample) / max(time.perf_counter() - start, 1e-9)
    recall = ann_recall(item_index, run.item_emb, queries, check_k)
    return IndexReport(
        index_path=index_path,
        meta_path=meta_path,
        index=item_index,
        file_bytes=index_path.stat().st_size,
        recall=recall,
        recall_k=min(check_k, item_index.n_items),
        n_queries=len(sample),
        queries_per_second=qps,
    )


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
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    source = args.config or "index options"
    return validate(raw, IndexSpec, str(source))


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def index(args: argparse.Namespace) -> IndexReport:
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


__all__ = [
    "IndexReport",
    "RunEmbeddings",
    "index",
    "load_run",
    "run_index",
    "spec_from_args",
]
