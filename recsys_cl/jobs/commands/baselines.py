"""The baseline step of ``train`` and ``main``: the classic baselines fitted on the run's own
split, tuned where the run selects, shown beside the model, recorded, and guarded.

What a run gets (see :class:`~recsys_cl.config.BaselinesConfig`): one printed row per
baseline beside the model's, ``baselines.json`` in the run folder, MLflow metrics
``baseline/<name>/{val,test}/<metric>_at_<K>`` (``paper_test`` in place of ``val`` under the
paper protocol) and ``baseline/<name>/fit_seconds``, the chosen hyper-parameters as
``baseline.<name>.<key>`` tags, ``quality.margin_over_best_baseline`` (the model's test select
metric over the best classic baseline's, minus 1; the best is chosen where the model was) and
one ``WARNING:`` line when a classic baseline beats the model where its epoch was selected.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from recsys_cl.config import RunConfig
from recsys_cl.io import write_json
from recsys_cl.tracking.base import Tracker, metric_dict

from ..folder import RunFolder
from ..stages.baselines import BaselineResult, fit_baselines
from ..stages.parts import folder_parts
from ..stages.record import headline_k
from ..stages.train import TrainReport, resolve_device, selection_target

BASELINES_FILE = "baselines.json"
# The baselines a model is measured against (most-popular is the floor, not a contender).
CLASSIC = ("ease", "ials")


def baseline_step(
    tracker: Tracker, cfg: RunConfig, report: TrainReport, config: str
) -> list[BaselineResult]:
    """Fit, print, record and guard the run's baselines (nothing when
    ``baselines.enabled`` is false, said in one line). ``config`` names the run's config file
    in the guard's advice."""
    if not cfg.baselines.enabled:
        print("baselines: off (baselines.enabled=false)")
        return []
    run = RunFolder(report.output_dir)
    parts = folder_parts(run)
    target = selection_target(cfg, parts, str(run.data_dir))
    # A classic model is not its own baseline.
    names = [n for n in cfg.baselines.which if n != cfg.model.method]
    print(
        f"baselines: {', '.join(names)} tuned on {target.selected_on} within "
        f"{cfg.baselines.budget_seconds:.0f} s",
        flush=True,
    )
    results = fit_baselines(
        cfg.baselines, parts, target, ks=cfg.eval.ks, select_metric=cfg.train.select_metric,
        seed=cfg.seed, names=names, device=str(resolve_device(cfg.train.device)),
        threads=torch.get_num_threads(), on_result=_print_progress,
    )
    summary = _summary(cfg, report, results)
    write_json(run.root / BASELINES_FILE, summary)
    print()
    print(format_baselines(cfg, report, results, summary))
    if tracker.enabled:
        _record(tracker, run, summary, results, target.selected_on)
    _guard(cfg, report, results, config)
    return results


def _print_progress(result: BaselineResult) -> None:
    fit = result.fit
    if fit.skipped is not None:
        print(f"  {fit.name}: skipped ({fit.skipped})", flush=True)
        return
    extra = f"; stopped by the {fit.stopped}" if fit.stopped else ""
    print(
        f"  {fit.name}: {len(fit.tried)} fit{'s' if len(fit.tried) != 1 else ''} in "
        f"{fit.seconds:.1f} s{extra}",
        flush=True,
    )


def _best_classic(results: list[BaselineResult], metric: str) -> BaselineResult | None:
    fitted = [r for r in results if r.name in CLASSIC and r.fit.skipped is None]
    return max(fitted, key=lambda r: r.fit.selected[metric], default=None)


def _summary(
    cfg: RunConfig, report: TrainReport, results: list[BaselineResult]
) -> dict[str, Any]:
    metric = cfg.train.select_metric
    best = _best_classic(results, metric)
    k = headline_k(cfg.eval.ks)
    margins: dict[str, float] = {}
    if best is not None:
        for key in dict.fromkeys([metric, f"recall@{k}", f"ndcg@{k}"]):
            if best.test[key] > 0:
                margins[key] = report.test[key] / best.test[key] - 1.0
    margin = margins.get(metric)
    return {
        "selected_on": report.selected_on,
        "select_metric": metric,
        "model": {
            "method": cfg.model.method,
            "selected": report.summary["best_score"],
            "test": report.test,
        },
        "best_classic": best.name if best is not None else None,
        "margin_over_best_baseline": margin,
        "margins": margins,
        "baselines": {
            r.name: {
                "params": r.fit.params,
                "selected": r.fit.selected,
                "test": r.test,
                "seconds": r.fit.seconds,
                "tried": [
                    {"params": p, metric: v, "seconds": s} for p, v, s in r.fit.tried
                ],
                "skipped": r.fit.skipped,
                "stopped": r.fit.stopped,
            }
            for r in results
        },
    }


