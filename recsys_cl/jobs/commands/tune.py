"""``recsys-cl tune``: hyper-parameter search on the validation split, never on test.

Optuna's TPE sampler (seeded) proposes values for the keys of a search space
(``configs/tune/*.yaml``, :mod:`recsys_cl.config.tune`); each trial trains the run config with
them, selected on validation exactly as ``recsys-cl train`` selects, and stops before test
(``run_training(test=False)``). Every evaluation's validation metric is reported to the trial,
so a median pruner stops hopeless trials once the warm-up is over. Every trial is an MLflow
child run of one parent run, which gets the study plots, the best parameters and the best
config. ``--final`` trains that config once more with the normal job, scoring test once.

The search folder (``--out``) holds::

    study.db          the Optuna study (SQLite); --resume reopens it
    tracking.json     the parent MLflow run (--resume reopens it too)
    trials/<n>/       trial n's run folder (config.yaml, the split; no test outputs)
    trials.csv, trials.md, plots/history.png, plots/params.png
    best.yaml         the best trial's full run config (``recsys-cl train --config`` takes it)
    final-<n>/        the --final run of best trial n

The study itself (opening, resuming, the budget) is :mod:`.study`; Optuna is imported there
only, when a search runs (as FAISS and MLflow are imported only where they are used).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cl.config import RunConfig, TuneSpace, load_space, search_base, to_yaml
from recsys_cl.data import Split
from recsys_cl.errors import ConfigError, DataError, RecsysError
from recsys_cl.io import atomic_path
from recsys_cl.tracking import plots
from recsys_cl.tracking.base import Tracker, metric_key

from ..folder import RunFolder, writer_lock
from ..stages.data import build_split
from ..stages.study import (
    Search,
    best_trial,
    counted,
    open_study,
    optuna_module,
    requeue_interrupted,
    requeued,
)
from ..stages.train import check_output_dir, run_training
from .report import format_metrics
from .runs import (
    TrackingOptions,
    open_run,
    previous_run,
    print_tracking,
    write_tracking_file,
)

# -- one trial --------------------------------------------------------------------------------


def _suggest(trial: Any, space: TuneSpace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            values[key] = trial.suggest_categorical(key, list(p.choices or ()))
        elif p.type == "int":
            step = int(p.step) if p.step is not None else 1
            values[key] = trial.suggest_int(
                key, int(p.low or 0), int(p.high or 0), step=step, log=p.log
            )
        else:
            values[key] = trial.suggest_float(
                key, float(p.low or 0.0), float(p.high or 0.0), step=p.step, log=p.log
            )
    return values


@dataclass
class _Curve:
    """The validation values a trial reported, for the pruner and the record."""

    metric: str
    trial: Any
    prune: Any
    best: float = -math.inf
    last_epoch: int = 0

    def __call__(self, record: dict[str, Any]) -> None:
        if self.metric not in record:
            return
        value, epoch = float(record[self.metric]), int(record["epoch"])
        self.best, self.last_epoch = max(self.best, value), epoch
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise self.prune(
                f"{self.metric} {value:.4f} at epoch {epoch} is below the median of earlier trials"
            )


def _run_trial(optuna: Any, study: Any, search: Search, split: Split, parent: Tracker) -> None:
    trial = study.ask()
    values = _suggest(trial, search.space)
    folder = search.out / "trials" / str(trial.number)
    curve = _Curve(search.metric, trial, optuna.TrialPruned)
    start = time.perf_counter()
    state, error, report = "FAIL", "", None
    with contextlib.suppress(RecsysError):
        with parent.child(
            f"trial-{trial.number}", tags={"job": "tune-trial", "tune.trial": trial.number}
        ) as child:
            if child.run_id is not None:
                trial.set_user_attr("mlflow_run_id", child.run_id)
                trial.set_user_attr("tracking_uri", child.uri)
            child.log_params(values)
            try:
                cfg = search.config(values, folder)
                cfg = cfg.model_copy(
                    update={"train": cfg.train.model_copy(update={"progress": False})}
                )
                report = run_training(
                    cfg, tracker=child, split=split, test=False, on_epoch_end=curve
                )
                state = "COMPLETE"
            except optuna.TrialPruned:
                state = "PRUNED"
            except RecsysError as exc:
                error = str(exc)
                child.set_tags({"tune.state": "FAIL", "tune.error": error})
                raise
            value = report.summary["best_score"] if report is not None else curve.best
            child.set_tags({"tune.state": state})
            child.log_metrics(
                {
                    f"tune/best_{metric_key(search.metric)}": value,
                    "tune/last_epoch": curve.last_epoch,
                }
            )
    seconds = time.perf_counter() - start
    shutil.rmtree(
        RunFolder(folder).checkpoint_dir, ignore_errors=True
    )  # a resume re-runs, never continues, a trial
    attrs = {"seconds": seconds, "best_value": curve.best if math.isfinite(curve.best) else None,
             "last_epoch": curve.last_epoch, "error": error}
    if report is not None:
        attrs.update(best_epoch=report.best_epoch, epochs_run=report.summary["epochs_run"])
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    states = {
        "COMPLETE": optuna.trial.TrialState.COMPLETE,
        "PRUNED": optuna.trial.TrialState.PRUNED,
        "FAIL": optuna.trial.TrialState.FAIL,
    }
    study.tell(
        trial,
        report.summary["best_score"] if state == "COMPLETE" and report is not None else None,
        state=states[state],
    )
    best = best_trial(optuna, study)
    print(_trial_line(trial.number, state, attrs, values, search.metric, best), flush=True)
    if parent.enabled:
        step = (
            {f"tune/trial_{metric_key(search.metric)}": curve.best}
            if math.isfinite(curve.best)
            else {}
        )
        if best is not None:
            step[f"tune/best_so_far_{metric_key(search.metric)}"] = best.value
        parent.log_metrics(step, step=trial.number)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _trial_line(
    number: int,
    state: str,
    attrs: Mapping[str, Any],
    values: Mapping[str, Any],
    metric: str,
    best: Any,
) -> str:
    reached = attrs.get("best_value")
    shown = f"{metric}={reached:.4f}" if reached is not None else f"{metric}=n/a"
    where = (
        f"epoch {attrs['best_epoch']}/{attrs['epochs_run']}"
        if "best_epoch" in attrs
        else f"stopped at epoch {attrs['last_epoch']}"
    )
    best_text = (
        f"best {best.value:.4f} (trial {best.number})" if best is not None else "no best yet"
    )
    params = " ".join(f"{k}={_fmt(v)}" for k, v in values.items())
    error = f"  error: {attrs['error']}" if attrs.get("error") else ""
    return (
        f"trial {number:>3}  {state:<8}  {shown}  {where}  {attrs['seconds']:.0f}s  "
        f"| {best_text} | {params}{error}"
    )


# -- the record -------------------------------------------------------------------------------


def trials_table(optuna: Any, study: Any, search: Search) -> pl.DataFrame:
    """One row per finished trial (number, state, best validation value, selection, time and
    the sampled values), in trial order."""
    rows, again = [], requeued(study)
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            continue
        attrs = t.user_attrs
        best_value = attrs.get("best_value")
        row: dict[str, Any] = {
            "trial": t.number,
            "state": "FAIL (interrupted)" if t.number in again else t.state.name,
            f"val {search.metric}": math.nan if best_value is None else float(best_value),
            "best_epoch": attrs.get("best_epoch"),
            "epochs": attrs.get("epochs_run", attrs.get("last_epoch")),
            "seconds": attrs.get("seconds"),
        }
        for key, param in search.space.params.items():
            value = t.params.get(key)
            row[key] = str(value) if param.type == "categorical" and value is not None else value
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def to_markdown(table: pl.DataFrame) -> str:
    """The trials table in GitHub Markdown: metric to 4 decimals, seconds whole, values to 4
    significant digits (the CSV keeps them whole)."""

    def cell(value: Any, column: str) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return (
                f"{value:.4f}"
                if column.startswith("val ")
                else f"{value:.0f}"
                if column == "seconds"
                else f"{value:.4g}"
            )
        return str(value)

    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(row[c], c) for c in table.columns) + " |"
        for row in table.iter_rows(named=True)
    ]
    return "\n".join(lines)


def _write_record(optuna: Any, study: Any, search: Search, parent: Tracker) -> pl.DataFrame:
    table = trials_table(optuna, study, search)
    out = search.out
    with atomic_path(out / "trials.csv") as tmp:
        table.write_csv(tmp)
    with atomic_path(out / "trials.md") as tmp:
        tmp.write_text(to_markdown(table) + "\n")
    finished = [
        t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("best_value") is not None
    ]
    figures = {"history.png": plots.study_history(
        [t.number for t in finished], [float(t.user_attrs["best_value"]) for t in finished],
        [t.state.name for t in finished], search.metric,
    )}
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        figures["params.png"] = plots.param_effects(
            {key: [t.params[key] for t in complete] for key in search.space.params},
            [float(t.value) for t in complete],
            {key: p.log for key, p in search.space.params.items()},
            search.metric,
        )
    for name, figure in figures.items():
        with atomic_path(out / "plots" / name) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
        plots.close(figure)
        parent.log_artifact(out / "plots" / name, "plots")
    parent.log_artifact(out / "trials.csv", "tune")
    parent.log_artifact(out / "trials.md", "tune")
    return table


def write_best(search: Search, best: Any, n_trials: int) -> RunConfig:
    """``out/best.yaml``: the best trial's full run config, its run folder ``out/final-<n>``."""
    cfg = search.config(best.params, search.out / f"final-{best.number}")
    header = (
        f"# recsys-cl tune --space {search.space_path}: trial {best.number} of {n_trials}, "
        f"val {search.metric} {best.value:.4f} (epoch budget as searched)\n"
    )
    with atomic_path(search.out / "best.yaml") as tmp:
        tmp.write_text(header + to_yaml(cfg))
    return cfg


