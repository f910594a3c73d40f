"""Training speed and memory: seconds per epoch, full-ranking evaluation time, peak memory.

Measures one method per invocation (so peak RSS belongs to that method alone) on a benchmark
dataset with the paper settings (64 dims, batch 2048, 2 layers):

    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_train.py --method xsimgcl
    python benchmarks/bench_train.py --method lightgcn --device cuda --epochs 5

Prints one table row and, with --json, a JSON record. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch

from recsys_cl.config import load_config
from recsys_cl.graph import build_graph
from recsys_cl.jobs import build_method, build_split
from recsys_cl.metrics import evaluate
from recsys_cl.training import Trainer


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="xsimgcl", choices=["mf", "lightgcn", "sgl", "simgcl", "xsimgcl"])
    p.add_argument("--dataset", default="gowalla", help="registered dataset (default gowalla)")
    p.add_argument("--data-dir", default=None, help="folder with <dataset>/ (default $RECSYS_CL_DATA)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs; the median is reported")
    p.add_argument("--eval-repeats", type=int, default=3, help="timed full-ranking evaluations")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="also print a JSON record")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(
        None,
        [
            f"data.dataset={args.dataset}",
            "data.split.kind=given",
            "data.split.val_ratio=0",
            "train.protocol=paper",
            f"model.method={args.method}",
            f"model.layers={0 if args.method == 'mf' else args.layers}",
        ],
    )
    split = build_split(cfg.data, args.data_dir, cfg.seed)
    train = split.user_items("train")
    graph = build_graph(
        torch.from_numpy(train.rows()), torch.from_numpy(train.indices), split.n_users, split.n_items
    ).to(device)
    torch.manual_seed(cfg.seed)
    method = build_method(cfg.model, split.n_users, split.n_items).to(device)
    trainer = Trainer(
        method,
        graph,
        train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=cfg.train.lr,
        generator=torch.Generator().manual_seed(0),
        device_generator=torch.Generator(device).manual_seed(1),
        progress=sys.stderr.isatty(),
    )
    fit = trainer.fit()
    epoch_s = [r["seconds"] for r in fit.history]

    test, excl = split.user_items("test"), [train]
    eval_s = []
    for _ in range(args.eval_repeats + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        user, item = method.embeddings(graph.adj)
        result = evaluate(user, item, test, excl, ks=(10, 20, 50))
        if device.type == "cuda":
            torch.cuda.synchronize()
        eval_s.append(time.perf_counter() - start)
    record = {
        "method": args.method,
        "dataset": args.dataset,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "epochs_timed": args.epochs,
        "epoch_seconds": epoch_s,
        "median_epoch_seconds": statistics.median(epoch_s),
        "eval_seconds_median": statistics.median(eval_s[1:]),
        "eval_users": result.n_users_evaluated,
        "recall@20_after_timed_epochs": result.metrics["recall@20"],
        "peak_rss_mb": _peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(
        f"{record['method']:<9} {record['device']:<24} epoch {record['median_epoch_seconds']:7.1f}s "
        f"(median of {args.epochs})  eval {record['eval_seconds_median']:6.2f}s  "
        f"peak RSS {record['peak_rss_mb']:7.0f} MB"
        + (f"  peak CUDA {record['peak_cuda_mb']:.0f} MB" if record["peak_cuda_mb"] else "")
    )
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
