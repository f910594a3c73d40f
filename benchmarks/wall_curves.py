"""Quality against wall time: one curve per finished run folder, from its metrics.json history.

Each history entry holds the epoch's training seconds and its evaluation seconds; their running
sum is the wall time at which that epoch's score was known (data loading and graph building
before the first epoch are not counted, the same for every run). Prints a Markdown table per
run and, with --plot, draws the curves on one figure; with --target, the first epoch reaching
it (the "time to quality" of each run).

    python benchmarks/wall_curves.py full=/tmp/gs/full sampled=/tmp/gs/sampled \
        --metric recall@20 --target 0.175 --plot benchmarks/results/gowalla_sampled_vs_full.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: Path, metric: str) -> list[tuple[int, float, float]]:
    """(epoch, wall seconds so far, score) of every evaluated epoch of the run folder."""
    history = json.loads((run / "metrics.json").read_text())["history"]
    points, wall = [], 0.0
    for entry in history:
        wall += float(entry.get("seconds", 0.0)) + float(entry.get("eval_seconds") or 0.0)
        if metric in entry:
            points.append((int(entry["epoch"]), wall, float(entry[metric])))
    if not points:
        raise SystemExit(f"{run / 'metrics.json'}: no {metric!r} in its history")
    return points


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR", help="finished run folders")
    p.add_argument("--metric", default="recall@20", help="history key (default recall@20)")
    p.add_argument("--target", type=float, default=None, help="report when a run reaches it")
    p.add_argument("--plot", type=Path, default=None, help="write the curves as a PNG")
    args = p.parse_args(argv)
    curves = {}
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep:
            p.error(f"expected LABEL=RUN_DIR, got {spec!r}")
        curves[label] = curve(Path(folder), args.metric)
    for label, points in curves.items():
        print(f"\n{label}\n\n| epoch | wall s | {args.metric} |\n|---:|---:|---:|")
        for epoch, wall, score in points:
            print(f"| {epoch} | {wall:.0f} | {score:.4f} |")
        best = max(points, key=lambda p: p[2])
        line = f"best {best[2]:.4f} at epoch {best[0]} ({best[1]:.0f} s)"
        if args.target is not None:
            hit = next((p for p in points if p[2] >= args.target), None)
            reach = "not reached" if hit is None else f"epoch {hit[0]}, {hit[1]:.0f} s"
            line += f"; {args.metric} >= {args.target}: {reach}"
        print(f"\n{line}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for label, points in curves.items():
            ax.plot([w for _, w, _ in points], [s for _, _, s in points], marker="o", label=label)
        if args.target is not None:
            ax.axhline(args.target, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("wall seconds (training + evaluation)")
        ax.set_ylabel(args.metric)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
