"""The data stage: a config's ``data:`` block → the canonical log → cleaned and split."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TypedDict

import numpy as np
import polars as pl

from recsys_cl.config import DataConfig
from recsys_cl.data import (
    ColumnMap,
    RawDataset,
    Split,
    get_spec,
    load_benchmark,
    load_split,
    prepare,
    read_interactions,
    save_split,
)
from recsys_cl.data.lazy import prepare_lazy
from recsys_cl.data.prepare import SplitMethod
from recsys_cl.data.preprocess import Keep
from recsys_cl.errors import ConfigError


def load_raw(data: DataConfig, data_dir: str | None) -> RawDataset | pl.DataFrame:
    """The configured source as canonical frames (a benchmark, or the user's own files)."""
    if data.dataset is not None:
        spec = get_spec(data.dataset)
        if data.split.kind == "given" and not spec.given_split:
            raise ConfigError(
                f"data.split.kind: {data.dataset} is one log with no given train/test files; "
                "use ratio, temporal or leave_one_out"
            )
        return load_benchmark(spec, data_dir=data_dir)
    assert data.path is not None  # the schema requires one source
    cols = None if data.columns is None else ColumnMap(**data.columns.model_dump())
    log = read_interactions(data.path, format=data.format, columns=cols)
    if data.test_path is None:
        return log
    test = read_interactions(data.test_path, format=data.format, columns=cols)
    return RawDataset(spec=None, folder=data.path.parent, train=log, test=test)


def build_split(data: DataConfig, data_dir: str | None, seed: int) -> Split:
    """Read, clean and split the configured data (``seed`` drives the random split).

    With ``data.lazy`` the log is prepared out of core into a temporary folder and the
    indexed split read back: the raw log is never held, only the split's index columns.
    """
    if data.lazy:
        with tempfile.TemporaryDirectory(prefix="recsys-cl-split-") as tmp:
            return load_split(prepare_split(data, data_dir, seed, Path(tmp) / "split"))
    return prepare(
        load_raw(data, data_dir), **_preparation(data, seed), source=data.dataset or str(data.path)
    )


def prepare_split(data: DataConfig, data_dir: str | None, seed: int, out: Path) -> Path:
    """Write the prepared split of the configured data to the folder ``out``; return it.

    ``data.lazy`` prepares a CSV/TSV/Parquet log out of core
    (:func:`~recsys_cl.data.lazy.prepare_lazy`); the folder is the one the eager path writes.
    """
    if not data.lazy:
        return save_split(build_split(data, data_dir, seed), out)
    assert data.path is not None  # the schema requires data.path with data.lazy
    cols = None if data.columns is None else ColumnMap(**data.columns.model_dump())
    return prepare_lazy(
        data.path,
        out,
        **_preparation(data, seed),
        format=data.format,
        columns=cols,
        source=str(data.path),
    )


class _Preparation(TypedDict):
    split: SplitMethod
    test_ratio: float | None
    val_ratio: float
    implicit_threshold: float | None
    dedupe: Keep | None
    user_k: int
    item_k: int
    rng: np.random.Generator


def _preparation(data: DataConfig, seed: int) -> _Preparation:
    """The cleaning and split options both preparation paths take from a ``data:`` block."""
    return {
        "split": data.split.kind,
        "test_ratio": data.split.test_ratio,
        "val_ratio": data.split.val_ratio,
        "implicit_threshold": data.implicit_threshold,
        "dedupe": data.dedupe,
        "user_k": data.min_user_interactions,
        "item_k": data.min_item_interactions,
        "rng": np.random.default_rng(seed),
    }


__all__ = ["build_split", "load_raw", "prepare_split"]
