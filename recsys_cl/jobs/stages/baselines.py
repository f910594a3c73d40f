"""The classic baselines beside a run: EASE, iALS and most-popular, each tuned where the run's
protocol selects (validation, honest protocol) within a time budget, then tested once.

:func:`search_baseline` fits one baseline over its grid (one key at a time: every value of a key
with the others at their best so far; passes over the keys repeat, at most three, while a pass
moves the best) and keeps the best fit's score tables;
:func:`fit_baselines` does it for each named baseline, sharing one budget, and scores each
chosen one on test. The train and main jobs print and record the rows
(:mod:`recsys_cl.jobs.commands.baselines`); ``recsys-cl evaluate --baseline`` scores one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from recsys_cl.config import BaselinesConfig, EASEConfig, IALSConfig
from recsys_cl.errors import ConfigError
from recsys_cl.metrics import most_popular_scores
from recsys_cl.models.classic import ease_seconds_estimate

from .parts import RunParts
from .train import SelectionTarget

Params = dict[str, Any]
# Coordinate passes over a grid at most (each pass tries every value of every key).
_MAX_PASSES = 3
# What a baseline's search keeps of its best fit: score tables user [U, D], item [I, D].
Tables = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True, eq=False)
class BaselineFit:
    """One baseline's search on the selection part.

    Attributes:
        name: ``ease``, ``ials`` or ``most-popular``.
        params: the chosen hyper-parameters (empty for most-popular).
        selected: the chosen fit's selection metrics (every metric at every cut-off).
        tried: each fit as ``(params, select-metric value, seconds)``, in order.
        seconds: the whole search.
        tables: the chosen fit's score tables; None when skipped.
        skipped: why nothing was fitted (memory, time); None otherwise.
        stopped: why the search ended before its grid did (the budget); None otherwise.
    """

    name: str
    params: Params
    selected: dict[str, float]
    tried: list[tuple[Params, float, float]]
    seconds: float
    tables: Tables | None = field(default=None, repr=False)
    skipped: str | None = None
    stopped: str | None = None


@dataclass(frozen=True)
class BaselineResult:
    """A searched baseline and its test metrics (empty when it was skipped)."""

    fit: BaselineFit
    test: dict[str, float]

    @property
    def name(self) -> str:
        return self.fit.name


def search_baseline(
    name: str,
    cfg: BaselinesConfig,
    parts: RunParts,
    target: SelectionTarget,
    *,
    ks: Sequence[int],
    select_metric: str,
    seed: int,
    budget_seconds: float,
    device: str = "cpu",
    threads: int = 0,
) -> BaselineFit:
    """Fit ``name`` over its grid in ``cfg``, choosing on ``target`` by ``select_metric``.

    No fit starts once the time spent plus the last fit's time would pass
    ``budget_seconds``; the first fit of EASE is predicted from the catalogue size
    (:func:`~recsys_cl.models.classic.ease_seconds_estimate`) and skipped, with the reason,
    when it would not fit the budget or ``cfg.ease_max_memory_gib``.
    """
    start = time.perf_counter()
    train = parts.train

    def score(tables: Tables) -> dict[str, float]:
        return target.score(*tables, ks)

    if name == "most-popular":
        tables = most_popular_scores(train)
        selected = score(tables)
        seconds = time.perf_counter() - start
        return BaselineFit(
            name, {}, selected, [({}, selected[select_metric], seconds)], seconds, tables
        )

    grid: dict[str, tuple[Any, ...]]
    fit: Callable[[Params], Tables]
    first_guess: float | None = None
    if name == "ease":
        try:
            EASEConfig(max_memory_gib=cfg.ease_max_memory_gib).check_size(
                train.n_users, train.n_items, "baselines.ease_max_memory_gib"
            )
        except ConfigError as too_large:
            return _skipped(name, str(too_large))
        first_guess = ease_seconds_estimate(train.n_items)
        grid = {"lambda": cfg.ease_lambdas}

        def fit(p: Params) -> Tables:
            t = EASEConfig(lam=p["lambda"], max_memory_gib=cfg.ease_max_memory_gib).fit(
                train, seed=seed, device=device, threads=threads, progress=False
            )
            return t.user, t.item
    elif name == "ials":
        g = cfg.ials_grid
        grid = {"alpha": g.alpha, "regularization": g.regularization, "factors": g.factors}

        def fit(p: Params) -> Tables:
            model = IALSConfig(
                factors=int(p["factors"]), regularization=p["regularization"],
                alpha=p["alpha"], iterations=cfg.ials_iterations,
            )
            t = model.fit(train, seed=seed, device=device, threads=threads, progress=False)
            return t.user, t.item
    else:
        raise ValueError(f"unknown baseline {name!r}")

    if first_guess is not None and first_guess > budget_seconds:
        return _skipped(
            name,
            f"one fit on {train.n_items:,} items takes about {first_guess:,.0f} s, over its "
            f"share of the budget, {budget_seconds:,.0f} s (baselines.budget_seconds)",
        )
    return _coordinate_search(name, grid, fit, score, select_metric, start, budget_seconds)


def _skipped(name: str, why: str) -> BaselineFit:
    return BaselineFit(name, {}, {}, [], 0.0, None, skipped=why)


def _coordinate_search(
    name: str,
    grid: dict[str, tuple[Any, ...]],
    fit: Callable[[Params], Tables],
    score: Callable[[Tables], dict[str, float]],
    select_metric: str,
    start: float,
    budget_seconds: float,
) -> BaselineFit:
    current: Params = {key: values[0] for key, values in grid.items()}
    best: tuple[float, Params, dict[str, float], Tables] | None = None
    tried: list[tuple[Params, float, float]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    stopped = None
    for _ in range(_MAX_PASSES):
        start_of_pass = dict(current)
        for key, values in grid.items():
            for value in values:
                params = {**current, key: value}
                signature = tuple(sorted(params.items()))
                if signature in seen:
                    continue
                spent = time.perf_counter() - start
                predicted = tried[-1][2] if tried else 0.0
                if tried and spent + predicted > budget_seconds:
                    stopped = (
                        f"budget: {len(tried)} fits in {spent:.0f} s of {budget_seconds:.0f} s"
                    )
                    break
                seen.add(signature)
                t0 = time.perf_counter()
                tables = fit(params)
                metrics = score(tables)
                value_of = metrics[select_metric]
                tried.append((params, value_of, time.perf_counter() - t0))
                if best is None or value_of > best[0]:
                    best = (value_of, params, metrics, tables)
                del tables
            assert best is not None
            current = dict(best[1])
            if stopped is not None:
                break
        # Another pass only when this one moved: a key's best value can change once the
        # keys after it have moved.
        if stopped is not None or current == start_of_pass:
            break
    assert best is not None
    return BaselineFit(
        name, best[1], best[2], tried, time.perf_counter() - start, best[3], stopped=stopped
    )


def fit_baselines(
    cfg: BaselinesConfig,
    parts: RunParts,
    target: SelectionTarget,
    *,
    ks: Sequence[int],
    select_metric: str,
    seed: int,
    names: Sequence[str] | None = None,
    device: str = "cpu",
    threads: int = 0,
    on_result: Callable[[BaselineResult], None] | None = None,
) -> list[BaselineResult]:
    """:func:`search_baseline` for each of ``names`` (default ``cfg.which``) within
    ``cfg.budget_seconds`` in all (each gets the budget left divided by the baselines left),
    and each chosen fit scored on test once (``parts.test_truth``, training and validation
    items masked). ``on_result`` sees each result as it is done."""
    names = list(cfg.which if names is None else names)
    tested = SelectionTarget("test", parts.test_truth, parts.test_exclude)
    start = time.perf_counter()
    results = []
    for i, name in enumerate(names):
        left = cfg.budget_seconds - (time.perf_counter() - start)
        share = max(left, 0.0) / (len(names) - i)
        found = search_baseline(
            name, cfg, parts, target, ks=ks, select_metric=select_metric, seed=seed,
            budget_seconds=share, device=device, threads=threads,
        )
        test = tested.score(*found.tables, ks) if found.tables is not None else {}
        # The tables are large (EASE: U x I and I x I); a result keeps only its numbers.
        result = BaselineResult(replace(found, tables=None), test)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


__all__ = [
    "BaselineFit",
    "BaselineResult",
    "fit_baselines",
    "search_baseline",
]
