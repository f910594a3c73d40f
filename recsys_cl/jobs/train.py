"""The train and evaluate stages: config → split → graph → method → trainer → outputs.

A run folder (``output_dir``) holds::

    config.yaml                     the resolved config
    data/                           the prepared split (parquet parts, id maps, manifest)
    checkpoints/last.pt             written after every epoch; ``--resume`` continues from it
    model.pt                        the selected (best) state dict
    user_embeddings.parquet         user_id (raw) + embedding
    item_embeddings.parquet         item_id (raw) + embedding
    metrics.json                    protocol, selection, test metrics (overall and long-tail),
                                    history, cold counts, the imbalance strategies' summary
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys_cl.config import RunConfig, to_yaml
from recsys_cl.data import IdMap, Split, load_split, save_split
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.graph import build_graph
from recsys_cl.io import atomic_path, write_json
from recsys_cl.metrics import PopularityReport, format_popularity, most_popular_scores
from recsys_cl.metrics import evaluate as full_ranking
from recsys_cl.models import Recommender
from recsys_cl.tracking.base import NullTracker, Tracker, flatten
from recsys_cl.training import EarlyStopping, FitResult, Schedule, Trainer, load_checkpoint

from .build import build_imbalance, build_method
from .data import build_split
from .parts import RunParts, run_parts, score_test, test_exclusions
from .record import epoch_logger, record_result, record_start

__all__ = [
    "RunParts",
    "TrainReport",
    "check_output_dir",
    "fingerprint",
    "run_parts",
    "run_training",
    "print_training",
    "score_test",
    "test_exclusions",
]

# Keys of the resolved config that may change between a run and its resume (the device may
# not: generator states do not move between CPU and CUDA). The long-tail groups only shape
# the final report; retrieval and tracking act after training.
_RESUMABLE_KEYS = (
    "experiment",
    "output_dir",
    "train.progress",
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


def _export_embeddings(path: Path, key: str, ids: IdMap, emb: torch.Tensor) -> None:
    table = pl.DataFrame(
        {
            key: ids.to_raw(np.arange(ids.size)),
            "embedding": emb.detach().cpu().float().numpy(),
        }
    )
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


def _split_for_run(
    cfg: RunConfig, data_dir: str | None, resuming: bool, split: Split | None
) -> Split:
    folder = cfg.output_dir / "data"
    if resuming:
        # The checkpoint's fingerprint (data config and seed included) was checked, so the
        # saved split is the one this config makes.
        return load_split(folder)
    split = split if split is not None else build_split(cfg.data, data_dir, cfg.seed)
    save_split(split, folder)
    return split


def check_output_dir(cfg: RunConfig, resume: bool) -> bool:
    """Whether this is a resume of ``cfg.output_dir``'s run; refuses a folder that holds a run
    unless ``resume``, and a checkpoint of another config, before anything is written.

    Raises:
        RecsysError: the folder holds a run and ``resume`` is False, or its checkpoint is
            another run's.
    """
    last = cfg.output_dir / "checkpoints" / "last.pt"
    if last.exists() and not resume:
        raise RecsysError(
            f"{cfg.output_dir} already holds a run (checkpoints/last.pt); pass --resume to "
            "continue it or choose another output_dir (--set output_dir=..., or compare --out)"
        )
    if resume and last.exists():
        load_checkpoint(last, fingerprint(cfg))
        return True
    return False


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
) -> TrainReport:
    """Train, select, test once and write the run folder. See the module docstring.

    ``split``: the prepared split of ``cfg.data`` and ``cfg.seed`` when the caller already
    made it (the main job's prepare stage); None builds it. With a ``tracker``, the run is recorded as :mod:`.record` describes (``strategy`` names
    the imbalance strategy in its tags; default: the non-default imbalance settings).

    ``test=False`` (a tuning trial) stops after selection: test is never scored and nothing is
    exported; the report's ``test`` is empty and its summary holds the selection only.
    ``on_epoch_end`` is called with each epoch's record after it is printed and logged (a
    tuner reports the validation curve there; an exception it raises stops training).
    """
    tracker = tracker or NullTracker()
    out = cfg.output_dir
    resuming = check_output_dir(cfg, resume)
    device = resolve_device(cfg.train.device)
    split = _split_for_run(cfg, data_dir, resuming, split)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(to_yaml(cfg))
    if tracker.enabled:
        record_start(tracker, cfg, split, out, str(device), strategy)

    generator = torch.Generator().manual_seed(cfg.seed)
    device_generator = torch.Generator(device).manual_seed(cfg.seed + 1)

    parts = run_parts(split, cfg.imbalance.weights.label_threshold, str(out / "data"))
    train_items = parts.train
    graph = build_graph(
        torch.from_numpy(train_items.rows()),
        torch.from_numpy(train_items.indices),
        split.n_users,
        split.n_items,
    ).to(device)
    strategies = build_imbalance(cfg.imbalance, train_items, parts.explicit_negatives)
    init = torch.Generator().manual_seed(cfg.seed + 2)
    method = build_method(
        cfg.model,
        split.n_users,
        split.n_items,
        generator=init,
        objective=strategies.objective,
        negative_selector=strategies.negative_selector,
    ).to(device)

    ks = cfg.eval.ks
    if cfg.train.protocol == "honest":
        if parts.val_truth is None:
            raise DataError(f"{out / 'data'}: the honest protocol needs a validation part")
        selection_truth, selection_excl, selected_on = parts.val_truth, [parts.train_seen], "val"
    else:
        selection_truth, selection_excl, selected_on = parts.test_truth, parts.test_exclude, "test"
    if selection_truth.nnz == 0:
        raise DataError(
            f"{out / 'data'}: the {selected_on} part is empty (every row cold or none held out); "
            "nothing to select the epoch on"
        )

    # The floor a model must clear, scored where the epoch is selected (the stopping rule
    # and the guard of the train/main jobs read it).
    popular_score = full_ranking(
        *most_popular_scores(train_items), selection_truth, selection_excl, ks=ks
    ).metrics[cfg.train.select_metric]

    def select(m: Recommender) -> dict[str, float]:
        user, item = m.embeddings(graph.adj)
        return full_ranking(user, item, selection_truth, selection_excl, ks=ks).metrics

    schedule = Schedule(
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        lr=cfg.train.lr,
        eval_every=cfg.train.eval_every,
        select_metric=cfg.train.select_metric,
        stopping=EarlyStopping(
            cfg.train.patience,
            cfg.train.min_steps,
            cfg.train.recovery,
            baseline=popular_score if cfg.train.beat_most_popular else None,
        ),
    )
    trainer = Trainer(
        method,
        graph,
        train_items,
        schedule=schedule,
        generator=generator,
        device_generator=device_generator,
        sampling=strategies.sampling,
        evaluate=select,
        checkpoint_dir=out / "checkpoints",
        fingerprint=fingerprint(cfg),
        progress=cfg.train.progress,
        on_epoch_end=_epoch_callback(tracker, selected_on, on_epoch_end),
    )
    fit = trainer.fit(resume=resume)
    if not test:
        return _selection_report(cfg, out, fit, selected_on)

    method.eval()
    start = time.perf_counter()
    user, item = method.embeddings(graph.adj)
    groups = cfg.eval.groups
    tested, long_tail = score_test(
        user, item, parts, ks, cfg.eval.auc, head=groups.head, tail=groups.tail
    )
    eval_seconds = time.perf_counter() - start

    with atomic_path(out / "model.pt") as tmp:
        torch.save({k: v.cpu() for k, v in method.state_dict().items()}, tmp)
    _export_embeddings(out / "user_embeddings.parquet", "user_id", split.users, user)
    _export_embeddings(out / "item_embeddings.parquet", "item_id", split.items, item)

    epoch_seconds = [r["seconds"] for r in fit.history]
    summary = {
        **_selection_summary(cfg, fit, selected_on),
        "most_popular_score": popular_score,
        "test": tested.metrics,
        "test_long_tail": long_tail.metrics,
        "long_tail_groups": {
            "head": groups.head,
            "tail": groups.tail,
            "items": long_tail.item_group_sizes,
            "test_users_per_item_group": long_tail.users_per_item_group,
            "test_users_per_activity_group": long_tail.users_per_activity_group,
        },
        "imbalance": strategies.summary,
        "test_users_evaluated": tested.n_users_evaluated,
        "test_users_skipped": tested.n_users_skipped,
        "test_eval_seconds": eval_seconds,
        "median_epoch_seconds": float(np.median(epoch_seconds)) if epoch_seconds else None,
        "cold": split.cold.to_dict(),
        "n_users": split.n_users,
        "n_items": split.n_items,
        "device": str(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "history": fit.history,
    }
    write_json(out / "metrics.json", summary)
    if tracker.enabled:
        record_result(tracker, out, summary, long_tail, ks)
    return TrainReport(
        output_dir=out,
        protocol=cfg.train.protocol,
        best_epoch=fit.best_epoch,
        selected_on=selected_on,
        select_metric=cfg.train.select_metric,
        test=tested.metrics,
        summary=summary,
        long_tail=long_tail,
    )


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


def _selection_report(cfg: RunConfig, out: Path, fit: FitResult, selected_on: str) -> TrainReport:
    """A tuning trial's report: the selection and the validation history, no test."""
    summary = {**_selection_summary(cfg, fit, selected_on), "history": fit.history}
    return TrainReport(out, cfg.train.protocol, fit.best_epoch, selected_on, cfg.train.select_metric, {}, summary)


