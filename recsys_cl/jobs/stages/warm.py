"""The warm-start stage: start a run from a finished run's embeddings (``train.warm_start``).

The new split's id maps are matched with the old run's by raw id
(:func:`~recsys_cl.data.idmap.align`): the row of every user and item both runs know is copied
from the old run's selected model (``model.pt``) into the freshly built method, whatever index
either split gave it; users and items only the new log holds keep the rows the method drew for
them (its usual initialisation, from ``seed + 2``); those only the old run knew are dropped and
counted. Then training proceeds as in any run, stopping rule included.

The optimizer starts fresh (zero Adam moments, step 0). Copying the old run's moments for the
copied rows would not be correct: Adam's bias correction keeps one step count per parameter
tensor, so copied rows (old moments) and new rows (zero moments) cannot both be corrected
right, and the checkpoint's moments are the last epoch's while the copied rows are the
selected epoch's.

What was copied is written to the folder's ``warm_start.json`` before training, so a resumed
run (whose checkpoint already holds the warm rows) reports it without the old folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from recsys_cl.config import MethodConfig, RunConfig
from recsys_cl.data import Split
from recsys_cl.data.idmap import IdAlignment, align
from recsys_cl.errors import DataError, RecsysError
from recsys_cl.io import write_json
from recsys_cl.models import Recommender

from ..folder import RunFolder

__all__ = ["RowCounts", "WarmStart", "apply_warm_start", "check_source", "read_warm_start"]

# The model keys that must agree with the old run's for its rows to mean the same thing here
# (the table's width and what the encoder computes from it).
_SAME_KEYS = ("method", "dim", "layers")
# The state-dict key of the [U + I, D] table every trained method learns (users then items).
_TABLE = "encoder.weight"


@dataclass(frozen=True)
class RowCounts:
    """One side's rows (users or items): copied from the old run, new here, dropped."""

    copied: int
    new: int
    dropped: int

    @classmethod
    def of(cls, alignment: IdAlignment) -> RowCounts:
        return cls(alignment.copied, alignment.new, alignment.dropped)


@dataclass(frozen=True)
class WarmStart:
    """What a warm start copied: the source run folder, the users' and items' counts, and the
    seconds it took (reading the old run, matching ids, copying rows)."""

    source: str
    users: RowCounts
    items: RowCounts
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmStart:
        return cls(
            str(data["source"]),
            RowCounts(**data["users"]),
            RowCounts(**data["items"]),
            float(data["seconds"]),
        )

    def describe(self) -> str:
        """One line: ``warm start from DIR: users 900 copied, 43 new, 0 dropped; items ...``."""
        u, i = self.users, self.items
        return (
            f"warm start from {self.source}: users {u.copied:,} copied, {u.new:,} new, "
            f"{u.dropped:,} dropped; items {i.copied:,} copied, {i.new:,} new, "
            f"{i.dropped:,} dropped"
        )

    def params(self) -> dict[str, int]:
        """The counts as flat tracking parameters (``warm_start.users_copied``, ...)."""
        return {
            f"warm_start.{side}_{what}": count
            for side, counts in (("users", self.users), ("items", self.items))
            for what, count in asdict(counts).items()
        }


def check_source(source: Path, model: MethodConfig) -> RunFolder:
    """The finished run folder ``source``, checked to fit a run of ``model``.

    Raises:
        RecsysError: the folder is missing or unfinished, or its method, dim or layers
            differ from ``model``'s (the message names the key).
    """
    old = RunFolder(source)
    where = f"train.warm_start: {source}"
    if not old.root.is_dir():
        raise RecsysError(f"{where}: run folder not found")
    if not old.has_config():
        raise RecsysError(f"{where}: not a run folder (no config.yaml)")
    if not old.finished() or not old.model_file.is_file():
        raise RecsysError(
            f"{where}: the run has not finished (no metrics.json or model.pt); finish it with "
            "`recsys-cl train --resume` or start from another run"
        )
    before = old.config.model
    for key in _SAME_KEYS:
        # The method comes first: once it agrees, both blocks are one class with these fields.
        there, here = getattr(before, key), getattr(model, key)
        if there != here:
            raise RecsysError(
                f"{where}: model.{key} is {there!r} there and {here!r} here; a warm start "
                "needs the same method, dim and layers"
            )
    return old


def apply_warm_start(
    method: Recommender, split: Split, cfg: RunConfig, run: RunFolder
) -> WarmStart:
    """Copy the rows of ``cfg.train.warm_start``'s model that ``split`` knows into ``method``'s
    table (in place) and write the counts to ``run``'s ``warm_start.json``.

    Raises:
        RecsysError: see :func:`check_source`; DataError: an unreadable ``model.pt``, a table
            that does not match the old run's id maps, or ids of another type.
    """
    assert cfg.train.warm_start is not None and isinstance(cfg.model, MethodConfig)
    start = time.perf_counter()
    source = cfg.train.warm_start
    old = check_source(source, cfg.model)
    old_table = _read_table(old)
    old_split = old.split
    users = align(old_split.users, split.users, source=f"{old.data_dir} users")
    items = align(old_split.items, split.items, source=f"{old.data_dir} items")
    expected = (old_split.n_users + old_split.n_items, int(cfg.model.dim))
    if tuple(old_table.shape) != expected:
        raise DataError(
            f"{old.model_file}: {_TABLE} is {tuple(old_table.shape)}, the old run's split "
            f"needs {expected}"
        )
    encoder = method.encoder
    with torch.no_grad():
        table = encoder.weight
        old_table = old_table.to(device=table.device, dtype=table.dtype)
        old_user, old_item = old_table[: old_split.n_users], old_table[old_split.n_users :]
        new_user, new_item = encoder.split(table)
        for new_rows, old_rows, how in ((new_user, old_user, users), (new_item, old_item, items)):
            at_new = torch.from_numpy(how.new_index).to(table.device)
            at_old = torch.from_numpy(how.old_index).to(table.device)
            new_rows.index_copy_(0, at_new, old_rows.index_select(0, at_old))
    report = WarmStart(
        str(source), RowCounts.of(users), RowCounts.of(items), time.perf_counter() - start
    )
    write_json(run.warm_start_file, report.to_dict())
    return report


def read_warm_start(run: RunFolder) -> WarmStart:
    """The counts a warm-started run wrote before training (for a resumed run).

    Raises:
        DataError: the file is missing or unreadable.
    """
    path = run.warm_start_file
    try:
        return WarmStart.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DataError(
            f"{path}: not found; this warm-started run's folder lost its warm-start record"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def _read_table(old: RunFolder) -> torch.Tensor:
    """The [U + I, D] table of the old run's selected model."""
    table = old.read_model().get(_TABLE)
    if not isinstance(table, torch.Tensor) or table.dim() != 2:
        raise DataError(f"{old.model_file}: holds no {_TABLE} table to start from")
    return table
