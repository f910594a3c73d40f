"""Long validation/test curves of a config, with no early stopping, to study stopping rules.

    RECSYS_CL_DATA=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/trace_curves.py \\
        --config configs/ml-100k/xsimgcl.yaml --set model.cl_weight=0.2 --epochs 1000 \\
        --eval-every 5 --out benchmarks/results/curves/ml100k_xsimgcl_paper.json
    python benchmarks/trace_curves.py --write-planted /tmp/planted   # prints the config path

Trains ``--epochs`` epochs (patience off) and scores the **validation** and the **test** part at
every ``--eval-every``-th epoch, with the training losses of every epoch, into one JSON file.
Test is scored only to draw the curve a stopping rule would cut: the rules themselves
(``benchmarks/stopping_rules.py``) read the validation curve alone. The most-popular baseline
of the same split is stored beside the curves.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from recsys_cl.config import load_config
from recsys_cl.io import write_json
from recsys_cl.jobs import assemble, build_split
from recsys_cl.jobs.stages.train import schedule
from recsys_cl.metrics import evaluate, most_popular_scores
from recsys_cl.models import Recommender
from recsys_cl.training import EarlyStopping, Trainer


def trace(
    config: str, overrides: list[str], epochs: int, eval_every: int, data_dir: str | None
) -> dict:
    cfg = load_config(config, overrides)
    split = build_split(cfg.data, data_dir, cfg.seed)
    # Built as a real run builds it (graph, strategies, method); only the evaluation and the
    # schedule differ: both curves are recorded, and nothing stops the trace early.
    built = assemble(cfg, split, torch.device("cpu"), config)
    parts, train = built.parts, built.parts.train
    if parts.val_truth is None:
        raise SystemExit(f"{config}: tracing needs a validation part (data.split.val_ratio > 0)")
    ks = (20,)

    def score(m: Recommender) -> dict[str, float]:
        user, item = m.embeddings(built.graph.adj)
        val = evaluate(user, item, parts.val_truth, [parts.train_seen], ks=ks).metrics
        test = evaluate(user, item, parts.test_truth, parts.test_exclude, ks=ks).metrics
        return {
            **{f"val/{k}": v for k, v in val.items()},
            **{f"test/{k}": v for k, v in test.items()},
        }

    plan = replace(
        schedule(cfg, built.most_popular_score),
        epochs=epochs,
        eval_every=eval_every,
        select_metric=f"val/{cfg.train.select_metric}",
        stopping=EarlyStopping(patience=0),
    )
    trainer = Trainer(
        built.method,
        built.graph,
        train,
        schedule=plan,
        generator=torch.Generator().manual_seed(cfg.seed),
        device_generator=torch.Generator().manual_seed(cfg.seed + 1),
        sampling=built.strategies.sampling,
        evaluate=score,
        progress=False,
        on_epoch_end=_print,
    )
    start = time.perf_counter()
    fit = trainer.fit()
    pop = evaluate(*most_popular_scores(train), parts.test_truth, parts.test_exclude, ks=ks).metrics
    pop_val = evaluate(
        *most_popular_scores(train), parts.val_truth, [parts.train_seen], ks=ks
    ).metrics
    return {
        "config": config,
        "overrides": overrides,
        "method": cfg.model.method,
        "select_metric": cfg.train.select_metric,
        "n_train_rows": int(train.nnz),
        "batches_per_epoch": -(-int(train.nnz) // cfg.train.batch_size),
        "eval_every": eval_every,
        "wall_seconds": time.perf_counter() - start,
        "most_popular": {"val": pop_val, "test": pop},
        "threads": torch.get_num_threads(),
        "history": fit.history,
    }


def _print(record: dict) -> None:
    if "val/ndcg@20" in record:
        print(
            f"epoch {record['epoch']:>4}  loss={record['loss/total']:.4f}  "
            f"val ndcg@20={record['val/ndcg@20']:.4f} recall@20={record['val/recall@20']:.4f}  "
            f"test recall@20={record['test/recall@20']:.4f}",
            flush=True,
        )


def write_planted(folder: Path) -> Path:
    """The planted two-community log (users 0-39 like items 0-29, users 40-79 items 30-59; 16
    picks each, seed 0) and an XSimGCL config over it with the paper's λ; returns the config."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(80):
        picks = (u // 40) * 30 + rng.choice(30, 16, replace=False)
        users += [u] * 16
        items += picks.tolist()
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"user": users, "item": items}).write_csv(folder / "log.csv")
    config = folder / "xsimgcl.yaml"
    config.write_text(
        f"data: {{path: {folder / 'log.csv'}, "
        "split: {kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model: {method: xsimgcl, dim: 16}\n"
    )
    return config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--write-planted",
        type=Path,
        metavar="DIR",
        help="write the planted log and its XSimGCL config into DIR, print the config path, exit",
    )
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--data-dir", default=os.environ.get("RECSYS_CL_DATA"))
    p.add_argument("--out", type=Path, help="JSON file to write")
    args = p.parse_args(argv)
    if args.write_planted:
        print(write_planted(args.write_planted))
        return 0
    if not args.config or not args.out:
        p.error("--config and --out are required")
    result = trace(args.config, args.set, args.epochs, args.eval_every, args.data_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), result)
    print(f"wrote {args.out} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
