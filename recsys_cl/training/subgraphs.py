"""Sampled-subgraph batches: each training batch carries its own L-hop computation subgraph.

The trainer's batch loop asks :func:`subgraph_batches` for (graph, batch) pairs: in sampled mode
the graph is the batch's :class:`~recsys_cl.models.LocalGraph` and the batch is relabelled to
local positions in it (its global user and positive-item ids kept beside them for the
objective), so every method's ``loss`` runs unchanged.

Determinism: the epoch's per-batch seeds are drawn at once from the trainer's checkpointed CPU
generator (:func:`batch_seeds`), and batch b's subgraph is drawn from a fresh generator seeded
with seed b. A subgraph therefore depends only on its batch and its seed, never on which thread
drew it or when: sampling the next batch in a background thread (``prefetch``) gives the same
subgraphs, and a resumed run (generator restored at the epoch boundary) replays them bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from recsys_cl.graph.sampling import NeighborSampler, SampledSubgraph
from recsys_cl.models import Batch, LocalGraph

# Seeds are drawn below 2**62: any int64 seeds a generator; the margin keeps them positive.
_SEED_BOUND = 2**62


def batch_seeds(n_batches: int, generator: torch.Generator) -> list[int]:
    """One subgraph seed per batch of the epoch, drawn from the trainer's CPU ``generator``."""
    return torch.randint(_SEED_BOUND, (n_batches,), generator=generator).tolist()


def localize(
    batch: Batch, sub: SampledSubgraph, sparse_grad: bool = False
) -> tuple[LocalGraph, Batch]:
    """The batch relabelled to its subgraph: (the subgraph as encoder input, the local batch).

    Local users are ``sub.users``; items are numbered from 0 after the subgraph's n_u users, as
    the propagation's item rows are. The global user and positive-item ids ride along
    (:attr:`Batch.global_users`), since an objective's log q and positive masks are keyed by
    them; the local ids keep their order (node ids ascend), so de-duplication and equality
    tests give the same answers as on global ids. ``sparse_grad``: see
    :attr:`~recsys_cl.models.LocalGraph.sparse_grad`.
    """
    n_users = sub.n_users
    local = Batch(
        users=sub.users,
        pos_items=sub.pos_items - n_users,
        neg_items=sub.neg_items - n_users,
        weights=batch.weights,
        user_ids=batch.users,
        pos_item_ids=batch.pos_items,
        neg_item_ids=batch.neg_items,
    )
    return LocalGraph(sub.adj, sub.node_ids, n_users, sparse_grad), local


def _sample(
    sampler: NeighborSampler, batch: Batch, seed: int, sparse_grad: bool
) -> tuple[LocalGraph, Batch]:
    generator = torch.Generator(sampler.device).manual_seed(seed)
    sub = sampler.sample(batch.users, batch.pos_items, batch.neg_items, generator)
    return localize(batch, sub, sparse_grad)


def subgraph_batches(
    sampler: NeighborSampler,
    batches: Iterable[Batch],
    seeds: list[int],
    *,
    prefetch: bool = False,
    sparse_grad: bool = False,
) -> Iterator[tuple[LocalGraph, Batch]]:
    """(subgraph, local batch) per batch, batch b sampled with ``seeds[b]``.

    With ``prefetch`` one background thread samples batch b + 1 while the caller computes
    batch b (torch's sparse and indexing kernels release the GIL); the results are the same as
    without it. The thread is joined when the iterator is exhausted or closed.
    """
    it = zip(batches, seeds, strict=True)
    if not prefetch:
        for batch, seed in it:
            yield _sample(sampler, batch, seed, sparse_grad)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="subgraph-sampler") as pool:
        pending: Future[tuple[LocalGraph, Batch]] | None = None
        for batch, seed in it:
            ahead = pool.submit(_sample, sampler, batch, seed, sparse_grad)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()
