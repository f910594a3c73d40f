"""Run folders under stress (issue 23): one writer at a time, a full disk reported in one line,
files with the permissions of a plain ``open()``, and progress without ``\\r`` frames in logs."""

from __future__ import annotations

import errno
import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_cl import io as rio
from recsys_cl.cli import main
from recsys_cl.jobs.folder import LOCK_FILE, FolderBusyError, writer_lock
from recsys_cl.optional import faiss_available
from recsys_cl.progress import LineProgress, progress
from tests.conftest import make_long_tail_log, write_run_config

REPO = Path(__file__).resolve().parents[1]
# Outputs a run writes, for a umask that differs from the usual 0o022.
UMASK = 0o027

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock, umask and modes are POSIX")


@pytest.fixture
def log_csv(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    make_long_tail_log(n_users=60, n_items=90, seed=3, mean_activity=12).write_csv(path)
    return path


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(UMASK)
    yield UMASK
    os.umask(previous)


def _train(cfg: Path, *extra: str) -> int:
    return main(["train", "-c", str(cfg), "--no-track", "--no-baselines", *extra])


def _one_line_error(err: str) -> str:
    assert err.startswith("recsys-cl: error: ") and err.count("\n") == 1, err
    return err


# -------------------------------------------------------------------------- one writer


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the writer lock of ``tmp_path/run``."""
    run = tmp_path / "run"
    script = (
        "import sys, time\n"
        "from recsys_cl.jobs.folder import writer_lock\n"
        "with writer_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(300)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc, run
    finally:
        proc.kill()
        proc.wait()


def test_second_writer_fails_naming_the_holder_and_writes_nothing(
    holder: tuple[subprocess.Popen[str], Path],
    tmp_path: Path,
    log_csv: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc, run = holder
    cfg = write_run_config(tmp_path, log_csv, epochs=1)
    capsys.readouterr()
    for argv in (["--resume"], []):
        assert _train(cfg, *argv) == 2
        err = _one_line_error(capsys.readouterr().err)
        assert f"{run}: another process is writing this run folder" in err
        assert f"pid {proc.pid} on {socket.gethostname()}" in err
    if faiss_available():  # `main` needs FAISS before anything else
        assert main(["main", "-c", str(cfg), "--no-track", "--no-baselines"]) == 2
        assert f"pid {proc.pid}" in _one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]


def test_a_killed_writer_leaves_a_file_but_no_lock(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, run = holder
    with pytest.raises(FolderBusyError, match=f"pid {proc.pid}"):
        with writer_lock(run):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_FILE).exists()
    with writer_lock(run):
        # Held by this process now: its pid is the one a second writer is told.
        assert f'"pid": {os.getpid()}' in (run / LOCK_FILE).read_text()
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"):
            with writer_lock(run):
                pass
    assert (run / LOCK_FILE).read_text() == ""


# -------------------------------------------------------------------------- full disk


def _fill_after(n_bytes: int):
    """A writer that writes ``n_bytes`` and then finds the disk full."""

    def write(path: Path) -> None:
        with open(path, "wb") as out:
            out.write(b"x" * n_bytes)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_full_disk_is_one_oserror_naming_the_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.parquet"
    target.parent.mkdir()
    target.write_bytes(b"previous" * 512)
    with pytest.raises(OSError) as caught:
        with rio.atomic_path(target) as tmp:
            _fill_after(3000)(tmp)
    exc = caught.value
    assert exc.errno == errno.ENOSPC and exc.filename == str(target)
    assert "\n" not in str(exc.strerror)
    assert "No space left on device after writing 2.9 KiB of it" in str(exc.strerror)
    assert "the previous version (4.0 KiB) is kept" in str(exc.strerror)
    assert target.read_bytes() == b"previous" * 512
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.parquet"]


def test_full_disk_reported_by_polars_and_by_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # polars keeps the OS error only in its message; a folder (atomic_dir) is named as a whole.
    with pytest.raises(OSError, match="No space left on device") as caught:
        with rio.atomic_dir(tmp_path / "data") as tmp:
            (tmp / "part.parquet").write_bytes(b"x" * 10)
            raise pl.exceptions.ComputeError(
                "parquet: underlying IO error: No space left on device (os error 28)"
            )
    assert caught.value.filename == str(tmp_path / "data")
    assert "nothing was written in its place" in str(caught.value.strerror)
    assert not list(tmp_path.iterdir())
    # torch's own file writer says only "unexpected pos": judged by the space left, and only
    # when the disk is (nearly) full.
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704")
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with rio.atomic_path(tmp_path / "model.pt"):
            raise torch_error
    monkeypatch.setattr(rio, "_free_bytes", lambda folder: 0)
    with pytest.raises(OSError, match="0 B free there") as caught:
        with rio.atomic_path(tmp_path / "model.pt"):
            raise torch_error
    assert caught.value.errno == errno.ENOSPC
    # Other errors stay what they are, full disk or not.
    with pytest.raises(ValueError, match="bad value"):
        with rio.atomic_path(tmp_path / "model.pt"):
            raise ValueError("bad value")


def test_train_on_a_full_disk_exits_2_in_one_line_keeping_the_last_checkpoint(
    tmp_path: Path,
    log_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_run_config(tmp_path, log_csv, epochs=3)
    real_save = torch.save
    calls: list[int] = []

    def save(obj: object, f: io.BufferedWriter | Path, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:  # the first epoch's checkpoint fits; the disk fills in the second
            real_save(obj, f, *args, **kwargs)
            return
        with open(f, "ab") if isinstance(f, (str, Path)) else f as out:
            out.write(b"x" * 5000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)
    capsys.readouterr()
    assert _train(cfg) == 2
    err = _one_line_error(capsys.readouterr().err)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert f"{last}: No space left on device after writing 4.9 KiB of it" in err
    assert "is kept" in err
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(last, weights_only=True)["state"]["epoch"] == 1
    assert [p.name for p in last.parent.iterdir()] == ["last.pt"]


# -------------------------------------------------------------------------- permissions


def test_atomic_outputs_have_the_modes_of_open_and_mkdir(tmp_path: Path, umask: int) -> None:
    rio.write_json(tmp_path / "a.json", {"a": 1})
    with rio.atomic_dir(tmp_path / "folder") as tmp:
        with rio.atomic_path(tmp / "inner.txt") as inner:
            inner.write_text("x")
    with open(tmp_path / "plain.txt", "w"):
        pass
    os.mkdir(tmp_path / "plain")
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    assert modes == {
        "a.json": 0o666 & ~umask,
        "plain.txt": 0o666 & ~umask,
        "inner.txt": 0o666 & ~umask,
        "folder": 0o777 & ~umask,
        "plain": 0o777 & ~umask,
    }


def test_a_run_folder_follows_the_umask_and_its_log_has_no_bar_frames(
    tmp_path: Path, log_csv: Path, umask: int, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_run_config(tmp_path, log_csv, epochs=2, progress=True)
    assert _train(cfg) == 0
    run = tmp_path / "run"
    names = {p.relative_to(run).as_posix() for p in run.rglob("*")}
    assert {"data/manifest.json", "data/users.parquet", "checkpoints/last.pt", LOCK_FILE} <= names
    wrong = {
        p.relative_to(run).as_posix(): oct(p.stat().st_mode & 0o777)
        for p in [run, *run.rglob("*")]
        if p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~umask
    }
    assert wrong == {}
    # stderr is not a terminal here: no tqdm frames (a 2-epoch run is too short for a line).
    assert "\r" not in capsys.readouterr().err


# -------------------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_only_on_a_terminal() -> None:
    term, log = _Terminal(), io.StringIO()
    for _ in progress(range(3), desc="epoch 1", unit="batch", stream=term):
        pass
    assert "\r" in term.getvalue() and "3/3" in term.getvalue()
    for _ in progress(range(3), desc="epoch 1", unit="batch", stream=log):
        pass
    assert log.getvalue() == ""  # shorter than LOG_EVERY_S: nothing
    for _ in progress(range(3), stream=term, enabled=False):
        pass
    assert isinstance(progress(range(3), stream=log), LineProgress)


def test_plain_progress_writes_whole_lines_with_the_bars_numbers() -> None:
    log = io.StringIO()
    with progress(total=4, desc="recommend", unit="user", stream=log, every_s=0.0) as bar:
        bar.update(1)
        bar.update(3)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("recommend: 25% 1/4 user [")
    assert lines[-1].startswith("recommend: 100% 4/4 user [")
    assert len(lines) == 2
