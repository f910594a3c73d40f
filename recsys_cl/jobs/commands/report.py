"""What the commands print: metric tables and the summary of a finished training run."""

from __future__ import annotations

from recsys_cl.config import RunConfig
from recsys_cl.metrics import format_popularity

from ..stages.train import TrainReport
from ..stages.warm import WarmStart


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
    if s.get("warm_start"):
        print(WarmStart.from_dict(s["warm_start"]).describe())
    print(
        f"test ({s['test_users_evaluated']:,} users; "
        f"{s['test_users_skipped']:,} without test items):"
    )
    print(format_metrics(report.test, cfg.eval.ks))
    if report.long_tail is not None:
        print()
        print(format_popularity(report.long_tail, cfg.eval.ks))
    print(f"\nwrote {report.output_dir}/ (metrics.json, model.pt, *_embeddings.parquet)")


__all__ = ["format_metrics", "print_training"]
