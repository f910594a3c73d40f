"""Data-parallel training: rows are sharded without overlap or loss; two gloo ranks on the
loopback address hold identical parameters after every step and train as one process with the
same global batch does (exactly for BPR, full graph and sampled; within a stated tolerance
for the contrastive XSimGCL, whose in-batch negatives are per shard); the command line
launches ranks, reports a killed rank by name instead of hanging, and a killed distributed run
resumes to the uninterrupted result."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recsys_cl.cli import _worker_argv, main
from recsys_cl.config import load_config
from recsys_cl.errors import DistributedError, RecsysError
from recsys_cl.graph import NeighborSampler, build_graph
from recsys_cl.metrics import evaluate
from recsys_cl.training import Sampling, Schedule, Trainer
from recsys_cl.training.distributed import (
    Replicas,
    World,
    process_group,
    rank_seed,
    shard,
    single_process,
)
from recsys_cl.training.launch import raise_for_failures
from tests.conftest import make_long_tail_log, make_planted_split, write_run_config

REPO = Path(__file__).resolve().parents[1]
WORLD = 2


def _log(folder: Path) -> Path:
    path = folder / "log.csv"
    make_long_tail_log(n_users=80, n_items=120, seed=3, mean_activity=15).write_csv(path)
    return path


def _config(folder: Path, log: Path, **train: object) -> Path:
    """An XSimGCL run of ``log`` into ``folder/run`` (test_cli's, at dim 8)."""
    return write_run_config(folder, log, dim=8, patience=100, **train)


# ------------------------------------------------------------------------ sharding, seeds


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_contiguous_and_cover_the_batch(size: int) -> None:
    for start in (0, 5):
        for n in range(0, 23):
            parts = [shard(start, start + n, r, size) for r in range(size)]
            lengths = [p.stop - p.start for p in parts]
            assert parts[0].start == start and parts[-1].stop == start + n
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
            assert max(lengths) - min(lengths) <= 1 and sum(lengths) == n
            # The longer parts come first, so rank 0 never has fewer rows than another.
            assert lengths == sorted(lengths, reverse=True)


def test_rank_seeds_keep_rank_0_and_differ_between_ranks() -> None:
    for seed in (0, 1, 2**62 - 1, 123_456_789):
        seeds = [rank_seed(seed, r) for r in range(8)]
        assert seeds[0] == seed and len(set(seeds)) == 8
        assert all(0 <= s < 2**62 for s in seeds)


def test_failures_name_the_rank_that_died_not_the_ones_stopped() -> None:
    # Rank 0 stopped by the launcher dies of SIGTERM or, when its handler runs first, exits
    # 130 (interrupted); or it notices the lost peer itself and exits 2.
    for stopped in (-signal.SIGTERM, 130, 2):
        with pytest.raises(DistributedError) as exc:
            raise_for_failures({0: stopped, 1: -signal.SIGKILL})
        assert str(exc.value) == "rank 1 died (killed by SIGKILL); the other ranks were stopped"
    # Rank 0 crashed (a traceback, exit 1); rank 1 stopped on hearing it (exit 2).
    with pytest.raises(DistributedError) as exc:
        raise_for_failures({0: 1, 1: 2})
    assert str(exc.value) == "rank 0 failed (exit code 1); the other ranks were stopped"
    with pytest.raises(DistributedError, match="rank 0 died .*SIGTERM.*rank 1 died"):
        raise_for_failures({0: -signal.SIGTERM, 1: -signal.SIGTERM})
    # Every rank stopped on a user error it printed: exit 2 without another message.
    assert raise_for_failures({0: 2, 1: 2}) is None


def test_a_backend_error_becomes_one_line_naming_the_rank() -> None:
    from recsys_cl.training.distributed import _reason

    gloo = RuntimeError(
        "[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
        "[127.0.0.1]:58051: Connection reset by peer. This is typically caused by a remote "
        "worker hanging or bugs in the application. GLHF!\nmore"
    )
    assert _reason(gloo) == "Read error [127.0.0.1]:58051: Connection reset by peer"


def test_a_single_process_replica_is_the_identity() -> None:
    replicas = single_process()
    assert replicas.is_main and replicas.size == 1
    assert replicas.shard(3, 10) == slice(3, 10) and replicas.seed(42) == 42
    assert replicas.from_main(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):
        replicas.from_main(lambda: 1 / 0)
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.full((3,), 2.0)
    losses = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert replicas.all_reduce_step(losses, [weight]) is losses
    assert torch.equal(weight.grad, torch.full((3,), 2.0))
    cpu = torch.device("cpu")
    assert replicas.device(cpu) == cpu


def test_world_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert World.from_env() == World(0, 1, 0)
    with process_group(torch.device("cpu")) as replicas:
        assert replicas.size == 1  # no launcher: no process group is started
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert World.from_env() == World(3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(DistributedError, match="RANK=4 does not fit WORLD_SIZE=4"):
        World.from_env()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(DistributedError, match="MASTER_ADDR is not"):
        with process_group(torch.device("cpu")):
            pass


def test_the_command_line_default_timeout_is_the_library_one() -> None:
    # The command line keeps its own copy so that `--help` does not load torch.
    from recsys_cl import cli
    from recsys_cl.training import distributed

    assert cli.DEFAULT_TIMEOUT_S == distributed.DEFAULT_TIMEOUT_S


def test_worker_command_line_drops_the_launch_flag_and_splits_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RECSYS_CL_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("recsys_cl.cli.available_cores", lambda: 8)
    argv = ["train", "-c", "x.yaml", "--nproc-per-node", "2", "--set", "train.epochs=3"]
    assert _worker_argv(argv, 2) == [
        "train", "-c", "x.yaml", "--set", "train.epochs=3", "--threads", "4"
    ]
    assert _worker_argv(["train", "-c", "x.yaml", "--nproc-per-node=3", "--threads", "1"], 3) == [
        "train", "-c", "x.yaml", "--threads", "1"
    ]
    with pytest.raises(RecsysError, match="in full"):
        _worker_argv(["train", "-c", "x.yaml", "--nproc", "2"], 2)


def test_launch_settings_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, _log(tmp_path))
    assert main(["train", "-c", str(cfg), "--nproc-per-node", "0", "--no-track"]) == 2
    assert "--nproc-per-node must be >= 1, got 0" in capsys.readouterr().err
    # Under a launcher only `train` is distributed; another command would run N times.
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "recsys-cl evaluate runs in one process" in err and err.count("\n") == 1


# --------------------------------------------------------- two gloo ranks vs one process

# Each case: the method (its default model block at dim 8, 2 layers), the global batch and the
# sampled-mode fanouts (None: full graph). The planted split (two communities of 40 users and
# 60 items; each user 12 train and 4 test items of their own) has 960 training rows: with
# batch 137 the last batch holds one row, so rank 1 has none there and the step is rank 0's
# alone. Recall@20 is chance at 20/108 and 20/44 when the communities are ranked perfectly.
CASES: dict[str, dict[str, Any]] = {
    "lightgcn": {"method": "lightgcn", "batch": 137, "fanouts": None},
    "xsimgcl": {"method": "xsimgcl", "batch": 128, "fanouts": None},
    # Fanout -1 takes every neighbour, so the shards' subgraphs together are the batch's: the
    # sparse (lazy Adam) gradients summed over the ranks are the single process's.
    "sampled": {"method": "lightgcn", "batch": 137, "fanouts": (-1, -1)},
}
EPOCHS = 4


def _trainer(case: str, replicas: Replicas | None) -> Trainer:
    spec = CASES[case]
    train, test = make_planted_split(items_per=60)
    overrides = ["data.dataset=planted", f"model.method={spec['method']}", "model.dim=8",
                 "model.layers=2"]
    cfg = load_config(None, overrides)
    graph = build_graph(
        torch.from_numpy(train.rows()), torch.from_numpy(train.indices),
        train.n_users, train.n_items,
    )
    method = cfg.model.build(train.n_users, train.n_items, torch.Generator().manual_seed(0))
    sampling = None
    if spec["fanouts"] is not None:
        sampling = Sampling(subgraph=NeighborSampler(graph, spec["fanouts"]))

    def recall(m: Any) -> dict[str, float]:
        user, item = m.embeddings(graph.adj)
        return evaluate(user, item, test, train, ks=(20,)).metrics

    return Trainer(
        method, graph, train,
        schedule=Schedule(epochs=EPOCHS, batch_size=spec["batch"], lr=0.01,
                          select_metric="recall@20"),
        generator=torch.Generator().manual_seed(1),
        device_generator=torch.Generator().manual_seed(2),
        sampling=sampling, evaluate=recall, progress=False, replicas=replicas,
    )


def _outcome(trainer: Trainer, fit: Any) -> dict[str, Any]:
    return {
        "losses": [[r[f"loss/{k}"] for k in ("rec", "cl", "reg", "total")] for r in fit.history],
        "recall": [r["recall@20"] for r in fit.history],
        "steps": fit.history[-1]["steps"],
        "weight": trainer.method.encoder.weight.detach().clone(),
    }


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    """One rank of the two-process run: every case, checking after each optimizer step that
    all ranks hold the same parameters, bit for bit."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
    )
    results = {}
    with process_group(torch.device("cpu"), timeout_s=60) as replicas:
        for case in CASES:
            trainer = _trainer(case, replicas)
            agreed: list[bool] = []

            def same_everywhere(*_: Any, trainer: Trainer = trainer, agreed: list = agreed) -> None:
                flat = torch.cat([p.detach().reshape(-1) for p in trainer.method.parameters()])
                every = [torch.empty_like(flat) for _ in range(world)]
                dist.all_gather(every, flat)
                agreed.append(all(torch.equal(every[0], other) for other in every))

            trainer.optimizer.register_step_post_hook(same_everywhere)
            results[case] = {**_outcome(trainer, trainer.fit()), "agreed": agreed}
    torch.save(results, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ranks")
    # The ranks meet at a store this process holds, as torchrun's agent holds one: hosted by
    # rank 0, it would vanish when rank 0 exits while rank 1 may still be leaving the group
    # (seen once: rank 1 aborted, "terminate called without an active exception").
    store = dist.TCPStore("127.0.0.1", 0, WORLD + 1, is_master=True, wait_for_workers=False)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        env.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
        context = mp.start_processes(
            _rank_main, args=(WORLD, store.port, str(out)), nprocs=WORLD, join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + 120
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail("the two ranks did not finish within 120 s")
    del store
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def one_process() -> dict[str, dict[str, Any]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {case: _outcome(t, t.fit()) for case in CASES for t in [_trainer(case, None)]}
    finally:
        torch.set_num_threads(before)


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_ranks_hold_identical_parameters_after_every_step(
    case: str, two_ranks: list[dict[str, Any]], one_process: dict[str, dict[str, Any]]
) -> None:
    steps = one_process[case]["steps"]
    for rank in two_ranks:
        assert len(rank[case]["agreed"]) == steps and all(rank[case]["agreed"])
        assert rank[case]["steps"] == steps
    assert torch.equal(two_ranks[0][case]["weight"], two_ranks[1][case]["weight"])


@pytest.mark.integration
@pytest.mark.parametrize("case", ["lightgcn", "sampled"])
def test_bpr_training_equals_one_process_with_the_same_global_batch(
    case: str, two_ranks: list[dict[str, Any]], one_process: dict[str, dict[str, Any]]
) -> None:
    # Per-row mean terms: the ranks' summed gradient is the batch's up to the order of float
    # additions, so the runs agree to float32 rounding (measured: ~1e-7 relative).
    one, two = one_process[case], two_ranks[0][case]
    for a, b in zip(one["losses"], two["losses"], strict=True):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-7)
    assert two["recall"] == pytest.approx(one["recall"], abs=1e-6)
    assert torch.allclose(two["weight"], one["weight"], rtol=1e-4, atol=1e-5)


@pytest.mark.integration
def test_contrastive_training_is_within_tolerance_of_one_process(
    two_ranks: list[dict[str, Any]], one_process: dict[str, dict[str, Any]]
) -> None:
    # XSimGCL's InfoNCE sees each shard's 64 rows as negatives, not the batch's 128, so its
    # value and gradient differ by design: the shard's term is the lower one, by
    # lambda x 2 terms x ln(128 / 64) = 0.28 if every negative scored alike (measured 0.08 to
    # 0.14). The recommendation term and the quality follow one process: measured rec within
    # 0.2%, recall@20 within 0.035 at every epoch (0.27 vs 0.27 at the end; chance
    # 20/108 = 0.19), so the tolerances are 1% and 0.05.
    one, two = one_process["xsimgcl"], two_ranks[0]["xsimgcl"]
    for (rec1, cl1, _, _), (rec2, cl2, _, _) in zip(one["losses"], two["losses"], strict=True):
        assert rec2 == pytest.approx(rec1, rel=0.01)
        assert 0 < cl1 - cl2 <= 0.2 * 2 * math.log(2)
    assert two["recall"] == pytest.approx(one["recall"], abs=0.05)
    assert min(two["recall"][-1], one["recall"][-1]) > 20 / 108


# ------------------------------------------------------------------------- the command line


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys_cl", *args]


def _env() -> dict[str, str]:
    # One thread per rank: the ranks share the test machine's cores with the launcher.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the launched rank ``rank`` (a child of ``launcher`` with RANK=rank)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if ppid == launcher else []
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_launched_rank_exits_with_its_code_after_the_exit_handlers(tmp_path: Path) -> None:
    marker = tmp_path / "handlers-ran"
    script = tmp_path / "rank.py"
    script.write_text(
        "import atexit, threading\n"
        "from recsys_cl import cli\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        # A thread still running: the interpreter's teardown would wait for it (a minute).
        "threading.Thread(target=threading.Event().wait, args=(60,)).start()\n"
        "cli.main = lambda argv=None: print('done', end='') or 3\n"
        "cli.run()\n"
    )
    env = {**os.environ, "WORLD_SIZE": "2"}
    ended = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30
    )
    assert (ended.returncode, ended.stdout) == (3, "done"), ended.stderr
    assert marker.read_text() == "yes"


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks through /proc")
def test_killed_rank_stops_the_job_and_the_run_resumes_to_the_same_result(
    tmp_path: Path, tracking_store: str
) -> None:
    import mlflow

    # Enough epochs that the kill lands while the ranks train (one epoch is ~30 ms here).
    epochs = 50
    log = _log(tmp_path)
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "kill"
    ref_dir.mkdir()
    kill_dir.mkdir()
    ref_cfg = _config(ref_dir, log, epochs=epochs, eval_every=5)
    kill_cfg = _config(kill_dir, log, epochs=epochs, eval_every=5)
    experiment = f"distributed-{tmp_path.name}"
    ref = subprocess.run(
        _cli("train", "-c", str(ref_cfg), "--nproc-per-node", "2", "--experiment", experiment),
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert ref.returncode == 0, ref.stderr
    assert ref.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    # One MLflow run for the job, recording its world size.
    client = mlflow.MlflowClient(tracking_store)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1 and runs[0].data.params["world_size"] == "2"

    proc = subprocess.Popen(
        _cli("train", "-c", str(kill_cfg), "--nproc-per-node", "2", "--no-track",
             "--dist-timeout", "30"),
        env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    last = kill_dir / "run" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None, "rank 1 not found (did the run end before it was killed?)"
    os.kill(victim, signal.SIGKILL)
    # Within the process group's timeout (30 s), never a hang.
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "recsys-cl: error: rank 1 died (killed by SIGKILL)" in err, err
    done = torch.load(last, weights_only=True)["state"]["epoch"]
    assert 1 <= done < epochs
    assert not (kill_dir / "run" / "metrics.json").exists()

    resumed = subprocess.run(
        _cli("train", "-c", str(kill_cfg), "--resume", "--nproc-per-node", "2", "--no-track"),
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    want = json.loads((ref_dir / "run" / "metrics.json").read_text())
    got = json.loads((kill_dir / "run" / "metrics.json").read_text())
    assert got["world_size"] == want["world_size"] == 2
    assert got["best_epoch"] == want["best_epoch"]
    assert got["test"] == pytest.approx(want["test"], rel=1e-6)
    assert [h["loss/total"] for h in got["history"]] == pytest.approx(
        [h["loss/total"] for h in want["history"]], rel=1e-6
    )
