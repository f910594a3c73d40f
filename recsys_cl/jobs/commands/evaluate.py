"""``recsys-cl evaluate``: re-score a finished run folder, recorded in a run of its own."""

from __future__ import annotations

import argparse

from recsys_cl.errors import RecsysError
from recsys_cl.metrics import format_popularity
from recsys_cl.tracking.base import metric_dict

from ..stages.evaluate import ScoreReport, score_run
from .report import format_metrics
from .runs import folder_run, print_tracking


def evaluate_job(args: argparse.Namespace) -> int:
    """``recsys-cl evaluate``: re-score a run folder; the metrics go to a run of their own
    (``test/...``, tagged with the baseline when one was scored)."""
    report = score_run(
        args.run_dir, baseline=args.baseline, ks=parse_ks(args.ks), auc=args.auc,
        budget_seconds=args.budget,
    )
    # A baseline under its own name, as the train and main jobs log it: test/ is the model's.
    prefix = "test"
    if args.baseline == "most-popular":
        prefix = "baseline_most_popular"
    elif args.baseline is not None:
        prefix = f"baseline/{args.baseline}/test"
    with folder_run(args, "evaluate") as tracker:
        tracker.set_tags({"scored": report.what})
        tracker.log_metrics(metric_dict(report.result.metrics, prefix))
        tracker.log_metrics(metric_dict(report.long_tail.metrics, prefix))
        print_score(report)
        print_tracking(tracker)
    return 0


def parse_ks(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise RecsysError(f"--ks {text!r}: expected comma-separated integers") from None


def print_score(report: ScoreReport) -> None:
    result = report.result
    print(
        f"{report.run_dir}: {report.what} on test, {result.n_users_evaluated:,} users "
        f"({result.n_users_skipped:,} without test items)"
    )
    print(format_metrics(result.metrics, report.ks))
    print()
    print(format_popularity(report.long_tail, report.ks))


__all__ = ["evaluate_job", "parse_ks", "print_score"]
