"""The train stage: config → split → graph → method → trainer → a run folder.

:func:`run_training` is three steps a caller can also take one by one: :func:`prepare` (the
folder, the split and everything built from the config: graph, imbalance strategies, method,
the selection target), :func:`fit` (the trainer, with checkpoints and early stopping) and
:func:`finalize` (test once, export, ``metrics.json``, the tracked record). The folder's layout
is :class:`~recsys_cl.jobs.folder.RunFolder`'s.

In a data-parallel run (``replicas``, see :mod:`recsys_cl.training.distributed`) every rank
builds the same assembly and trains; rank 0 alone reads and writes the folder and scores
test, handing the split and the report to the other ranks, whose tracker is the null one.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys_cl.config import ClassicConfig, MethodConfig, RunConfig
from recsys_cl.data import Split, UserItems
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.graph import BipartiteGraph, NeighborSampler, build_graph
from recsys_cl.metrics import PopularityReport, most_popular_scores
from recsys_cl.metrics import evaluate as full_ranking
from recsys_cl.models import Recommender
from recsys_cl.tracking.base import NullTracker, Tracker, flatten
from recsys_cl.training import (
    EarlyStopping,
    FitResult,
    Schedule,
    Trainer,
    load_checkpoint,
)
from recsys_cl.training.distributed import Replicas, single_process

from ..folder import RunFolder
from .build import ImbalanceParts, build_imbalance, build_method
from .data import build_split
from .parts import RunParts, run_parts, score_test
from .record import epoch_logger, record_result, record_start
from .warm import WarmStart, apply_warm_start, check_source, read_warm_start

__all__ = [
    "Assembly",
    "Fitted",
    "Prepared",
    "SelectionTarget",
    "TrainReport",
    "assemble",
    "check_output_dir",
    "finalize",
    "fingerprint",
    "fit",
    "most_popular_floor",
    "prepare",
    "resolve_device",
    "run_training",
    "schedule",
    "selection_target",
    "write_result",
]

# Keys of the resolved config that may change between a run and its resume (the device may
# not: generator states do not move between CPU and CUDA). The long-tail groups only shape
# the final report; retrieval and tracking act after training.
_RESUMABLE_KEYS = (
    "experiment",
    "output_dir",
    "train.progress",
    # Subgraphs are drawn from per-batch seeds, the same with or without the prefetch thread.
    "train.sampled.prefetch",
    "train.epochs",
    "train.patience",
    "train.min_steps",
    "train.recovery",
    "train.beat_most_popular",
    "eval.groups.head",
    "eval.groups.tail",
)
_RESUMABLE_SECTIONS = ("retrieval.", "tracking.")


@dataclass(frozen=True)
class TrainReport:
    """What :func:`run_training` returns (and writes to ``metrics.json``)."""

    output_dir: Path
    protocol: str
    best_epoch: int
    selected_on: str
    select_metric: str
    test: dict[str, float]
    summary: dict[str, Any]
    long_tail: PopularityReport | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecsysError(f"train.device: {name!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecsysError("train.device is cuda but torch sees no GPU; use train.device=cpu")
    return device


def fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """What identifies a run for resuming: the config less the keys a resume may change."""
    flat = flatten(cfg.model_dump(mode="json"))
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in flat.items()
        if k not in _RESUMABLE_KEYS and not k.startswith(_RESUMABLE_SECTIONS)
    }


def check_output_dir(cfg: RunConfig, resume: bool) -> bool:
    """Whether this is a resume of ``cfg.output_dir``'s run; refuses a folder that holds a run
    unless ``resume``, and a checkpoint of another config, before anything is written.

    Raises:
        RecsysError: the folder holds a run and ``resume`` is False, or its checkpoint is
            another run's.
    """
    last = RunFolder(cfg.output_dir).last_checkpoint
    if last.exists() and not resume:
        raise RecsysError(
            f"{cfg.output_dir} already holds a run ({last}); pass --resume to "
            "continue it or choose another output_dir (--set output_dir=..., or compare --out)"
        )
    if resume and last.exists():
        load_checkpoint(last, fingerprint(cfg))
        return True
    return False


@dataclass(frozen=True, eq=False)
class Assembly:
    """What a config builds on a split, before any training: no file is read or written.

    Attributes:
        parts: the pair sets trained on, ranked against and masked.
        graph: the training graph on the run's device.
        strategies: the imbalance block's samplers, weights, objective and selector.
        method: the model and its loss, initialised from ``seed + 2``.
        target: where the epoch is selected (:func:`selection_target`).
        most_popular_score: the select metric of the most-popular baseline on that target.
    """

    parts: RunParts
    graph: BipartiteGraph
    strategies: ImbalanceParts
    method: Recommender
    target: SelectionTarget
    most_popular_score: float

    def select(self, ks: tuple[int, ...]) -> Callable[[Recommender], dict[str, float]]:
        """The trainer's ``evaluate``: the model's metrics on the selection target."""

        def score(m: Recommender) -> dict[str, float]:
            return self.target.score(*m.embeddings(self.graph.adj), ks)

        return score


def assemble(cfg: RunConfig, split: Split, device: torch.device, source: str) -> Assembly:
    """Build the graph, strategies, method and selection target of ``cfg`` on ``split``.

    Args:
        source: names the split in errors (its folder).

    Raises:
        DataError: the honest protocol without a validation part, or an empty selection part.
    """
    if not isinstance(cfg.model, MethodConfig):
        raise TypeError(f"model.method '{cfg.model.method}' is fitted, not trained (run_fitted)")
    parts = run_parts(split, cfg.imbalance.weights.label_threshold, source)
    train_items = parts.train
    graph = build_graph(
        torch.from_numpy(train_items.rows()),
        torch.from_numpy(train_items.indices),
        split.n_users,
        split.n_items,
    ).to(device)
    strategies = build_imbalance(cfg.imbalance, train_items, parts.explicit_negatives)
    method = build_method(
        cfg.model,
        split.n_users,
        split.n_items,
        generator=torch.Generator().manual_seed(cfg.seed + 2),
        objective=strategies.objective,
        negative_selector=strategies.negative_selector,
        train=train_items,
    ).to(device)
    target = selection_target(cfg, parts, source)
    floor = most_popular_floor(target, parts, cfg.eval.ks, cfg.train.select_metric)
    return Assembly(parts, graph, strategies, method, target, floor)


@dataclass(frozen=True, eq=False)
class SelectionTarget:
    """Where a run's epoch (or a baseline's hyper-parameters) is chosen.

    Attributes:
        selected_on: ``val`` (honest protocol) or ``test`` (paper protocol).
        truth, exclude: the held-out pairs scored there, and what is masked.
    """

    selected_on: str
    truth: UserItems
    exclude: list[UserItems]

    def score(
        self, user: torch.Tensor, item: torch.Tensor, ks: Sequence[int]
    ) -> dict[str, float]:
        """Full-ranking metrics of score tables user [U, D], item [I, D] here."""
        return full_ranking(user, item, self.truth, self.exclude, ks=ks).metrics


def selection_target(cfg: RunConfig, parts: RunParts, source: str) -> SelectionTarget:
    """The selection part of ``cfg``'s protocol over ``parts``.

    Raises:
        DataError: the honest protocol without a validation part, or an empty selection part.
    """
    truth: UserItems | None
    if cfg.train.protocol == "honest":
        if parts.val_truth is None:
            raise DataError(f"{source}: the honest protocol needs a validation part")
        truth, exclude, selected_on = parts.val_truth, [parts.train_seen], "val"
    else:
        truth, exclude, selected_on = parts.test_truth, parts.test_exclude, "test"
    if truth.nnz == 0:
        raise DataError(
            f"{source}: the {selected_on} part is empty (every row cold or none held out); "
            "nothing to select the epoch on"
        )
    return SelectionTarget(selected_on, truth, exclude)


def most_popular_floor(
    target: SelectionTarget, parts: RunParts, ks: Sequence[int], select_metric: str
) -> float:
    """The floor a model must clear: most-popular's ``select_metric`` on ``target`` (the
    stopping rule and the guard of the train/main jobs read it)."""
    return target.score(*most_popular_scores(parts.train), ks)[select_metric]


def schedule(cfg: RunConfig, most_popular_score: float) -> Schedule:
    """The ``train:`` block as the trainer's schedule (the stopping rule's floor is the
    most-popular score when ``train.beat_most_popular``)."""
    t = cfg.train
    return Schedule(
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        eval_every=t.eval_every,
        select_metric=t.select_metric,
        stopping=EarlyStopping(
            t.patience,
            t.min_steps,
            t.recovery,
            baseline=most_popular_score if t.beat_most_popular else None,
        ),
    )


@dataclass(frozen=True, eq=False)
class Prepared:
    """A run folder ready to train: its config, device, split and :class:`Assembly`, this
    process's part in the job (one process by default) and, for a warm-started run, what was
    copied from the old run (:mod:`.warm`)."""

    cfg: RunConfig
    run: RunFolder
    device: torch.device
    split: Split
    built: Assembly
    resuming: bool
    replicas: Replicas = field(default_factory=single_process)
    warm: WarmStart | None = None


def prepare(
    cfg: RunConfig,
    *,
    data_dir: str | None = None,
    resume: bool = False,
    split: Split | None = None,
    tracker: Tracker | None = None,
    strategy: str | None = None,
    replicas: Replicas | None = None,
) -> Prepared:
    """Check the folder, write its config and split, build everything, record the start.

    With ``train.warm_start``, the built method's rows of the users and items the old run knew
    are then copied from it (:func:`~.warm.apply_warm_start`; a resume reads what was copied
    from the folder, its checkpoint holding the rows). With ``replicas``, rank 0 does the
    folder's part and the copy, and hands every rank the split.

    Raises:
        RecsysError: the folder holds another run, a bad device, or a warm-start folder that
            is missing, unfinished or of another method, dim or layers; DataError: see
            :func:`assemble`.
    """
    tracker = tracker or NullTracker()
    replicas = replicas if replicas is not None else single_process()
    run = RunFolder(cfg.output_dir)
    device = replicas.device(resolve_device(cfg.train.device))
    given = split

    def open_folder() -> tuple[bool, Split]:
        resuming = check_output_dir(cfg, resume)
        if cfg.train.warm_start is not None and not resuming:
            # Before anything is written: a bad source leaves no folder behind.
            assert isinstance(cfg.model, MethodConfig)
            check_source(cfg.train.warm_start, cfg.model)
        if resuming:
            # The checkpoint's fingerprint (data config and seed included) was checked, so
            # the saved split is the one this config makes.
            split = run.split
        else:
            split = given if given is not None else build_split(cfg.data, data_dir, cfg.seed)
            run.write_split(split)
        run.write_config(cfg)
        if tracker.enabled:
            record_start(tracker, cfg, split, run, str(device), strategy)
            # Not a config key: the same config trains on any number of processes.
            tracker.log_params({"world_size": replicas.size})
        return resuming, split

    resuming, split = replicas.from_main(open_folder)
    built = assemble(cfg, split, device, str(run.data_dir))
    warm = None
    if cfg.train.warm_start is not None:

        def start_warm() -> WarmStart:
            # The other ranks' tables are rank 0's once the trainer broadcasts its state.
            report = (
                read_warm_start(run)
                if resuming
                else apply_warm_start(built.method, split, cfg, run)
            )
            print(report.describe(), flush=True)
            if tracker.enabled:
                tracker.log_params(report.params())
            return report

        warm = replicas.from_main(start_warm)
    return Prepared(cfg, run, device, split, built, resuming, replicas, warm)


def fit(
    prep: Prepared,
    *,
    tracker: Tracker | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train with checkpoints in the folder (resuming from the last one when ``prep`` is a
    resume); the method is left holding the selected epoch's state."""
    cfg, built = prep.cfg, prep.built
    sampling = built.strategies.sampling
    if cfg.train.sampled is not None:
        sampling = replace(
            sampling,
            subgraph=NeighborSampler(built.graph, cfg.train.sampled.fanouts),
            prefetch=cfg.train.sampled.prefetch,
            lazy_adam=cfg.train.sampled.lazy_adam,
        )
    trainer = Trainer(
        built.method,
        built.graph,
        built.parts.train,
        schedule=schedule(cfg, built.most_popular_score),
        generator=torch.Generator().manual_seed(cfg.seed),
        device_generator=torch.Generator(prep.device).manual_seed(cfg.seed + 1),
        sampling=sampling,
        evaluate=built.select(cfg.eval.ks),
        checkpoint_dir=prep.run.checkpoint_dir,
        fingerprint=fingerprint(cfg),
        progress=cfg.train.progress,
        on_epoch_end=epoch_callback(
            tracker or NullTracker(), built.target.selected_on, on_epoch_end
        ),
        replicas=prep.replicas,
    )
    return trainer.fit(resume=prep.resuming)


