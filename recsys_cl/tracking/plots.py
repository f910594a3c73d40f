"""Figures a person would rather look at than read: loss curves, validation metrics per
epoch, Recall@K by item-popularity group, a strategy comparison, and a tuning study.

Each function returns a matplotlib ``Figure`` (drawn with the non-interactive Agg canvas, so no
display is needed); the caller logs or saves it and closes it with :func:`close`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

LOSS_NAMES = ("rec", "cl", "reg", "total")
_GROUPS = ("head", "mid", "tail")


def close(figure: Figure) -> None:
    """Free the figure's memory (Agg figures made with ``Figure()`` are not in pyplot's list)."""
    figure.clear()


def loss_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """One panel per loss term (mean over the epoch's batches) against the epoch."""
    names = [n for n in LOSS_NAMES if any(f"loss/{n}" in r for r in history)]
    fig = Figure(figsize=(3.2 * max(len(names), 1), 3.0), layout="constrained")
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=False):
        points = [(r["epoch"], r[f"loss/{name}"]) for r in history if f"loss/{name}" in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], color="C0")
        ax.set_title(f"{name} loss")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle("training losses")
    return fig


def validation_curves(
    history: Sequence[Mapping[str, Any]],
    ks: Sequence[int],
    *,
    split: str,
    best_epoch: int | None = None,
) -> Figure:
    """Recall@K and NDCG@K on the selection split against the epoch, one line per K, with
    the selected epoch marked."""
    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("recall", "ndcg"), strict=True):
        for i, k in enumerate(ks):
            key = f"{metric}@{k}"
            points = [(r["epoch"], r[key]) for r in history if key in r]
            if points:
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker=".",
                    color=f"C{i}",
                    label=f"@{k}",
                )
        if best_epoch:
            ax.axvline(
                best_epoch,
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"selected ({best_epoch})",
            )
        ax.set_title(f"{split} {metric}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def recall_by_group(metrics: Mapping[str, float], overall: float, k: int = 20) -> Figure:
    """Test Recall@K of each item-popularity group (head / mid / tail) beside the overall
    value: where the long tail is lost."""
    labels = ["overall", *_GROUPS]
    values = [overall, *(metrics.get(f"{g}_recall@{k}", math.nan) for g in _GROUPS)]
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(
        labels, [0.0 if math.isnan(v) else v for v in values], color=["C7", "C0", "C1", "C3"]
    )
    for bar, value in zip(bars, values, strict=True):
        text = "n/a" if math.isnan(value) else f"{value:.3f}"
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel(f"test recall@{k}")
    ax.set_title(f"Recall@{k} by item popularity group")
    ax.grid(axis="y", alpha=0.3)
    return fig


def strategy_bars(
    names: Sequence[str], overall: Sequence[float], tail: Sequence[float], k: int = 20
) -> Figure:
    """Overall and tail Recall@K per imbalance strategy, in two panels with their own scales
    (tail recall is often an order of magnitude smaller), each bar labelled with its value."""
    fig = Figure(figsize=(max(7.0, 1.6 * len(names) + 3), 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, title, color in (
        (axes[0], overall, f"recall@{k}", "C0"),
        (axes[1], tail, f"tail recall@{k}", "C3"),
    ):
        bars = ax.bar(range(len(names)), values, color=color)
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(f"{value:.4f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), list(names), rotation=25, ha="right", fontsize=8)
        ax.set_title(f"test {title}")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("imbalance strategies: overall vs tail")
    return fig


def study_history(
    numbers: Sequence[int], values: Sequence[float], states: Sequence[str], metric: str
) -> Figure:
    """A search's trials in order: each finished trial's best validation value (pruned ones
    at the best value they reached, marked x) and the best-so-far line over completed ones."""
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for state, marker, color in (("COMPLETE", "o", "C0"), ("PRUNED", "x", "C7")):
        points = [
            (n, v)
            for n, v, s in zip(numbers, values, states, strict=True)
            if s == state and math.isfinite(v)
        ]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, color=color,
                       label=state.lower(), zorder=3)
    best, steps = -math.inf, []
    for n, v, s in sorted(zip(numbers, values, states, strict=True)):
        if s == "COMPLETE" and math.isfinite(v) and v > best:
            best = v
        if math.isfinite(best):
            steps.append((n, best))
    if steps:
        ax.step(
            [p[0] for p in steps],
            [p[1] for p in steps],
            where="post",
            color="C3",
            label="best so far",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"val {metric}")
    ax.set_title(f"search history: validation {metric} by trial")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def param_effects(
    params: Mapping[str, Sequence[Any]],
    values: Sequence[float],
    log_scale: Mapping[str, bool],
    metric: str,
) -> Figure:
    """Each sampled parameter against the trial's validation value (one panel per parameter,
    log axis for log-uniform ones, categories side by side; the best trial in red); unfinished
    trials are left out by the caller."""
    names = list(params)
    cols = min(3, max(len(names), 1))
    rows = math.ceil(max(len(names), 1) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    best = max(range(len(values)), key=lambda i: values[i]) if values else None
    colors = ["C3" if i == best else "C0" for i in range(len(values))]
    for ax, name in zip(axes, names, strict=False):
        xs = list(params[name])
        if any(isinstance(x, (str, bool)) for x in xs):
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], values, color=colors)
            ax.set_xticks(range(len(labels)), labels)
        else:
            ax.scatter(xs, values, color=colors)
            if log_scale.get(name):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            elif all(isinstance(x, int) for x in xs):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(name)
        ax.set_ylabel(f"val {metric}")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"validation {metric} against each searched parameter")
    return fig