def format_baselines(
    cfg: RunConfig, report: TrainReport, results: list[BaselineResult], summary: dict[str, Any]
) -> str:
    """The model's row and one row per baseline: where selected, test at the headline K."""
    metric, k = cfg.train.select_metric, headline_k(cfg.eval.ks)
    on = report.selected_on
    head = (
        f"{'':<14}{on + ' ' + metric:>14}{'recall@' + str(k):>12}{'ndcg@' + str(k):>10}"
        f"{'seconds':>9}  chosen"
    )
    seconds = sum(r["seconds"] for r in report.summary["history"])
    rows = [
        head,
        f"{cfg.model.method:<14}{report.summary['best_score']:>14.4f}"
        f"{report.test[f'recall@{k}']:>12.4f}{report.test[f'ndcg@{k}']:>10.4f}"
        f"{seconds:>9.1f}  epoch {report.best_epoch}",
    ]
    for r in results:
        if r.fit.skipped is not None:
            rows.append(f"{r.name:<14}{'skipped: ' + r.fit.skipped}")
            continue
        chosen = ", ".join(f"{key}={value:g}" for key, value in r.fit.params.items())
        tried = len(r.fit.tried)
        chosen = f"{chosen} ({tried} tried)" if tried > 1 else chosen or "-"
        rows.append(
            f"{r.name:<14}{r.fit.selected[metric]:>14.4f}{r.test[f'recall@{k}']:>12.4f}"
            f"{r.test[f'ndcg@{k}']:>10.4f}{r.fit.seconds:>9.1f}  {chosen}"
        )
    if summary["margins"]:
        shown = ", ".join(f"{key} {value:+.1%}" for key, value in summary["margins"].items())
        rows.append(
            f"margin over the best classic baseline ({summary['best_classic']}, chosen on "
            f"{on}): test {shown}"
        )
    return "\n".join(rows)


def _record(
    tracker: Tracker,
    run: RunFolder,
    summary: dict[str, Any],
    results: list[BaselineResult],
    selected_on: str,
) -> None:
    where = "val" if selected_on == "val" else "paper_test"
    for r in results:
        prefix = f"baseline/{r.name.replace('-', '_')}"
        if r.fit.skipped is not None:
            tracker.set_tags({f"baseline.{r.name}": f"skipped: {r.fit.skipped}"})
            continue
        tracker.log_metrics(metric_dict(r.fit.selected, f"{prefix}/{where}"))
        tracker.log_metrics(metric_dict(r.test, f"{prefix}/test"))
        tracker.log_metrics(
            {f"{prefix}/fit_seconds": r.fit.seconds, f"{prefix}/fits": float(len(r.fit.tried))}
        )
        tracker.set_tags({f"baseline.{r.name}.{k}": v for k, v in r.fit.params.items()})
    if summary["margin_over_best_baseline"] is not None:
        tracker.log_metrics(
            {"quality.margin_over_best_baseline": summary["margin_over_best_baseline"]}
        )
        tracker.set_tags({"quality.best_baseline": summary["best_classic"]})
    tracker.log_artifact(run.root / BASELINES_FILE)


def _guard(
    cfg: RunConfig, report: TrainReport, results: list[BaselineResult], config: str
) -> None:
    metric = cfg.train.select_metric
    model = float(report.summary["best_score"])
    best = _best_classic(results, metric)
    if best is None or best.fit.selected[metric] <= model:
        return
    values = [f"{key}: {value:g}" for key, value in best.fit.params.items()]
    block = ", ".join([f"method: {best.name}", *values])
    print(
        f"WARNING: the classic baseline {best.name} beats the selected model on "
        f"{report.selected_on} ({metric} {best.fit.selected[metric]:.4f} vs {model:.4f}); "
        f"tune the model on validation (recsys-cl tune --config {config} --space SPACE.yaml), "
        f"or ship the baseline: model: {{{block}}}",
        file=sys.stderr,
        flush=True,
    )


__all__ = ["BASELINES_FILE", "baseline_step", "format_baselines"]
