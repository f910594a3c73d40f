"""What MLflow tracking costs a training run: the per-epoch log call, against an epoch's time.

A tracked epoch logs one batch (4 losses, the epoch time and, on evaluated epochs, Recall /
NDCG / Precision / HitRate / MRR at 3 cut-offs) to the store. This times that call on a fresh
SQLite store (the default) with the library's own tracker, after the store is created.

Example:
    python benchmarks/bench_tracking.py --epochs 200 --eval-every 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from recsys_cl.jobs.stages.record import epoch_logger
from recsys_cl.tracking.mlflow_tracker import mlflow_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=200, help="epochs logged (default 200)")
    parser.add_argument(
        "--eval-every", type=int, default=5, help="evaluated every N epochs (default 5)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlruns.db'}"
        start = time.perf_counter()
        with mlflow_run(uri, "bench") as tracker:
            opened = time.perf_counter() - start
            log = epoch_logger(tracker, "val")
            plain, evaluated = [], []
            for epoch in range(1, args.epochs + 1):
                record = {"epoch": epoch, "seconds": 0.5}
                record.update({f"loss/{t}": 1.0 / epoch for t in ("rec", "cl", "reg", "total")})
                is_eval = epoch % args.eval_every == 0
                if is_eval:
                    record.update(
                        {
                            f"{m}@{k}": 0.1
                            for m in ("recall", "ndcg", "precision", "hit_rate", "mrr")
                            for k in (10, 20, 50)
                        }
                    )
                t = time.perf_counter()
                log(record)
                (evaluated if is_eval else plain).append(time.perf_counter() - t)
    print(f"new SQLite store created and run opened in {opened:.2f} s (schema migrations)")
    print(
        f"per-epoch log, losses only:    median {statistics.median(plain) * 1e3:.1f} ms "
        f"over {len(plain)} epochs"
    )
    print(
        f"per-epoch log, with 15 metrics: median {statistics.median(evaluated) * 1e3:.1f} ms "
        f"over {len(evaluated)} epochs"
    )


if __name__ == "__main__":
    main()
