r"""Filtered search on a large synthetic catalogue: an allow-list that excludes half the items,
through flat, IVF and HNSW, as a FAISS ID selector (what the library does) and as over-fetch
and filter (the alternative), against exact filtered search.

Data: N x D vectors from the Gaussian mixture of ``bench_index.py`` (N/1000 centres, spread
0.5; queries drawn the same way), so the figures sit beside that benchmark's 1M x 64 table.
A random ``--excluded`` fraction of the items (default 0.5) is left out of the allow-list.

The reference is exact filtered search: the flat index searched through
``search_filtered(..., allow=...)`` (the library's path), checked row for row against
``exact_filtered_top_k`` (every item scored in NumPy, disallowed ones masked). For each index:

- ``none``: the unfiltered search (its recall is against the unfiltered exact top-K; what a
  filter costs or saves is read against this row's QPS);
- ``selector``: ``search_filtered(index, queries, K, allow=...)``, an ``IDSelectorBitmap``
  passed with the search; ``short`` counts rows the index returned fewer than K items for;
- ``selector + fallback``: the same with the item embeddings given, so short rows are
  searched exactly (what the candidate model runs): every row has K items;
- ``over-fetch``: an unfiltered search for K' = 2K / (allowed fraction) items (a power of two),
  disallowed ones dropped, rows still short searched again for 4K', ... up to I: the
  alternative to a selector.

Recall@K is |found ∩ exact filtered top-K| / K, averaged over queries; "batch QPS" searches all
queries in one call (median of ``--repeats`` calls); "vs none" is that QPS over the same index
setting's unfiltered QPS (what the filter costs, >1: it saves). Every index is built through
``build_index`` (``recsys-cl index`` builds the same). Single-threaded runs pin FAISS and BLAS
with ``OMP_NUM_THREADS=1`` (and ``--threads 1``); the header line prints the thread count.

Examples:
    # the RESULTS.md run: 1M x 64, 1,000 queries, 1 thread on core 1 (about 15 min)
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_filters.py \
        --threads 1 --json benchmarks/results/bench_filters_1m.json
    # a quick check (about 10 s)
    OMP_NUM_THREADS=1 python benchmarks/bench_filters.py --n 20000 --queries 200 --threads 1
    # IVF only, 200k items, a quarter of the catalogue excluded
    python benchmarks/bench_filters.py --n 200000 --kinds flat,ivf --excluded 0.25
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import clustered  # noqa: E402  (same data as the index benchmarks)
from recsys_cl.config import IndexSpec  # noqa: E402
from recsys_cl.retrieval import (  # noqa: E402
    AllowList,
    ItemIndex,
    build_index,
    exact_filtered_top_k,
    recall_vs_exact,
    search_filtered,
)

KINDS = ("flat", "ivf", "hnsw")


@dataclass
class Row:
    index: str
    search: str
    filter: str
    batch_qps: float
    vs_none: float
    recall: float
    short_rows: int


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def timed(
    search: Callable[[], np.ndarray], n_queries: int, repeats: int
) -> tuple[np.ndarray, float]:
    """(the items of the last call, median batch QPS over ``repeats`` calls)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = search()
        seconds.append(time.perf_counter() - start)
    return items, n_queries / float(np.median(seconds))


