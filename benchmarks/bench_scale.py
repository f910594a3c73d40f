"""Full-graph vs sampled-subgraph training as the graph grows: time per batch, per epoch and
per interaction, peak RSS, on synthetic long-tail logs of about 1M, 4M and 16M interactions.

The logs scale the test fixture's generator (tests/conftest.py ``make_long_tail_log``): item i
drawn with probability ∝ 1 / (i + 1)^1.1, user activity 3 + a geometric draw around 12, as
many items as users; here drawn for all users at once (with replacement, duplicate pairs then
dropped, so a log holds somewhat fewer interactions than its nominal size).

Each (size, mode) runs in a fresh child process, so its peak RSS (``ru_maxrss`` of the child
itself) is that configuration's alone. A child builds the log, the graph and XSimGCL with the
paper settings (64 dims, 2 layers, batch 2048), then trains through the real ``Trainer``: one
warm-up epoch of ``--warmup`` batches and one timed epoch of ``--batches`` batches (an edge
sampler that hands out only that many rows), then times one full no-grad propagation (what
evaluation and export run in either mode). Seconds per epoch are the timed per-batch seconds
times the epoch's batch count (a projection: a full epoch of the 16M log takes hours in
full-graph mode). Sampled mode uses ``--fanouts`` (default 20 10) and lazy Adam, as
``train.sampled`` does by default.

    python benchmarks/bench_scale.py                      # 1M, 4M, 16M; both modes
    python benchmarks/bench_scale.py --sizes 1000000 --modes sampled --batches 10
    python benchmarks/bench_scale.py --plot benchmarks/results/scale.png \\
        --json benchmarks/results/scale.json
    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_scale.py --dataset gowalla

``--dataset gowalla`` (or ml-100k) times the training split of configs/<dataset>/xsimgcl.yaml
instead of a synthetic log (one size).

Prints a Markdown table (the rows of benchmarks/RESULTS.md § Scale); ``--plot`` writes the
log-log PNG of time per interaction and peak RSS against size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
ZIPF = 1.1  # the fixture's item popularity exponent
MIN_ACTIVITY, MEAN_ACTIVITY = 3, 12.0  # the fixture's user activity
BATCH = 2048  # the papers' batch size
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def synthetic_log(n_interactions: int, seed: int):  # -> tuple[np.ndarray, np.ndarray, int, int]
    """(users, items, U, I) of a long-tail log of about ``n_interactions`` unique pairs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_users = max(1, round(n_interactions / MEAN_ACTIVITY))
    n_items = n_users
    extra = rng.geometric(1.0 / (MEAN_ACTIVITY - MIN_ACTIVITY), size=n_users) - 1
    activity = np.minimum(MIN_ACTIVITY + extra, n_items)
    users = np.repeat(np.arange(n_users, dtype=np.int64), activity)
    popularity = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** ZIPF
    cdf = np.cumsum(popularity / popularity.sum())
    items = np.minimum(np.searchsorted(cdf, rng.random(users.size)), n_items - 1)
    keys = np.unique(users * n_items + items)
    return keys // n_items, keys % n_items, n_users, n_items


