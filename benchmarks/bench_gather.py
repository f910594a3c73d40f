"""Time the backward of a batch's row gathers: one indexing per id tensor vs one gather.

A BPR batch reads the rows of its users, positives and negatives from the final and the layer-0
embeddings of an [N, D] table that requires grad. Indexed apart, that is six gathers, and each
one's backward allocates a zero gradient of the whole table to scatter into; gathered at once
(``Propagation.rows``), one. Reported: median milliseconds of forward + backward over
``--repeats`` timed runs after 3 untimed ones, at Gowalla's size by default:

    python benchmarks/bench_gather.py --threads 2

Results go in benchmarks/RESULTS.md (§ Training speed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from recsys_cl.models.encoders import take_rows


def _median_ms(step: Callable[[], torch.Tensor], weight: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(repeats + 3):
        weight.grad = None
        start = time.perf_counter()
        step().backward()
        if i >= 3:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", type=int, default=29_858 + 40_981, help="N (default: Gowalla's)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(0.1 * torch.randn(args.nodes, args.dim, generator=g))
    ids = [torch.randint(args.nodes, (args.batch,), generator=g) for _ in range(3)]
    flat = torch.cat(ids)

    def apart() -> torch.Tensor:  # user, positive, negative from final and ego: six gathers
        return sum(((weight[i] ** 2).sum() for i in ids + ids), torch.zeros(()))

    def once() -> torch.Tensor:  # the same rows, one gather from each of the two sources
        return sum(((take_rows(weight, flat) ** 2).sum() for _ in range(2)), torch.zeros(()))

    print(f"N={args.nodes} D={args.dim} B={args.batch} threads={torch.get_num_threads()}")
    print(f"six gathers apart  {_median_ms(apart, weight, args.repeats):7.2f} ms")
    print(f"one gather         {_median_ms(once, weight, args.repeats):7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
