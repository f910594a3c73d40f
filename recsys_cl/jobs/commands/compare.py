"""``recsys-cl compare``: imbalance strategies side by side.

With ``--sweep FILE`` it trains every strategy of a sweep (``configs/sweeps/``) on the same
split and seed, each as a child run (training record, index and candidate sample) of one
parent run, then writes the comparison table (CSV and Markdown) and a bar chart of overall vs
tail Recall@K to the parent and prints the table. With only ``--experiment NAME`` it prints
the table of the latest comparison in that experiment again, from ``mlflow.search_runs``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cl.config import RunConfig, load_sweep
from recsys_cl.errors import RecsysError
from recsys_cl.io import atomic_path
from recsys_cl.optional import faiss_available
from recsys_cl.tracking import plots
from recsys_cl.tracking.base import metric_dict

from ..folder import RunFolder, writer_locks
from ..stages.data import build_split
from ..stages.record import HEADLINE_K, headline_k
from ..stages.train import check_output_dir, run_training
from .retrieval import record_candidates, record_index
from .runs import (
    TrackingOptions,
    open_run,
    previous_run,
    source_run_id,
    write_tracking_file,
)

# Table columns: (header, MLflow metric name with {k}).
_COLUMNS = (
    ("recall@{k}", "test/recall_at_{k}"),
    ("ndcg@{k}", "test/ndcg_at_{k}"),
    ("head_recall@{k}", "test/head_recall_at_{k}"),
    ("tail_recall@{k}", "test/tail_recall_at_{k}"),
    ("coverage@{k}", "test/coverage_at_{k}"),
    ("arp@{k}", "test/arp_at_{k}"),
    ("best_epoch", "select/best_epoch"),
    ("s/epoch", "time/median_epoch_seconds"),
)


def comparison_row(
    strategy: str, metrics: Mapping[str, float], run_id: str | None, k: int
) -> dict[str, Any]:
    """One table row from a run's MLflow-named metrics (missing ones are NaN)."""
    row: dict[str, Any] = {"strategy": strategy}
    for header, name in _COLUMNS:
        value = metrics.get(name.format(k=k))
        row[header.format(k=k)] = math.nan if value is None else float(value)
    row["run_id"] = run_id or ""
    return row


def summary_row(
    strategy: str, summary: Mapping[str, Any], run_id: str | None, k: int
) -> dict[str, Any]:
    """One table row from a training summary (``metrics.json``, or a report's summary)."""
    metrics = {
        **metric_dict(summary["test"], "test"),
        **metric_dict(summary["test_long_tail"], "test"),
        "select/best_epoch": float(summary["best_epoch"]),
        "time/median_epoch_seconds": summary["median_epoch_seconds"] or math.nan,
    }
    return comparison_row(strategy, metrics, run_id, k)


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows))


def to_markdown(table: pl.DataFrame) -> str:
    """A GitHub Markdown table (floats to 4 decimals; ids shortened to 8 characters)."""

    def cell(value: Any, column: str) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:.0f}" if column == "best_epoch" else f"{value:.4f}"
        return str(value)[:8] if column == "run_id" else str(value)

    header = "| " + " | ".join(table.columns) + " |"
    rule = (
        "|"
        + "|".join("---" if c in ("strategy", "run_id") else "---:" for c in table.columns)
        + "|"
    )
    body = [
        "| " + " | ".join(cell(row[c], c) for c in table.columns) + " |"
        for row in table.iter_rows(named=True)
    ]
    return "\n".join([header, rule, *body])


def _write_outputs(table: pl.DataFrame, folder: Path, k: int) -> list[Path]:
    csv, md, png = folder / "comparison.csv", folder / "comparison.md", folder / "comparison.png"
    with atomic_path(csv) as tmp:
        table.write_csv(tmp)
    with atomic_path(md) as tmp:
        tmp.write_text(to_markdown(table) + "\n")
    figure = plots.strategy_bars(
        table["strategy"].to_list(),
        table[f"recall@{k}"].fill_nan(0.0).to_list(),
        table[f"tail_recall@{k}"].fill_nan(0.0).to_list(),
        k,
    )
    with atomic_path(png) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plots.close(figure)
    return [csv, md, png]


def _finished(cfg: RunConfig, uri: str | None) -> bool:
    """Whether a strategy's folder holds a run whose every stage ended (a resume skips it):
    tracked in store ``uri``, its ``tracking.json`` says so for that store (a run finished in
    another store is trained again here); untracked, its ``metrics.json`` exists."""
    run = RunFolder(cfg.output_dir)
    if uri is not None:
        saved = run.tracking()
        return bool(saved.get("finished")) and saved.get("tracking_uri") == uri
    return run.finished()


