"""EASE's fit time against the catalogue size: the cubic Cholesky inverse that
``recsys_cl.models.classic.ease_seconds_estimate`` predicts (and the baseline step uses to skip
EASE when one fit would not fit its budget).

    python benchmarks/bench_ease.py --items 2000 4000 6000 8000 --threads 2

Random logs of 200,000 pairs over 5,000 users; prints seconds and I³ per second per size.
Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.models.classic import ease_item_matrix, ease_seconds_estimate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, nargs="+", default=[2000, 4000, 6000, 8000])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
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