def finalize(prep: Prepared, result: FitResult, *, tracker: Tracker | None = None) -> TrainReport:
    """Test the selected model once, export it and its embeddings, write ``metrics.json``
    and record the result (on rank 0, whose report every rank returns)."""
    return prep.replicas.from_main(lambda: _finalize(prep, result, tracker or NullTracker()))


def _finalize(prep: Prepared, result: FitResult, tracker: Tracker) -> TrainReport:
    built = prep.built
    method = built.method
    method.eval()
    start = time.perf_counter()
    user, item = method.embeddings(built.graph.adj)
    return write_result(
        prep.cfg,
        prep.run,
        prep.split,
        built.parts,
        result,
        Fitted(user, item, method.state_dict(), time.perf_counter() - start),
        selected_on=built.target.selected_on,
        most_popular_score=built.most_popular_score,
        extra={
            "imbalance": built.strategies.summary,
            "device": str(prep.device),
            "world_size": prep.replicas.size,
            "threads": torch.get_num_threads() if prep.device.type == "cpu" else None,
            "warm_start": None if prep.warm is None else prep.warm.to_dict(),
        },
        tracker=tracker,
    )


@dataclass(frozen=True, eq=False)
class Fitted:
    """A selected model as its score tables: user [U, D] and item [I, D] (``user @ item.T``
    ranks), the state to save, and the seconds it took to produce the tables."""

    user: torch.Tensor
    item: torch.Tensor
    state: dict[str, torch.Tensor]
    seconds: float = 0.0


