"""Measure FAISS item indexes: build time, memory, batch and single-query throughput, recall@K.

For every index kind (flat, IVF-Flat, IVF-PQ, HNSW, and any --factory string) and every search
setting (--nprobe, --ef-search), on two data sets:

  (a) --run RUN_DIR: a trained run's item embeddings, its user embeddings as queries (Gowalla
      size when the run is Gowalla). Also the candidates' Recall@K on the run's test split through
      each index, next to exact full-ranking evaluation (train and validation items excluded).
  (b) N x D synthetic clustered vectors (default 1,000,000 x 64, 10,000 queries drawn from the
      same Gaussian mixture).

Recall@K is |ANN top-K ∩ exact top-K| / K against a flat inner-product index on the same
queries; "speed-up" is batch QPS over the flat index's. Memory is the serialized index size and
the growth of this process's resident memory over the build. Prints a Markdown table.

Examples:
    python benchmarks/bench_index.py --n 50000 --queries 2000           # a quick check
    python benchmarks/bench_index.py --run runs/gowalla/xsimgcl --skip-synthetic
    python benchmarks/bench_index.py --run runs/gowalla/xsimgcl --json results/index.json
    python benchmarks/bench_index.py --device gpu --kinds flat,ivf,ivfpq
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from recsys_cl.config import IndexSpec
from recsys_cl.metrics import evaluate
from recsys_cl.retrieval import (
    CandidateScorer,
    ItemIndex,
    build_index,
    iter_candidates,
    normalize_rows,
    recall_vs_exact,
)


@dataclass
class Row:
    data: str
    index: str
    search: str
    device: str
    build_s: float
    index_mib: float
    rss_delta_mib: float
    batch_qps: float
    single_qps: float
    recall: float
    speedup: float = float("nan")
    cand_recall: float | None = None
    exact_recall: float | None = None


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc; else peak RSS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def clustered(
    n: int, n_queries: int, dim: int, n_clusters: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Items [n, dim] and queries [n_queries, dim] float32 around shared N(0, I) centres."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for start in range(0, m, 100_000):  # chunks keep the float64 noise small
            size = min(100_000, m - start)
            noise = rng.standard_normal((size, dim), dtype=np.float32)
            out[start : start + size] = centers[rng.integers(0, n_clusters, size)] + spread * noise
        return out

    return draw(n), draw(n_queries)


def specs(args: argparse.Namespace) -> Iterator[tuple[IndexSpec, str, list[dict[str, int]]]]:
    """(spec to build, label, search settings to sweep) for every requested index."""
    common = {"metric": args.metric}
    for kind in sorted(args.kinds, key=lambda k: k != "flat"):  # the reference first
        if kind == "flat":
            yield IndexSpec(kind="flat", **common), "flat", [{}]
        elif kind == "ivf":
            yield (
                IndexSpec(kind="ivf", nlist=args.nlist, **common),
                "ivf",
                [{"nprobe": p} for p in args.nprobe],
            )
        elif kind == "ivfpq":
            spec = IndexSpec(
                kind="ivfpq", nlist=args.nlist, pq_m=args.pq_m, pq_bits=args.pq_bits, **common
            )
            yield spec, "ivfpq", [{"nprobe": p} for p in args.nprobe]
        elif kind == "hnsw":
            spec = IndexSpec(
                kind="hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, **common
            )
            yield spec, "hnsw", [{"ef_search": e} for e in args.ef_search]
        else:
            raise SystemExit(f"unknown kind {kind!r}; use flat, ivf, ivfpq, hnsw (or --factory)")
    for factory in args.factory:
        sweep = [{}]
        if factory.upper().startswith("IVF"):
            sweep = [{"nprobe": p} for p in args.nprobe]
        elif factory.upper().startswith("HNSW"):
            sweep = [{"ef_search": e} for e in args.ef_search]
        yield IndexSpec(kind="factory", factory=factory, **common), factory, sweep


def timed_search(
    index: ItemIndex, queries: np.ndarray, k: int, n_single: int
) -> tuple[np.ndarray, float, float]:
    """(top-k items of every query, batch QPS, single-query QPS)."""
    start = time.perf_counter()
    _, items = index.search(queries, k)
    batch = len(queries) / (time.perf_counter() - start)
    single_q = queries[:n_single]
    start = time.perf_counter()
    for i in range(len(single_q)):
        index.search(single_q[i : i + 1], k)
    single = len(single_q) / max(time.perf_counter() - start, 1e-9)
    return items, batch, single


def bench_dataset(
    name: str,
    items: np.ndarray,
    queries: np.ndarray,
    args: argparse.Namespace,
    candidates: tuple | None = None,
) -> list[Row]:
    """Every spec and search setting on one data set; ``candidates`` = (user_emb, test,
    exclusions, exact recall) of a run for the candidate-quality column."""
    rows: list[Row] = []
    exact: np.ndarray | None = None
    flat_qps = float("nan")
    if "flat" not in args.kinds:  # the reference is needed anyway: time it for the speed-up
        flat = build_index(items, IndexSpec(metric=args.metric), device=args.device)
        exact, flat_qps, _ = timed_search(flat, queries, args.k, 0)
        del flat
    for spec, label, sweep in specs(args):
        gc.collect()
        before = rss_mib()
        try:
            index = build_index(items, spec, device=args.device)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            print(f"| {name} | {label} | build failed: {exc} |")
            continue
        rss_delta = rss_mib() - before
        size = len(index.serialize()) / 2**20
        for setting in sweep:
            if setting.get("nprobe", 0) > (index.meta.nlist or 0):
                continue  # more probes than lists: nothing new to measure
            index.set_search_params(**setting)
            found, batch, single = timed_search(index, queries, args.k, args.single)
            if spec.kind == "flat":
                exact, flat_qps = found, batch
            assert exact is not None  # flat runs first (see specs)
            row = Row(
                data=name,
                index=index.meta.factory,
                search=" ".join(f"{k}={v}" for k, v in setting.items()) or "-",
                device=index.device,
                build_s=index.meta.build_seconds,
                index_mib=size,
                rss_delta_mib=rss_delta,
                batch_qps=batch,
                single_qps=single,
                recall=recall_vs_exact(found, exact),
                speedup=batch / flat_qps if flat_qps == flat_qps else float("nan"),
            )
            if candidates is not None:
                user_emb, test, exclude, exact_recall = candidates
                scorer = CandidateScorer(test, ks=(args.k,), metrics=("recall",))
                for cands in iter_candidates(index, user_emb, k=args.k, exclude=exclude):
                    scorer.update(cands)
                row.cand_recall = scorer.result().metrics[f"recall@{args.k}"]
                row.exact_recall = exact_recall
            rows.append(row)
            print(markdown_row(row), flush=True)
        del index
    return rows


HEADER = (
    "| data | index | search | device | build s | index MiB | RSS Δ MiB | batch QPS | "
    "1-query QPS | recall@K | speed-up vs flat | cand. Recall@K (Δ vs exact) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_row(r: Row) -> str:
    cand = "–"
    if r.cand_recall is not None and r.exact_recall:
        cand = (
            f"{r.cand_recall:.4f} ({(r.cand_recall - r.exact_recall) / r.exact_recall * 100:+.2f}%)"
        )
    return (
        f"| {r.data} | {r.index} | {r.search} | {r.device} | {r.build_s:.2f} | {r.index_mib:.1f} | "
        f"{r.rss_delta_mib:.0f} | {r.batch_qps:,.0f} | {r.single_qps:,.0f} | {r.recall:.4f} | "
        f"{r.speedup:.1f}x | {cand} |"
    )


def run_candidates_context(run_dir: Path, metric: str, k: int) -> tuple:
    from recsys_cl.jobs.folder import RunFolder
    from recsys_cl.jobs.stages.parts import test_exclusions

    run = RunFolder(run_dir)
    user_emb, item_emb = run.embeddings()
    user, item = user_emb, item_emb
    if metric == "cosine":
        user, item = normalize_rows(user), normalize_rows(item)
    test = run.split.user_items("test")
    excl = test_exclusions(run.split)
    exact = evaluate(
        torch.from_numpy(user), torch.from_numpy(item), test, excl, ks=(k,), metrics=("recall",)
    ).metrics[f"recall@{k}"]
    return (user_emb, item_emb), (user_emb, test, excl, exact)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, help="a `recsys-cl train` run folder (data set a)")
    parser.add_argument("--skip-synthetic", action="store_true", help="only the run's data")
    parser.add_argument(
        "--n", type=int, default=1_000_000, help="synthetic items (default 1,000,000)"
    )
    parser.add_argument("--dim", type=int, default=64, help="synthetic dimension (default 64)")
    parser.add_argument(
        "--queries", type=int, default=10_000, help="synthetic queries (default 10,000)"
    )
    parser.add_argument(
        "--clusters",
        type=int,
        default=None,
        help="synthetic mixture components (default: n / 1000)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=0.5,
        help="std of points around their N(0, I) centre (default 0.5)",
    )
    parser.add_argument(
        "--run-queries",
        type=int,
        default=10_000,
        help="users of the run used as queries (default 10,000; all if fewer)",
    )
    parser.add_argument(
        "--kinds",
        type=lambda s: s.split(","),
        default=["flat", "ivf", "ivfpq", "hnsw"],
        help="comma-separated index kinds (default flat,ivf,ivfpq,hnsw)",
    )
    parser.add_argument(
        "--factory",
        action="append",
        default=[],
        metavar="STRING",
        help="also a FAISS factory string, e.g. 'IVF4096,SQ8' (repeatable)",
    )
    parser.add_argument("--metric", choices=["ip", "cosine"], default="ip")
    parser.add_argument("-k", type=int, default=20, help="K of recall@K (default 20)")
    parser.add_argument(
        "--nlist", type=int, default=None, help="IVF lists (default 4*sqrt(N), ≤ N/39)"
    )
    parser.add_argument(
        "--nprobe",
        type=_ints,
        default=[8, 16, 32, 64, 128],
        help="IVF nprobe values to sweep (default 8,16,32,64,128)",
    )
    parser.add_argument(
        "--ef-search",
        type=_ints,
        default=[32, 64, 128, 256],
        help="HNSW efSearch values to sweep (default 32,64,128,256)",
    )
    parser.add_argument("--pq-m", type=int, default=16, help="PQ sub-quantizers (default 16)")
    parser.add_argument("--pq-bits", type=int, default=8, help="PQ bits per code (default 8)")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW M (default 32)")
    parser.add_argument(
        "--ef-construction", type=int, default=200, help="HNSW efConstruction (default 200)"
    )
    parser.add_argument(
        "--single",
        type=int,
        default=1000,
        help="queries timed one at a time for the single-query QPS (default 1000)",
    )
    parser.add_argument(
        "--no-candidates",
        action="store_true",
        help="skip the run's candidate Recall@K column (one full pass per setting)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="cpu",
        help="FAISS device (default cpu; auto uses a GPU when FAISS sees one)",
    )
    parser.add_argument("--threads", type=int, default=None, help="faiss.omp_set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs, "
        f"{faiss.get_num_gpus()} GPUs visible, Python {platform.python_version()}; K={args.k}, "
        f"metric {args.metric}, device {args.device}\n"
    )
    print(HEADER)
    rows: list[Row] = []
    rng = np.random.default_rng(args.seed)
    if args.run is not None:
        (user_emb, item_emb), context = run_candidates_context(args.run, args.metric, args.k)
        n_users = user_emb.shape[0]
        pick = np.sort(rng.choice(n_users, size=min(args.run_queries, n_users), replace=False))
        label = f"{args.run.name} {item_emb.shape[0]:,}x{item_emb.shape[1]}"
        rows += bench_dataset(
            label, item_emb, user_emb[pick], args, None if args.no_candidates else context
        )
    if not args.skip_synthetic:
        clusters = args.clusters or max(1, args.n // 1000)
        start = time.perf_counter()
        items, queries = clustered(args.n, args.queries, args.dim, clusters, args.spread, args.seed)
        print(f"<!-- generated {args.n:,} x {args.dim} in {time.perf_counter() - start:.1f} s -->")
        rows += bench_dataset(f"synthetic {args.n:,}x{args.dim}", items, queries, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
