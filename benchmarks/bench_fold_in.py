"""Fold-in against retraining (issue 22): how well does a model answer users it never saw?

Protocol. A fraction of the users (``--held-out``, 10%) is taken out of the log entirely. Each
of them keeps a random ``--history`` share (80%) of their interactions as the history a
request would carry; the rest (20%) is their target. Two runs of the same shipped config:

- **A** trains on the other users only (their own train/test split, validation carved from
  train as the config says). The held-out users are then answered by A's candidate model
  from their history (``history`` column: fold-in), and by A's most-popular fallback with the
  history left out.
- **B** (retrained) trains on the same rows plus the held-out users' histories (in its
  training file: the config's validation carve takes its share of them too) and ranks the
  held-out users from its stored embeddings, their histories masked.

Each scores the targets by full-ranking Recall@20 / NDCG@20 (the library's definitions; a
target item A never saw counts in the denominator). Latency: one-row requests through the
loaded candidate bundle's ``predict`` (the served path without HTTP), a known user against a
history of a held-out user, p50 / p99 over ``--requests`` requests each.

    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_fold_in.py --dataset ml-100k \\
        --configs ml-100k/xsimgcl ml-100k/ials ml-100k/ease --out runs/bench_fold_in
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import torch

from recsys_cl.cli import main as cli
from recsys_cl.data.registry import load_benchmark
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.recommend import candidate_model
from recsys_cl.metrics.ranking import ndcg_at_k, recall_at_k
from recsys_cl.retrieval.bundle import bundle_size
from recsys_cl.retrieval.candidate_model import CandidateModel

K = 20


def held_out_logs(
    dataset: str, data_dir: str | None, held_out: float, history: float, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train rows, test rows) of the kept users, (history rows, target rows) of the held-out
    ones, each ``user, item`` with raw ids. A single log is split 80/20 per user for the kept
    users; a given split keeps its files."""
    raw = load_benchmark(dataset, data_dir)
    rng = np.random.default_rng(seed)
    if raw.interactions is not None:
        log = raw.interactions.select("user", "item")
        key = pl.Series("r", rng.random(log.height))
        ranked = log.with_columns(key).with_columns(
            pl.col("r").rank("ordinal").over("user").alias("pos"),
            pl.len().over("user").alias("n"),
        )
        is_test = pl.col("pos") > (pl.col("n") * 0.8).round()
        kept_train = ranked.filter(~is_test).select("user", "item")
        kept_test = ranked.filter(is_test).select("user", "item")
    else:
        assert raw.train is not None and raw.test is not None
        kept_train, kept_test = raw.train.select("user", "item"), raw.test.select("user", "item")
        log = pl.concat([kept_train, kept_test])
    users = log["user"].unique().sort().to_numpy()
    out = rng.choice(users, size=int(round(held_out * len(users))), replace=False)
    is_out = pl.col("user").is_in(out.tolist())
    theirs = log.filter(is_out).with_columns(pl.Series("r", rng.random(log.filter(is_out).height)))
    theirs = theirs.with_columns(
        pl.col("r").rank("ordinal").over("user").alias("pos"), pl.len().over("user").alias("n")
    )
    in_history = pl.col("pos") <= (pl.col("n") * history).round().clip(1, None)
    return (
        kept_train.filter(~is_out),
        kept_test.filter(~is_out),
        theirs.filter(in_history).select("user", "item"),
        theirs.filter(~in_history).select("user", "item"),
    )


def train(config: str, train_file: Path, test_file: Path, out: Path, sets: list[str]) -> Path:
    """``recsys-cl train`` of the shipped ``config`` on the given files."""
    if (out / "metrics.json").is_file():
        return out
    argv = ["train", "-c", config, "--no-track", "--no-baselines"]
    for key_value in (
        "data.dataset=null",
        f"data.path={train_file}",
        f"data.test_path={test_file}",
        "data.split.kind=given",
        f"output_dir={out}",
        "train.progress=false",
        *sets,
    ):
        argv += ["--set", key_value]
    if cli(argv) != 0:
        raise SystemExit(f"training {config} failed")
    return out


def scores(lists: list[list], targets: list[set]) -> dict[str, float]:
    hits = torch.tensor(
        [
            [i in t for i in row] + [False] * (K - len(row))
            for row, t in zip(lists, targets, strict=True)
        ]
    )
    n_rel = torch.tensor([len(t) for t in targets])
    return {
        f"recall@{K}": float(recall_at_k(hits, n_rel, [K]).nanmean()),
        f"ndcg@{K}": float(ndcg_at_k(hits, n_rel, [K]).nanmean()),
    }


def raw_lists(model: CandidateModel, items: np.ndarray) -> list[list]:
    return [model.items.to_raw(row[row >= 0]).tolist() for row in items]