def child(args: argparse.Namespace) -> dict[str, object]:
    """Measure one (size, mode) in this process; returns the record."""
    import torch

    from recsys_cl.config import XSimGCLConfig
    from recsys_cl.data import UserItems
    from recsys_cl.graph import NeighborSampler, build_graph
    from recsys_cl.training import EpochEdges, Sampling, Schedule, Trainer

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.dataset == "synthetic":
        users, items, n_users, n_items = synthetic_log(args.size, seed=0)
        train = UserItems.from_pairs(users, items, n_users, n_items)
    else:
        from recsys_cl.config import RunConfig, load_config
        from recsys_cl.jobs import build_split

        cfg: RunConfig = load_config(CONFIGS / args.dataset / "xsimgcl.yaml")
        split = build_split(cfg.data, None, cfg.seed)
        train = split.user_items("train")
        users, items, n_users, n_items = train.rows(), train.indices, split.n_users, split.n_items
    graph = build_graph(torch.from_numpy(users), torch.from_numpy(items), n_users, n_items)
    del users, items
    build_s = time.perf_counter() - start
    model = XSimGCLConfig()
    method = model.build(n_users, n_items, torch.Generator().manual_seed(2))

    class FirstRows:
        """Every training edge in a random order, cut to the warm-up, then the timed batches."""

        def __init__(self) -> None:
            self.users = torch.from_numpy(train.rows())
            self.items = torch.from_numpy(train.indices)
            self.calls = 0

        def sample_edges(self, generator: torch.Generator) -> EpochEdges:
            n = BATCH * (args.warmup if self.calls == 0 else args.batches)
            self.calls += 1
            order = torch.randperm(len(self.users), generator=generator)[:n]
            return EpochEdges(users=self.users[order], pos_items=self.items[order])

        def item_marginal(self) -> torch.Tensor:
            raise NotImplementedError("not used: BPR")

    sampled = args.mode == "sampled"
    sampling = Sampling(
        edge_sampler=FirstRows(),
        subgraph=NeighborSampler(graph, args.fanouts) if sampled else None,
        prefetch=args.prefetch,
    )
    trainer = Trainer(
        method,
        graph,
        train,
        schedule=Schedule(epochs=2, batch_size=BATCH, lr=1e-3),
        generator=torch.Generator().manual_seed(0),
        device_generator=torch.Generator().manual_seed(1),
        sampling=sampling,
        progress=False,
    )
    fit = trainer.fit()
    batch_s = fit.history[1]["seconds"] / args.batches
    start = time.perf_counter()
    method.embeddings(graph.adj)
    full_pass_s = time.perf_counter() - start
    n_batches = math.ceil(train.nnz / BATCH)
    return {
        "dataset": args.dataset,
        "size": args.size,
        "mode": args.mode,
        "fanouts": list(args.fanouts) if sampled else None,
        "interactions": int(train.nnz),
        "users": n_users,
        "items": n_items,
        "threads": args.threads,
        "build_seconds": build_s,
        "batches_timed": args.batches,
        "seconds_per_batch": batch_s,
        "batches_per_epoch": n_batches,
        "epoch_seconds_projected": batch_s * n_batches,
        "us_per_interaction": 1e6 * batch_s * n_batches / train.nnz,
        "full_pass_seconds": full_pass_s,
        "loss_rec_timed_epoch": fit.history[1]["loss/rec"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def table(records: list[dict]) -> str:
    head = (
        "| interactions | users = items | mode | s / batch | batches / epoch | s / epoch "
        "(projected) | µs / interaction | full pass s | peak RSS MB |\n"
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r['interactions']:,} | {r['users']:,} | {r['mode']}"
        + (f" {r['fanouts']}" if r["fanouts"] else "")
        + f" | {r['seconds_per_batch']:.3f} | {r['batches_per_epoch']:,} | "
        f"{r['epoch_seconds_projected']:,.0f} | {r['us_per_interaction']:.1f} | "
        f"{r['full_pass_seconds']:.2f} | {r['peak_rss_mb']:,.0f} |"
        for r in records
    ]
    return "\n".join([head, *rows])


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in sorted({r["mode"] for r in records}):
        rs = sorted((r for r in records if r["mode"] == mode), key=lambda r: r["interactions"])
        x = [r["interactions"] for r in rs]
        ax_t.plot(x, [r["epoch_seconds_projected"] for r in rs], "o-", label=mode)
        ax_m.plot(x, [r["peak_rss_mb"] / 1024 for r in rs], "o-", label=mode)
    ax_t.set(xscale="log", yscale="log", xlabel="interactions", ylabel="s / epoch (projected)")
    ax_m.set(xscale="log", yscale="log", xlabel="interactions", ylabel="peak RSS (GiB)")
    ax_m.axhline(8e9 / 2**30, color="grey", linestyle=":", label="8 GB target")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("XSimGCL, 64 dims, 2 layers, batch 2048, CPU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="synthetic", help="synthetic, or a configs/ dataset")
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    p.add_argument("--modes", nargs="+", choices=["full", "sampled"], default=["full", "sampled"])
    p.add_argument("--fanouts", type=int, nargs="+", default=[20, 10])
    p.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    p.add_argument("--full-batches", type=int, default=4, help="timed batches in full mode")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--prefetch", action="store_true", help="sample in a background thread")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=int, default=900, help="seconds per child")
    p.add_argument("--json", type=Path, default=None, help="write the records here")
    p.add_argument("--plot", type=Path, default=None, help="write the log-log PNG here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.sizes) < 1 or args.batches < 1 or args.warmup < 1 or args.threads < 1:
        p.exit(EXIT_USAGE, f"{p.prog}: error: sizes, batches, warmup and threads must be >= 1\n")
    if args.child:
        print(json.dumps(child(args)))
        return 0
    records = []
    sizes = args.sizes if args.dataset == "synthetic" else [0]
    for size in sizes:
        for mode in args.modes:
            batches = args.batches if mode == "sampled" else args.full_batches
            cmd = [
                sys.executable, __file__, "--child", "--size", str(size), "--mode", mode,
                "--batches", str(batches), "--warmup", str(args.warmup),
                "--threads", str(args.threads), "--fanouts", *map(str, args.fanouts),
                "--dataset", args.dataset,
            ] + (["--prefetch"] if args.prefetch else [])
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            start = time.perf_counter()
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False
            )
            if done.returncode != 0:
                print(f"size {size} {mode}: child failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            record = json.loads(done.stdout.strip().splitlines()[-1])
            record["child_wall_seconds"] = time.perf_counter() - start
            records.append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
    print(table(records))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    if args.plot is not None and records:
        plot(records, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
