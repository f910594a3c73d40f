"""The run folder: the one place that knows its layout, and how each part is read and written.

A run folder (a config's ``output_dir``) holds::

    config.yaml                     the resolved config
    data/                           the prepared split (parquet parts, id maps, manifest)
    checkpoints/last.pt             written after every epoch; ``--resume`` continues from it
    model.pt                        the selected (best) state dict
    user_embeddings.parquet         user_id (raw) + embedding
    item_embeddings.parquet         item_id (raw) + embedding
    metrics.json                    protocol, selection, test metrics (overall and long-tail),
                                    history, cold counts, the imbalance strategies' summary
    tracking.json                   the MLflow store and run that trained the folder
    warm_start.json                 a warm-started run's source and row counts (train.warm_start)
    index/<kind>.faiss (+ .json)    a saved FAISS index (``recsys-cl index``)
    candidates.parquet              top-K candidates of every user (``recsys-cl recommend``)
    candidates_sample.parquet       the first users' candidates, logged with the run
    candidate_model/                the candidate bundle the MLflow model serves
    .writer.lock                    who writes the folder now (see below)

Every write is atomic (:mod:`recsys_cl.io`). Reads check what they read and fail with one line
naming the file.

One process writes a run folder at a time: the jobs that train into it (``train``, ``main``,
``compare``, ``tune``) hold :meth:`RunFolder.lock`, an ``flock`` on ``.writer.lock``, from
before they read it until they end, and a second one fails at once with a one-line
:class:`FolderBusyError` naming the holder. The operating system releases the lock when its
process ends, however it ends (even SIGKILL), so a file left behind by a crash locks nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys_cl.config import RunConfig, read_yaml, to_yaml, validate
from recsys_cl.data import IdMap, Split, load_split, save_split
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.io import atomic_path, read_table, write_json

if TYPE_CHECKING:  # torch loads only when a folder's model is written or read
    import torch

LOCK_FILE = ".writer.lock"
# How long a process that finds the folder locked waits for the holder to write who it is
# (the holder writes it right after it takes the lock).
_HOLDER_WAIT_S = 0.5
# flock's answers where the file system cannot lock at all.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP})


class FolderBusyError(RecsysError):
    """Another process is writing the run folder."""


@dataclass(frozen=True)
class RunFolder:
    """A run folder at ``root``; nothing is read until asked (then the config and split are
    read once and kept)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # ------------------------------------------------------------------------------ layout

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """What :class:`~recsys_cl.training.Trainer` writes into :attr:`checkpoint_dir`."""
        from recsys_cl.training.checkpoint import LAST_CHECKPOINT

        return self.checkpoint_dir / LAST_CHECKPOINT

    @property
    def model_file(self) -> Path:
        return self.root / "model.pt"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.json"

    @property
    def user_embeddings(self) -> Path:
        return self.root / "user_embeddings.parquet"

    @property
    def item_embeddings(self) -> Path:
        return self.root / "item_embeddings.parquet"

    @property
    def tracking_file(self) -> Path:
        return self.root / "tracking.json"

    @property
    def warm_start_file(self) -> Path:
        """Where a warm-started run keeps what it copied (:mod:`.stages.warm`)."""
        return self.root / "warm_start.json"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.parquet"

    @property
    def candidates_sample(self) -> Path:
        return self.root / "candidates_sample.parquet"

    @property
    def bundle_dir(self) -> Path:
        return self.root / "candidate_model"

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    # ------------------------------------------------------------------------------- writer

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold this folder's writer lock (creating the folder); see :func:`writer_lock`."""
        return writer_lock(self.root)

    # ------------------------------------------------------------------------------- reads

    def require(self) -> RunFolder:
        """This folder, checked to exist (the first step of every stage that reads a run)."""
        if not self.root.is_dir():
            raise DataError(
                f"{self.root}: run folder not found (the output_dir of `recsys-cl train`)"
            )
        return self

    @cached_property
    def config(self) -> RunConfig:
        """The saved, resolved config, validated (read once)."""
        path = self.config_file
        if not path.is_file():
            raise DataError(f"{path}: not found; is {self.root} a `recsys-cl train` run folder?")
        return validate(read_yaml(path), RunConfig, str(path))

    def has_config(self) -> bool:
        return self.config_file.is_file()

    @cached_property
    def split(self) -> Split:
        """The prepared split the run trained on (read once)."""
        return load_split(self.data_dir)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(user float32 [U, D], item float32 [I, D]) in the split's index order.

        Raises:
            DataError: missing files, ids that do not match the split, or unequal D.
        """
        split = self.split
        user = _read_embeddings(self.user_embeddings, "user_id", split.users)
        item = _read_embeddings(self.item_embeddings, "item_id", split.items)
        if user.shape[1] != item.shape[1]:
            raise DataError(
                f"{self.root}: user D={user.shape[1]} and item D={item.shape[1]} differ"
            )
        return user, item

    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` of a finished run."""
        try:
            summary = json.loads(self.metrics_file.read_text())
        except FileNotFoundError:
            raise DataError(f"{self.metrics_file}: not found; the run has not finished") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.metrics_file}: unreadable ({exc})") from None
        if not isinstance(summary, dict):
            raise DataError(f"{self.metrics_file}: not a JSON object")
        return summary

    def finished(self) -> bool:
        """Whether training wrote its final summary."""
        return self.metrics_file.is_file()

    def tracking(self) -> dict[str, Any]:
        """``tracking.json``, or ``{}`` when there is none (or it is unreadable: the folder is
        then treated as never tracked, and a new run is opened)."""
        try:
            saved = json.loads(self.tracking_file.read_text())
        except (OSError, ValueError):
            return {}
        return saved if isinstance(saved, dict) else {}

    def index_file(self, name: str) -> Path:
        """Where an index named ``name`` is saved by default."""
        return self.index_dir / f"{name}.faiss"

    # ------------------------------------------------------------------------------ writes

    def write_config(self, cfg: RunConfig) -> None:
        with atomic_path(self.config_file) as tmp:
            tmp.write_text(to_yaml(cfg))
        self.__dict__["config"] = cfg

    def write_split(self, split: Split) -> None:
        save_split(split, self.data_dir)
        self.__dict__["split"] = split

    def write_embeddings(self, user: torch.Tensor, item: torch.Tensor) -> None:
        """Both tables with their raw ids, in index order."""
        split = self.split
        _write_embeddings(self.user_embeddings, "user_id", split.users, user)
        _write_embeddings(self.item_embeddings, "item_id", split.items, item)

    def write_model(self, state: dict[str, torch.Tensor]) -> None:
        import torch

        with atomic_path(self.model_file) as tmp, open(tmp, "wb") as out:
            # A Python file, so a full disk raises OSError(ENOSPC) (see save_checkpoint).
            torch.save({k: v.cpu() for k, v in state.items()}, out)

    def read_model(self) -> dict[str, torch.Tensor]:
        """The selected model's state (``model.pt``), read with ``weights_only=True`` on the CPU.

        Raises:
            DataError: the file is missing, or not a state dict of tensors.
        """
        import torch

        path = self.model_file
        if not path.is_file():
            raise DataError(f"{path}: not found; the run has not finished")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: torch raises several types
            raise DataError(f"{path}: not a readable model state ({exc})") from None
        if not isinstance(state, dict):
            raise DataError(f"{path}: not a readable model state (a {type(state).__name__})")
        return state

    def write_metrics(self, summary: dict[str, Any]) -> None:
        write_json(self.metrics_file, summary)

    def write_tracking(self, uri: str | None, run_id: str, *, finished: bool) -> None:
        write_json(
            self.tracking_file, {"tracking_uri": uri, "run_id": run_id, "finished": finished}
        )