def overfetch(index: ItemIndex, queries: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """Over-fetch and filter: K' = 2K / allowed fraction (a power of two), disallowed items
    dropped; rows short of K searched again with 4x K' until K' reaches I. Returns items
    int64 [B, K] (-1 past a short row's end)."""
    n_items, n_allowed = len(allowed), int(allowed.sum())
    fetch = int(2 ** np.ceil(np.log2(2 * k * n_items / max(n_allowed, 1))))
    out = np.full((len(queries), k), -1, dtype=np.int64)
    todo = np.arange(len(queries))
    while todo.size:
        fetch = min(fetch, n_items)
        items = index.search(queries[todo], fetch)[1]
        keep = (items >= 0) & allowed[np.maximum(items, 0)]
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        kept = np.take_along_axis(keep, order, axis=1)
        out[todo] = np.where(kept, np.take_along_axis(items, order, axis=1), -1)
        if fetch >= n_items:
            break
        todo, fetch = todo[kept.sum(axis=1) < min(k, n_allowed)], fetch * 4
    return out


def specs(args: argparse.Namespace) -> list[tuple[IndexSpec, str, list[dict[str, int]]]]:
    out: list[tuple[IndexSpec, str, list[dict[str, int]]]] = []
    for kind in args.kinds:
        if kind == "flat":
            out.append((IndexSpec(kind="flat"), "–", [{}]))
        elif kind == "ivf":
            out.append((IndexSpec(kind="ivf"), "nprobe", [{"nprobe": p} for p in args.nprobe]))
        else:
            out.append(
                (IndexSpec(kind="hnsw"), "efSearch", [{"ef_search": e} for e in args.ef_search])
            )
    return out


def measure(
    index: ItemIndex,
    search: str,
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    allow: AllowList,
    unfiltered_exact: np.ndarray,
    exact: np.ndarray,
    repeats: int,
) -> list[Row]:
    """The four rows of one index setting (see the module doc)."""
    runs: list[tuple[str, Callable[[], np.ndarray], np.ndarray]] = [
        ("none", lambda: index.search(queries, k)[1], unfiltered_exact),
        ("selector", lambda: search_filtered(index, queries, k, allow=allow)[0], exact),
        (
            "selector + fallback",
            lambda: search_filtered(index, queries, k, allow=allow, item_emb=items)[0],
            exact,
        ),
        ("over-fetch", lambda: overfetch(index, queries, k, allow.mask), exact),
    ]
    out: list[Row] = []
    for name, run, reference in runs:
        found, qps = timed(run, len(queries), repeats)
        short = int(((found >= 0).sum(axis=1) < k).sum())
        vs_none = qps / out[0].batch_qps if out else 1.0
        recall = recall_vs_exact(found, reference)
        out.append(Row(index.meta.factory, search, name, qps, vs_none, recall, short))
    return out


def markdown(r: Row) -> str:
    return (
        f"| {r.index} | {r.search} | {r.filter} | {r.batch_qps:,.0f} | {r.vs_none:.2f}× | "
        f"{r.recall:.4f} | {r.short_rows:,} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="items (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=64, help="dimension (default 64)")
    parser.add_argument("--queries", type=int, default=1000, help="queries (default 1,000)")
    parser.add_argument("--spread", type=float, default=0.5, help="noise std around a centre")
    parser.add_argument("-k", type=int, default=20, help="K of recall@K (default 20)")
    parser.add_argument(
        "--excluded", type=float, default=0.5, help="fraction of items not allowed (default 0.5)"
    )
    parser.add_argument(
        "--kinds",
        type=lambda s: s.split(","),
        default=list(KINDS),
        help="indexes, comma-separated: flat, ivf, hnsw (default all)",
    )
    parser.add_argument("--nprobe", type=_ints, default=[8, 32], help="IVF nprobe (8,32)")
    parser.add_argument("--ef-search", type=_ints, default=[64, 128], help="HNSW efSearch")
    parser.add_argument(
        "--threads", type=int, default=None, help="FAISS threads (default: OMP_NUM_THREADS)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per row, median kept (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"--kinds: unknown {sorted(unknown)}; choose from {', '.join(KINDS)}")
    if not 0 <= args.excluded < 1:
        parser.error(f"--excluded must be in [0, 1), got {args.excluded}")
    for name in ("n", "dim", "queries", "k", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: must be a positive integer, got {getattr(args, name)}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: must be a positive integer, got {args.threads}")
        faiss.omp_set_num_threads(args.threads)

    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; N={args.n:,} D={args.dim} queries={args.queries:,} "
        f"K={args.k}, inner product, CPU; {args.excluded:.0%} of the items excluded"
    )
    start = time.perf_counter()
    items, queries = clustered(
        args.n, args.queries, args.dim, max(1, args.n // 1000), args.spread, args.seed
    )
    rng = np.random.default_rng(args.seed + 1)
    allow = AllowList.of_items(np.flatnonzero(rng.random(args.n) >= args.excluded), args.n)
    print(
        f"generated in {time.perf_counter() - start:.1f} s; {allow.n_allowed:,} items allowed\n",
        flush=True,
    )

    k, nq = args.k, args.queries
    flat = build_index(items, IndexSpec(kind="flat"), device="cpu")
    unfiltered_exact = flat.search(queries, k)[1]
    exact, exact_scores = search_filtered(flat, queries, k, allow=allow)
    oracle, oracle_scores = exact_filtered_top_k(queries, items, k, allow=allow)
    same = int((exact == oracle).all(axis=1).sum())
    print(
        f"exact filtered search (flat + selector) = NumPy oracle on {same:,} of {nq:,} queries "
        f"(recall {recall_vs_exact(exact, oracle):.6f}; largest score gap at equal rank "
        f"{float(np.abs(exact_scores - oracle_scores).max()):.1e}; "
        f"{int((exact >= 0).sum(axis=1).min())} to {int((exact >= 0).sum(axis=1).max())} items "
        f"per query; none disallowed: {bool(allow.mask[exact].all())})\n"
    )
    del flat
    gc.collect()

    print(
        "| index | search | filter | batch QPS | vs none | recall@K vs exact filtered | "
        "short rows |\n|---|---|---|---|---|---|---|",
        flush=True,
    )
    rows: list[Row] = []
    for spec, param, settings in specs(args):
        index = build_index(items, spec, device="cpu")
        print(f"<!-- {index.meta.factory} built in {index.meta.build_seconds:.1f} s -->")
        for setting in settings:
            if setting:
                index.set_search_params(**setting)
            search = f"{param} {next(iter(setting.values()))}" if setting else "–"
            for row in measure(
                index, search, queries, items, k, allow, unfiltered_exact, exact, args.repeats
            ):
                rows.append(row)
                print(markdown(row), flush=True)
        del index
        gc.collect()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
