"""Time ``NeighborSampler.sample`` of an earlier revision against the working tree's, alternating.

The old ``recsys_cl/graph/sampling.py`` is read from git (``--old REV``) and loaded as a module
beside the installed one; both sample the same batches with the same generator seeds, in
alternating order, on one synthetic long-tail graph (``bench_scale.synthetic_log``), and every
result is checked equal (node ids, local positions, CSR arrays and values, generator state).
Prints seconds per call of each and their ratio.

    python benchmarks/bench_sampler_ab.py --old 9cd88b0 --size 16000000 --batches 20
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import synthetic_log  # noqa: E402
from recsys_cl.graph import build_graph  # noqa: E402
from recsys_cl.graph import sampling as new  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def old_module(rev: str, folder: Path) -> ModuleType:
    text = subprocess.run(
        ["git", "show", f"{rev}:recsys_cl/graph/sampling.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    path = folder / "old_sampling.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_sampling", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sampling"] = module
    spec.loader.exec_module(module)
    return module


def same(a: new.SampledSubgraph, b: new.SampledSubgraph) -> bool:
    tensors = [(a.node_ids, b.node_ids)] + [
        (getattr(a, f), getattr(b, f)) for f in ("users", "pos_items", "neg_items")
    ]
    tensors += [
        (a.adj.crow_indices(), b.adj.crow_indices()),
        (a.adj.col_indices(), b.adj.col_indices()),
        (a.adj.values(), b.adj.values()),
    ]
    return (a.n_users, a.hop_nodes) == (b.n_users, b.hop_nodes) and all(
        x.dtype == y.dtype and torch.equal(x, y) for x, y in tensors
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="git revision of the old sampler")
    parser.add_argument("--size", type=int, default=16_000_000, help="nominal interactions")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--fanouts", default="20,10")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    fanouts = [int(f) for f in args.fanouts.split(",")]
    users, items, n_users, n_items = synthetic_log(args.size, seed=0)
    u, i = torch.from_numpy(users), torch.from_numpy(items)
    graph = build_graph(u, i, n_users, n_items)
    with tempfile.TemporaryDirectory() as tmp:
        old = old_module(args.old, Path(tmp))
        samplers = {
            "old": old.NeighborSampler(graph, fanouts),
            "new": new.NeighborSampler(graph, fanouts),
        }
        draw = torch.Generator().manual_seed(0)
        batches = []
        for _ in range(args.batches):
            rows = torch.randint(u.numel(), (args.batch_size,), generator=draw)
            negatives = torch.randint(n_items, (args.batch_size,), generator=draw)
            batches.append((u[rows], i[rows], negatives))
        for sampler in samplers.values():  # warm-up (the new sampler allocates its scratch)
            sampler.sample(*batches[0], torch.Generator().manual_seed(9))
        seconds = {"old": 0.0, "new": 0.0}
        for r, batch in enumerate(batches):
            out, states = {}, {}
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                generator = torch.Generator().manual_seed(100 + r)
                start = time.perf_counter()
                out[name] = samplers[name].sample(*batch, generator)
                seconds[name] += time.perf_counter() - start
                states[name] = generator.get_state()
            if not (same(out["old"], out["new"]) and torch.equal(states["old"], states["new"])):
                print(f"batch {r}: the two samplers differ", file=sys.stderr)
                return 1
    n = len(batches)
    print(
        f"{n_users + n_items:,} nodes, {users.size:,} interactions, {n} batches of "
        f"{args.batch_size}, fanouts {fanouts}, identical outputs; old "
        f"{seconds['old'] / n:.4f} s/call, new {seconds['new'] / n:.4f} s/call, "
        f"old/new = {seconds['old'] / seconds['new']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
