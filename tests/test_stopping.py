"""The stopping rule on synthetic validation curves, and inside the trainer.

The dip curve has the shape measured on ML-100K with XSimGCL and the paper's λ
(benchmarks/RESULTS.md § Stopping): an early peak, a long fall well below it, a climb far past it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_cl.training import EarlyStopping, FitResult
from recsys_cl.training.stopping import best_index

from .conftest import make_planted_split
from .test_training import _trainer

STEPS_PER_EVAL = 100

pytestmark = pytest.mark.usefixtures("one_thread")


def dip_curve(n: int = 120) -> list[float]:
    """Peak 0.12 at eval 0, trough 0.05 at eval 10, a climb to 0.25 at eval 60, then flat;
    noise 0.001 throughout."""
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=float)
    fall = 0.12 - 0.07 * np.minimum(t, 10) / 10
    climb = 0.20 * np.clip(t - 10, 0, 50) / 50
    return (fall + climb + rng.normal(0, 0.001, n)).tolist()


def plateau_curve(n: int = 120) -> list[float]:
    """Rises to 0.25 by eval 15 and stays there (noise 0.001)."""
    rng = np.random.default_rng(1)
    t = np.arange(n, dtype=float)
    return (0.25 * (1 - np.exp(-t / 4)) + rng.normal(0, 0.001, n)).tolist()


def stop_eval(rule: EarlyStopping, curve: list[float]) -> int | None:
    """The evaluation (0-based) after which ``rule`` stops, or None if it runs the curve out."""
    for i in range(1, len(curve) + 1):
        if rule.should_stop(curve[:i], steps=i * STEPS_PER_EVAL):
            return i - 1
    return None


def test_plain_patience_stops_in_the_dip() -> None:
    # The failure the rule exists for: counted from the early peak, patience ends in the dip.
    curve = dip_curve()
    stop = stop_eval(EarlyStopping(patience=10), curve)
    assert stop == 10 and curve[stop] < 0.6 * curve[0]


def test_default_rule_survives_the_dip_and_finds_the_top() -> None:
    curve = dip_curve()
    rule = EarlyStopping(patience=10, min_steps=3000, recovery=0.05)
    stop = stop_eval(rule, curve)
    assert stop is not None, "never stopped on a curve that flattens"
    best = best_index(curve[: stop + 1])
    assert curve[best] > 0.99 * max(curve), (best, curve[best], max(curve))
    assert stop - best >= 10


def test_floor_alone_or_recovery_alone_is_not_enough() -> None:
    curve = dip_curve()
    # A floor shorter than the dip: stops at the floor, still below the early peak.
    floor_only = stop_eval(EarlyStopping(patience=10, min_steps=2000), curve)
    assert floor_only is not None and max(curve[: floor_only + 1]) == curve[0]
    # The recovery guard alone: during the fall the trough is the latest point, nothing climbs.
    recovery_only = stop_eval(EarlyStopping(patience=10, recovery=0.05), curve)
    assert recovery_only == 10


def test_stops_on_a_plateau_soon_after_patience() -> None:
    curve = plateau_curve()
    stop = stop_eval(EarlyStopping(patience=10, min_steps=3000, recovery=0.05), curve)
    assert stop is not None
    assert stop - best_index(curve[: stop + 1]) <= 15


def test_stops_on_a_steady_decline_once_past_the_floor() -> None:
    # Overfitting: best at eval 5, then a steady fall; the trough is always the latest point.
    curve = [0.1 + 0.02 * i for i in range(6)] + [0.2 - 0.002 * i for i in range(1, 60)]
    stop = stop_eval(EarlyStopping(patience=10, min_steps=3000, recovery=0.05), curve)
    assert stop == 29  # the floor (eval 29 = 3000 steps), well past patience


def test_patience_zero_never_stops() -> None:
    assert stop_eval(EarlyStopping(patience=0, min_steps=0), plateau_curve()) is None


def test_a_later_equal_score_is_not_an_improvement() -> None:
    assert best_index([0.1, 0.3, 0.3, 0.2]) == 1


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        EarlyStopping(patience=-1)


def test_trainer_counts_steps_and_does_not_stop_in_the_dip() -> None:
    train, _ = make_planted_split()
    curve = iter(dip_curve(100))

    def fake_eval(method) -> dict[str, float]:
        return {"ndcg@20": next(curve)}

    # 960 training rows / batch 128 = 8 steps an epoch; the floor, 120 steps = 15 epochs, lies
    # past the trough (epoch 11), where the climb is under way.
    rule = EarlyStopping(patience=10, min_steps=120, recovery=0.05)
    fit = _trainer("lightgcn", train, epochs=100, evaluate=fake_eval, stopping=rule).fit()
    assert [r["steps"] for r in fit.history[:3]] == [8, 16, 24]
    assert fit.best_epoch > 30 and fit.stopped_early
    plain = iter(dip_curve(60))
    fit_plain = _trainer(
        "lightgcn",
        train,
        epochs=60,
        evaluate=lambda m: {"ndcg@20": next(plain)},
        stopping=EarlyStopping(patience=10),
    ).fit()
    assert fit_plain.best_epoch == 1 and fit_plain.epochs_run == 11


def _mf_run(train, checkpoints, epochs: int, resume: bool) -> FitResult:
    """MF on ``train`` with checkpoints in ``checkpoints``, stopping off."""
    torch.manual_seed(0)
    trainer = _trainer(
        "mf", train, epochs=epochs, evaluate=lambda m: {"ndcg@20": 0.0},
        stopping=EarlyStopping(patience=0), checkpoint_dir=checkpoints, fingerprint={"a": 1},
    )
    return trainer.fit(resume=resume)


def test_resume_keeps_the_step_count(tmp_path) -> None:
    train, _ = make_planted_split()

    _mf_run(train, tmp_path, 2, resume=False)
    fit = _mf_run(train, tmp_path, 3, resume=True)
    assert [r["steps"] for r in fit.history] == [8, 16, 24]


def test_resume_of_a_checkpoint_without_steps_estimates_them(tmp_path) -> None:
    # A checkpoint written before TrainState.steps existed (and with the patience counter
    # those kept): it loads, and resuming does not restart the step count (and so the
    # min_steps floor) from zero.
    train, _ = make_planted_split()

    _mf_run(train, tmp_path, 2, resume=False)
    path = tmp_path / "last.pt"
    payload = torch.load(path, weights_only=True)
    del payload["state"]["steps"]
    payload["state"]["bad_evals"] = 1
    for record in payload["state"]["history"]:
        del record["steps"]
    torch.save(payload, path)
    fit = _mf_run(train, tmp_path, 3, resume=True)
    assert fit.history[-1]["steps"] == 24


def test_no_early_stop_before_the_model_beats_the_baseline() -> None:
    # A long dip below most-popular (0.15): the floor and patience would stop at eval 29, the
    # baseline keeps the run going until the climb passes it, and the rule then stops as usual.
    curve = dip_curve()
    late = [0.12 - 0.07 * min(i, 40) / 40 + 0.2 * min(max(i - 40, 0), 40) / 40 for i in range(150)]
    rule = EarlyStopping(patience=10, min_steps=3000, recovery=0.05)
    assert stop_eval(rule, late) == 29
    floored = EarlyStopping(patience=10, min_steps=3000, recovery=0.05, baseline=0.15)
    with_floor = stop_eval(floored, late)
    assert with_floor is not None and with_floor > 80 and max(late[: with_floor + 1]) > 0.15
    # A model that never beats it trains its whole budget.
    assert stop_eval(EarlyStopping(patience=10, baseline=0.5), curve) is None
