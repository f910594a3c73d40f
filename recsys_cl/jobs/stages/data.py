"""The data stage: a config's ``data:`` block → the canonical log → cleaned and split."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys_cl.config import DataConfig
from recsys_cl.data import (
    ColumnMap,
    RawDataset,
    Split,
    get_spec,
    load_benchmark,
    prepare,
    read_interactions,
)
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
    """Read, clean and split the configured data (``seed`` drives the random split)."""
    raw = load_raw(data, data_dir)
    return prepare(
        raw,
        split=data.split.kind,
        test_ratio=data.split.test_ratio,
        val_ratio=data.split.val_ratio,
        implicit_threshold=data.implicit_threshold,
        dedupe=data.dedupe,
        user_k=data.min_user_interactions,
        item_k=data.min_item_interactions,
        rng=np.random.default_rng(seed),
        source=data.dataset or str(data.path),
    )


__all__ = ["build_split", "load_raw"]
