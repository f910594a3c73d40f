"""End two-rank jobs many times and count the ranks that die while shutting down.

Once in CI, rank 0 of a resumed `recsys-cl train --nproc-per-node 2` job died of SIGABRT
("terminate called without an active exception") after writing every output. Two ways to
look for it again, each printing the stderr of any run that fails:

* ``resume``: kill rank 1 of a two-rank XSimGCL job on a small synthetic log (as
  tests/test_distributed.py does), keep its folder, then resume a fresh copy of it ``--runs``
  times through the CLI;
* ``gloo``: two bare processes join a gloo group, all-reduce, broadcast an object, and tear
  down, rank 0 up to ``--late-ms`` after rank 1 (no recsys_cl code).

``PYTHONFAULTHANDLER=1`` is set, so a crash prints the Python stacks. One heavy job at a time
(each trial uses both cores):

    python benchmarks/rank_teardown_stress.py resume --runs 60 --out /tmp/teardown
    python benchmarks/rank_teardown_stress.py gloo --runs 400 --out /tmp/teardown
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_distributed import _config, _log, _rank_pid  # noqa: E402

_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONFAULTHANDLER": "1",
}

_GLOO_RANK = """
import random, sys, time
from datetime import timedelta
import torch, torch.distributed as dist
rank, port, late = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
store = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timedelta(seconds=30))
dist.init_process_group("gloo", store=store, rank=rank, world_size=2,
                        timeout=timedelta(seconds=30))
t = torch.randn(5000, 16)
for _ in range(3):
    dist.all_reduce(t)
box = [{"w": torch.randn(100, 8)} if rank == 0 else None]
dist.broadcast_object_list(box, src=0)
if rank == 0:
    time.sleep(random.random() * late)
dist.destroy_process_group()
"""


def resume_runs(out: Path, runs: int) -> int:
    log = _log(out)
    folder = out / "kill"
    folder.mkdir()
    cfg = _config(folder, log, epochs=50, eval_every=5)
    cli = [sys.executable, "-m", "recsys_cl", "train", "-c", str(cfg), "--nproc-per-node", "2",
           "--no-track"]
    job = subprocess.Popen([*cli, "--dist-timeout", "30"], env=_ENV, cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = folder / "run" / "checkpoints" / "last.pt"
    while not last.exists() and job.poll() is None:
        time.sleep(0.01)
    victim = _rank_pid(job.pid, 1)
    if victim is None:
        raise SystemExit("rank 1 not found: the job ended before it could be killed")
    os.kill(victim, signal.SIGKILL)
    job.communicate(timeout=60)
    shutil.copytree(folder / "run", out / "killed")
    failed = 0
    for i in range(runs):
        shutil.rmtree(folder / "run")
        shutil.copytree(out / "killed", folder / "run")
        done = subprocess.run([*cli, "--resume"], env=_ENV, cwd=REPO, capture_output=True,
                              text=True)
        if done.returncode != 0:
            failed += 1
            print(f"run {i}: exit {done.returncode}\n{done.stderr[-3000:]}", flush=True)
    return failed


def gloo_runs(runs: int, late_ms: float) -> int:
    failed = 0
    for i in range(runs):
        port = 20000 + i % 20000
        ranks = [
            subprocess.Popen([sys.executable, "-c", _GLOO_RANK, str(r), str(port),
                              str(late_ms / 1000)], env=_ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for r in (0, 1)
        ]
        ended = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "") for p in ranks]
        if any(code != 0 for code, _ in ended):
            failed += 1
            print(f"run {i}: exits {[c for c, _ in ended]}\n{ended[0][1][-2000:]}", flush=True)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["resume", "gloo"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--late-ms", type=float, default=50.0,
                        help="gloo: rank 0 tears down up to this much after rank 1")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rank_teardown"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    if args.mode == "resume":
        failed = resume_runs(args.out, args.runs)
    else:
        failed = gloo_runs(args.runs, args.late_ms)
    print(f"{args.mode}: {failed} of {args.runs} runs failed")


if __name__ == "__main__":
    main()
