"""The two records a :class:`~recsys_cl.training.Trainer` takes besides the method and data.

:class:`Schedule` says how long and how fast to train and how to pick the epoch kept;
:class:`Sampling` says which rows, negatives and loss weights each epoch draws. They are
separate because they vary separately: the ``train:`` config block gives the schedule, the
``imbalance:`` block the sampling (``recsys_cl.jobs.build.ImbalanceParts.sampling``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from recsys_cl.graph.sampling import NeighborSampler

from .hooks import EpochHook
from .sampling import EdgeSampler, NegativeSampler
from .stopping import EarlyStopping


@dataclass(frozen=True)
class Schedule:
    """How long, how fast, and which epoch is kept.

    Attributes:
        epochs: the epoch budget (>= 1).
        batch_size: rows per optimizer step (>= 1).
        lr: Adam's learning rate (> 0).
        eval_every: evaluate every this many epochs (and after the last one).
        select_metric: the evaluated metric whose best value picks the epoch kept.
        stopping: when to stop early (default: 10 evaluations of patience, no floor).
    """

    epochs: int
    batch_size: int
    lr: float
    eval_every: int = 1
    select_metric: str = "ndcg@20"
    stopping: EarlyStopping = field(default_factory=EarlyStopping)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"epochs, batch_size and eval_every must be >= 1, got {self}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True, eq=False)
class Sampling:
    """What each epoch draws: its (user, positive) rows, their negatives and loss weights.

    The default is plain training: every edge once per epoch, shuffled, one uniform negative
    from the user's unseen items, unweighted, each batch propagating over the full graph.
    With ``subgraph`` set (sampled-subgraph mode) each batch propagates only over the L-hop
    computation subgraph of its users, positives and negatives
    (:mod:`recsys_cl.training.subgraphs`); methods run unchanged on it.

    Attributes:
        num_negatives: M candidate negatives per row (>= 1); batches hold [B] when M = 1,
            else [B, M].
        sampler: draws the negatives (None: uniform over each user's unseen items); any object
            with ``sample(users [B], num, generator) -> [B, num]``.
        edge_sampler: chooses each epoch's rows (None: every training edge once, shuffled);
            see :class:`~recsys_cl.training.sampling.EdgeSampler`.
        item_weights: float [I], loss weight of a row whose positive is item i (mean ~1 over
            the training edges); None: unweighted.
        epoch_hooks: called at the start of each epoch with the current model's embeddings
            (model-aware samplers); their state is checkpointed.
        subgraph: samples each batch's computation subgraph (its fanouts must have one entry
            per encoder layer); None: full-graph batches.
        prefetch: sample batch b + 1's subgraph in a background thread while batch b computes
            (same subgraphs either way); only read with ``subgraph``.
        lazy_adam: with ``subgraph``, optimize with lazy (row-sparse) Adam,
            ``torch.optim.SparseAdam``: a step updates the moments and values of the rows the
            batch's subgraph reached only, so its cost follows the subgraph, not the table.
            Dense Adam (False) also moves every other row along its decaying momentum, an
            O(N D) step that dominates on large graphs (benchmarks/RESULTS.md § Scale).
    """

    num_negatives: int = 1
    sampler: NegativeSampler | None = None
    edge_sampler: EdgeSampler | None = None
    item_weights: Tensor | None = None
    epoch_hooks: tuple[EpochHook, ...] = ()
    subgraph: NeighborSampler | None = None
    prefetch: bool = False
    lazy_adam: bool = True

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        # A list would make the frozen record mutable from outside; keep one shape.
        object.__setattr__(self, "epoch_hooks", tuple(self.epoch_hooks))
