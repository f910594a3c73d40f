"""Which pairs a run trains on, ranks against and masks: plain logs and labelled logs.

Used by the train and evaluate stages (and by anything that must rank exactly as they do).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import torch

from recsys_cl.data import Split, UserItems
from recsys_cl.errors import DataError
from recsys_cl.metrics import EvalResult, PopularityReport, popularity_metrics
from recsys_cl.metrics import evaluate as full_ranking

from ..folder import RunFolder


def test_exclusions(split: Split) -> list[UserItems]:
    """Items never ranked at test time: training items, and validation items when present."""
    excl = [split.user_items("train")]
    if split.val is not None:
        excl.append(split.user_items("val"))
    return excl


@dataclass(frozen=True)
class RunParts:
    """The pair sets a run trains and scores on.

    Without labels: ``train`` is every training row, the truths every val/test row. With
    ``imbalance.weights.label_threshold``: rows rated >= threshold are positives (``train``,
    the val/test truths) and the training rows below it are ``explicit_negatives``; every
    training (and validation) row, either label, is masked when ranking (the user has seen it).
    """

    train: UserItems
    explicit_negatives: UserItems | None
    val_truth: UserItems | None
    test_truth: UserItems
    train_seen: UserItems
    test_exclude: list[UserItems]


def run_parts(split: Split, label_threshold: float | None, source: str) -> RunParts:
    """Split ``split`` into what training and evaluation use (see :class:`RunParts`)."""
    if label_threshold is None:
        train = split.user_items("train")
        return RunParts(
            train=train,
            explicit_negatives=None,
            val_truth=split.user_items("val") if split.val is not None else None,
            test_truth=split.user_items("test"),
            train_seen=train,
            test_exclude=test_exclusions(split),
        )

    def pairs(frame: pl.DataFrame, keep: pl.Expr | None) -> UserItems:
        if "rating" not in frame.columns:
            raise DataError(
                f"{source}: imbalance.weights.label_threshold needs a rating column in the log"
            )
        if keep is not None:
            frame = frame.filter(keep)
        return UserItems.from_pairs(
            frame["user"].to_numpy(), frame["item"].to_numpy(), split.n_users, split.n_items
        )

    positive = pl.col("rating") >= label_threshold
    seen = [pairs(split.train, None)]
    val_truth = None
    if split.val is not None:
        seen.append(pairs(split.val, None))
        val_truth = pairs(split.val, positive)
    return RunParts(
        train=pairs(split.train, positive),
        explicit_negatives=pairs(split.train, ~positive),
        val_truth=val_truth,
        test_truth=pairs(split.test, positive),
        train_seen=seen[0],
        test_exclude=seen,
    )


def folder_parts(run: RunFolder) -> RunParts:
    """:func:`run_parts` of a finished run folder, as its saved config says (a labelled run
    scores only its positive test rows)."""
    threshold = run.config.imbalance.weights.label_threshold
    return run_parts(run.split, threshold, str(run.data_dir))


def score_test(
    user: torch.Tensor,
    item: torch.Tensor,
    parts: RunParts,
    ks: tuple[int, ...],
    auc: bool,
    head: float,
    tail: float,
) -> tuple[EvalResult, PopularityReport]:
    """Overall and long-tail test metrics from one full-ranking pass."""
    result = full_ranking(
        user,
        item,
        parts.test_truth,
        parts.test_exclude,
        ks=ks,
        auc=auc,
        return_topk=True,
        return_per_user=True,
    )
    report = popularity_metrics(result, parts.test_truth, parts.train, head=head, tail=tail)
    return result, report
