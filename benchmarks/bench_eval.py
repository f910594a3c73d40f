"""Time the full-ranking evaluator on Gowalla (LightGCN split): all users x all items.

Example:
    python benchmarks/bench_eval.py --ks 10 20 50 --repeats 3
    python benchmarks/bench_eval.py --device cuda --auc
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.metrics import evaluate

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla"


def read_adjacency(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) pairs of a LightGCN-format file: each line ``user item item ...``.

    Vectorized: token starts are found on the raw bytes and mapped to their line by a search
    over the newline positions, so no Python loop runs per line.
    """
    text = path.read_bytes()
    tokens = np.array(text.split(), dtype=np.int64)
    raw = np.frombuffer(text, dtype=np.uint8)
    space = np.isin(raw, np.frombuffer(b" \t\r\n", dtype=np.uint8))
    token_start = np.flatnonzero(~space & np.concatenate([[True], space[:-1]]))
    line_of_token = np.searchsorted(np.flatnonzero(raw == ord("\n")), token_start, side="right")
    is_head = np.concatenate([[True], line_of_token[1:] != line_of_token[:-1]])
    per_line = np.diff(np.append(np.flatnonzero(is_head), len(tokens)))
    return np.repeat(tokens[is_head], per_line - 1), tokens[~is_head]


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR,
                        help="folder with train.txt and test.txt (default: %(default)s)")
    parser.add_argument("--embeddings", type=Path, default=None,
                        help="a .pt file holding {'user': [U, D], 'item': [I, D]} "
                        "(default: random normal)")
    parser.add_argument("--dim", type=int, default=64, help="D of random embeddings")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--auc", action="store_true", help="also compute per-user AUC")
    parser.add_argument("--chunk-size", type=int, default=None, help="users per chunk (auto)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    missing = [name for name in ("train.txt", "test.txt") if not (args.data_dir / name).is_file()]
    if missing:
        parser.error(f"{args.data_dir} lacks {', '.join(missing)} (see --data-dir)")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_u, train_i = read_adjacency(args.data_dir / "train.txt")
    test_u, test_i = read_adjacency(args.data_dir / "test.txt")
    n_users = int(max(train_u.max(), test_u.max())) + 1
    n_items = int(max(train_i.max(), test_i.max())) + 1
    train = UserItems.from_pairs(train_u, train_i, n_users, n_items)
    test = UserItems.from_pairs(test_u, test_i, n_users, n_items)
    load_s = time.perf_counter() - t0

    device = torch.device(args.device)
    if args.embeddings is not None:
        tables = torch.load(args.embeddings, map_location=device, weights_only=True)
        user_emb, item_emb = tables["user"], tables["item"]
    else:
        gen = torch.Generator().manual_seed(args.seed)
        user_emb = torch.randn(n_users, args.dim, generator=gen).to(device)
        item_emb = torch.randn(n_items, args.dim, generator=gen).to(device)

    def run():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = evaluate(user_emb, item_emb, test, exclude=train, ks=args.ks, auc=args.auc,
                          chunk_size=args.chunk_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - start_cpu, result

    run()  # warm-up
    times, cpu_times, result = [], [], None
    for _ in range(args.repeats):
        seconds, cpu_seconds, result = run()
        times.append(seconds)
        cpu_times.append(cpu_seconds)

    print(f"data: {n_users} users x {n_items} items, {train.nnz} train pairs, {test.nnz} test "
          f"pairs (loaded in {load_s:.2f} s)")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"D={user_emb.shape[1]}, ks={tuple(args.ks)}, auc={args.auc}, "
          f"chunk_size={args.chunk_size or 'auto'}")
    print(f"evaluate: median {statistics.median(times):.3f} s over {args.repeats} runs "
          f"(all: {', '.join(f'{t:.3f}' for t in times)}) after 1 warm-up; "
          f"process CPU time median {statistics.median(cpu_times):.3f} s")
    print(f"users evaluated {result.n_users_evaluated}, skipped {result.n_users_skipped}, "
          f"relevant-but-excluded pairs {result.n_relevant_excluded}")
    print("metrics: " + ", ".join(f"{k}={v:.5f}" for k, v in result.metrics.items()))
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
