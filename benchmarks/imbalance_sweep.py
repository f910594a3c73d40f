"""Class-imbalance strategy table: train one backbone config with each strategy of
``configs/imbalance/`` (each run a subprocess of ``recsys-cl train``, the strategy passed as
``--set imbalance=<the file>``) and print a Markdown table of overall Recall@20 / NDCG@20,
tail Recall@20, coverage@20, ARP@20 and seconds per epoch, each strategy against ``none``.

    RECSYS_CL_DATA=../shared/datasets python benchmarks/imbalance_sweep.py \\
        --config configs/ml-100k/xsimgcl.yaml --out /tmp/sweep --jobs 2
    # Gowalla on a GPU:
    RECSYS_CL_DATA=... python benchmarks/imbalance_sweep.py \\
        --config configs/gowalla/xsimgcl.yaml --out /tmp/sweep-gowalla --jobs 4 \\
        --set train.device=cuda --set train.epochs=60
    # other strategies, or a strategy with a changed knob:
    ... --strategy none --strategy mixgcf --strategy tail_oversampling \\
        --set-for tail_oversampling imbalance.positives.tail_beta=1.0

--strategy takes a file name from configs/imbalance/ (without .yaml) or a path to a YAML
imbalance block; the default list is the issue's table. --set KEY=VALUE goes to every run,
--set-for NAME KEY=VALUE to one. Every run shares the backbone config, data and seed, so all
use the same split; "tail" is the bottom ``eval.groups.tail`` share of items by training
popularity (half by default). A labelled-log strategy (label_weights) is scored on the
label-1 test rows only, so it is not compared with ``none``. The "goal" column marks a
strategy that raises tail Recall@20 by at least 30% relative over ``none`` while losing at
most 2% relative overall Recall@20.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STRATEGY_DIR = REPO / "configs" / "imbalance"
DEFAULT_STRATEGIES = (
    "none",
    "inverse_propensity",
    "class_balanced",
    "focal",
    "popularity_negatives",
    "tail_oversampling",
    "dns",
    "ann",
    "softmax_logq",
)
TAIL_GAIN_GOAL = 0.30  # relative rise of tail Recall@20 over `none` (issue #4)
OVERALL_LOSS_LIMIT = 0.02  # relative loss of overall Recall@20 allowed


def _strategy_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = STRATEGY_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in STRATEGY_DIR.glob("*.yaml")))
        raise SystemExit(f"unknown strategy {name!r}; known: {known} (or a path to a YAML file)")
    return path


def _train(name: str, config: str, block: str, overrides: list[str], out: Path, threads: int,
           data_dir: str | None) -> dict:
    run_dir = out / Path(name).stem
    log = out / f"{run_dir.name}.log"
    cmd = [sys.executable, "-m", "recsys_cl.cli", "train", "-c", config,
           "--set", f"output_dir={run_dir}", "--set", "train.progress=false",
           "--set", f"imbalance={block}"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    for o in overrides:
        cmd += ["--set", o]
    with open(log, "w") as fh:
        # Parallel runs must split the cores: oversubscribed OpenMP threads spin against each
        # other (benchmarks/quality.py measured two 2-thread runs on 2 cores ~100x slower).
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MLFLOW_DISABLE_TELEMETRY": "true"}
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if rc != 0:
        raise SystemExit(f"{name}: training failed (exit {rc}); see {log}")
    summary = json.loads((run_dir / "metrics.json").read_text())
    summary["run_dir"] = str(run_dir)
    return summary


def _finished(out: Path, name: str) -> dict | None:
    """The summary of a finished run of ``name`` under ``out``, or None."""
    path = out / Path(name).stem / "metrics.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    summary["run_dir"] = str(path.parent)
    return summary


def _rel(value: float, base: float) -> str:
    if not np.isfinite(value) or not np.isfinite(base) or base == 0:
        return "–"
    return f"{100 * (value / base - 1):+.1f}%"


def table(results: dict[str, dict], k: int = 20) -> str:
    """The Markdown strategy table (``none``, when present, is the reference)."""
    base = results.get("none")
    head = (
        f"| strategy | best epoch / run | Recall@{k} | NDCG@{k} | tail Recall@{k} | "
        f"coverage@{k} | ARP@{k} | s/epoch | goal |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        test, tail = r["test"], r["test_long_tail"]
        recall, tail_recall = test[f"recall@{k}"], tail[f"tail_recall@{k}"]
        rel_recall = rel_tail = ""
        goal = "–"
        if "label_classes" in r.get("imbalance", {}):
            # Scored on the label-1 test rows only: not comparable with `none`.
            rel_recall = rel_tail = " (other truth)"
        elif base is not None and name != "none":
            b_recall = base["test"][f"recall@{k}"]
            b_tail = base["test_long_tail"][f"tail_recall@{k}"]
            rel_recall = f" ({_rel(recall, b_recall)})"
            rel_tail = f" ({_rel(tail_recall, b_tail)})"
            met = (
                b_tail > 0
                and tail_recall >= (1 + TAIL_GAIN_GOAL) * b_tail
                and recall >= (1 - OVERALL_LOSS_LIMIT) * b_recall
            )
            goal = "yes" if met else "no"
        seconds = np.median([h["seconds"] for h in r["history"]])
        lines.append(
            f"| {name} | {r['best_epoch']} / {r['epochs_run']} | {recall:.4f}{rel_recall} | "
            f"{test[f'ndcg@{k}']:.4f} | {tail_recall:.4f}{rel_tail} | "
            f"{tail[f'coverage@{k}']:.3f} | {tail[f'arp@{k}']:.1f} | {seconds:.2f} | {goal} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", required=True, help="backbone run config, e.g. configs/ml-100k/xsimgcl.yaml"
    )
    p.add_argument(
        "--strategy", action="append", metavar="NAME",
        help="a configs/imbalance/ name or a YAML path (repeatable; default: the issue's list)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--set-for", nargs=2, action="append", default=[], metavar=("NAME", "KEY=VALUE"))
    p.add_argument("--out", required=True, help="folder for the run folders, logs and results.json")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    p.add_argument(
        "--data-dir", default=None, help="passed to recsys-cl train (else $RECSYS_CL_DATA)"
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="take a strategy's finished run from OUT/<name>/metrics.json instead of training "
        "it again (a sweep cut short continues where it stopped)",
    )
    args = p.parse_args(argv)

    names = args.strategy or list(DEFAULT_STRATEGIES)
    files = {name: _strategy_file(name) for name in names}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, list[str]] = {}
    for name, kv in args.set_for:
        if name not in files:
            raise SystemExit(f"--set-for {name}: not among the strategies {names}")
        extra.setdefault(name, []).append(kv)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            name: pool.submit(
                _train, name, args.config, files[name].read_text(),
                [*args.set, *extra.get(name, [])], out, threads, args.data_dir,
            )
            for name in names
            if not (args.reuse and _finished(out, name))
        }
        results = {
            name: futures[name].result() if name in futures else _finished(out, name)
            for name in names
        }

    (out / "results.json").write_text(json.dumps(results, indent=1))
    first = next(iter(results.values()))
    print(table(results))
    groups = first["long_tail_groups"]
    print(
        f"\n{args.config}; protocol {first['protocol']} (epoch selected on {first['selected_on']} "
        f"by {first['select_metric']}); tail = bottom {groups['tail']:.0%} of items by training "
        f"popularity ({groups['items']['tail']:,} of {first['n_items']:,}); device "
        f"{first['device']}, torch {first['torch']}; runs in {out}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
