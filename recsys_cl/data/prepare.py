"""The preparation pipeline (raw log -> implicit -> dedupe -> k-core -> split) and the on-disk
format of a prepared split.

A prepared split is a folder::

    train.parquet  val.parquet (optional)  test.parquet   user, item indices [+ timestamp, rating]
    users.parquet  items.parquet                            id maps (index, raw)
    manifest.json                                           counts, cold report, profile

written through :func:`recsys_cl.io.atomic_dir`, so an interrupted write leaves no folder
that looks complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys_cl.data.frame import ITEM, USER, data_error
from recsys_cl.data.idmap import IdMap
from recsys_cl.data.preprocess import Keep, deduplicate, k_core, to_implicit
from recsys_cl.data.registry import RawDataset
from recsys_cl.data.splits import (
    ColdReport,
    Split,
    split_given,
    split_leave_one_out,
    split_ratio,
    split_temporal,
)
from recsys_cl.data.stats import profile
from recsys_cl.io import atomic_dir, read_table, write_json

SplitMethod = Literal["given", "ratio", "temporal", "leave_one_out"]
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PARTS = ("train", "val", "test")

# The id maps of a prepared split (index i = row i of the model's tables).
USER_IDS_FILE = "users.parquet"
ITEM_IDS_FILE = "items.parquet"


def _clean(
    df: pl.DataFrame,
    source: str,
    implicit_threshold: float | None,
    dedupe: Keep | None,
    user_k: int,
    item_k: int,
) -> pl.DataFrame:
    df = to_implicit(df, implicit_threshold, source=source)
    if dedupe is not None:
        df = deduplicate(df, dedupe)
    return k_core(df, user_k, item_k, source=source)


def prepare(
    data: RawDataset | pl.DataFrame,
    *,
    split: SplitMethod,
    test_ratio: float | None = None,
    val_ratio: float = 0.0,
    implicit_threshold: float | None = None,
    dedupe: Keep | None = "latest",
    user_k: int = 0,
    item_k: int = 0,
    rng: np.random.Generator | None = None,
    source: str | None = None,
) -> Split:
    """Turn a raw log or benchmark into a :class:`Split`.

    Args:
        data: a canonical frame, or a :class:`RawDataset` (its own train/test files are used
            by ``split="given"`` and concatenated into one log by the other methods).
        split: ``given`` (the dataset's files; validation carved from train per user),
            ``ratio`` (random per user), ``temporal`` (global time cut) or ``leave_one_out``.
        test_ratio: test fraction for ``ratio``/``temporal``.
        val_ratio: validation fraction (``0`` for none; ``leave_one_out`` holds out one
            validation row per user when it is > 0).
        implicit_threshold: keep rows with ``rating >= threshold``; ``None`` keeps all.
        dedupe: how to merge repeated (user, item) rows; ``None`` trusts the input to have none.
        user_k, item_k: k-core thresholds (applied to the training file for ``given``).
        rng: randomness of ``ratio`` splits and of carving validation in ``given`` splits.
        source: name used in error messages (defaults to the dataset name).
    """
    name = source or (
        data.spec.name if isinstance(data, RawDataset) and data.spec is not None else "<frame>"
    )

    def clean(df: pl.DataFrame, where: str) -> pl.DataFrame:
        return _clean(df, where, implicit_threshold, dedupe, user_k, item_k)

    needs_rng = split == "ratio" or (split == "given" and val_ratio > 0)
    if needs_rng and rng is None:
        raise ValueError(f"a {split} split with val_ratio={val_ratio} needs rng=")
    if split in ("ratio", "temporal") and test_ratio is None:
        raise ValueError(f"a {split} split needs test_ratio=")
    if split == "given":
        if not isinstance(data, RawDataset) or data.train is None or data.test is None:
            raise ValueError("split='given' needs a RawDataset with its own train and test files")
        train = clean(data.train, f"{name} (train)")
        # The test file is only made implicit and deduplicated: k-core is a property of the
        # training graph, and test rows it orphans are counted as cold, not dropped.
        test = _clean(data.test, f"{name} (test)", implicit_threshold, dedupe, 0, 0)
        return split_given(train, test, val_ratio, rng, source=name)
    if isinstance(data, RawDataset):
        parts = [df for df in (data.interactions, data.train, data.test) if df is not None]
        log = pl.concat(parts, how="vertical_relaxed")
    else:
        log = data
    log = clean(log, name)
    if split == "ratio":
        assert rng is not None and test_ratio is not None  # checked above
        return split_ratio(log, test_ratio, val_ratio, rng, source=name)
    if split == "temporal":
        assert test_ratio is not None
        return split_temporal(log, test_ratio, val_ratio, source=name)
    if split == "leave_one_out":
        return split_leave_one_out(log, val_ratio > 0, source=name)
    raise ValueError(f"unknown split method {split!r}")


def save_split(split: Split, out_dir: str | Path) -> Path:
    """Write ``split`` to the folder ``out_dir`` (replaced whole, atomically); return it."""
    out_dir = Path(out_dir)
    parts = split.parts()
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "method": split.method,
        "n_users": split.n_users,
        "n_items": split.n_items,
        "rows": {name: df.height for name, df in parts.items()},
        "cold": split.cold.to_dict(),
        "profile": profile(split).to_dict(),
    }
    with atomic_dir(out_dir) as tmp:
        for name, df in parts.items():
            df.write_parquet(tmp / f"{name}.parquet")
        split.users.save(tmp / USER_IDS_FILE)
        split.items.save(tmp / ITEM_IDS_FILE)
        write_json(tmp / MANIFEST, manifest)  # last: its presence marks a complete folder
    return out_dir


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise data_error(str(folder), "prepared split folder not found")
    if not path.is_file():
        raise data_error(str(folder), f"not a prepared split (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise data_error(str(path), f"corrupt manifest: {exc}") from exc
    required = ("format_version", "method", "n_users", "n_items", "rows", "cold")
    if not isinstance(manifest, dict) or any(key not in manifest for key in required):
        raise data_error(str(path), f"corrupt manifest: needs keys {', '.join(required)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise data_error(
            str(path),
            f"format version {manifest['format_version']} is not {FORMAT_VERSION}; "
            "prepare the dataset again",
        )
    return manifest


def _read_part(path: Path, rows: int, n_users: int, n_items: int) -> pl.DataFrame:
    df = read_table(path, [USER, ITEM], missing="missing part of a prepared split", exact=False)
    if df.height != rows:
        raise data_error(str(path), f"has {df.height} rows, the manifest says {rows}")
    for column, bound in ((USER, n_users), (ITEM, n_items)):
        values = df[column]
        valid = values.dtype.is_integer() and not values.null_count()
        if not valid or not values.is_between(0, bound - 1).all():
            raise data_error(str(path), f"column {column!r}: index outside [0, {bound})")
    return df


def load_split(out_dir: str | Path) -> Split:
    """Read a folder written by :func:`save_split`.

    Raises:
        DataError: the folder, its manifest or a file is missing, unreadable or inconsistent.
    """
    folder = Path(out_dir)
    manifest = _read_manifest(folder)
    users = IdMap.load(folder / USER_IDS_FILE)
    items = IdMap.load(folder / ITEM_IDS_FILE)
    if (users.size, items.size) != (manifest["n_users"], manifest["n_items"]):
        raise data_error(str(folder), "id maps disagree with the manifest's user/item counts")
    rows = manifest["rows"]
    if not isinstance(rows, dict) or "train" not in rows or "test" not in rows:
        raise data_error(str(folder / MANIFEST), "corrupt manifest: rows needs train and test")
    frames = {
        name: _read_part(folder / f"{name}.parquet", int(rows[name]), users.size, items.size)
        for name in _PARTS
        if name in rows
    }
    try:
        cold = ColdReport.from_dict(manifest["cold"])
    except (KeyError, TypeError) as exc:
        raise data_error(str(folder / MANIFEST), f"corrupt manifest: cold report {exc}") from exc
    return Split(
        method=str(manifest["method"]),
        train=frames["train"],
        val=frames.get("val"),
        test=frames["test"],
        users=users,
        items=items,
        cold=cold,
    )
