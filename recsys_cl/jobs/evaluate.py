"""The evaluate stage: re-score a finished run folder's saved embeddings (or a baseline) on
its test split, exactly as training scored them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys_cl.config import RunConfig, read_yaml, validate
from recsys_cl.data import IdMap, load_split
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.metrics import EvalResult, PopularityReport, format_popularity, most_popular_scores

from .parts import run_parts, score_test
from .train import format_metrics


def load_embeddings(path: Path, key: str, ids: IdMap) -> torch.Tensor:
    if not path.is_file():
        raise DataError(f"{path}: embeddings not found; is this a finished `recsys-cl train` run?")
    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: unreadable embeddings ({exc})") from None
    if key not in table.columns or "embedding" not in table.columns:
        raise DataError(f"{path}: needs columns {key}, embedding; found {', '.join(table.columns)}")
    idx = ids.to_index(table[key], source=str(path))
    if table.height != ids.size or idx.n_unique() != ids.size:
        raise DataError(f"{path}: {table.height} rows do not cover the run's {ids.size} ids")
    emb = np.stack(table["embedding"].to_numpy())
    order = np.argsort(idx.to_numpy())
    return torch.from_numpy(np.ascontiguousarray(emb[order], dtype=np.float32))


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
    run = Path(run_dir)
    cfg = validate(read_yaml(run / "config.yaml"), RunConfig, str(run / "config.yaml"))
    split = load_split(run / "data")
    parts = run_parts(split, cfg.imbalance.weights.label_threshold, str(run / "data"))
    if baseline == "most-popular":
        user, item = most_popular_scores(parts.train)
        what = "most-popular baseline"
    else:
        user = load_embeddings(run / "user_embeddings.parquet", "user_id", split.users)
        item = load_embeddings(run / "item_embeddings.parquet", "item_id", split.items)
        what = "embeddings"
    ks = ks or cfg.eval.ks
    groups = cfg.eval.groups
    result, long_tail = score_test(user, item, parts, ks, auc, head=groups.head, tail=groups.tail)
    return ScoreReport(run, cfg, what, ks, result, long_tail)


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


__all__ = ["ScoreReport", "load_embeddings", "parse_ks", "print_score", "score_run"]