def _record_best(search: Search, best: Any, parent: Tracker) -> None:
    parent.log_params({f"best.{k}": v for k, v in best.params.items()})
    metrics = {
        f"best/{k}": float(v)
        for k, v in best.params.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    metrics.update({f"best/val_{metric_key(search.metric)}": best.value, "best/trial": best.number})
    if best.user_attrs.get("best_epoch") is not None:
        metrics["best/epoch"] = best.user_attrs["best_epoch"]
    parent.log_metrics(metrics)
    parent.set_tags(
        {
            "tune.best_trial": best.number,
            "tune.best_run_id": best.user_attrs.get("mlflow_run_id", ""),
        }
    )
    parent.log_artifact(search.out / "best.yaml", "tune")


def _final(cfg: RunConfig, best: Any, split: Split, parent: Tracker, resume: bool) -> None:
    """The best config trained once with the normal job (test scored once), a child run."""
    # A run folder `recsys-cl train -c OUT/best.yaml` also writes.
    with writer_lock(cfg.output_dir):
        _final_run(cfg, best, split, parent, resume)


def _final_run(cfg: RunConfig, best: Any, split: Split, parent: Tracker, resume: bool) -> None:
    resuming = check_output_dir(cfg, resume=resume)
    previous = previous_run(cfg.output_dir, parent.uri) if (resume and parent.uri) else None
    print(f"\n== final: trial {best.number}'s config, trained in {cfg.output_dir}", flush=True)
    with parent.child(
        "final",
        tags={"job": "train", "tune.final": "true", "tune.trial": best.number},
        resume_run_id=previous,
    ) as child:
        write_tracking_file(cfg.output_dir, child)
        report = run_training(
            cfg, resume=resuming, tracker=child, strategy=f"tune-final-{best.number}", split=split
        )
    write_tracking_file(cfg.output_dir, child, finished=True)
    print(
        f"final (trial {best.number}): val {report.select_metric} "
        f"{report.summary['best_score']:.4f} at epoch {report.best_epoch}; "
        f"test, scored once ({report.summary['test_users_evaluated']:,} users):"
    )
    print(format_metrics(report.test, cfg.eval.ks))
    if parent.enabled:
        parent.log_metrics({f"final/test_{metric_key(k)}": v for k, v in report.test.items()})


# -- the job ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """Optuna's per-trial INFO lines repeat ours; restored afterwards for in-process callers."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def load_search(args: argparse.Namespace) -> Search:
    space_path = Path(args.space)
    space = load_space(space_path)
    raw, base = search_base(args.config, space, space_path, args.overrides)
    out = Path(args.out) if args.out else base.output_dir / "tune"
    return Search(space=space, space_path=space_path, raw=raw, base=base, out=out)


def tune(args: argparse.Namespace) -> int:
    search = load_search(args)
    budget = args.trials if args.trials is not None else search.space.trials
    timeout = args.timeout if args.timeout is not None else search.space.timeout
    if budget <= 0 or (timeout is not None and timeout <= 0):
        raise ConfigError("--trials and --timeout must be positive")
    split = build_split(search.base.data, args.data_dir, search.base.seed)
    if split.val is None or split.val.height == 0:
        raise DataError(
            f"{args.config}: the split has no validation rows to search on (data.split.val_ratio)"
        )
    optuna = optuna_module()
    # One search writes search.out (its study, trials and their run folders) at a time.
    with writer_lock(search.out), _quiet_optuna(optuna):
        study = open_study(optuna, search, resume=args.resume)
        opts = TrackingOptions.from_args(args)
        with open_run(
            opts,
            experiment=search.base.experiment,
            configured_uri=search.base.tracking.uri,
            run_name=f"tune:{search.space_path.stem}",
            tags={
                "job": "tune",
                "space": str(search.space_path),
                "config": str(args.config),
                "metric": search.metric,
            },
            run_dir=search.out,
            resume=args.resume,
        ) as parent:
            parent.log_params(_search_params(search, args, budget, timeout))
            requeue_interrupted(optuna, study, parent)
            start = time.monotonic()
            print(
                f"search {search.out}: {budget} trials on val {search.metric}"
                f"{f', {timeout:.0f}s' if timeout else ''}; "
                f"{len(counted(optuna, study))} finished earlier",
                flush=True,
            )
            while len(counted(optuna, study)) < budget:
                if timeout is not None and time.monotonic() - start >= timeout:
                    print(f"timeout: {timeout:.0f}s passed; no new trial started", flush=True)
                    break
                _run_trial(optuna, study, search, split, parent)
            table = _write_record(optuna, study, search, parent)
            print()
            print(to_markdown(table))
            best = best_trial(optuna, study)
            if best is None:
                raise RecsysError(
                    f"no trial of {search.out} completed (see its trials.md for each trial's "
                    "state and error); widen the space, or set pruner.kind none"
                )
            cfg = write_best(search, best, len(counted(optuna, study)))
            _record_best(search, best, parent)
            print(f"\nbest: trial {best.number}, val {search.metric} {best.value:.4f}: "
                  + " ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
            print(
                f"wrote {search.out}/best.yaml (recsys-cl train --config {search.out}/best.yaml), "
                "trials.md, plots/"
            )
            if args.final:
                _final(cfg, best, split, parent, args.resume)
            print_tracking(parent)
    return 0


def _search_params(
    search: Search, args: argparse.Namespace, budget: int, timeout: float | None
) -> dict[str, Any]:
    space = search.space
    params: dict[str, Any] = {
        "tune.config": str(args.config),
        "tune.space": str(search.space_path),
        "tune.metric": search.metric,
        "tune.trials": budget,
        "tune.timeout": timeout,
        "tune.sampler.seed": space.sampler.seed
        if space.sampler.seed is not None
        else search.base.seed,
        "tune.sampler.startup_trials": space.sampler.startup_trials,
        "tune.pruner": space.pruner.kind,
        "tune.pruner.warmup_epochs": space.pruner.warmup_epochs,
        "tune.pruner.startup_trials": space.pruner.startup_trials,
        "tune.set": " ".join([*space.overrides, *args.overrides]),
    }
    params.update({f"space.{key}": p.describe() for key, p in space.params.items()})
    return params


__all__ = ["Search", "load_search", "to_markdown", "trials_table", "tune", "write_best"]
