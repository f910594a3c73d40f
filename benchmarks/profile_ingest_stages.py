"""Where a lazy preparation's memory goes: peak and closing RSS of each stage of
recsys_cl/data/lazy.py, in this process, sampled every 20 ms.

Runs ``prepare_lazy`` with bench_ingest.py's recipe (implicit threshold 2.0, 5-core, ratio
split 0.7/0.1/0.2, de-duplication ``latest``) on a CSV it wrote (``--keep``), wrapping each
stage function. "peak" is the largest RSS seen while the stage ran (stages nest: the indexing
and merge steps run inside ``_write_prepared``); "after" is RSS when it returned, which keeps
what the allocators have not handed back yet.

    POLARS_MAX_THREADS=2 python benchmarks/profile_ingest_stages.py /tmp/ingest/log_50000000.csv
"""

from __future__ import annotations

import argparse
import functools
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import recsys_cl.data.lazy as lazy

STAGES = (
    "scan_log",
    "_sink_buckets",
    "_dedupe_buckets",
    "_k_core",
    "_split",
    "_write_prepared",
    "_fit_id_maps",
    "_index_parts",
    "_merge",
)


def rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise SystemExit("no /proc/self/status: this profile runs on Linux")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", type=Path, help="a CSV written by bench_ingest.py --keep")
    args = p.parse_args(argv)
    current = ["imports"]
    peaks: dict[str, int] = {}

    def sample() -> None:
        while True:
            peaks[current[0]] = max(peaks.get(current[0], 0), rss_mib())
            time.sleep(0.02)

    def wrap(name: str) -> None:
        inner = getattr(lazy, name)

        @functools.wraps(inner)
        def stage(*a: Any, **k: Any) -> Any:
            outer, current[0] = current[0], name
            peaks[name] = 0  # this call's peak: a stage called per part reports each call
            start = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                seconds = time.perf_counter() - start
                print(
                    f"| {name} | {seconds:.1f} | {peaks.get(name, 0)} | {rss_mib()} |", flush=True
                )
                current[0] = outer

        setattr(lazy, name, stage)

    for name in STAGES:
        wrap(name)
    threading.Thread(target=sample, daemon=True).start()
    print(f"imports: RSS {rss_mib()} MiB\n")
    print("| stage | s | peak MiB | after MiB |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        lazy.prepare_lazy(
            args.log,
            Path(tmp) / "out",
            split="ratio",
            test_ratio=0.2,
            val_ratio=0.1,
            implicit_threshold=2.0,
            dedupe="latest",
            user_k=5,
            item_k=5,
            rng=np.random.default_rng(0),
        )
        shutil.rmtree(Path(tmp) / "out")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
