"""Replay stopping rules on traced curves (``trace_curves.py``): where each rule stops, which
epoch it selects on validation, and what that epoch scores on test.

    python benchmarks/stopping_rules.py benchmarks/results/curves/*.json \\
        --eval-every 5 [--budget 400] --plot benchmarks/results/curves/stopping.png

Training does not depend on when it will stop, so a rule's run is the trace cut where the rule
says stop; the selection reads the validation curve only, evaluated every ``--eval-every``
epochs as the shipped configs do. Test is read at the selected epoch, once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from recsys_cl.config.schema import MIN_STEPS_DEFAULT, RECOVERY_DEFAULT
from recsys_cl.training import EarlyStopping
from recsys_cl.training.stopping import best_index

BEFORE, DEFAULT = "patience 10 (before)", "default (floor + recovery + beat most-popular)"
# name -> (rule, whether the most-popular validation score is its baseline)
RULES = {
    BEFORE: (EarlyStopping(patience=10), False),
    "floor only": (EarlyStopping(patience=10, min_steps=MIN_STEPS_DEFAULT), False),
    "recovery only": (EarlyStopping(patience=10, recovery=RECOVERY_DEFAULT), False),
    "floor + recovery": (
        EarlyStopping(patience=10, min_steps=MIN_STEPS_DEFAULT, recovery=RECOVERY_DEFAULT), False
    ),
    DEFAULT: (
        EarlyStopping(patience=10, min_steps=MIN_STEPS_DEFAULT, recovery=RECOVERY_DEFAULT), True
    ),
}


def replay(trace: dict, rule: EarlyStopping, eval_every: int, metric: str, budget: int) -> dict:
    """The epoch the rule stops at and the validation-selected epoch's scores."""
    evaluated = [
        r
        for r in trace["history"]
        if f"val/{metric}" in r and r["epoch"] % eval_every == 0 and r["epoch"] <= budget
    ]
    scores: list[float] = []
    stop, stopped = evaluated[-1], False
    for record in evaluated:
        scores.append(record[f"val/{metric}"])
        # Traces made before the trainer counted steps: every epoch has the same batches.
        steps = record.get("steps", record["epoch"] * trace["batches_per_epoch"])
        if rule.should_stop(scores, steps):
            stop, stopped = record, True
            break
    best = evaluated[best_index(scores)]
    return {
        "stop_epoch": stop["epoch"],
        "stopped": stopped,
        "best_epoch": best["epoch"],
        "val": best[f"val/{metric}"],
        "test_recall": best["test/recall@20"],
        "test_ndcg": best["test/ndcg@20"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("traces", nargs="+", type=Path)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--budget", type=int, help="epoch budget (default: the whole trace)")
    p.add_argument("--plot", type=Path, help="PNG of the validation curves with each stop")
    args = p.parse_args(argv)
    traces = {t.stem: json.loads(t.read_text()) for t in args.traces}

    print(
        "| trace | epochs traced | rule | stops at epoch | selected epoch | val | test R@20 "
        "| test N@20 | most-popular test R@20 / N@20 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    replays: dict[str, dict[str, dict]] = {}
    for name, trace in traces.items():
        metric = trace["select_metric"]
        pop = trace["most_popular"]["test"]
        replays[name] = {}
        for rule_name, (rule, with_baseline) in RULES.items():
            if with_baseline:
                rule = dataclasses.replace(rule, baseline=trace["most_popular"]["val"][metric])
            r = replay(trace, rule, args.eval_every, metric, args.budget or len(trace["history"]))
            replays[name][rule_name] = r
            stop = str(r["stop_epoch"]) if r["stopped"] else f"ran out ({r['stop_epoch']})"
            print(
                f"| {name} | {len(trace['history'])} | {rule_name} | {stop} | {r['best_epoch']} | "
                f"{r['val']:.4f} | {r['test_recall']:.4f} | {r['test_ndcg']:.4f} | "
                f"{pop['recall@20']:.4f} / {pop['ndcg@20']:.4f} |"
            )
    if args.plot:
        _plot(traces, replays, args.plot)
        print(f"\nwrote {args.plot}")
    return 0


def _plot(traces: dict[str, dict], replays: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(traces)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (name, trace) in zip(axes.flat, traces.items(), strict=False):
        metric = trace["select_metric"]
        curve = [r for r in trace["history"] if f"val/{metric}" in r]
        ax.plot(
            [r["epoch"] for r in curve],
            [r[f"val/{metric}"] for r in curve],
            lw=1,
            label=f"val {metric}",
        )
        ax.axhline(
            trace["most_popular"]["val"][metric], color="grey", ls=":", label="most-popular (val)"
        )
        for rule_name, color in ((BEFORE, "C3"), (DEFAULT, "C2")):
            r = replays[name][rule_name]
            ax.axvline(r["stop_epoch"], color=color, ls="--", lw=1, label=f"stop: {rule_name}")
            ax.plot(
                [r["best_epoch"]],
                [r["val"]],
                "o",
                color=color,
                ms=5,
                label=f"selected: {rule_name}",
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"epoch ({trace['batches_per_epoch']} steps each)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
