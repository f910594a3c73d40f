"""EASE's fit time against the catalogue size: the cubic Cholesky inverse that
``recsys_cl.models.classic.ease_seconds_estimate`` predicts (and the baseline step uses to skip
EASE when one fit would not fit its budget).

    python benchmarks/bench_ease.py --items 2000 4000 6000 8000 --threads 2
    python benchmarks/bench_ease.py --gram --threads 2

Random logs of 200,000 pairs over 5,000 users; prints seconds and I³ per second per size.
``--gram``: XᵀX by the sparse product EASE uses against a dense product of blocks of 1,024
user rows (what it did before), on an ML-100K-shaped log and a 50,000 x 4,000 one.
Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.models.classic import (
    dense_rows,
    ease_item_matrix,
    ease_seconds_estimate,
    gram_matrix,
)


def _dense_block_gram(train: UserItems) -> torch.Tensor:
    gram = torch.zeros(train.n_items, train.n_items)
    for start in range(0, train.n_users, 1024):
        rows = dense_rows(train, start, start + 1024)
        gram.addmm_(rows.T, rows)
    return gram


def bench_gram() -> None:
    rng = np.random.default_rng(0)
    print("| users x items, pairs | dense blocks s | sparse s | equal |")
    print("|---|---|---|---|")
    for n_users, n_items, n in ((943, 1682, 70_000), (50_000, 4000, 500_000)):
        train = UserItems.from_pairs(
            rng.integers(0, n_users, n), rng.integers(0, n_items, n), n_users, n_items
        )
        start = time.perf_counter()
        dense = _dense_block_gram(train)
        mid = time.perf_counter()
        sparse = gram_matrix(train)
        end = time.perf_counter()
        print(
            f"| {n_users:,} x {n_items:,}, {n:,} | {mid - start:.2f} | {end - mid:.2f} "
            f"| {torch.equal(dense, sparse)} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, nargs="+", default=[2000, 4000, 6000, 8000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gram", action="store_true", help="time XᵀX, sparse against dense blocks")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.gram:
        bench_gram()
        return
    rng = np.random.default_rng(0)
    print("| items | seconds | I³ per second | estimate s |")
    print("|---|---|---|---|")
    for n_items in args.items:
        train = UserItems.from_pairs(
            rng.integers(0, 5000, 200_000), rng.integers(0, n_items, 200_000), 5000, n_items
        )
        start = time.perf_counter()
        ease_item_matrix(train, 500.0)
        seconds = time.perf_counter() - start
        print(
            f"| {n_items:,} | {seconds:.2f} | {n_items**3 / seconds:.2e} "
            f"| {ease_seconds_estimate(n_items):.2f} |"
        )


if __name__ == "__main__":
    main()