def write_result(
    cfg: RunConfig,
    run: RunFolder,
    split: Split,
    parts: RunParts,
    result: FitResult,
    fitted: Fitted,
    *,
    selected_on: str,
    most_popular_score: float,
    extra: dict[str, Any],
    tracker: Tracker,
) -> TrainReport:
    """Test the selected model once, write its state, tables and ``metrics.json`` into
    ``run``, and record the result; ``extra`` joins the summary (what only the caller knows)."""
    ks = cfg.eval.ks
    start = time.perf_counter()
    groups = cfg.eval.groups
    tested, long_tail = score_test(
        fitted.user, fitted.item, parts, ks, cfg.eval.auc, head=groups.head, tail=groups.tail
    )
    eval_seconds = fitted.seconds + time.perf_counter() - start

    run.write_model(fitted.state)
    run.write_embeddings(fitted.user, fitted.item)

    epoch_seconds = [r["seconds"] for r in result.history]
    summary = {
        **_selection_summary(cfg, result, selected_on),
        "most_popular_score": most_popular_score,
        "test": tested.metrics,
        "test_long_tail": long_tail.metrics,
        "long_tail_groups": {
            "head": groups.head,
            "tail": groups.tail,
            "items": long_tail.item_group_sizes,
            "test_users_per_item_group": long_tail.users_per_item_group,
            "test_users_per_activity_group": long_tail.users_per_activity_group,
        },
        "test_users_evaluated": tested.n_users_evaluated,
        "test_users_skipped": tested.n_users_skipped,
        "test_eval_seconds": eval_seconds,
        "median_epoch_seconds": float(np.median(epoch_seconds)) if epoch_seconds else None,
        "cold": split.cold.to_dict(),
        "n_users": split.n_users,
        "n_items": split.n_items,
        **extra,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "history": result.history,
    }
    run.write_metrics(summary)
    if tracker.enabled:
        record_result(tracker, run, summary, long_tail, ks)
    return TrainReport(
        output_dir=run.root,
        protocol=cfg.train.protocol,
        best_epoch=result.best_epoch,
        selected_on=selected_on,
        select_metric=cfg.train.select_metric,
        test=tested.metrics,
        summary=summary,
        long_tail=long_tail,
    )