def latency(model: CandidateModel, frames: list[pd.DataFrame]) -> tuple[float, float]:
    seconds = []
    for frame in frames:
        start = time.perf_counter()
        model.predict(frame, k=K)
        seconds.append(time.perf_counter() - start)
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure(
    config: str,
    args: argparse.Namespace,
    files: dict[str, Path],
    history: pl.DataFrame,
    target: pl.DataFrame,
) -> dict:
    name = config.replace("/", "_")
    root = Path(args.out)
    t0 = time.perf_counter()
    run_a = train(config, files["a_train"], files["test"], root / f"{name}_A", args.set)
    t1 = time.perf_counter()
    run_b = train(config, files["b_train"], files["test"], root / f"{name}_B", args.set)
    t2 = time.perf_counter()
    users = target["user"].unique().sort().to_list()
    hist = {u: g["item"].to_list() for (u,), g in history.group_by("user")}
    targeted = {u: set(g["item"].to_list()) for (u,), g in target.group_by("user")}
    targets = [targeted[u] for u in users]

    a = candidate_model(RunFolder(run_a), cold_start="popular")
    known = [a.items.to_index(pl.Series(hist[u]), missing="null") for u in users]
    hist_idx = [np.unique(np.asarray(x.drop_nulls().to_numpy(), np.int64)) for x in known]
    skipped = sum(int(x.null_count()) for x in known)
    cold = np.full(len(users), -1, dtype=np.int64)
    start = time.perf_counter()
    folded = a.top_k(cold, K, history=hist_idx)
    fold_seconds = time.perf_counter() - start
    popular = a.top_k(cold, K, exclude=hist_idx)

    b = candidate_model(RunFolder(run_b), cold_start="error")
    b_idx = b.users.to_index(pl.Series(users)).to_numpy().astype(np.int64)
    retrained = b.top_k(b_idx, K)

    rows = {
        "fold-in (A + history)": scores(raw_lists(a, folded.items), targets),
        "most popular (A, history masked)": scores(raw_lists(a, popular.items), targets),
        "retrained (B)": scores(raw_lists(b, retrained.items), targets),
    }
    bundle = a.save(root / f"{name}_A_bundle")
    served = CandidateModel.load(bundle)
    rng = np.random.default_rng(0)
    known_users = rng.choice(served.users.raw.to_numpy(), size=args.requests)
    picks = rng.choice(len(users), size=args.requests)
    known_frames = [pd.DataFrame({"user_id": [u]}) for u in known_users.tolist()]
    fold_frames = [
        pd.DataFrame({"user_id": [users[i]], "history": [hist[users[i]]]}) for i in picks.tolist()
    ]
    latency(served, known_frames[:20] + fold_frames[:20])  # warm-up
    return {
        "config": config,
        "held_out_users": len(users),
        "history_ids_unknown_to_A": skipped,
        "rows": rows,
        "fold_in_over_retrained_recall": rows["fold-in (A + history)"][f"recall@{K}"]
        / rows["retrained (B)"][f"recall@{K}"],
        "fold_in_seconds_all_users": fold_seconds,
        "train_seconds_A": t1 - t0,
        "train_seconds_B": t2 - t1,
        "latency_ms_known_p50_p99": latency(served, known_frames),
        "latency_ms_fold_in_p50_p99": latency(served, fold_frames),
        "bundle": bundle_size(bundle),
        "fold_in_rule": served.info.fold_in,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="ml-100k", help="registered dataset (ml-100k, gowalla)")
    p.add_argument(
        "--configs",
        nargs="+",
        default=["ml-100k/xsimgcl"],
        help="shipped configs (or YAML files) to train, each twice",
    )
    p.add_argument("--held-out", type=float, default=0.1, help="share of users held out")
    p.add_argument("--history", type=float, default=0.8, help="share of their rows given")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--requests", type=int, default=300, help="one-row requests timed per kind")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. train.epochs=3",
    )
    p.add_argument("--data-dir", default=os.environ.get("RECSYS_CL_DATA"))
    p.add_argument("--out", default="runs/bench_fold_in")
    args = p.parse_args()
    root = Path(args.out) / args.dataset
    root.mkdir(parents=True, exist_ok=True)
    args.out = str(root)
    kept_train, kept_test, history, target = held_out_logs(
        args.dataset, args.data_dir, args.held_out, args.history, args.seed
    )
    files = {
        "a_train": root / "a_train.csv",
        "b_train": root / "b_train.csv",
        "test": root / "test.csv",
    }
    kept_train.write_csv(files["a_train"])
    pl.concat([kept_train, history]).write_csv(files["b_train"])
    kept_test.write_csv(files["test"])
    print(
        f"{args.dataset}: {history['user'].n_unique():,} held-out users, "
        f"{history.height:,} history rows, {target.height:,} target rows",
        flush=True,
    )
    results = []
    for config in args.configs:
        result = measure(config, args, files, history, target)
        results.append(result)
        (root / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(result, indent=2), flush=True)
    print(f"\n| {args.dataset} | method | Recall@{K} | NDCG@{K} |\n|---|---|---|---|")
    for r in results:
        for row, m in r["rows"].items():
            print(f"| {r['config']} | {row} | {m[f'recall@{K}']:.4f} | {m[f'ndcg@{K}']:.4f} |")
    print(f"\ncommand: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
