"""Data stages driven by a config: read, clean and split; dataset statistics."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import polars as pl

from recsys_cl.config import DataConfig, RunConfig, load_config
from recsys_cl.data import (
    ColumnMap,
    RawDataset,
    Split,
    dataset_names,
    get_spec,
    format_profile,
    load_benchmark,
    prepare,
    profile,
    read_interactions,
    save_split,
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


def _raw_profile_text(raw: RawDataset | pl.DataFrame, title: str) -> str:
    if isinstance(raw, pl.DataFrame):
        return format_profile(profile(raw), title)
    named = (("interactions", raw.interactions), ("train", raw.train), ("test", raw.test))
    frames = {name: df for name, df in named if df is not None}
    whole = profile(pl.concat(list(frames.values()), how="vertical_relaxed"))
    if len(frames) > 1:  # a given split: show its parts beside the totals
        whole = dataclasses.replace(whole, parts={n: df.height for n, df in frames.items()})
    return format_profile(whole, title)


def data_stats(args: argparse.Namespace) -> int:
    if args.config is None and args.dataset is None and not args.overrides:
        raise ConfigError(
            f"data stats needs a dataset ({', '.join(dataset_names())}), a file, or --config"
        )
    if args.config is not None or args.overrides:
        cfg = load_config(args.config, args.overrides)
        split = build_split(cfg.data, args.data_dir, cfg.seed)
        name = cfg.data.dataset or str(cfg.data.path)
        print(format_profile(profile(split), f"{name}: {split.method} split (indices fitted on train)"))
        return 0
    source = args.dataset
    if source in dataset_names():
        raw: RawDataset | pl.DataFrame = load_benchmark(source, data_dir=args.data_dir)
    elif Path(source).exists():
        raw = read_interactions(source)
    else:
        raise ConfigError(
            f"{source!r} is neither a known dataset ({', '.join(dataset_names())}) nor a file"
        )
    print(_raw_profile_text(raw, source))
    return 0


def data_prepare(args: argparse.Namespace) -> int:
    cfg: RunConfig = load_config(args.config, args.overrides)
    split = build_split(cfg.data, args.data_dir, cfg.seed)
    out = Path(args.out) if args.out else cfg.output_dir / "data"
    save_split(split, out)
    print(format_profile(profile(split), f"prepared {split.method} split -> {out}"))
    return 0
