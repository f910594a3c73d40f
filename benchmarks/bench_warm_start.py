"""Warm start against a cold start on a grown log: epochs and wall time to the cold model's score.

Three runs of one shipped config, in one process, one after the other: ``old`` trains from
scratch on the earlier log, ``cold`` from scratch on the grown log, ``warm`` on the grown log
from ``old`` (``train.warm_start``). The table gives, for cold and warm, the first epoch (and
the training + evaluation seconds up to it) whose selection score reaches the cold run's best
(and 99% of it), where each run selected its epoch, and its test Recall@20 / NDCG@20. Wall
seconds are read from each run's history (per-epoch training and evaluation seconds, plus the
warm start's copy), so data preparation, which both pay alike, is not counted.

- ``ml-100k``: the log cut by time: ``old`` is the first 80% of rows by timestamp, the grown
  log the first 90%; each is split by time (``data.split.kind=temporal``: the latest 20% of the
  log's rows test, the 10% before them validation), so every pair the old run trained on
  precedes the grown log's validation and test rows.
- ``gowalla``: the LightGCN files: ``old`` trains on a random 90% of the training rows, the
  grown log is all of them; both are tested on the given test file (the config's paper
  protocol: the epoch is selected on test). ``--set train.epochs=N`` bounds the runs.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_warm_start.py ml-100k \\
        --out /tmp/warm/ml-100k --threads 1
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_warm_start.py gowalla \\
        --out /tmp/warm/gowalla --threads 1 --set train.epochs=4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys_cl.config import RunConfig, load_config
from recsys_cl.data import load_benchmark
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.train import run_training
from recsys_cl.training import EarlyStopping

CONFIGS = {"ml-100k": "configs/ml-100k/xsimgcl.yaml", "gowalla": "configs/gowalla/xsimgcl.yaml"}
# ML-100K: the shipped config evaluates every 5 epochs with patience 10 evaluations; every
# epoch with patience 50 keeps the same 50-epoch patience at a one-epoch resolution.
ML100K_SETTINGS = ["train.eval_every=1", "train.patience=50"]
REACH = (1.0, 0.99)


def write_logs(dataset: str, folder: Path, seed: int) -> dict[str, list[str]]:
    """Write the earlier and grown logs of ``dataset`` into ``folder``; the data overrides of
    each run (``old`` and ``new``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if dataset == "ml-100k":
        log = load_benchmark("ml-100k", download=False).interactions
        assert log is not None
        times = log["timestamp"].sort()
        out: dict[str, list[str]] = {}
        for name, share in (("old", 0.8), ("new", 0.9)):
            cut = times[int(share * log.height)]
            path = folder / f"{name}.parquet"
            log.filter(pl.col("timestamp") < cut).write_parquet(path)
            out[name] = [
                "data.dataset=null",
                f"data.path={json.dumps(str(path))}",
                "data.split.kind=temporal",
            ]
        return out
    raw = load_benchmark("gowalla", download=False)
    assert raw.train is not None and raw.test is not None
    keep = np.random.default_rng(seed).random(raw.train.height) < 0.9
    test = folder / "test.parquet"
    raw.test.write_parquet(test)
    out = {}
    for name, frame in (("old", raw.train.filter(pl.Series(keep))), ("new", raw.train)):
        path = folder / f"{name}.parquet"
        frame.write_parquet(path)
        out[name] = [
            "data.dataset=null",
            f"data.path={json.dumps(str(path))}",
            f"data.test_path={json.dumps(str(test))}",
        ]
    return out


def train(config: str, overrides: list[str]) -> dict[str, Any]:
    """One run; its summary with the process wall seconds of the whole call."""
    cfg: RunConfig = load_config(config, overrides)
    start = time.perf_counter()
    report = run_training(cfg)
    return {**report.summary, "call_seconds": time.perf_counter() - start}


def reach(summary: dict[str, Any], target: float) -> tuple[int, float] | None:
    """(epoch, wall seconds) where the selection score first reaches ``target``."""
    metric = summary["select_metric"]
    wall = float((summary.get("warm_start") or {}).get("seconds", 0.0))
    for entry in summary["history"]:
        wall += float(entry["seconds"]) + float(entry.get("eval_seconds") or 0.0)
        if metric in entry and float(entry[metric]) >= target:
            return int(entry["epoch"]), wall
    return None


def replayed_stop(summary: dict[str, Any], run: Path, min_steps: int) -> tuple[int, float] | None:
    """(epoch, wall seconds) where the run's stopping rule, with ``min_steps`` in place of its
    own, would have stopped it: replayed on its history (training does not depend on when it
    will stop, so the history up to that epoch is what such a run computes); None: not within
    the epochs run."""
    t = RunFolder(run).config.train
    rule = EarlyStopping(
        t.patience,
        min_steps,
        t.recovery,
        baseline=float(summary["most_popular_score"]) if t.beat_most_popular else None,
    )
    metric, scores = summary["select_metric"], []
    wall = float((summary.get("warm_start") or {}).get("seconds", 0.0))
    for entry in summary["history"]:
        wall += float(entry["seconds"]) + float(entry.get("eval_seconds") or 0.0)
        if metric in entry:
            scores.append(float(entry[metric]))
        if rule.should_stop(scores, int(entry["steps"])):
            return int(entry["epoch"]), wall
    return None


def table(runs: dict[str, dict[str, Any]], out: Path) -> str:
    cold = runs["cold"]
    target = float(cold["best_score"])
    metric, on = cold["select_metric"], cold["selected_on"]
    head = [
        f"| run | {on} {metric}: best (epoch) | "
        + " | ".join(f"epochs / s to {share:.0%} of cold's {target:.4f}" for share in REACH)
        + " | epochs run | train + eval s | test Recall@20 | test NDCG@20 |",
        "|---|---:|" + "---:|" * len(REACH) + "---:|---:|---:|---:|",
    ]
    rows = []
    for name, s in runs.items():
        reached = []
        for share in REACH:
            hit = reach(s, share * target)
            reached.append("not reached" if hit is None else f"{hit[0]} / {hit[1]:.1f}")
        total = sum(float(e["seconds"]) + float(e.get("eval_seconds") or 0.0) for e in s["history"])
        total += float((s.get("warm_start") or {}).get("seconds", 0.0))
        rows.append(
            f"| {name} | {s['best_score']:.4f} ({s['best_epoch']}) | "
            + " | ".join(reached)
            + f" | {s['epochs_run']} | {total:.1f} | {s['test']['recall@20']:.4f} | "
            f"{s['test']['ndcg@20']:.4f} |"
        )
    lines = head + rows
    warm, old = runs["warm"], runs["old"]
    if warm.get("warm_start"):
        w = warm["warm_start"]
        lines.append("")
        lines.append(
            f"warm start: users {w['users']['copied']} copied, {w['users']['new']} new, "
            f"{w['users']['dropped']} dropped; items {w['items']['copied']} copied, "
            f"{w['items']['new']} new, {w['items']['dropped']} dropped ({w['seconds']:.2f} s)"
        )
    hit_w, hit_c = reach(warm, target), reach(cold, target)
    if hit_w is not None and hit_c is not None:
        lines.append(
            f"warm / cold to cold's best: epochs {hit_w[0]} / {hit_c[0]} = "
            f"{hit_w[0] / hit_c[0]:.2f}, wall {hit_w[1]:.1f} / {hit_c[1]:.1f} s = "
            f"{hit_w[1] / hit_c[1]:.2f}; final test Recall@20 warm / cold = "
            f"{warm['test']['recall@20'] / cold['test']['recall@20']:.4f}, NDCG@20 "
            f"{warm['test']['ndcg@20'] / cold['test']['ndcg@20']:.4f}"
        )
    for name in ("cold", "warm"):
        stop = replayed_stop(runs[name], out / name, 0)
        lines.append(
            f"{name} with train.min_steps=0 (replayed on its history): "
            + (
                "would not stop early"
                if stop is None
                else f"stops at epoch {stop[0]}, {stop[1]:.1f} s"
            )
        )
    lines.append(
        f"(old run: {old['n_users']} users, {old['n_items']} items; grown: "
        f"{cold['n_users']} users, {cold['n_items']} items)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=sorted(CONFIGS))
    p.add_argument("--out", type=Path, required=True, help="folder for the logs and run folders")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="Gowalla's 90%% sample")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for all three runs (repeatable)",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="print the table of a finished --out (its summary.json) and train nothing",
    )
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads((args.out / "summary.json").read_text()), args.out))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out.exists() and any(args.out.iterdir()):
        p.error(f"{args.out} is not empty")
    logs = write_logs(args.dataset, args.out / "logs", args.seed)
    common = [
        *(ML100K_SETTINGS if args.dataset == "ml-100k" else []),
        "train.progress=false",
        *args.overrides,
    ]
    config = CONFIGS[args.dataset]
    runs: dict[str, dict[str, Any]] = {}
    plan = {
        "old": [*logs["old"], *common],
        "cold": [*logs["new"], *common],
        "warm": [*logs["new"], *common, f"train.warm_start={json.dumps(str(args.out / 'old'))}"],
    }
    for name, overrides in plan.items():
        print(f"== {name}", flush=True)
        runs[name] = train(config, [*overrides, f"output_dir={json.dumps(str(args.out / name))}"])
    print()
    print(f"{args.dataset}, {config}, threads {torch.get_num_threads()}; overrides {common}")
    print(table(runs, args.out))
    (args.out / "summary.json").write_text(json.dumps(runs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
