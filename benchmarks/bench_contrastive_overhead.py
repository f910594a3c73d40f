"""Per-batch cost of the contrastive methods against LightGCN, in one process.

Every method trains on the same fixed batches (full graph, the paper settings of
``bench_train.py``), round after round with the methods alternating, so that a machine that
speeds up or slows down during the run moves every method alike; the figures are medians over
the rounds after the first (a warm-up), the ratio the median of each round's own ratio. What
it answers: how much a batch of XSimGCL or SimGCL costs beyond the LightGCN batch it contains.
Run it once on each side of a change (e.g. in a ``git worktree`` of the older commit, with
``PYTHONPATH`` pointing there) for a before/after ratio:

    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_contrastive_overhead.py
    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_contrastive_overhead.py \\
        --methods lightgcn,xsimgcl --batches 30 --rounds 5 --threads 1

A bad argument or a dataset that cannot be read is one line on stderr, exit code 2. Results
go in benchmarks/RESULTS.md (Training speed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import EXIT_USAGE, _OneLineParser, bench_config, positive_int  # noqa: E402
from recsys_cl.errors import RecsysError  # noqa: E402
from recsys_cl.graph import build_graph  # noqa: E402
from recsys_cl.jobs import build_method, build_split  # noqa: E402
from recsys_cl.models import Batch  # noqa: E402
from recsys_cl.runtime import keep_freed_memory  # noqa: E402

METHODS = ("mf", "lightgcn", "sgl", "simgcl", "xsimgcl")


def method_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in METHODS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(METHODS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="gowalla", help="registered dataset (default gowalla)")
    p.add_argument("--data-dir", default=None, help="folder with <dataset>/ ($RECSYS_CL_DATA)")
    p.add_argument(
        "--methods",
        type=method_list,
        default=["lightgcn", "xsimgcl", "simgcl"],
        help="comma list, the first the base of the ratios (default lightgcn,xsimgcl,simgcl)",
    )
    p.add_argument("--batches", type=positive_int, default=15, help="batches per round")
    p.add_argument("--rounds", type=positive_int, default=4, help="rounds; the first is a warm-up")
    p.add_argument("--batch-size", type=positive_int, default=2048)
    p.add_argument("--threads", type=positive_int, default=2)
    args = p.parse_args(argv)
    try:
        return _bench(args)
    except RecsysError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _bench(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    cfg = bench_config(args.dataset, args.methods[0], 2)
    split = build_split(cfg.data, args.data_dir, cfg.seed)
    train = split.user_items("train")
    users, items = torch.from_numpy(train.rows()), torch.from_numpy(train.indices)
    graph = build_graph(users, items, split.n_users, split.n_items)
    draw = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.batches):
        rows = torch.randint(0, users.numel(), (args.batch_size,), generator=draw)
        negs = torch.randint(0, split.n_items, (args.batch_size,), generator=draw)
        batches.append(Batch(users[rows], items[rows], negs))
    runs = {}
    for name in args.methods:
        torch.manual_seed(0)
        method = build_method(
            bench_config(args.dataset, name, 2).model, split.n_users, split.n_items
        )
        optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
        runs[name] = (method, optimizer, torch.Generator().manual_seed(1))
    ms: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (method, optimizer, generator) in runs.items():
            views = method.epoch_views(graph, generator)
            start = time.perf_counter()
            for batch in batches:
                loss = method.loss(graph.adj, batch, views, generator)
                optimizer.zero_grad()
                loss.total.backward()
                optimizer.step()
            ms[name].append((time.perf_counter() - start) / len(batches) * 1000)
    # Each round's ratio to the base method of the same round: a machine that drifts between
    # rounds moves both sides of a ratio alike. Medians over the rounds after the warm-up.
    first = args.methods[0]
    print(f"{args.dataset}, {args.threads} threads, {args.batches} batches x {args.rounds} rounds")
    for name, values in ms.items():
        kept = values[1:] or values
        ratios = [v / b for v, b in zip(kept, ms[first][1:] or ms[first], strict=True)]
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(
            f"{name:9s} {statistics.median(kept):7.1f} ms/batch  "
            f"{statistics.median(ratios):5.2f}x {first}  (rounds: {rounds})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