def run_sweep(args: argparse.Namespace) -> int:
    """Train the sweep's strategies as children of one parent run. With ``--resume``, the
    parent run is reopened, finished strategies are read back from their folders, and an
    interrupted one continues from its checkpoint in its own MLflow run."""
    runs = load_sweep(args.sweep, args.overrides)
    if args.out is not None:
        runs = [
            (name, cfg.model_copy(update={"output_dir": Path(args.out) / name}))
            for name, cfg in runs
        ]
    base = runs[0][1]
    folder = base.output_dir.parent
    # The sweep folder and every strategy's run folder are this process's until it ends.
    with writer_locks([folder, *(cfg.output_dir for _, cfg in runs)]):
        return _train_sweep(args, runs, folder)


def _train_sweep(args: argparse.Namespace, runs: list[tuple[str, RunConfig]], folder: Path) -> int:
    resuming = {name: check_output_dir(cfg, resume=args.resume) for name, cfg in runs}
    base = runs[0][1]
    k = args.k or headline_k(base.eval.ks)
    if k not in base.eval.ks:
        raise RecsysError(f"-k {k}: the runs are scored at eval.ks {list(base.eval.ks)}")
    split = build_split(base.data, args.data_dir, base.seed)
    opts = TrackingOptions.from_args(args)
    with open_run(
        opts,
        experiment=base.experiment,
        configured_uri=base.tracking.uri,
        run_name=f"compare:{Path(args.sweep).stem}",
        tags={
            "job": "compare",
            "sweep": str(args.sweep),
            "strategies": ",".join(n for n, _ in runs),
        },
        run_dir=folder,
        resume=args.resume,
    ) as parent:
        index_stages = parent.enabled and faiss_available()
        rows = []
        for name, cfg in runs:
            if args.resume and _finished(cfg, parent.uri):
                print(f"== {name}: finished earlier, read from {cfg.output_dir}", flush=True)
                summary = RunFolder(cfg.output_dir).metrics()
                rows.append(summary_row(name, summary, source_run_id(cfg.output_dir), k))
                continue
            print(f"== {name}", flush=True)
            # Its earlier child reopened (even if killed before its first checkpoint), when it
            # was recorded in this store; a new child otherwise.
            previous = (
                previous_run(cfg.output_dir, parent.uri) if (args.resume and parent.uri) else None
            )
            with parent.child(name, tags={"job": "train"}, resume_run_id=previous) as child:
                write_tracking_file(cfg.output_dir, child)
                report = run_training(
                    cfg, resume=resuming[name], tracker=child, strategy=name, split=split
                )
                if index_stages:
                    index = record_index(child, cfg)
                    record_candidates(child, cfg, index.index_path, every_user=False)
                rows.append(summary_row(name, report.summary, child.run_id, k))
            write_tracking_file(cfg.output_dir, child, finished=True)
        table = comparison_table(rows)
        for path in _write_outputs(table, folder, k):
            parent.log_artifact(path, "comparison")
        print()
        print(to_markdown(table))
        print(f"\nwrote {folder}/comparison.csv, comparison.md, comparison.png")
        if parent.enabled:
            print(
                f"MLflow parent run {parent.run_id}; again: "
                f"recsys-cl compare --experiment {opts.experiment or base.experiment}"
            )
    return 0


def print_from_mlflow(args: argparse.Namespace) -> int:
    """Rebuild the latest comparison of ``--experiment`` from the tracking store."""
    from recsys_cl.tracking.mlflow_tracker import (
        latest_comparison,
        resolve_tracking_uri,
    )

    parent, children = latest_comparison(resolve_tracking_uri(args.tracking_uri), args.experiment)
    k = args.k or HEADLINE_K
    rows = [comparison_row(strategy, metrics, run_id, k) for strategy, metrics, run_id in children]
    print(f"comparison {parent['run_id']} ({parent['sweep']}), {len(rows)} strategies")
    print(to_markdown(comparison_table(rows)))
    return 0


def compare(args: argparse.Namespace) -> int:
    if args.sweep is not None:
        return run_sweep(args)
    if args.experiment is None:
        raise RecsysError(
            "compare needs --sweep FILE (run a comparison) or --experiment NAME (print one)"
        )
    return print_from_mlflow(args)


__all__ = [
    "compare",
    "comparison_row",
    "comparison_table",
    "print_from_mlflow",
    "run_sweep",
    "to_markdown",
]
