"""Data-parallel training over several processes: the one layer that knows about ranks.

The trainer and the train stage call a :class:`Replicas` for everything that differs between
one process and several, so none of them branches on the rank:

- **Rows.** Every rank builds the same generators from the run's seed and draws the same epoch
  (permutation, negatives, loss weights, per-batch subgraph seeds). Each global batch of
  ``batch_size`` rows is then cut into ``world`` contiguous shards (:func:`shard`), one per
  rank, so the ranks' rows are disjoint and their union is the batch a single process trains
  on. In sampled-subgraph mode each rank samples the subgraph of its own shard.
- **Gradients.** A rank backpropagates its shard's mean loss times its share of the batch
  (rows of its shard / rows of the batch), and :meth:`Replicas.all_reduce_step` sums the
  gradients over the ranks, so the step uses the gradient of the batch's mean loss. It is the
  recipe of ``torch.nn.parallel.DistributedDataParallel`` written out, because a method's
  entry point is ``loss``, not ``forward``; the model is essentially one embedding table whose
  gradient is ready only when backward ends (DDP's bucketed overlap has nothing to overlap);
  the last batch of an epoch splits unevenly (DDP would weight the shards equally) or leaves a
  rank no rows; and sampled mode's lazy Adam needs a row-sparse gradient, which is summed here
  by gathering each rank's rows (NCCL has no sparse all-reduce).
- **Side effects.** :meth:`Replicas.from_main` runs a function on rank 0 and hands its result
  (or its error) to every rank: reading the split and checkpoints, evaluation, the final test.
  :meth:`Replicas.on_main` runs one on rank 0 only: checkpoints, epoch logging. Only rank 0
  opens an MLflow run or writes the run folder, and no shared file system is assumed.

What equals a single process. With mean-reduced per-row terms (BPR and the other pointwise
and pairwise objectives, the ego L2, the rows' weights) the summed gradient is the single-
process gradient up to the order of floating-point additions. Terms over the batch as a whole
are computed per shard: the contrastive InfoNCE over a batch's unique users and items and the
in-batch softmax then see the shard's ``batch_size / world`` rows as negatives instead of the
batch's, like any data-parallel contrastive trainer that does not gather embeddings. Draws
over the whole table (SimGCL/XSimGCL noise, SGL's per-epoch graph views) are the same on
every rank and as in one process; draws per row (MixGCF's mixing) repeat across ranks. In
sampled mode a rank samples its own shard's subgraph, so the subgraphs, not only their union,
differ from one process unless every fanout is -1.

Determinism. All ranks hold identical parameters after every step (one reduced gradient, one
optimizer state) and, after every epoch, take rank 0's generator states
(:meth:`Replicas.sync_generators`), which are what rank 0's checkpoint saves: one seed and
world size give one result, and ``--resume`` continues it exactly.

Failure. A rank that dies is noticed by the launcher (``torch.distributed.run``'s agent,
which polls its workers), which stops the others; a peer that is lost without a launcher
noticing (a machine gone) ends the collective waiting for it after the process group's
timeout. Either way the job ends with a :class:`DistributedError` naming the rank
(:mod:`.launch`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from recsys_cl.errors import DistributedError, PeerError, first_line

T = TypeVar("T")

#: Seconds a collective waits for a peer before failing. It must outlast the longest step only
#: rank 0 takes while the others wait: reading the data, an evaluation, the final test.
DEFAULT_TIMEOUT_S = 600.0
# A rank's subgraph seed: batch b's seed plus rank x this odd constant (2^62 / golden ratio),
# so ranks draw unrelated subgraphs and rank 0 draws the single-process ones.
_SEED_STEP = 0x278DDE6E5FD29E00 | 1
_SEED_BOUND = 2**62


@dataclass(frozen=True)
class World:
    """This process's place in the job.

    Attributes:
        rank: 0 .. size - 1 over all machines (0 decides and writes).
        size: the number of processes (1: a single-process run).
        local_rank: the rank on this machine (its GPU index).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """From the variables ``torchrun`` (and :func:`launch`) set: ``RANK``, ``WORLD_SIZE``,
        ``LOCAL_RANK``; a process without them is a single-process run."""
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            values = {k: int(os.environ.get(k, "0")) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        except ValueError:
            raise DistributedError(
                "RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)"
            ) from None
        rank, size, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
        if size < 1 or not 0 <= rank < size or local < 0:
            raise DistributedError(f"RANK={rank} does not fit WORLD_SIZE={size}")
        return cls(rank, size, local)


def shard(start: int, stop: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s contiguous part of rows ``[start, stop)`` cut into ``size`` parts.

    Parts differ by at most one row (the first ``(stop - start) % size`` parts are the longer)
    and may be empty when there are fewer rows than parts; together they are the rows.
    """
    n = stop - start
    base, extra = divmod(n, size)
    lo = start + rank * base + min(rank, extra)
    return slice(lo, lo + base + (1 if rank < extra else 0))


def rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank``'s subgraph seed for a batch whose (single-process) seed is ``seed``."""
    return (seed + rank * _SEED_STEP) % _SEED_BOUND


class Replicas:
    """What one rank does differently from the others; a single-process run is ``World()``,
    where every method does what one process would (see the module docstring).

    Args:
        world: this process's rank and the job's size; with ``size`` > 1 the default process
            group must be initialized (:func:`process_group`).
    """

    def __init__(self, world: World | None = None) -> None:
        self.world = world if world is not None else World()
        if self.world.size > 1 and not dist.is_initialized():
            raise DistributedError("a distributed run needs an initialized process group")

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that reads, writes, evaluates and logs."""
        return self.world.rank == 0

    @property
    def size(self) -> int:
        return self.world.size

    # ------------------------------------------------------------------------ rows and seeds

    def shard(self, start: int, stop: int) -> slice:
        """This rank's rows of the global batch ``[start, stop)`` (see :func:`shard`)."""
        return shard(start, stop, self.world.rank, self.world.size)

    def seed(self, seed: int) -> int:
        """This rank's subgraph seed for a batch (see :func:`rank_seed`)."""
        return rank_seed(seed, self.world.rank)

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (``LOCAL_RANK``) when ``device`` is CUDA."""
        if device.type != "cuda" or self.world.size == 1:
            return device
        return torch.device("cuda", self.world.local_rank)

    # ------------------------------------------------------------------------- side effects

    def on_main(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` on rank 0 only (writes, logging)."""
        if self.is_main:
            fn(*args)

    def from_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 and its result handed to every rank (pickled).

        An exception ``fn`` raises is re-raised on rank 0 and ends the other ranks with a
        :class:`PeerError` carrying its message, instead of leaving them waiting.
        """
        if self.world.size == 1:
            return fn()
        box: list[Any] = [None]
        error: Exception | None = None
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as exc:  # every failure must reach the waiting ranks
                error = exc
                box[0] = ("error", f"{type(exc).__name__}: {first_line(exc)}")
        self._collective(dist.broadcast_object_list, box, src=0)
        if error is not None:
            raise error
        kind, value = box[0]
        if kind == "error":
            raise PeerError(f"rank 0 failed: {value}")
        return value

    # ------------------------------------------------------------------------------ training

    def all_reduce_step(
        self, losses: torch.Tensor, params: Sequence[torch.nn.Parameter], sparse: bool = False
    ) -> torch.Tensor:
        """Sum the ranks' share-weighted losses and gradients; returns the summed losses.

        Args:
            losses: float64, this rank's loss terms times its share of the batch.
            params: the trained parameters; their ``.grad`` is replaced by the sum over the
                ranks. A parameter no rank produced a gradient for keeps ``None`` (Adam skips
                it, as one process would).
            sparse: the gradients are row-sparse (lazy Adam): summed by gathering each rank's
                rows, then coalesced.
        """
        if self.world.size == 1:
            return losses
        flags = torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float64)
        small = torch.cat([losses.detach().double().cpu(), flags]).to(losses.device)
        self._collective(dist.all_reduce, small)
        total, seen = small[: len(losses)], small[len(losses) :].cpu()
        if sparse:
            for p in params:
                p.grad = self._sum_sparse(p)
        elif params:
            grads = [
                p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
                for p in params
            ]
            flat = torch.cat(grads)
            self._collective(dist.all_reduce, flat)
            for p, g, any_grad in zip(params, flat.split([p.numel() for p in params]),
                                      seen.tolist(), strict=True):
                p.grad = g.view_as(p) if any_grad else None
        return total

    def _sum_sparse(self, p: torch.nn.Parameter) -> torch.Tensor | None:
        """The sum over ranks of ``p``'s row-sparse gradient (None if no rank has one)."""
        if p.grad is None:
            index = torch.zeros(0, dtype=torch.long, device=p.device)
            values = p.new_zeros((0, *p.shape[1:]))
        else:
            grad = p.grad.coalesce()
            index, values = grad.indices()[0], grad.values()
        count = torch.tensor([len(index)], device=p.device)
        counts = [torch.zeros_like(count) for _ in range(self.world.size)]
        self._collective(dist.all_gather, counts, count)
        sizes = [int(c) for c in counts]
        if max(sizes) == 0:
            return None
        # all_gather needs equal shapes: pad every rank's rows to the longest, then cut.
        pad = max(sizes) - len(index)
        index = torch.cat([index, index.new_zeros(pad)])
        values = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
        all_index = [torch.empty_like(index) for _ in sizes]
        all_values = [torch.empty_like(values) for _ in sizes]
        self._collective(dist.all_gather, all_index, index)
        self._collective(dist.all_gather, all_values, values)
        rows = torch.cat([i[:n] for i, n in zip(all_index, sizes, strict=True)])
        vals = torch.cat([v[:n] for v, n in zip(all_values, sizes, strict=True)])
        summed = torch.sparse_coo_tensor(rows.unsqueeze(0), vals, p.shape, check_invariants=False)
        return summed.coalesce()

    def broadcast_state(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (as DDP does when it wraps a model)."""
        if self.world.size == 1:
            return
        for tensor in module.state_dict().values():
            self._collective(dist.broadcast, tensor, src=0)

    def sync_generators(self, *generators: torch.Generator) -> None:
        """Set every rank's ``generators`` to rank 0's states (the ones its checkpoint saves)."""
        if self.world.size == 1:
            return
        states = [[g.get_state() for g in generators]]
        self._collective(dist.broadcast_object_list, states, src=0)
        for g, state in zip(generators, states[0], strict=True):
            g.set_state(state)

    def _collective(self, op: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        try:
            op(*args, **kwargs)
        except RuntimeError as exc:  # gloo and NCCL report a lost peer or a timeout this way
            raise DistributedError(
                f"rank {self.world.rank} lost contact with the other ranks ({_reason(exc)})"
            ) from None


def _reason(exc: BaseException) -> str:
    """A backend error's first sentence, without gloo's source location and advice."""
    text = re.sub(r"^\[[^\]]*\] ", "", first_line(exc))
    return text.split(". This is typically", 1)[0]


def single_process() -> Replicas:
    """The :class:`Replicas` of a run in one process."""
    return Replicas(World())


@contextlib.contextmanager
def process_group(
    device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Iterator[Replicas]:
    """Join the job described by the environment (``torchrun``'s variables) for the block:
    NCCL when training on CUDA, gloo on the CPU; collectives wait at most ``timeout_s``. A
    process outside a launched job gets :func:`single_process`.
    """
    world = World.from_env()
    if world.size == 1:
        yield single_process()
        return
    if not timeout_s > 0:
        raise DistributedError(f"--dist-timeout must be > 0 seconds, got {timeout_s}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DistributedError(f"WORLD_SIZE is set but {name} is not (launch with torchrun)")
    backend = "gloo"
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {world.local_rank} has no GPU: torch sees "
                f"{torch.cuda.device_count()} on this machine (lower --nproc-per-node)"
            )
        torch.cuda.set_device(world.local_rank)
        backend = "nccl"
    try:
        dist.init_process_group(
            backend,
            rank=world.rank,
            world_size=world.size,
            timeout=timedelta(seconds=timeout_s),
        )
    except RuntimeError as exc:  # torch's store and network errors derive from it
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        raise DistributedError(
            f"rank {world.rank} could not join the job at {where} ({first_line(exc)})"
        ) from None
    try:
        yield Replicas(world)
    finally:
        dist.destroy_process_group()


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedError",
    "PeerError",
    "Replicas",
    "World",
    "process_group",
    "rank_seed",
    "shard",
    "single_process",
]
