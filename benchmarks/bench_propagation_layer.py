"""Time the PyG ``LightGCNConv`` layer against calling ``sym_spmm`` directly, and measure sampled
subgraph sizes of a training batch.

Part 1: an L-layer propagation (forward + backward with a fixed upstream gradient) of an [N, D]
table over the full normalized CSR adjacency, once through ``recsys_cl.graph.pyg.LightGCNConv``
(PyG ``MessagePassing.propagate`` -> ``message_and_aggregate`` -> ``sym_spmm``) and once through
``sym_spmm`` itself; median milliseconds over interleaved rounds and their ratio.

Part 2: for a BPR batch of B interactions (their users and positive items, one uniform negative
item each), the sampled L-hop subgraph with each ``--fanouts`` list: nodes reached per hop,
stored adjacency entries, and the median sampling time.

Graph: Gowalla's train split (the LightGCN split) when found, else a synthetic graph with
``--synthetic-edges`` random interactions.

Results (indicative: dev box, 2 cores shared with other jobs at load average 5-7, torch
2.13.0+cpu, PyG 2.8.1; Gowalla U=29,858, I=40,981, N=70,839, E=810,128; D=64, L=2, B=2048):

  fwd+bwd ms, min / median of 15      LightGCNConv   sym_spmm      ratio
  --threads 1                         157.0 / 184.8  160.9 / 202.1  0.98 / 0.91
  --threads 2                         285.6 / 359.7  296.3 / 357.7  0.96 / 1.01
  The layer costs what sym_spmm costs: PyG's propagate adds ~25 us per call (58 vs 33 us on a
  200-node graph), invisible next to a Gowalla product.

  sampled subgraph (--threads 1)  nodes per hop          of N    adj entries       sampling
  fanouts [20, 10]                5,680 41,352 68,159    96.2%   734,478 (45.3%)   234 ms
  fanouts [-1, -1]                5,680 61,447 70,819   100.0%   1,607,124 (99.2%) 637 ms
  fanouts [5, 5]                  5,680 22,093 46,838    66.1%   205,986 (12.7%)    49 ms
  (with --threads 2 on the loaded box sampling took 0.9 s and 1.7 s: thread contention.)
  Two hops from 2,048 interactions reach almost all of Gowalla through its hub items, so the
  sampled mode saves little there at B=2048; it is for larger graphs or smaller fanouts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from recsys_cl.graph import BipartiteGraph, NeighborSampler, build_graph, sym_spmm
from recsys_cl.graph.pyg import LightGCNConv

GOWALLA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla" / "train.txt"


def load_graph(path: Path, synthetic_edges: int) -> tuple[str, BipartiteGraph]:
    if path.exists():
        users: list[int] = []
        items: list[int] = []
        with path.open() as f:
            for line in f:
                parts = [int(p) for p in line.split()]
                users.extend([parts[0]] * (len(parts) - 1))
                items.extend(parts[1:])
        u, i = torch.tensor(users), torch.tensor(items)
        return f"gowalla ({path})", build_graph(u, i, int(u.max()) + 1, int(i.max()) + 1)
    gen = torch.Generator().manual_seed(0)
    n_users, n_items = 50_000, 50_000
    u = torch.randint(n_users, (synthetic_edges,), generator=gen)
    i = torch.randint(n_items, (synthetic_edges,), generator=gen)
    return f"synthetic ({synthetic_edges} edges)", build_graph(u, i, n_users, n_items)


def time_layer(
    graph: BipartiteGraph, dim: int, layers: int, repeats: int
) -> tuple[float, float, float, float]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(graph.n_nodes, dim, generator=gen).requires_grad_(True)
    upstream = torch.randn(graph.n_nodes, dim, generator=gen)
    conv = LightGCNConv()

    def via_layer() -> torch.Tensor:
        out = x
        for _ in range(layers):
            out = conv(out, graph.adj)
        return out

    def direct() -> torch.Tensor:
        out = x
        for _ in range(layers):
            out = sym_spmm(graph.adj, out)
        return out

    times: dict[str, list[float]] = {"layer": [], "direct": []}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, fn in (("layer", via_layer), ("direct", direct)):
            start = time.perf_counter()
            out = fn()
            out.backward(upstream)
            elapsed = time.perf_counter() - start
            x.grad = None
            if round_:
                times[name].append(elapsed * 1e3)
    # Minimum and median: on a shared machine the minimum is the least disturbed run.
    return (min(times["layer"]), statistics.median(times["layer"]),
            min(times["direct"]), statistics.median(times["direct"]))


def subgraph_sizes(
    graph: BipartiteGraph, fanouts: list[int], batch: int, repeats: int
) -> tuple[tuple[int, ...], int, float]:
    gen = torch.Generator().manual_seed(2)
    picks = torch.randint(graph.n_interactions, (batch,), generator=gen)
    users, pos = graph.users[picks], graph.items[picks]
    neg = torch.randint(graph.n_items, (batch,), generator=gen)
    sampler = NeighborSampler(graph, fanouts)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sub = sampler.sample(users, pos, neg, gen)
        times.append((time.perf_counter() - start) * 1e3)
    return sub.hop_nodes, sub.n_edges, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=GOWALLA, help="a LightGCN-format train.txt")
    parser.add_argument("--synthetic-edges", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fanouts", action="append", default=None,
                        help="a comma-separated fanout list, one per hop; repeatable; write "
                        "--fanouts=-1,-1 (with '=') for lists starting with -1 "
                        "(default: 20,10 and -1,-1)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name, graph = load_graph(args.data, args.synthetic_edges)
    print(f"graph: {name}: U={graph.n_users} I={graph.n_items} N={graph.n_nodes} "
          f"E={graph.n_interactions}; D={args.dim} L={args.layers} "
          f"threads={torch.get_num_threads()}")
    layer_min, layer_med, direct_min, direct_med = time_layer(
        graph, args.dim, args.layers, args.repeats
    )
    print(f"fwd+bwd ms (min / median): LightGCNConv {layer_min:.1f} / {layer_med:.1f}  "
          f"sym_spmm {direct_min:.1f} / {direct_med:.1f}  "
          f"ratio {layer_min / direct_min:.3f} / {layer_med / direct_med:.3f}")
    for spec in args.fanouts or ["20,10", "-1,-1"]:
        fanouts = [int(k) for k in spec.split(",")]
        hops, entries, ms = subgraph_sizes(graph, fanouts, args.batch, args.repeats)
        print(f"fanouts {fanouts} batch {args.batch}: nodes per hop {hops} "
              f"({hops[-1] / graph.n_nodes:.1%} of N), adjacency entries {entries} "
              f"({entries / graph.adj.values().numel():.1%}), sampling {ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