def _epoch_callback(
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


def format_metrics(metrics: dict[str, float], ks: tuple[int, ...]) -> str:
    """A metric × cut-off table."""
    names = sorted({k.split("@")[0] for k in metrics if "@" in k}, key=_METRIC_ORDER.index)
    head = "metric     " + "".join(f"{'@' + str(k):>10}" for k in ks)
    rows = [head]
    for name in names:
        rows.append(f"{name:<11}" + "".join(f"{metrics[f'{name}@{k}']:>10.4f}" for k in ks))
    if "auc" in metrics:
        rows.append(f"{'auc':<11}{metrics['auc']:>10.4f}")
    return "\n".join(rows)


_METRIC_ORDER = ["recall", "ndcg", "precision", "hit_rate", "mrr"]


def print_training(cfg: RunConfig, report: TrainReport) -> None:
    """The selection, the test metrics table and the long-tail table of a finished run."""
    s = report.summary
    print(
        f"{cfg.model.method} on {cfg.data.dataset or cfg.data.path} — protocol {report.protocol}: "
        f"best epoch {report.best_epoch} by {report.select_metric} on {report.selected_on}"
    )
    print(f"test ({s['test_users_evaluated']:,} users; {s['test_users_skipped']:,} without test items):")
    print(format_metrics(report.test, cfg.eval.ks))
    if report.long_tail is not None:
        print()
        print(format_popularity(report.long_tail, cfg.eval.ks))
    print(f"\nwrote {report.output_dir}/ (metrics.json, model.pt, *_embeddings.parquet)")
