"""Quality table: train several configs (in parallel processes), score a most-popular
baseline on the same split, print a Markdown table of validation and test metrics.

    RECSYS_CL_DATA=../shared/datasets python benchmarks/quality.py --out /tmp/q \\
        --run lightgcn=configs/ml-100k/lightgcn.yaml \\
        --run "xsimgcl λ=0.05=configs/ml-100k/xsimgcl.yaml" \\
        --set-for "xsimgcl λ=0.05" model.cl_weight=0.05

Each --run is NAME=CONFIG; --set-for NAME KEY=VALUE adds an override to that run, --set KEY=VALUE
to all of them (e.g. --set train.device=cuda). All runs must share data and seed so the
baseline's split is theirs.
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

from recsys_cl.data import load_split
from recsys_cl.data.user_items import UserItems
from recsys_cl.metrics import evaluate, most_popular_scores


def _train(name: str, config: str, overrides: list[str], out: Path, threads: int) -> dict:
    run_dir = out / name.replace(" ", "_").replace("=", "")
    log = out / f"{run_dir.name}.log"
    cmd = [sys.executable, "-m", "recsys_cl.cli", "train", "-c", config,
           "--set", f"output_dir={run_dir}", "--set", "train.progress=false"]
    for o in overrides:
        cmd += ["--set", o]
    with open(log, "w") as fh:
        # Parallel runs must split the cores: oversubscribed OpenMP threads spin against each
        # other (two 2-thread runs on 2 cores measured ~100x slower than one run).
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise SystemExit(f"{name}: training failed (exit {rc}); see {log}")
    summary = json.loads((run_dir / "metrics.json").read_text())
    summary["run_dir"] = str(run_dir)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", action="append", required=True, metavar="NAME=CONFIG")
    p.add_argument("--set-for", nargs=2, action="append", default=[], metavar=("NAME", "KEY=VALUE"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="folder for the run folders and logs")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [r.rsplit("=", 1) for r in args.run]
    extra: dict[str, list[str]] = {}
    for name, kv in args.set_for:
        extra.setdefault(name, []).append(kv)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            name: pool.submit(_train, name, cfg, [*args.set, *extra.get(name, [])], out, threads)
            for name, cfg in runs
        }
        results = {name: f.result() for name, f in futures.items()}

    first = next(iter(results.values()))
    split = load_split(Path(first["run_dir"]) / "data")
    train = split.user_items("train")
    excl: list[UserItems] = [train] + ([split.user_items("val")] if split.val is not None else [])
    pop = evaluate(*most_popular_scores(train), split.user_items("test"), excl, ks=(20,)).metrics

    sel = first["select_metric"]
    print(
        f"| run | best epoch / run | {sel} ({first['selected_on']}) "
        "| test recall@20 | test ndcg@20 | s/epoch |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| most popular | – | – | {pop['recall@20']:.4f} | {pop['ndcg@20']:.4f} | – |")
    for name, r in results.items():
        print(
            f"| {name} | {r['best_epoch']} / {r['epochs_run']} | {r['best_score']:.4f} | "
            f"{r['test']['recall@20']:.4f} | {r['test']['ndcg@20']:.4f} | "
            f"{np.median([h['seconds'] for h in r['history']]):.2f} |"
        )
    print(f"\ndevice: {first['device']}, torch {first['torch']}; runs in {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
