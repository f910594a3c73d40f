"""The train stage of a classic method (EASE, iALS): fitted once, scored where the protocol
selects, tested once, written into a run folder exactly as a trained method's.

The folder gets the same files (config, split, ``model.pt`` with the fitted parameters, the
score tables as ``*_embeddings.parquet``, ``metrics.json``), so ``evaluate``, ``index``,
``recommend``, serving, ``compare`` and ``tune`` read it unchanged. Its history has one entry:
the fit (epoch 1), with the selection metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from recsys_cl.config import ClassicConfig, RunConfig
from recsys_cl.data import Split
from recsys_cl.errors import RecsysError
from recsys_cl.tracking.base import NullTracker, Tracker
from recsys_cl.training import FitResult
from recsys_cl.training.distributed import Replicas

from ..folder import RunFolder
from .data import build_split
from .parts import run_parts
from .record import record_start
from .train import (
    Fitted,
    TrainReport,
    check_output_dir,
    epoch_callback,
    fingerprint,
    most_popular_floor,
    resolve_device,
    selection_report,
    selection_target,
    write_result,
)


def run_fitted(
    cfg: RunConfig,
    model: ClassicConfig,
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
    """:func:`~recsys_cl.jobs.stages.train.run_training` for ``cfg.model`` = ``model``, a
    classic block: fit, score the selection part, test once (unless ``test=False``: a tuning
    trial), write and record.

    A fit has no epochs to resume: ``resume`` on a finished folder fits again on its saved
    split (the same config gives the same model); without ``resume`` a finished folder is
    refused, as a trained one is.
    """
    if replicas is not None and replicas.size > 1:
        raise RecsysError(
            f"model.method '{model.method}' is fitted in one process: run it without "
            "--nproc-per-node or torchrun"
        )
    tracker = tracker or NullTracker()
    run = RunFolder(cfg.output_dir)
    check_output_dir(cfg, resume)
    if run.finished() and run.has_config():
        if not resume:
            raise RecsysError(
                f"{cfg.output_dir} already holds a finished run ({run.metrics_file}); pass "
                "--resume to fit it again or choose another output_dir"
            )
        if fingerprint(run.config) != fingerprint(cfg):
            raise RecsysError(
                f"{cfg.output_dir} holds a run of another config ({run.config_file}); "
                "choose another output_dir"
            )
        split = run.split
    elif split is None:
        split = build_split(cfg.data, data_dir, cfg.seed)
    run.write_split(split)
    run.write_config(cfg)
    device = resolve_device(cfg.train.device)
    if tracker.enabled:
        record_start(tracker, cfg, split, run, str(device), strategy)
        tracker.log_params({"world_size": 1})

    source = str(run.data_dir)
    parts = run_parts(split, cfg.imbalance.weights.label_threshold, source)
    target = selection_target(cfg, parts, source)
    threads = torch.get_num_threads()
    print(f"fitting {model.method} ({model.describe()}) on {parts.train.nnz:,} pairs", flush=True)
    start = time.perf_counter()
    tables = model.fit(
        parts.train, seed=cfg.seed, device=str(device), threads=threads,
        progress=cfg.train.progress,
    )
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scored = target.score(tables.user, tables.item, cfg.eval.ks)
    record: dict[str, Any] = {
        "epoch": 1,
        "seconds": fit_seconds,
        "steps": 0,
        **scored,
        "eval_seconds": time.perf_counter() - start,
    }
    epoch_callback(tracker, target.selected_on, on_epoch_end)(record)
    result = FitResult(
        best_epoch=1,
        best_score=scored[cfg.train.select_metric],
        epochs_run=1,
        stopped_early=False,
        history=[record],
    )
    if not test:
        return selection_report(cfg, run.root, result, target.selected_on)
    return write_result(
        cfg,
        run,
        split,
        parts,
        result,
        Fitted(tables.user, tables.item, tables.state),
        selected_on=target.selected_on,
        most_popular_score=most_popular_floor(
            target, parts, cfg.eval.ks, cfg.train.select_metric
        ),
        extra={
            "fit_seconds": fit_seconds,
            "device": str(device),
            "world_size": 1,
            "threads": threads,
        },
        tracker=tracker,
    )


__all__ = ["run_fitted"]