def run_training(
    cfg: RunConfig,
    *,
    data_dir: str | None = None,
    resume: bool = False,
    tracker: Tracker | None = None,
    strategy: str | None = None,
    split: Split | None = None,
    test: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    replicas: Replicas | None = None,
) -> TrainReport:
    """Prepare, fit and finalize: train, select, test once and write the run folder.

    ``split``: the prepared split of ``cfg.data`` and ``cfg.seed`` when the caller already
    made it (the main job's prepare stage); None builds it. With a ``tracker``, the run is
    recorded as :mod:`.record` describes (``strategy`` names the imbalance strategy in its
    tags; default: the non-default imbalance settings).

    ``test=False`` (a tuning trial) stops after selection: test is never scored and nothing is
    exported; the report's ``test`` is empty and its summary holds the selection only.
    ``on_epoch_end`` is called with each epoch's record after it is printed and logged (a
    tuner reports the validation curve there; an exception it raises stops training).
    ``replicas``: this process's part in a data-parallel job (see :func:`prepare`); only
    rank 0 prints, logs and writes.
    """
    if isinstance(cfg.model, ClassicConfig):
        from .fitted import run_fitted

        return run_fitted(
            cfg, cfg.model, data_dir=data_dir, resume=resume, tracker=tracker,
            strategy=strategy, split=split, test=test, on_epoch_end=on_epoch_end,
            replicas=replicas,
        )
    prep = prepare(
        cfg, data_dir=data_dir, resume=resume, split=split, tracker=tracker, strategy=strategy,
        replicas=replicas,
    )
    result = fit(prep, tracker=tracker, on_epoch_end=on_epoch_end)
    if not test:
        return selection_report(cfg, prep.run.root, result, prep.built.target.selected_on)
    return finalize(prep, result, tracker=tracker)


