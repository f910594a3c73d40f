"""``recsys-cl train`` and ``recsys-cl main``: tracked jobs that train a run folder.

- ``train``: train → test → index → a sample of candidates → the classic baselines, one run.
- ``main``: prepare → train → evaluate (saved embeddings re-scored, most-popular baseline) →
  index → candidates for every user → a servable candidate model → the classic baselines
  (EASE, iALS, most-popular tuned on the run's selection part, :mod:`.baselines`), one run;
  prints the metrics, the baseline rows and margin, the run id and how to open the UI.

Tracking is on by default (``sqlite:///mlruns.db``); ``--no-track`` gives a
:class:`~recsys_cl.tracking.base.NullTracker`: ``main`` then writes the same files (no model is
logged), ``train`` skips the index and candidate sample, which exist for the record. The
MLflow code is imported only when a run is tracked, and the FAISS stages only when they run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from recsys_cl.config import RunConfig, load_config
from recsys_cl.data import format_profile, profile
from recsys_cl.errors import RecsysError
from recsys_cl.optional import faiss_available, require_faiss
from recsys_cl.tracking.base import Tracker, metric_dict
from recsys_cl.training.distributed import process_group

from ..folder import RunFolder
from ..stages.data import build_split
from ..stages.evaluate import ScoreReport, score_run
from ..stages.record import headline_k
from ..stages.train import TrainReport, check_output_dir, resolve_device, run_training
from .baselines import baseline_step
from .report import print_training
from .runs import TrackingOptions, open_run, print_tracking

# A shipped config, found by name from any folder (recsys_cl.config.shipped).
DEFAULT_MAIN_CONFIG = "ml-100k/xsimgcl"
# The saved embeddings must reproduce the in-memory test metrics (float32 round trip).
_RESCORE_TOLERANCE = 1e-5


def _training_run(
    opts: TrackingOptions, cfg: RunConfig, job: str, resuming: bool
) -> contextlib.AbstractContextManager[Tracker]:
    """The run a job that trains ``cfg`` records into (its folder's run when resuming)."""
    return open_run(
        opts,
        experiment=cfg.experiment,
        configured_uri=cfg.tracking.uri,
        run_name=cfg.tracking.run_name or f"{job}:{cfg.model.method}:{cfg.output_dir.name}",
        tags={"job": job},
        run_dir=cfg.output_dir,
        resume=resuming,
    )


def train_job(args: argparse.Namespace) -> int:
    """``recsys-cl train``: one run with the training record, the index and a candidate
    sample (the index stages are skipped, and said so, when FAISS is not installed).

    Launched as several ranks (``--nproc-per-node``, ``torchrun``), every rank trains and
    rank 0 alone records the run, indexes, prints and writes.
    """
    cfg: RunConfig = load_config(args.config, [*job_overrides(args), *warm_override(args)])
    device = resolve_device(cfg.train.device)
    with process_group(device, args.dist_timeout) as replicas, contextlib.ExitStack() as held:

        def open_folder() -> bool:
            # Rank 0 writes the folder, so it alone holds the writer lock, until the job ends.
            held.enter_context(RunFolder(cfg.output_dir).lock())
            return check_output_dir(cfg, args.resume)

        resuming = replicas.from_main(open_folder)
        opts = TrackingOptions.from_args(args)
        # One MLflow run per job: the other ranks record nothing.
        opts = replace(opts, enabled=opts.enabled and replicas.is_main)
        with _training_run(opts, cfg, "train", resuming) as tracker:
            report = run_training(
                cfg,
                data_dir=args.data_dir,
                resume=args.resume,
                tracker=tracker,
                replicas=replicas,
            )
            replicas.on_main(_train_outputs, args, cfg, tracker, report)
    return 0


def _train_outputs(
    args: argparse.Namespace, cfg: RunConfig, tracker: Tracker, report: TrainReport
) -> None:
    """What ``train`` does after training: index, candidate sample, summary, baseline guard."""
    if tracker.enabled:
        if faiss_available():
            from .retrieval import record_candidates, record_index

            index = record_index(tracker, cfg)
            record_candidates(tracker, cfg, index.index_path, every_user=False)
        else:
            tracker.set_tags({"index": "skipped: FAISS is not installed"})
    print()
    print_training(cfg, report)
    print()
    baseline_step(tracker, cfg, report, args.config)
    guard_baseline(tracker, report, args.config)
    print_tracking(tracker)


def main_job(args: argparse.Namespace) -> int:
    """``recsys-cl main``: prepare → train → evaluate → index → candidates → model."""
    require_faiss("recsys-cl main")
    opts = TrackingOptions.from_args(args)
    if args.register is not None:
        if not opts.enabled:
            raise RecsysError(
                "--register needs tracking: the registry lives in the MLflow store "
                "(drop --no-track)"
            )
        from recsys_cl.serving.pyfunc import check_model_name

        check_model_name(args.register)
    from .retrieval import allow_items_of

    allow_items = allow_items_of(args)  # a missing file fails before training, not after
    cfg: RunConfig = load_config(args.config or DEFAULT_MAIN_CONFIG, job_overrides(args))
    with RunFolder(cfg.output_dir).lock():
        return _main_stages(args, opts, cfg, allow_items)


def _main_stages(
    args: argparse.Namespace,
    opts: TrackingOptions,
    cfg: RunConfig,
    allow_items: list[str] | None = None,
) -> int:
    """The stages of ``main``, under the run folder's writer lock."""
    from recsys_cl.retrieval.bundle import BundleInfo as CandidateInfo
    from recsys_cl.retrieval.bundle import bundle_size

    from ..stages.bundle import write_candidate_bundle
    from .retrieval import record_candidates, record_index

    resuming = check_output_dir(cfg, args.resume)
    out = cfg.output_dir
    with _training_run(opts, cfg, "main", resuming) as tracker:
        _stage("prepare")
        start = time.perf_counter()
        split = None if resuming else build_split(cfg.data, args.data_dir, cfg.seed)
        if split is not None:
            print(format_profile(profile(split), cfg.data.dataset or str(cfg.data.path)))
        tracker.log_metrics({"time/prepare_seconds": time.perf_counter() - start})

        _stage("train")
        report = run_training(
            cfg, data_dir=args.data_dir, resume=args.resume, tracker=tracker, split=split
        )

        _stage("evaluate")
        start = time.perf_counter()
        _check_rescore(report.test, score_run(out, auc=cfg.eval.auc), out)
        baseline = score_run(out, baseline="most-popular")
        tracker.log_metrics(metric_dict(baseline.result.metrics, "baseline_most_popular"))
        tracker.log_metrics({"time/evaluate_seconds": time.perf_counter() - start})

        _stage("index")
        index = record_index(tracker, cfg)
        print(f"{index.index.describe()}: ANN recall@{index.recall_k} vs exact {index.recall:.4f}")

        _stage("candidates")
        cands = record_candidates(tracker, cfg, index.index_path, every_user=True)
        print(f"top-{cands.k} candidates for {cands.n_users:,} users -> {cands.out}")
        if cands.quality is not None:
            kk = cands.list_length
            q = cands.quality.metrics
            print(
                f"candidates vs test: recall@{kk} {q[f'recall@{kk}']:.4f}  "
                f"ndcg@{kk} {q[f'ndcg@{kk}']:.4f}"
            )

        bundle = write_candidate_bundle(
            out,
            RunFolder(out).bundle_dir,
            index_path=index.index_path,
            k=cfg.retrieval.k,
            max_k=cfg.retrieval.max_k,
            max_rows=cfg.retrieval.max_rows,
            allow_items=allow_items,
        )
        info = CandidateInfo.read(bundle)
        rule = "none" if info.fold_in is None else info.fold_in["kind"]
        print(f"candidate bundle: {bundle_size(bundle)} (fold-in rule: {rule})")
        if allow_items is not None:
            print(f"candidate model allow-list: {info.n_allowed:,} items")
        model_uri = _log_model(tracker, bundle, args.register) if tracker.enabled else None

        print()
        print_training(cfg, report)
        k = headline_k(cfg.eval.ks)
        print(
            f"most-popular baseline: recall@{k} {baseline.result.metrics[f'recall@{k}']:.4f}  "
            f"ndcg@{k} {baseline.result.metrics[f'ndcg@{k}']:.4f}"
        )
        if model_uri is not None:
            print(f"candidate model: {model_uri}")
        print()
        baseline_step(tracker, cfg, report, str(args.config or DEFAULT_MAIN_CONFIG))
        guard_baseline(tracker, report, str(args.config or DEFAULT_MAIN_CONFIG))
        print_tracking(tracker)
    return 0


def job_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, with ``--no-baselines`` as ``baselines.enabled=false``."""
    return [*args.overrides, *(["baselines.enabled=false"] if args.no_baselines else [])]


def warm_override(args: argparse.Namespace) -> list[str]:
    """``--warm-start RUN_DIR`` as ``train.warm_start=RUN_DIR`` (quoted: a folder named
    ``123`` or ``true`` stays a path)."""
    if args.warm_start is None:
        return []
    return [f"train.warm_start={json.dumps(str(args.warm_start))}"]


def guard_baseline(tracker: Tracker, report: TrainReport, config: str) -> bool:
    """Whether the selected model beats most-popular where its epoch was selected (validation
    under the honest protocol); tags the run either way and, when it does not, says so in one
    line with the next step."""
    s = report.summary
    model, floor = float(s["best_score"]), float(s["most_popular_score"])
    beats = model > floor
    tracker.set_tags({"quality.beats_most_popular": str(beats).lower()})
    tracker.log_metrics({"select/most_popular_score": floor})
    if not beats:
        print(
            f"WARNING: the selected model does not beat recommending the most popular items on "
            f"{s['selected_on']} ({s['select_metric']} {model:.4f} vs {floor:.4f}); tune it on "
            f"validation: recsys-cl tune --config {config} --space SPACE.yaml (see configs/tune/)",
            file=sys.stderr,
            flush=True,
        )
    return beats


def _stage(name: str) -> None:
    print(f"== {name}", flush=True)


def _check_rescore(trained: dict[str, float], rescored: ScoreReport, run_dir: Path) -> None:
    again = rescored.result.metrics
    worst = max(abs(trained[k] - again[k]) for k in trained.keys() & again.keys())
    if worst > _RESCORE_TOLERANCE:
        raise RecsysError(
            f"{run_dir}: the saved embeddings score {worst:.2e} away from the trained model's "
            "test metrics; the run folder was changed while the job ran"
        )


def _log_model(tracker: Tracker, bundle: Path, register: str | None) -> str:
    from recsys_cl.serving.pyfunc import log_candidate_model

    assert tracker.uri is not None and tracker.run_id is not None  # a tracked run
    info = log_candidate_model(
        bundle, tracking_uri=tracker.uri, run_id=tracker.run_id, register=register
    )
    if info.registered_version is not None:
        print(f"registered {info.registered_name} version {info.registered_version}")
    return info.model_uri


__all__ = ["DEFAULT_MAIN_CONFIG", "guard_baseline", "main_job", "train_job"]
