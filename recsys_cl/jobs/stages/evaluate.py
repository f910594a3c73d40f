"""The evaluate stage: re-score a finished run folder's saved embeddings (or the most-popular
baseline) on its test split, exactly as training scored them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from recsys_cl.config import RunConfig
from recsys_cl.metrics import EvalResult, PopularityReport, most_popular_scores

from ..folder import RunFolder
from .parts import folder_parts, score_test


@dataclass(frozen=True)
class ScoreReport:
    """What :func:`score_run` measured on a run folder's test split."""

    run_dir: Path
    config: RunConfig
    what: str
    ks: tuple[int, ...]
    result: EvalResult
    long_tail: PopularityReport


def score_run(
    run_dir: str | Path,
    *,
    baseline: str | None = None,
    ks: tuple[int, ...] | None = None,
    auc: bool = False,
) -> ScoreReport:
    """Re-score a finished run's saved embeddings (or, with ``baseline="most-popular"``, the
    most-popular baseline) on its test split, as training scored them."""
    run = RunFolder(run_dir).require()
    cfg = run.config
    parts = folder_parts(run)
    if baseline == "most-popular":
        user, item = most_popular_scores(parts.train)
        what = "most-popular baseline"
    else:
        user_emb, item_emb = run.embeddings()
        user, item = torch.from_numpy(user_emb), torch.from_numpy(item_emb)
        what = "embeddings"
    ks = ks or cfg.eval.ks
    groups = cfg.eval.groups
    result, long_tail = score_test(user, item, parts, ks, auc, head=groups.head, tail=groups.tail)
    return ScoreReport(run.root, cfg, what, ks, result, long_tail)


__all__ = ["ScoreReport", "score_run"]
