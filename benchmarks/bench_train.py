"""Training speed and memory: seconds per epoch, full-ranking evaluation time, peak memory.

Measures one method per invocation (so peak RSS belongs to that method alone) on a benchmark
dataset with the paper settings (64 dims, batch 2048, 2 layers). A dataset with its own
train/test files (gowalla, yelp2018, amazon-book) is timed on that split; a single log
(ml-100k, ml-1m) on the split of configs/<dataset>/<method>.yaml, else of the default config:

    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_train.py --method xsimgcl
    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_train.py --dataset ml-100k
    python benchmarks/bench_train.py --method lightgcn --device cuda --epochs 5
    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_train.py --method simgcl --batches 40

``--batches N`` times the first N batches of each epoch only (the epoch's shuffled rows, cut
after N x batch size): a quick, repeatable A/B of a change, not an epoch time.

A bad argument or a dataset that cannot be read is one line on stderr, exit code 2.

Prints one table row (with Recall@20 and NDCG@20 on test after the timed epochs, to check that
a speed change leaves the numbers alone) and, with --json, a JSON record. Results go in
benchmarks/RESULTS.md.
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
from pathlib import Path

import numpy as np
import torch

from recsys_cl.config import RunConfig, load_config
from recsys_cl.data import dataset_names, get_spec
from recsys_cl.errors import RecsysError
from recsys_cl.graph import build_graph
from recsys_cl.jobs import build_method, build_split
from recsys_cl.metrics import evaluate
from recsys_cl.runtime import keep_freed_memory
from recsys_cl.training import EdgeUniformSampler, EpochEdges, Sampling, Schedule, Trainer


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXIT_USAGE = 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (not the usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


class FirstBatches:
    """The default epoch (every training edge, shuffled) cut after its first ``rows`` rows."""

    def __init__(self, edges: EdgeUniformSampler, rows: int) -> None:
        self.edges = edges
        self.rows = rows

    def sample_edges(self, generator: torch.Generator) -> EpochEdges:
        epoch = self.edges.sample_edges(generator)
        return EpochEdges(users=epoch.users[: self.rows], pos_items=epoch.pos_items[: self.rows])

    def item_marginal(self) -> torch.Tensor:
        return self.edges.item_marginal()


def bench_config(dataset: str, method: str, layers: int) -> RunConfig:
    """The paper settings on ``dataset``: its given split (paper protocol) when it ships one,
    else the split of ``configs/<dataset>/<method>.yaml`` (or of the default config)."""
    common = [
        f"data.dataset={dataset}",
        f"model.method={method}",
        f"model.layers={0 if method == 'mf' else layers}",
    ]
    if get_spec(dataset).given_split:
        return load_config(
            None,
            [*common, "data.split.kind=given", "data.split.val_ratio=0", "train.protocol=paper"],
        )
    shipped = CONFIGS / dataset / f"{method}.yaml"
    return load_config(shipped if shipped.is_file() else None, common)


def main(argv: list[str] | None = None) -> int:
    p = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--method", default="xsimgcl", choices=["mf", "lightgcn", "sgl", "simgcl", "xsimgcl"]
    )
    p.add_argument(
        "--dataset",
        default="gowalla",
        choices=dataset_names(),
        help="registered dataset (default gowalla)",
    )
    p.add_argument(
        "--data-dir", default=None, help="folder with <dataset>/ (default $RECSYS_CL_DATA)"
    )
    p.add_argument(
        "--epochs", type=positive_int, default=3, help="timed epochs; the median is reported"
    )
    p.add_argument(
        "--eval-repeats", type=positive_int, default=3, help="timed full-ranking evaluations"
    )
    p.add_argument(
        "--batches",
        type=positive_int,
        default=None,
        help="time only the first N batches of each epoch (default: the whole epoch)",
    )
    p.add_argument("--batch-size", type=positive_int, default=2048)
    p.add_argument("--layers", type=positive_int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)"
    )
    p.add_argument("--json", action="store_true", help="also print a JSON record")
    args = p.parse_args(argv)
    if args.device not in ("cpu", "cuda") or (
        args.device == "cuda" and not torch.cuda.is_available()
    ):
        p.error(f"--device {args.device!r}: cpu, or cuda on a machine with a CUDA GPU")
    try:
        return _bench(args)
    except RecsysError as exc:  # a dataset that is missing, unreadable or fails its checksum
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _bench(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    # As recsys-cl does for its torch jobs (an empty GLIBC_TUNABLES= leaves malloc as it is).
    keep_freed_memory()
    device = torch.device(args.device)
    cfg = bench_config(args.dataset, args.method, args.layers)
    split = build_split(cfg.data, args.data_dir, cfg.seed)
    train = split.user_items("train")
    graph = build_graph(
        torch.from_numpy(train.rows()),
        torch.from_numpy(train.indices),
        split.n_users,
        split.n_items,
    ).to(device)
    torch.manual_seed(cfg.seed)
    method = build_method(cfg.model, split.n_users, split.n_items).to(device)
    trainer = Trainer(
        method,
        graph,
        train,
        schedule=Schedule(epochs=args.epochs, batch_size=args.batch_size, lr=cfg.train.lr),
        sampling=None
        if args.batches is None
        else Sampling(
            edge_sampler=FirstBatches(EdgeUniformSampler(train), args.batches * args.batch_size)
        ),
        generator=torch.Generator().manual_seed(0),
        device_generator=torch.Generator(device).manual_seed(1),
        progress=sys.stderr.isatty(),
    )
    fit = trainer.fit()
    epoch_s = [r["seconds"] for r in fit.history]

    # Test is ranked with the training (and validation, when the split has one) items masked.
    test = split.user_items("test")
    excl = [train] + ([split.user_items("val")] if "val" in split.parts() else [])
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
        "split": cfg.data.split.kind,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "epochs_timed": args.epochs,
        "batches_per_epoch": fit.history[0]["steps"],
        "epoch_seconds": epoch_s,
        "median_epoch_seconds": statistics.median(epoch_s),
        "eval_seconds_median": statistics.median(eval_s[1:]),
        "eval_users": result.n_users_evaluated,
        "recall@20_after_timed_epochs": result.metrics["recall@20"],
        "ndcg@20_after_timed_epochs": result.metrics["ndcg@20"],
        "peak_rss_mb": _peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(
        f"{record['method']:<9} {record['device']:<24} "
        f"epoch {record['median_epoch_seconds']:7.1f}s "
        f"(median of {args.epochs}, {record['batches_per_epoch']} batches)  "
        f"eval {record['eval_seconds_median']:6.2f}s  "
        f"recall@20 {record['recall@20_after_timed_epochs']:.5f}  "
        f"ndcg@20 {record['ndcg@20_after_timed_epochs']:.5f}  "
        f"peak RSS {record['peak_rss_mb']:7.0f} MB"
        + (f"  peak CUDA {record['peak_cuda_mb']:.0f} MB" if record["peak_cuda_mb"] else "")
    )
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
