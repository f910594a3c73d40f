"""The Optuna side of ``recsys-cl tune``: the search's shared settings, its study in
``OUT/study.db`` (opened, checked to be the same search on ``--resume``, its sampler seeded),
the trials that count toward the budget, and trials a kill left running.

Optuna is imported only through :func:`optuna_module`, when a search runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_cl.config import RunConfig, TuneSpace, trial_config
from recsys_cl.errors import RecsysError
from recsys_cl.tracking.base import Tracker, flatten

STUDY_FILE = "study.db"
STUDY_NAME = "recsys_cl-tune"
_SEARCH_ATTR = "search"
# Keys a resumed search may change: the budget, and where the folders and runs go.
_FREE_KEYS = ("experiment", "output_dir", "train.progress")
_FREE_PREFIXES = ("tracking.", "retrieval.")


class _Interrupted(Exception):
    """Ends a killed trial's reopened MLflow run FAILED (see :func:`requeue_interrupted`)."""


def optuna_module() -> Any:
    """``optuna``, imported on first use (``recsys-cl --help`` and the other jobs never load it)."""
    import optuna

    return optuna


@dataclass(frozen=True)
class Search:
    """What every trial shares: the base config (raw and validated), the space and its file."""

    space: TuneSpace
    space_path: Path
    raw: dict[str, Any]
    base: RunConfig
    out: Path

    @property
    def metric(self) -> str:
        return self.base.train.select_metric

    def config(self, values: Mapping[str, Any], folder: Path) -> RunConfig:
        return trial_config(
            self.raw, values, folder, f"{self.space_path} (trial values {dict(values)})"
        )

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed search must share with the one it continues."""
        flat = flatten(self.base.model_dump(mode="json"))
        config = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in flat.items()
            if k not in _FREE_KEYS and not k.startswith(_FREE_PREFIXES)
        }
        space = self.space.model_dump(mode="json", exclude={"trials", "timeout", "overrides"})
        return {"config": config, "space": space}


# -- the study --------------------------------------------------------------------------------


def open_study(optuna: Any, search: Search, resume: bool) -> Any:
    """A new study in ``out/study.db``, or with ``resume`` the one there (checked to be this
    search). Its sampler is seeded with the space's seed plus the trials it already holds, so
    a resumed search does not redraw its first random points."""
    db = search.out / STUDY_FILE
    if db.exists() and not resume:
        raise RecsysError(
            f"{search.out} already holds a search ({STUDY_FILE}); pass --resume to continue it "
            "or choose another --out"
        )
    if not db.exists() and (search.out / "trials").exists():
        raise RecsysError(f"{search.out}/trials exists without {STUDY_FILE}: choose another --out")
    search.out.mkdir(parents=True, exist_ok=True)
    pruner_cfg = search.space.pruner
    pruner = (
        optuna.pruners.NopPruner()
        if pruner_cfg.kind == "none"
        else optuna.pruners.MedianPruner(
            n_startup_trials=pruner_cfg.startup_trials, n_warmup_steps=pruner_cfg.warmup_epochs
        )
    )
    storage = f"sqlite:///{db.resolve()}"
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize",
        pruner=pruner,
        load_if_exists=True,
    )
    wanted = json.dumps(search.fingerprint(), sort_keys=True)
    saved = study.user_attrs.get(_SEARCH_ATTR)
    if saved is None:
        study.set_user_attr(_SEARCH_ATTR, wanted)
    elif saved != wanted:
        raise RecsysError(
            f"{db}: holds another search "
            f"({_first_difference(json.loads(saved), json.loads(wanted))}); choose another --out"
        )
    seed = search.space.sampler.seed if search.space.sampler.seed is not None else search.base.seed
    study.sampler = optuna.samplers.TPESampler(
        seed=seed + len(study.trials), n_startup_trials=search.space.sampler.startup_trials
    )
    return study


def _first_difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    a, b = flatten(saved), flatten(wanted)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} there, {b.get(key)!r} now"
    return "the same settings in another order"


def requeued(study: Any) -> set[int]:
    """Numbers of the trials an interruption failed (their parameters were queued again)."""
    return {
        t.user_attrs["requeued_from"]
        for t in study.get_trials(deepcopy=False)
        if "requeued_from" in t.user_attrs
    }


def counted(optuna: Any, study: Any) -> list[Any]:
    """Trials that count toward the budget: finished, and not failed by an interruption (its
    parameters count once, in the trial that re-runs them)."""
    done = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
    )
    again = requeued(study)
    return [t for t in study.get_trials(deepcopy=False, states=done) if t.number not in again]


def requeue_interrupted(optuna: Any, study: Any, parent: Tracker) -> None:
    """Trials a kill left RUNNING: marked failed (``interrupted``), their parameters queued
    again, and their MLflow runs (reopened when in this store) ended FAILED."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        # Killed before its first suggestion, it has no parameters: the queued trial samples.
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        print(
            f"trial {trial.number}: interrupted earlier; marked failed, "
            "its parameters queued again",
            flush=True,
        )
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and parent.enabled and trial.user_attrs.get("tracking_uri") == parent.uri:
            with contextlib.suppress(_Interrupted):
                with parent.child(f"trial-{trial.number}", resume_run_id=run_id) as child:
                    child.set_tags({"tune.state": "FAIL", "tune.interrupted": "true"})
                    raise _Interrupted


def best_trial(optuna: Any, study: Any) -> Any:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


__all__ = [
    "STUDY_FILE",
    "STUDY_NAME",
    "Search",
    "best_trial",
    "counted",
    "open_study",
    "optuna_module",
    "requeue_interrupted",
    "requeued",
]
