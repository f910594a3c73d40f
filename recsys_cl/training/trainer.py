"""One trainer for every method: methods differ only in their views and loss terms.

Per epoch: run the epoch hooks (model-aware samplers refresh), draw the epoch's rows (every
training edge once, shuffled, unless an edge sampler says otherwise), their negatives and loss
weights, let the method build its views (SGL augments the graph once per epoch), then minimise
``method.loss`` batch by batch. In sampled-subgraph mode (``Sampling.subgraph``) each batch
instead brings its own computation subgraph and the method's views of it
(:mod:`.subgraphs`); evaluation, epoch hooks and export still propagate over the full graph.
Every ``eval_every`` epochs ``evaluate`` scores the model; the best state by ``select_metric``
is kept and training stops when the :class:`~recsys_cl.training.stopping.EarlyStopping` rule
says so (patience that survives the contrastive dip).

Data-parallel training (several processes) goes through one :class:`~.distributed.Replicas`:
each rank trains on its shard of every global batch, gradients are summed over the ranks,
and rank 0 alone evaluates (its metrics handed to every rank, so selection and stopping agree),
writes checkpoints and calls ``on_epoch_end``. A single process is the one-rank case.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import TrainingError
from recsys_cl.graph import BipartiteGraph, NeighborSampler
from recsys_cl.models import Batch, Graph, LocalGraph, Recommender
from recsys_cl.progress import progress

from .checkpoint import LAST_CHECKPOINT, TrainState, load_checkpoint, save_checkpoint
from .distributed import Replicas, single_process
from .hooks import EpochHook
from .plan import Sampling, Schedule
from .sampling import EpochSample, UniformNegativeSampler, sample_epoch
from .subgraphs import batch_seeds, subgraph_batches

LOSS_KEYS = ("rec", "cl", "reg", "total")
EvalFn = Callable[[Recommender], dict[str, float]]
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FitResult:
    """What a finished :meth:`Trainer.fit` returns.

    ``history`` holds one dict per epoch: ``epoch`` (1-based), ``seconds``, ``steps`` (optimizer
    steps taken so far), the mean losses
    under ``loss/<name>`` and, on evaluated epochs, the metrics under their own names.
    """

    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]


class Trainer:
    """Fit a :class:`~recsys_cl.models.Recommender` on a bipartite training graph.

    Args:
        method: the model and its loss.
        graph: the training graph (its adjacency is what the encoder propagates over).
        train: the training positives per user (batches and negative rejection use it).
        schedule: epochs, batch size, learning rate and epoch selection.
        generator: CPU generator for batch order and negative sampling.
        device_generator: generator on the model's device for augmentations and noise.
        sampling: the rows, negatives and loss weights each epoch draws (None: every training
            edge once, one uniform negative, unweighted).
        evaluate: returns metrics for the current model; None disables selection.
        checkpoint_dir: where :data:`~.checkpoint.LAST_CHECKPOINT` is written after every epoch
            (None: no checkpoints).
        fingerprint: identifies the run, so ``resume`` refuses another run's checkpoint.
        progress: show a per-epoch progress bar.
        on_epoch_end: called with each epoch's history record (logging).
        replicas: this process's part in a data-parallel job (None: a single process); every
            rank gets the same arguments (see :mod:`.distributed`).
    """

    def __init__(
        self,
        method: Recommender,
        graph: BipartiteGraph,
        train: UserItems,
        *,
        schedule: Schedule,
        generator: torch.Generator,
        device_generator: torch.Generator,
        sampling: Sampling | None = None,
        evaluate: EvalFn | None = None,
        checkpoint_dir: str | Path | None = None,
        fingerprint: dict[str, Any] | None = None,
        progress: bool = True,
        on_epoch_end: EpochCallback | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        self.method = method
        self.graph = graph
        self.train = train
        self.schedule = schedule
        self.generator = generator
        self.device_generator = device_generator
        self.evaluate = evaluate
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.fingerprint = fingerprint or {}
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.replicas = replicas if replicas is not None else single_process()
        sampling = sampling if sampling is not None else Sampling()
        self.optimizer = _optimizer(method, schedule.lr, sampling)
        self._params = [p for p in method.parameters() if p.requires_grad]
        item_weights = sampling.item_weights
        if item_weights is not None and item_weights.shape != (train.n_items,):
            raise ValueError(
                f"item_weights must be [I]=[{train.n_items}], got {tuple(item_weights.shape)}"
            )
        self.negatives = (
            UniformNegativeSampler(train) if sampling.sampler is None else sampling.sampler
        )
        self.sampling = replace(
            sampling,
            sampler=self.negatives,
            item_weights=None if item_weights is None else item_weights.detach().cpu(),
        )
        if sampling.subgraph is not None:
            _check_subgraph_sampler(sampling.subgraph, method, graph)
        self.device = next(method.parameters()).device

    @property
    def last_path(self) -> Path | None:
        return self.checkpoint_dir / LAST_CHECKPOINT if self.checkpoint_dir is not None else None

    def fit(self, resume: bool = False) -> FitResult:
        state, best_model = TrainState(), None
        epochs = self.schedule.epochs
        if resume:
            if self.last_path is None:
                raise TrainingError("resume needs a checkpoint folder")
            payload = self.replicas.from_main(self._read_last)
            if payload is not None:
                state, best_model = self._restore(payload)
                # The limits may have been raised for the resume (more epochs, more patience).
                state.finished = state.epoch >= epochs or self._out_of_patience(state)
        # Every rank starts from rank 0's state, as DistributedDataParallel does.
        self.replicas.broadcast_state(self.method)
        while state.epoch < epochs and not state.finished:
            record = self._run_epoch(state.epoch + 1)
            # What rank 0's checkpoint saves is what every rank goes on from.
            self.replicas.sync_generators(self.generator, self.device_generator)
            state.epoch += 1
            state.steps += record["steps"]
            record["steps"] = state.steps
            if self.evaluate is not None and (
                state.epoch % self.schedule.eval_every == 0 or state.epoch == epochs
            ):
                best_model = self._select(state, record, best_model)
            state.history.append(record)
            if self._out_of_patience(state):
                state.finished = True
            if state.epoch == epochs:
                state.finished = True
            # The callback (logging) runs before the checkpoint: a run killed in between
            # repeats this epoch on resume, and a repeated log point beats a missing one.
            if self.on_epoch_end is not None:
                self.replicas.on_main(self.on_epoch_end, record)
            self.replicas.on_main(self._checkpoint, state, best_model)
        if best_model is not None:
            self.method.load_state_dict(best_model)
        return FitResult(
            best_epoch=state.best_epoch,
            best_score=state.best_score,
            epochs_run=state.epoch,
            stopped_early=state.epoch < epochs,
            history=list(state.history),
        )

    def _out_of_patience(self, state: TrainState) -> bool:
        if self.evaluate is None:
            return False
        metric = self.schedule.select_metric
        scores = [float(r[metric]) for r in state.history if metric in r]
        return self.schedule.stopping.should_stop(scores, state.steps)

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        start = time.perf_counter()
        self.method.train()
        for hook in self.sampling.epoch_hooks:
            # Rank 0 runs the hook (an ANN build need not give the same table in two
            # processes) and every rank loads its state, so all ranks draw one epoch.
            hook.load_state_dict(self.replicas.from_main(partial(self._start, hook, epoch)))
        sample = sample_epoch(
            self.train,
            self.negatives,
            self.sampling.num_negatives,
            self.generator,
            edges=self.sampling.edge_sampler,
            item_weights=self.sampling.item_weights,
        )
        if len(sample) == 0:
            raise TrainingError(f"epoch {epoch} has no training rows to learn from")
        shards = self._shards(len(sample))
        n_batches = len(shards)
        sampler = self.sampling.subgraph
        batches = (self._batch(sample, rows) for rows, _ in shards if rows.stop > rows.start)
        pairs: Iterator[tuple[Graph, Batch]]
        views: Any = None
        if sampler is None:
            views = self.method.epoch_views(self.graph, self.device_generator)
            pairs = ((self.graph.adj, batch) for batch in batches)
        else:
            # Drawn for every global batch, so the generator advances alike on every rank.
            seeds = batch_seeds(n_batches, self.generator)
            pairs = subgraph_batches(
                sampler,
                batches,
                [self.replicas.seed(s) for s, (rows, _) in zip(seeds, shards, strict=True)
                 if rows.stop > rows.start],
                prefetch=self.sampling.prefetch,
                sparse_grad=self.sampling.lazy_adam,
            )
        sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64, device=self.device)
        bar = progress(
            _aligned(pairs, shards),
            total=n_batches,
            desc=f"epoch {epoch}",
            leave=False,
            enabled=self.progress and self.replicas.is_main,
            unit="batch",
        )
        sparse = isinstance(self.optimizer, torch.optim.SparseAdam)
        for b, (pair, share) in enumerate(bar):
            self.optimizer.zero_grad(set_to_none=True)
            local = torch.zeros(len(LOSS_KEYS), dtype=torch.float64, device=self.device)
            if pair is not None:
                graph, batch = pair
                if isinstance(graph, LocalGraph):
                    views = self.method.batch_views(graph, self.device_generator)
                losses = self.method.loss(graph, batch, views, self.device_generator)
                # The shard's mean times its share of the batch: summed over the ranks, the
                # batch's mean (share 1 in one process).
                (losses.total * share).backward()
                local = torch.stack([getattr(losses, k).detach() for k in LOSS_KEYS]).double()
                local = local * share
            total = self.replicas.all_reduce_step(local, self._params, sparse)
            if not bool(torch.isfinite(total[-1])):
                values = dict(zip(LOSS_KEYS, total.tolist(), strict=True))
                raise TrainingError(
                    f"loss is not finite at epoch {epoch}, batch {b + 1}/{n_batches} "
                    f"({_fmt(values)}); lower the learning rate or check the data"
                )
            self.optimizer.step()
            sums += total
        means = (sums / n_batches).tolist()
        record: dict[str, Any] = {
            "epoch": epoch,
            "seconds": time.perf_counter() - start,
            "steps": n_batches,
        }
        record.update({f"loss/{k}": v for k, v in zip(LOSS_KEYS, means, strict=True)})
        return record

    def _start(self, hook: EpochHook, epoch: int) -> dict[str, torch.Tensor]:
        """Run ``hook``'s start of ``epoch``; returns its state (loading it back is a no-op)."""
        hook.on_epoch_start(epoch, lambda: self.method.embeddings(self.graph.adj))
        return hook.state_dict()

    def _shards(self, n_rows: int) -> list[tuple[slice, float]]:
        """Per global batch of the epoch: this rank's rows and their share of the batch."""
        out = []
        for start in range(0, n_rows, self.schedule.batch_size):
            stop = min(start + self.schedule.batch_size, n_rows)
            rows = self.replicas.shard(start, stop)
            out.append((rows, (rows.stop - rows.start) / (stop - start)))
        return out

    def _batch(self, sample: EpochSample, sl: slice) -> Batch:
        """Rows ``sl`` of the epoch as a batch on the model's device (global ids)."""
        neg = sample.neg_items[sl]
        return Batch(
            users=sample.users[sl].to(self.device, non_blocking=True),
            pos_items=sample.pos_items[sl].to(self.device, non_blocking=True),
            neg_items=(neg.squeeze(1) if self.sampling.num_negatives == 1 else neg).to(
                self.device, non_blocking=True
            ),
            weights=None
            if sample.weights is None
            else sample.weights[sl].to(self.device, non_blocking=True),
        )

    def _select(
        self, state: TrainState, record: dict[str, Any], best_model: dict[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor] | None:
        assert self.evaluate is not None
        self.method.eval()
        start = time.perf_counter()
        evaluate = self.evaluate
        # Rank 0 scores; every rank selects and stops on the same numbers.
        metrics = self.replicas.from_main(lambda: evaluate(self.method))
        record["eval_seconds"] = time.perf_counter() - start
        record.update(metrics)
        metric = self.schedule.select_metric
        if metric not in metrics:
            raise TrainingError(
                f"select_metric {metric!r} is not among the evaluated metrics "
                f"({', '.join(sorted(metrics))})"
            )
        score = float(metrics[metric])
        if not math.isfinite(score):
            raise TrainingError(
                f"{metric} is {score} at epoch {record['epoch']}: the selection "
                "part has no user to evaluate"
            )
        if score > state.best_score:
            state.best_score, state.best_epoch = score, record["epoch"]
            return {k: v.detach().clone() for k, v in self.method.state_dict().items()}
        return best_model

    def _checkpoint(self, state: TrainState, best_model: dict[str, torch.Tensor] | None) -> None:
        if self.last_path is None:
            return
        save_checkpoint(
            self.last_path,
            state=state,
            model=self.method,
            optimizer=self.optimizer,
            generator=self.generator,
            device_generator=self.device_generator,
            best_model=best_model,
            fingerprint=self.fingerprint,
            hooks=[hook.state_dict() for hook in self.sampling.epoch_hooks],
        )

    def _read_last(self) -> dict[str, Any] | None:
        """The last checkpoint's payload, checked against the run; None when there is none."""
        path = self.last_path
        assert path is not None
        return load_checkpoint(path, self.fingerprint) if path.exists() else None

    def _restore(
        self, payload: dict[str, Any]
    ) -> tuple[TrainState, dict[str, torch.Tensor] | None]:
        path = self.last_path
        self.method.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.generator.set_state(payload["generator"])
        self.device_generator.set_state(payload["device_generator"])
        hook_states = payload.get("hooks", [])
        if len(hook_states) != len(self.sampling.epoch_hooks):
            raise TrainingError(
                f"{path}: checkpoint holds {len(hook_states)} sampler state(s), this run has "
                f"{len(self.sampling.epoch_hooks)}"
            )
        for hook, hook_state in zip(self.sampling.epoch_hooks, hook_states, strict=True):
            hook.load_state_dict(hook_state)
        best = payload["best_model"]
        if best is not None:
            best = {k: v.to(self.device) for k, v in best.items()}
        state = payload["state"]
        if state.steps == 0 and state.epoch > 0:
            # Written before steps were counted (every epoch takes at least one): estimate them
            # as the default sampler draws, every training edge once, so min_steps does not
            # restart from zero on resume.
            state.steps = state.epoch * math.ceil(self.train.nnz / self.schedule.batch_size)
        return state, copy.copy(best)


def _optimizer(method: Recommender, lr: float, sampling: Sampling) -> torch.optim.Optimizer:
    """Adam; lazy (row-sparse) Adam in sampled mode with ``sampling.lazy_adam``."""
    if sampling.subgraph is None or not sampling.lazy_adam:
        return torch.optim.Adam(method.parameters(), lr=lr)
    others = [n for n, p in method.named_parameters() if p is not method.encoder.weight]
    if others:
        # Only the table gets a row-sparse gradient; SparseAdam cannot take a dense one.
        raise ValueError(
            f"lazy Adam updates the embedding table only; this method also trains {others[0]} "
            "(use Sampling(lazy_adam=False))"
        )
    return torch.optim.SparseAdam([method.encoder.weight], lr=lr)


def _check_subgraph_sampler(
    sampler: NeighborSampler, method: Recommender, graph: BipartiteGraph
) -> None:
    """A subgraph sampler must hop once per encoder layer over the trainer's graph."""
    n_layers = method.encoder.n_layers
    if len(sampler.fanouts) != n_layers:
        raise ValueError(
            f"the subgraph sampler has {len(sampler.fanouts)} fanouts but the encoder has "
            f"{n_layers} layers"
        )
    if (sampler.n_users, sampler.n_items) != (graph.n_users, graph.n_items):
        raise ValueError("the subgraph sampler was built on another graph than the trainer's")


def _aligned(
    pairs: Iterator[tuple[Graph, Batch]], shards: list[tuple[slice, float]]
) -> Iterator[tuple[tuple[Graph, Batch] | None, float]]:
    """``(pair, share)`` per global batch; None where this rank's shard is empty (the last
    batch of an epoch can hold fewer rows than there are ranks)."""
    for rows, share in shards:
        yield (next(pairs) if rows.stop > rows.start else None), share


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())
