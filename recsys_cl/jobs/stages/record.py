"""What a tracked training run records, stage by stage (see README "Tracking").

- :func:`record_start`: the resolved config (``config.yaml`` artifact and flattened params),
  tags (dataset, method, imbalance strategy, protocol, seed, git commit, device, library
  versions) and the dataset profile (users, items, interactions, density, head share, Ginis).
- :func:`epoch_logger`: per-epoch losses, epoch time and selection metrics with ``step=epoch``.
- :func:`record_result`: final test metrics at every K and the head/mid/tail metrics under
  ``test/``, timings, plots, and the run folder's embeddings, id maps, checkpoint and
  ``metrics.json``.

Every function takes a :class:`~recsys_cl.tracking.base.Tracker` and does nothing useful with
a null one; callers skip them when ``tracker.enabled`` is False.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recsys_cl.config import ImbalanceConfig, RunConfig
from recsys_cl.data import Split
from recsys_cl.data.prepare import ITEM_IDS_FILE, USER_IDS_FILE
from recsys_cl.data.stats import profile
from recsys_cl.metrics import PopularityReport
from recsys_cl.optional import faiss_distribution, installed_version
from recsys_cl.tracking import plots
from recsys_cl.tracking.base import Tracker, flatten, metric_dict

from ..folder import RunFolder

_PACKAGES = ("recsys-cl", "torch", "torch-geometric", "numpy", "polars", "pandas", "mlflow")
# The cut-off tables and plots headline (Recall@20 in the papers), else the smallest asked.
HEADLINE_K = 20


def headline_k(ks: Sequence[int]) -> int:
    return HEADLINE_K if HEADLINE_K in ks else min(ks)


def strategy_name(imbalance: ImbalanceConfig) -> str:
    """The imbalance settings that differ from the defaults, ``key=value`` joined by ``,``;
    ``none`` when everything is default."""
    ours = flatten(imbalance.model_dump(mode="json"))
    default = flatten(ImbalanceConfig().model_dump(mode="json"))
    changed = [f"{k}={v}" for k, v in ours.items() if default.get(k, object()) != v]
    return ",".join(changed) or "none"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on (``python`` included)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        out[name] = installed_version(name) or "not installed"
    faiss = faiss_distribution()
    if faiss is not None:
        out["faiss"] = f"{faiss} {installed_version(faiss)}"
    return out


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out where recsys_cl's source lives (None outside a git checkout);
    ``-dirty`` is appended when tracked files have uncommitted changes."""
    where = folder or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_tags(cfg: RunConfig, device: str, strategy: str | None = None) -> dict[str, Any]:
    """Tags that group and filter runs in the MLflow UI."""
    tags: dict[str, Any] = {
        "dataset": cfg.data.dataset or Path(cfg.data.path or "?").name,
        "method": cfg.model.method,
        "imbalance_strategy": strategy or strategy_name(cfg.imbalance),
        "protocol": cfg.train.protocol,
        "seed": cfg.seed,
        "device": device,
        "output_dir": str(cfg.output_dir),
    }
    commit = git_commit()
    if commit is not None:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    tags.update({f"version.{k}": v for k, v in library_versions().items()})
    return tags


def record_start(
    tracker: Tracker,
    cfg: RunConfig,
    split: Split,
    run: RunFolder,
    device: str,
    strategy: str | None = None,
) -> None:
    """Config, tags and dataset profile, before the first epoch."""
    tracker.log_params(flatten(cfg.model_dump(mode="json")))
    tracker.set_tags(run_tags(cfg, device, strategy))
    tracker.log_artifact(run.config_file)
    p = profile(split)
    data = {
        "users": p.users,
        "items": p.items,
        "interactions": p.interactions,
        "density": p.density,
        "head_share": p.head_share,
        "item_gini": p.item_gini,
        "user_gini": p.user_gini,
    }
    data.update({f"{part}_rows": n for part, n in (p.parts or {}).items()})
    tracker.log_metrics(metric_dict(data, "data"))


def epoch_logger(tracker: Tracker, selected_on: str) -> Callable[[dict[str, Any]], None]:
    """An ``on_epoch_end`` callback: ``loss/<term>``, ``time/epoch_seconds`` and, on
    evaluated epochs, ``<selected_on>/<metric>_at_<K>`` (``val/`` for the honest protocol,
    ``paper_test/`` for the paper protocol), all with ``step=epoch``."""
    prefix = "val" if selected_on == "val" else "paper_test"

    def log(record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in record.items() if k.startswith("loss/")}
        metrics["time/epoch_seconds"] = record["seconds"]
        metrics.update(
            metric_dict({k: v for k, v in record.items() if "@" in k or k == "auc"}, prefix)
        )
        tracker.log_metrics(metric_dict(metrics), step=int(record["epoch"]))

    return log


def record_result(
    tracker: Tracker,
    run: RunFolder,
    summary: dict[str, Any],
    long_tail: PopularityReport,
    ks: tuple[int, ...],
) -> None:
    """Test metrics, timings, plots and the run folder's outputs, after testing."""
    tracker.log_metrics(metric_dict(summary["test"], "test"))
    tracker.log_metrics(metric_dict(long_tail.metrics, "test"))
    tracker.log_metrics(
        metric_dict(
            {
                "users_evaluated": summary["test_users_evaluated"],
                "users_skipped": summary["test_users_skipped"],
            },
            "test",
        )
    )
    timings = {
        "median_epoch_seconds": summary["median_epoch_seconds"],
        "test_eval_seconds": summary["test_eval_seconds"],
        "train_seconds": sum(r["seconds"] for r in summary["history"]),
    }
    tracker.log_metrics(metric_dict(timings, "time"))
    tracker.log_metrics(
        metric_dict(
            {"best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"]}, "select"
        )
    )
    tracker.set_tags(
        {"selected_on": summary["selected_on"], "select_metric": summary["select_metric"]}
    )

    history = summary["history"]
    k = headline_k(ks)
    figures = {
        "plots/losses.png": plots.loss_curves(history),
        "plots/validation.png": plots.validation_curves(
            history, ks, split=summary["selected_on"], best_epoch=summary["best_epoch"]
        ),
        "plots/recall_by_popularity.png": plots.recall_by_group(
            long_tail.metrics, summary["test"][f"recall@{k}"], k
        ),
    }
    for name, figure in figures.items():
        out = run.root / name
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=110)
        tracker.log_artifact(out, "plots")
        plots.close(figure)

    tracker.log_artifact(run.metrics_file)
    tracker.log_artifact(run.model_file, "checkpoint")
    for path in (run.user_embeddings, run.item_embeddings):
        tracker.log_artifact(path, "embeddings")
    # The embeddings' rows carry raw ids; the maps give the dense index order they were
    # trained in (index i = row i of the model's tables).
    for name in (USER_IDS_FILE, ITEM_IDS_FILE):
        tracker.log_artifact(run.data_dir / name, "embeddings/id_maps")


__all__ = [
    "HEADLINE_K",
    "epoch_logger",
    "headline_k",
    "git_commit",
    "library_versions",
    "record_result",
    "record_start",
    "run_tags",
    "strategy_name",
]