def _selection_summary(cfg: RunConfig, fit: FitResult, selected_on: str) -> dict[str, Any]:
    return {
        "protocol": cfg.train.protocol,
        "selected_on": selected_on,
        "select_metric": cfg.train.select_metric,
        "best_epoch": fit.best_epoch,
        "best_score": fit.best_score,
        "epochs_run": fit.epochs_run,
        "stopped_early": fit.stopped_early,
    }


def selection_report(cfg: RunConfig, out: Path, fit: FitResult, selected_on: str) -> TrainReport:
    """A tuning trial's report: the selection and the validation history, no test."""
    summary = {**_selection_summary(cfg, fit, selected_on), "history": fit.history}
    return TrainReport(
        out, cfg.train.protocol, fit.best_epoch, selected_on, cfg.train.select_metric, {}, summary
    )


def epoch_callback(
    tracker: Tracker, selected_on: str, extra: Callable[[dict[str, Any]], None] | None = None
) -> Callable[[dict[str, Any]], None]:
    log = epoch_logger(tracker, selected_on) if tracker.enabled else None

    def each(record: dict[str, Any]) -> None:
        _print_epoch(record)
        if log is not None:
            log(record)
        if extra is not None:
            extra(record)

    return each


def _print_epoch(record: dict[str, Any]) -> None:
    losses = " ".join(f"{k[5:]}={record[k]:.4f}" for k in record if k.startswith("loss/"))
    shown = [k for k in record if "@" in k and k.split("@")[0] in ("recall", "ndcg")]
    metrics = " ".join(f"{k}={record[k]:.4f}" for k in shown if k.endswith("@20"))
    print(f"epoch {record['epoch']:>3}  {record['seconds']:.1f}s  {losses}  {metrics}".rstrip())
