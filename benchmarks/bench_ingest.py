"""Ingestion of a log larger than memory: `recsys-cl data prepare` with data.lazy on a synthetic
long-tail CSV, wall time and peak RSS, against the file's size and its in-memory size.

The log is bench_scale.py's synthetic generator (the test fixture's long tails: item i drawn
with probability ∝ 1 / (i + 1)^1.1, user activity 3 + a geometric draw around 12) with a
timestamp (a permutation: distinct) and a rating 1..5 per row, written as CSV:
``user,item,timestamp,rating``. Its unique pairs are a little fewer than the nominal size, so
the nominal size is scaled up to land near --rows.

Each `data prepare` runs in a fresh measuring child, so its peak RSS (``ru_maxrss`` of its
own child) is that run's alone. The in-memory size is polars' ``estimated_size()`` of the
eagerly read canonical frame (Int64 ids and timestamp, Float64 rating), measured on the
--eager-rows log and scaled by rows. The eager path (data.lazy false) is run on the
--eager-rows log too, for a before/after figure at a size it can hold.

    python benchmarks/bench_ingest.py --rows 50000000 --eager-rows 5000000 --work /tmp/ingest
    python benchmarks/bench_ingest.py --rows 1000000 --eager-rows 1000000 --work /tmp/ingest

Prints a Markdown table (benchmarks/RESULTS.md § Ingestion larger than memory); --keep
leaves the CSV files in --work (they are deleted otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_scale import synthetic_log

# The settings of the measured preparation (a typical implicit-feedback recipe).
THRESHOLD, K, TEST, VAL = 2.0, 5, 0.2, 0.1
UNIQUE_SHARE = 0.8  # unique pairs per nominal interaction of synthetic_log (measured at 1M)


def write_log(rows: int, path: Path, seed: int = 0) -> int:
    """Write a synthetic log of about ``rows`` rows as CSV; return its row count."""
    import numpy as np
    import polars as pl

    users, items, _, _ = synthetic_log(round(rows / UNIQUE_SHARE), seed)
    rng = np.random.default_rng(seed + 1)
    n = users.size
    frame = pl.DataFrame(
        {
            "user": users,
            "item": items,
            "timestamp": 1_500_000_000 + rng.permutation(n).astype(np.int64),
            "rating": rng.integers(1, 6, size=n).astype(np.float64),
        }
    )
    del users, items
    frame.write_csv(path)
    return n


def in_memory_bytes(path: Path) -> int:
    """``estimated_size()`` of the eagerly read canonical frame of ``path``."""
    from recsys_cl.data import read_interactions

    return int(read_interactions(path).estimated_size())


def config(work: Path, log: Path, lazy: bool) -> Path:
    cfg = work / f"{log.stem}-{'lazy' if lazy else 'eager'}.yaml"
    cfg.write_text(
        f"output_dir: {work / 'run'}\n"
        f"data:\n  path: {log}\n  implicit_threshold: {THRESHOLD}\n"
        f"  min_user_interactions: {K}\n  min_item_interactions: {K}\n"
        f"  lazy: {str(lazy).lower()}\n"
        f"  split: {{kind: ratio, test_ratio: {TEST}, val_ratio: {VAL}}}\n"
    )
    return cfg


def measure(cmd: list[str], threads: int) -> dict[str, object]:
    """Run ``cmd`` in a measuring child; its wall seconds and peak RSS."""
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    probe = [sys.executable, __file__, "--measure", "--", *cmd]
    done = subprocess.run(probe, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_measured(cmd: list[str]) -> dict[str, object]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(done.returncode)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(peak_kib / 1024), "stdout": done.stdout}


def prepare(work: Path, log: Path, lazy: bool, threads: int) -> dict[str, object]:
    out = work / f"{log.stem}-{'lazy' if lazy else 'eager'}"
    cmd = ["recsys-cl", "data", "prepare", "-c", str(config(work, log, lazy)), "--out", str(out)]
    record = measure(cmd, threads)
    manifest = json.loads((out / "manifest.json").read_text())
    record.update(rows_kept=sum(manifest["rows"].values()), users=manifest["n_users"])
    record.update(items=manifest["n_items"], out=str(out), cmd=" ".join(cmd))
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=50_000_000, help="rows of the lazy run's log")
    p.add_argument("--eager-rows", type=int, default=5_000_000, help="rows of the eager run's")
    p.add_argument("--work", type=Path, default=Path("/tmp/recsys-cl-ingest"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the CSV files")
    p.add_argument("--json", type=Path, default=None, help="write the records here")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(run_measured(args.cmd)))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    records = []
    small = args.work / f"log_{args.eager_rows}.csv"
    big = args.work / f"log_{args.rows}.csv"
    try:
        sizes = {}
        for path, rows in ((small, args.eager_rows), (big, args.rows)):
            if not path.exists():
                start = time.perf_counter()
                n = write_log(rows, path)
                print(
                    f"wrote {path}: {n:,} rows in {time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        per_row = in_memory_bytes(small) / _rows(small)
        for path in (small, big):
            sizes[path] = {"rows": _rows(path), "file_mib": round(path.stat().st_size / 2**20)}
            sizes[path]["in_memory_mib"] = round(per_row * sizes[path]["rows"] / 2**20)
        for path, lazy in ((small, False), (small, True), (big, True)):
            record = {"log": path.name, "lazy": lazy, **sizes[path]}
            record.update(prepare(args.work, path, lazy, args.threads))
            print(
                json.dumps({k: v for k, v in record.items() if k != "stdout"}),
                file=sys.stderr,
                flush=True,
            )
            records.append(record)
    finally:
        if not args.keep:
            for path in (small, big):
                path.unlink(missing_ok=True)
    print(table(records))
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return 0


def _rows(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) - 1


def table(records: list[dict]) -> str:
    head = (
        "| log rows | CSV file | in memory (eager frame) | path | wall | peak RSS | rows kept |\n"
        "|---:|---:|---:|---|---:|---:|---:|"
    )
    lines = [head]
    for r in records:
        lines.append(
            f"| {r['rows']:,} | {r['file_mib']:,} MiB | {r['in_memory_mib']:,} MiB | "
            f"{'lazy' if r['lazy'] else 'eager'} | {r['wall_s']} s | "
            f"{r['peak_rss_mib']:,} MiB | {r['rows_kept']:,} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
