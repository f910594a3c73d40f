"""Thread settings applied before torch loads: a short OpenMP spin, the count from
--threads / $RECSYS_CL_THREADS / $OMP_NUM_THREADS / the CPU affinity mask; glibc's malloc
keeping freed large blocks for reuse."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys_cl.cli import main
from recsys_cl.errors import RecsysError
from recsys_cl.runtime import SPIN_COUNT, available_cores, configure_threads, requested_threads

from .conftest import make_long_tail_log

_PROBE = (
    "import os, sys; from recsys_cl.runtime import configure_threads; "
    "configure_threads(int(sys.argv[1]) if len(sys.argv) > 1 else None); "
    "assert 'torch' in sys.modules; import torch; "
    "print(os.environ.get('GOMP_SPINCOUNT', '-'), os.environ.get('OMP_NUM_THREADS', '-'), "
    "torch.get_num_threads())"
)
_SETTINGS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "RECSYS_CL_THREADS")


def _probe(env: dict[str, str], *args: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.integration
def test_a_fresh_process_spins_briefly_within_the_cores_it_may_use() -> None:
    plain = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        env={k: v for k, v in os.environ.items() if k not in _SETTINGS},
        capture_output=True,
        text=True,
        check=True,
    )
    expected = min(int(plain.stdout), available_cores())
    assert _probe({}) == [str(SPIN_COUNT), "-", str(expected)]


@pytest.mark.integration
def test_the_count_comes_from_the_option_then_the_environment() -> None:
    spin = str(SPIN_COUNT)
    assert _probe({"RECSYS_CL_THREADS": "1", "OMP_NUM_THREADS": "2"}) == [spin, "1", "1"]
    assert _probe({"OMP_NUM_THREADS": "1"}) == [spin, "1", "1"]
    # OpenMP's nested list (outer level first), which torch itself accepts, is not an error.
    assert _probe({"OMP_NUM_THREADS": "1,2"}) == [spin, "1", "1"]
    assert _probe({"RECSYS_CL_THREADS": "2"}, "1") == [spin, "1", "1"]
    # A spin count or wait policy the user chose is theirs.
    assert _probe({"GOMP_SPINCOUNT": "10"})[0] == "10"
    assert _probe({"OMP_WAIT_POLICY": "PASSIVE", "RECSYS_CL_THREADS": "1"})[0] == "-"


@pytest.mark.integration
def test_an_explicit_count_caps_polars_and_data_commands_leave_torch_unloaded() -> None:
    code = (
        "import sys; from recsys_cl.runtime import configure_threads; "
        "count = configure_threads(1, load_torch=False); "
        "import polars; "
        "print(count, 'torch' in sys.modules, polars.thread_pool_size())"
    )
    clean = {k: v for k, v in os.environ.items() if k not in (*_SETTINGS, "POLARS_MAX_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "False", "1"]
    # OpenMP's variable is torch's business, and a polars setting the user chose is theirs.
    probe = (
        "import os; from recsys_cl.runtime import configure_threads; "
        "configure_threads(None, load_torch=False); print(os.environ.get('POLARS_MAX_THREADS'))"
    )
    for env, expected in (
        ({"OMP_NUM_THREADS": "1"}, "None"),
        ({"RECSYS_CL_THREADS": "1", "POLARS_MAX_THREADS": "2"}, "2"),
        ({"RECSYS_CL_THREADS": "1"}, "1"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env={**clean, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected, env


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
@pytest.mark.integration
def test_the_affinity_mask_narrows_the_default() -> None:
    one_core = sorted(os.sched_getaffinity(0))[:1]
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, one_core),
    )
    assert out.stdout.split()[1:] == ["-", "1"]


# In a fresh process: malloc one Gowalla-sized [N, D] block (18 MB), free it, and report whether
# it was mmapped (hblkhd grew) and whether its memory stayed in the heap for the next step.
_MALLOC_PROBE = """
import ctypes, sys
from recsys_cl.runtime import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
applied = keep_freed_memory()
size = 70839 * 64 * 4
before = libc.mallinfo2().hblkhd
block = libc.malloc(size)
mapped = libc.mallinfo2().hblkhd - before >= size
libc.free(block)
kept = libc.mallinfo2().fordblks >= size
print(applied, mapped, kept)
"""


def _malloc_probe(env: dict[str, str]) -> list[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MALLOC_", "GLIBC_")) and k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", _MALLOC_PROBE], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="needs glibc 2.33+ (mallinfo2)",
)
def test_freed_large_blocks_stay_in_the_heap_unless_the_user_set_glibc_malloc() -> None:
    # Applied: served from the heap and kept there when freed, for the next step to reuse.
    assert _malloc_probe({}) == ["True", "False", "True"]
    # The user's own glibc settings (an empty GLIBC_TUNABLES= included) are left alone: the
    # default mmaps the block and unmaps it when freed.
    assert _malloc_probe({"GLIBC_TUNABLES": ""}) == ["False", "True", "False"]
    assert _malloc_probe({"MALLOC_ARENA_MAX": "2"})[0] == "False"


def test_bad_counts_name_their_source(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RecsysError, match="^--threads: expected a positive number"):
        requested_threads(0)
    monkeypatch.setenv("RECSYS_CL_THREADS", "many")
    with pytest.raises(RecsysError, match="^RECSYS_CL_THREADS: .*'many'"):
        requested_threads()


def test_in_process_only_an_explicit_count_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_CL_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert configure_threads(None) is None and torch.get_num_threads() == before
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_run_records_its_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log.csv"
    make_long_tail_log(n_users=60, n_items=80, seed=3).write_csv(log)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path / 'run'}\ndata:\n  path: {log}\nmodel: {{method: mf, dim: 8}}\n"
        "train: {epochs: 1, batch_size: 256, progress: false}\n"
    )
    before = torch.get_num_threads()
    try:
        assert main(["train", "-c", str(cfg), "--no-track", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["threads"] == 1
