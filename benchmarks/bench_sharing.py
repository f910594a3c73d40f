"""Two jobs on one machine: `recsys-cl train` alone, then two copies started together.

    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_sharing.py --epochs 60
    # the code before a change, same machine, same hour:
    git worktree add /tmp/before <commit>
    RECSYS_CL_DATA=../shared/datasets python benchmarks/bench_sharing.py --epochs 60 \\
        --code /tmp/before

Each job is ML-100K LightGCN (``--config``) for ``--epochs`` epochs, untracked, in its own
folder. Reported per setting: wall seconds of each job, the median epoch, CPU seconds and
involuntary context switches (from ``wait4``), and the pair's slowdown against the job alone.
``--env KEY=VALUE`` adds an environment variable to every job (e.g. ``OMP_WAIT_POLICY=ACTIVE``
to see spinning threads, ``RECSYS_CL_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _start(
    config: str, epochs: int, out: Path, code: Path, env: dict[str, str]
) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "recsys_cl.cli", "train", "-c", config, "--no-track",
        "--set", f"output_dir={out}", "--set", f"train.epochs={epochs}",
        "--set", "train.progress=false", "--set", "train.patience=0",
    ]
    full_env = {**os.environ, **env, "PYTHONPATH": str(code)}
    return subprocess.Popen(
        cmd, cwd=code, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(proc: subprocess.Popen, start: float, out: Path) -> dict:
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"job in {out} failed: {err.strip().splitlines()[-1:]}")
    summary = json.loads((out / "metrics.json").read_text())
    return {
        "wall_s": wall,
        "median_epoch_s": summary["median_epoch_seconds"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "involuntary_switches": usage.ru_nivcsw,
        "threads": summary.get("threads"),
    }


def run_jobs(
    n: int, config: str, epochs: int, code: Path, env: dict[str, str], root: Path
) -> list[dict]:
    outs = [root / f"job{i}" for i in range(n)]
    start = time.perf_counter()
    procs = [_start(config, epochs, out, code, env) for out in outs]
    return [_finish(p, start, out) for p, out in zip(procs, outs, strict=True)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/ml-100k/lightgcn.yaml")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument(
        "--code", type=Path, default=REPO, help="checkout whose recsys_cl runs (default: this one)"
    )
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label", default=None, help="name of this setting in the output")
    args = p.parse_args(argv)
    env = dict(e.split("=", 1) for e in args.env)
    config = str((REPO / args.config).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        alone = run_jobs(1, config, args.epochs, args.code, env, Path(tmp) / "alone")
        pair = run_jobs(2, config, args.epochs, args.code, env, Path(tmp) / "pair")
    label = args.label or f"{args.code.name} {' '.join(args.env) or '(defaults)'}"
    slow = max(j["wall_s"] for j in pair) / alone[0]["wall_s"]
    print("| setting | job | wall s | median epoch s | CPU s | invol. switches | threads |")
    print("|---|---|---|---|---|---|---|")
    for name, jobs in (("alone", alone), ("two together", pair)):
        for i, j in enumerate(jobs):
            print(
                f"| {label} | {name} #{i + 1} | {j['wall_s']:.1f} | {j['median_epoch_s']:.3f} | "
                f"{j['cpu_s']:.1f} | {j['involuntary_switches']:,} | {j['threads']} |"
            )
    print(f"\n{label}: two together take {slow:.2f}x the wall time of one alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
