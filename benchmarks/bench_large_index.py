"""IVF-PQ with a refine stage on a large synthetic catalogue: recall@K against exact search,
memory, throughput and build time, next to the flat index and plain IVF-PQ.

Data: N x D vectors from the Gaussian mixture of ``bench_index.py`` (N/1000 centres drawn from
N(0, I), every point a centre plus ``spread`` x N(0, I) noise; queries drawn the same way), so
the numbers sit next to that benchmark's 1M x 64 table. Within a cluster the noise is isotropic:
the top-K of a query is decided by 64 independent noise coordinates, which no code much shorter
than ~6 bits per dimension can order (the hard case for compression; learned embeddings with a
decaying spectrum compress better).

Every index is built through ``build_index`` (``kind: ivfpq`` with ``refine``), so what is
measured is what ``recsys-cl index`` builds. One build per refine codec; nprobe and k_factor are
swept on it (``k_factor 1`` re-ranks only the base's own top-K, so its recall is plain IVF-PQ's).
Memory is the serialized index (``.faiss`` bytes), "base" its IVF-PQ part alone. With --mmap the
first refine index is also saved, loaded with ``mmap=True`` and searched again.

Examples:
    OMP_NUM_THREADS=2 python benchmarks/bench_large_index.py --n 200000 --queries 1000
    OMP_NUM_THREADS=2 python benchmarks/bench_large_index.py --refine sq8 --mmap
    OMP_NUM_THREADS=2 python benchmarks/bench_large_index.py --refine sq6,sq4 --no-flat
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import clustered  # noqa: E402  (same data as the index benchmark)
from recsys_cl.config import IndexSpec  # noqa: E402
from recsys_cl.retrieval import ItemIndex, build_index, load_index, recall_vs_exact, save_index  # noqa: E402


@dataclass
class Row:
    index: str
    search: str
    build_s: float
    index_mib: float
    base_mib: float
    of_flat: float
    batch_qps: float
    recall: float


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def anon_rss_mib() -> float:
    """Anonymous resident memory of this process, i.e. not file-backed pages; NaN where
    /proc/self/status does not exist (not Linux)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return float("nan")
    for line in status.read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(index: ItemIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    found = index.search(queries, k)[1]
    return found, len(queries) / (time.perf_counter() - start)


def markdown(r: Row) -> str:
    return (
        f"| {r.index} | {r.search} | {r.build_s:.1f} | {r.index_mib:.1f} | {r.base_mib:.1f} | "
        f"1/{1 / r.of_flat:.1f} | {r.batch_qps:,.0f} | {r.recall:.4f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 3)[3],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="items (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=64, help="dimension (default 64)")
    parser.add_argument("--queries", type=int, default=2000, help="queries (default 2,000)")
    parser.add_argument("--spread", type=float, default=0.5, help="noise std around a centre (0.5)")
    parser.add_argument("-k", type=int, default=20, help="K of recall@K (default 20)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4*sqrt(N))")
    parser.add_argument("--pq-m", type=int, default=16, help="PQ sub-quantizers (default 16)")
    parser.add_argument("--pq-bits", type=int, default=8, help="PQ bits per code (default 8)")
    parser.add_argument(
        "--refine",
        type=lambda s: s.split(","),
        default=["sq8"],
        help="refine codecs, comma-separated: flat, fp16, sq8, sq6, sq4 (default sq8)",
    )
    parser.add_argument("--nprobe", type=_ints, default=[32], help="nprobe values (default 32)")
    parser.add_argument(
        "--k-factor", type=_ints, default=[1, 4, 16, 64], help="k_factor values (default 1,4,16,64)"
    )
    parser.add_argument(
        "--no-flat", action="store_true", help="skip the flat row (exact search still runs)"
    )
    parser.add_argument(
        "--mmap", action="store_true", help="also load the first refine index with mmap"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; N={args.n:,} D={args.dim} queries={args.queries:,} "
        f"K={args.k}, inner product, CPU"
    )
    start = time.perf_counter()
    items, queries = clustered(
        args.n, args.queries, args.dim, max(1, args.n // 1000), args.spread, args.seed
    )
    print(f"generated in {time.perf_counter() - start:.1f} s\n")
    print(
        "| index | search | build s | index MiB | base MiB | of flat | batch QPS | recall@K |\n"
        "|---|---|---|---|---|---|---|---|",
        flush=True,
    )

    rows: list[Row] = []
    flat = build_index(items, IndexSpec(kind="flat"), device="cpu")
    flat_mib = len(flat.serialize()) / 2**20
    exact, flat_qps = timed(flat, queries, args.k)
    if not args.no_flat:
        rows.append(
            Row(
                "Flat (exact)", "–", flat.meta.build_seconds, flat_mib, flat_mib, 1.0, flat_qps, 1.0
            )
        )
        print(markdown(rows[-1]), flush=True)
    del flat
    gc.collect()

    mmap_done = not args.mmap
    for refine in args.refine:
        spec = IndexSpec(
            kind="ivfpq", nlist=args.nlist, pq_m=args.pq_m, pq_bits=args.pq_bits, refine=refine
        )
        index = build_index(items, spec, device="cpu")
        cpu = faiss.downcast_index(index.cpu_index())
        size = len(index.serialize()) / 2**20
        base = faiss.serialize_index(cpu.base_index).size / 2**20
        for nprobe in args.nprobe:
            for k_factor in args.k_factor:
                index.set_search_params(
                    nprobe=min(nprobe, index.meta.nlist or nprobe), k_factor=k_factor
                )
                found, qps = timed(index, queries, args.k)
                rows.append(
                    Row(
                        index.meta.factory,
                        f"nprobe {nprobe}, k_factor {k_factor}",
                        index.meta.build_seconds,
                        size,
                        base,
                        size / flat_mib,
                        qps,
                        recall_vs_exact(found, exact),
                    )
                )
                print(markdown(rows[-1]), flush=True)
        if not mmap_done:
            mmap_done = True
            with tempfile.TemporaryDirectory() as tmp:
                save_index(index, Path(tmp) / "idx.faiss")
                last = index.spec
                del index, cpu
                gc.collect()
                before = anon_rss_mib()
                t0 = time.perf_counter()
                loaded = load_index(Path(tmp) / "idx.faiss", device="cpu", mmap=True)
                load_s = time.perf_counter() - t0
                loaded.set_search_params(nprobe=last.nprobe, k_factor=last.k_factor)
                found, qps = timed(loaded, queries, args.k)
                grew = anon_rss_mib() - before
                rows.append(
                    Row(
                        f"{loaded.meta.factory} (mmap)",
                        f"nprobe {last.nprobe}, k_factor {last.k_factor}",
                        load_s,
                        size,
                        base,
                        size / flat_mib,
                        qps,
                        recall_vs_exact(found, exact),
                    )
                )
                print(
                    markdown(rows[-1])
                    + f" <!-- mmap load {load_s:.2f} s, anonymous RSS +{grew:.0f} MiB -->",
                    flush=True,
                )
                del loaded
        else:
            del index, cpu
        gc.collect()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
