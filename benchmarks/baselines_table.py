"""The fair-fight table: every method's shipped config and the tuned classic baselines on one
split, one after another on this machine, with test Recall/NDCG@20, wall time and peak RSS.

Each trained or fitted method is one ``recsys-cl train --no-track --no-baselines`` process
(configs/<dataset>/<method>.yaml; its wall time and peak RSS are that process's). Then, on the
first method's run folder (the same split), each baseline is one ``recsys-cl evaluate
--baseline NAME`` process: EASE and iALS searched over the ``baselines`` grid on the selection
part (validation under the honest protocol, test under the paper protocol) within
``--budget`` seconds, then scored on test once; most-popular as it is.

    RECSYS_CL_DATA=../shared/datasets python benchmarks/baselines_table.py --dataset ml-100k
    RECSYS_CL_DATA=../shared/datasets python benchmarks/baselines_table.py --dataset gowalla \\
        --methods ials --baselines ials most-popular --budget 1200

Prints a Markdown table and writes it, with every process's command, to ``--out``/table.json.
Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = ("mf", "lightgcn", "sgl", "simgcl", "xsimgcl", "ease", "ials")
BASELINES = ("ease", "ials", "most-popular")


def _run(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one process; its stderr passes through."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, stdout=out, text=True)
        # wait4: the child's own rusage (RUSAGE_CHILDREN would be the maximum over every
        # child so far); ru_maxrss is KiB on Linux.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, text


def _printed(out: str, metric: str, k: int, ks: list[int]) -> float:
    row = next(line for line in out.splitlines() if re.match(rf"^{metric}\s", line))
    return float(row.split()[1 + ks.index(k)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=BASELINES)
    p.add_argument("--budget", type=float, default=300.0, help="seconds per baseline search")
    p.add_argument("--out", type=Path, default=Path("runs/baselines_table"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()

    exe = [sys.executable, "-m", "recsys_cl"]
    rows, folder = [], None
    for method in args.methods:
        config = CONFIGS / args.dataset / f"{method}.yaml"
        out_dir = args.out / args.dataset / method
        argv = [
            *exe, "train", "-c", str(config), "--no-track", "--no-baselines",
            "--set", f"output_dir={out_dir}", "--set", "train.progress=false",
            *(f"--set={o}" for o in args.overrides),
        ]
        print(f"== {method}: {shlex.join(argv)}", file=sys.stderr, flush=True)
        wall, peak, _ = _run(argv)
        summary = json.loads((out_dir / "metrics.json").read_text())
        folder = folder or out_dir
        rows.append({
            "row": method, "how": f"shipped config, epoch {summary['best_epoch']} "
            f"of {summary['epochs_run']} (selected on {summary['selected_on']})",
            "recall@20": summary["test"]["recall@20"], "ndcg@20": summary["test"]["ndcg@20"],
            "seconds": wall, "peak_rss_mib": peak, "command": shlex.join(argv),
        })
    if folder is None:
        sys.exit("give at least one --methods entry: the baselines score on its split")
    ks = json.loads((folder / "metrics.json").read_text())["test"]
    cutoffs = sorted({int(key.split("@")[1]) for key in ks})
    for name in args.baselines:
        argv = [*exe, "evaluate", str(folder), "--baseline", name, "--no-track"]
        if name != "most-popular":
            argv += ["--budget", str(args.budget)]
        print(f"== baseline {name}: {shlex.join(argv)}", file=sys.stderr, flush=True)
        wall, peak, out = _run(argv)
        # "RUN: ease baseline (lambda=500; chosen on val ...) on test, ..." names the choice.
        chosen = re.search(r"baseline \((.*)\) on test", out.splitlines()[0])
        how = chosen.group(1) if chosen else "-"
        rows.append({
            "row": f"{name} (tuned)" if name != "most-popular" else name, "how": how,
            "recall@20": _printed(out, "recall", 20, cutoffs),
            "ndcg@20": _printed(out, "ndcg", 20, cutoffs),
            "seconds": wall, "peak_rss_mib": peak, "command": shlex.join(argv),
        })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| method | test R@20 | test N@20 | wall s | peak RSS MiB | how |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['row']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['seconds']:.0f} "
            f"| {r['peak_rss_mib']:.0f} | {r['how']} |"
        )


if __name__ == "__main__":
    main()
