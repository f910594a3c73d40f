"""Stop tracked training runs with SIGTERM at their first epochs and count how they end.

Each trial starts `recsys-cl train` on a small synthetic log (tiny epochs, so a good share of
the time is spent writing to the SQLite store), waits for the first checkpoint, sends SIGTERM
and records the exit code and the MLflow run status. A run must exit with 130 and end KILLED;
anything else (RUNNING after a "database is locked", say) is printed with its stderr.

Example:
    python benchmarks/interrupt_stress.py --trials 30 --out /tmp/interrupt_stress
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlflow.tracking import MlflowClient  # noqa: E402

from tests.conftest import make_long_tail_log  # noqa: E402


def trial(root: Path) -> tuple[int, str, str]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    make_long_tail_log(n_users=150, n_items=300, seed=11, mean_activity=15).write_csv(
        root / "log.csv"
    )
    (root / "run.yaml").write_text(
        f"experiment: stress\noutput_dir: {root / 'run'}\n"
        f"data: {{path: {root / 'log.csv'}, "
        "split: {kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model: {method: xsimgcl, dim: 16}\n"
        "train: {epochs: 100000, batch_size: 256, eval_every: 2, patience: 100000, "
        "progress: false}\n"
    )
    uri = f"sqlite:///{root / 'mlruns.db'}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys_cl.cli",
            "train",
            "-c",
            str(root / "run.yaml"),
            "--tracking-uri",
            uri,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (root / "run" / "checkpoints" / "last.pt").exists():
        if proc.poll() is not None:
            return proc.returncode, "no run", proc.stderr.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    run_id = json.loads((root / "run" / "tracking.json").read_text())["run_id"]
    return code, MlflowClient(uri).get_run(run_id).info.status, proc.stderr.read()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=30, help="runs to stop (default 30)")
    parser.add_argument("--out", default="/tmp/interrupt_stress", help="scratch folder (replaced)")
    args = parser.parse_args()
    bad = 0
    for i in range(args.trials):
        code, status, stderr = trial(Path(args.out) / str(i))
        ok = code == 130 and status == "KILLED"
        bad += not ok
        print(
            f"trial {i:>2}: exit {code}, run {status}" + ("" if ok else f"\n{stderr[-1500:]}"),
            flush=True,
        )
    print(f"{args.trials - bad} of {args.trials} ended KILLED with exit 130")


if __name__ == "__main__":
    main()
