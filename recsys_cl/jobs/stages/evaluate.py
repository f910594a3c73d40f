"""The evaluate stage: re-score a finished run folder's saved embeddings (or a baseline: most
popular, or EASE / iALS tuned on its validation part) on its test split, exactly as training
scored them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from recsys_cl.config import RunConfig
from recsys_cl.errors import RecsysError
from recsys_cl.metrics import EvalResult, PopularityReport, most_popular_scores

from ..folder import RunFolder
from .baselines import search_baseline
from .parts import folder_parts, score_test
from .train import resolve_device, selection_target


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
    budget_seconds: float | None = None,
) -> ScoreReport:
    """Re-score a finished run's saved embeddings on its test split, as training scored them;
    or score a baseline there: ``most-popular``, or ``ease`` / ``ials`` tuned on the run's
    selection part (validation, honest protocol) over the run config's ``baselines`` grid
    within ``budget_seconds`` (default ``baselines.budget_seconds``), then tested once."""
    run = RunFolder(run_dir).require()
    cfg = run.config
    parts = folder_parts(run)
    if baseline == "most-popular":
        user, item = most_popular_scores(parts.train)
        what = "most-popular baseline"
    elif baseline is not None:
        target = selection_target(cfg, parts, str(run.data_dir))
        found = search_baseline(
            baseline, cfg.baselines, parts, target, ks=cfg.eval.ks,
            select_metric=cfg.train.select_metric, seed=cfg.seed,
            budget_seconds=budget_seconds or cfg.baselines.budget_seconds,
            device=str(resolve_device(cfg.train.device)), threads=torch.get_num_threads(),
        )
        if found.tables is None:
            raise RecsysError(f"{run.root}: {baseline} baseline skipped: {found.skipped}")
        user, item = found.tables
        chosen = ", ".join(f"{k}={v:g}" for k, v in found.params.items())
        what = (
            f"{baseline} baseline ({chosen}; chosen on {target.selected_on} by "
            f"{cfg.train.select_metric} from {len(found.tried)} fits in {found.seconds:.1f} s)"
        )
    else:
        user_emb, item_emb = run.embeddings()
        user, item = torch.from_numpy(user_emb), torch.from_numpy(item_emb)
        what = "embeddings"
    ks = ks or cfg.eval.ks
    groups = cfg.eval.groups
    result, long_tail = score_test(user, item, parts, ks, auc, head=groups.head, tail=groups.tail)
    return ScoreReport(run.root, cfg, what, ks, result, long_tail)


__all__ = ["ScoreReport", "score_run"]