@contextlib.contextmanager
def writer_lock(folder: str | Path) -> Iterator[None]:
    """Be the one process writing ``folder`` for the block: an exclusive, non-blocking
    ``flock`` on ``folder/.writer.lock``, which holds this process's pid, host and start time
    while it is held. ``flock`` locks an open file, not a process: a second lock of the same
    folder in this process fails as well (nested jobs lock different folders).

    A folder the lock created is removed again when the block leaves nothing else in it
    (a job that failed before its first write leaves no empty run folder behind).

    Off POSIX (no ``fcntl``) nothing is locked.

    Raises:
        FolderBusyError: another process holds the lock (message: its pid and host).
    """
    root = Path(folder)
    if os.name != "posix":
        yield
        return
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _lock(fd, root):
            yield
            return
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield
        finally:
            # Emptied while still held: a later reader never sees a finished writer's pid.
            os.ftruncate(fd, 0)
    finally:
        if created and [p.name for p in root.iterdir()] == [LOCK_FILE]:
            (root / LOCK_FILE).unlink()
            with contextlib.suppress(OSError):  # another writer got in between: its folder now
                root.rmdir()
        os.close(fd)  # releases the lock


def _lock(fd: int, root: Path) -> bool:
    """Take the exclusive lock on ``fd``; False where the file system has no locks."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderBusyError(
            f"{root}: another process is writing this run folder ({_holder(fd)}); wait "
            "for it to end or stop it, or choose another output_dir"
        ) from None
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        # Some network and FUSE mounts: go on, unguarded, and say so.
        print(
            f"WARNING: {root / LOCK_FILE}: cannot lock ({exc.strerror}); nothing stops a "
            "second process writing this run folder",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def _holder(fd: int) -> str:
    """Who holds the lock on ``fd``'s file, as the holder wrote it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            holder = None
        if isinstance(holder, dict) or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if not isinstance(holder, dict):
        return "pid unknown"
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{since}"


@contextlib.contextmanager
def writer_locks(folders: Iterable[str | Path]) -> Iterator[None]:
    """Hold the writer lock of every folder in ``folders`` (see :func:`writer_lock`)."""
    with contextlib.ExitStack() as held:
        for folder in dict.fromkeys(Path(f) for f in folders):
            held.enter_context(writer_lock(folder))
        yield


def _read_embeddings(path: Path, key: str, ids: IdMap) -> np.ndarray:
    table = read_table(
        path,
        [key, "embedding"],
        missing="embeddings not found; is this a finished `recsys-cl train` run?",
        exact=False,
    )
    idx = ids.to_index(table[key], source=str(path))
    if table.height != ids.size or idx.n_unique() != ids.size:
        raise DataError(f"{path}: {table.height} rows do not cover the run's {ids.size} ids")
    emb = np.stack(list(table["embedding"].to_numpy()))
    order = np.argsort(idx.to_numpy())
    return np.ascontiguousarray(emb[order], dtype=np.float32)


def _write_embeddings(path: Path, key: str, ids: IdMap, emb: torch.Tensor) -> None:
    table = pl.DataFrame(
        {key: ids.to_raw(np.arange(ids.size)), "embedding": emb.detach().cpu().float().numpy()}
    )
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


__all__ = ["LOCK_FILE", "FolderBusyError", "RunFolder", "writer_lock", "writer_locks"]
