"""``recsys-cl data stats`` and ``recsys-cl data prepare``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import polars as pl

from recsys_cl.config import RunConfig, load_config
from recsys_cl.data import (
    DatasetProfile,
    RawDataset,
    dataset_names,
    format_profile,
    load_benchmark,
    profile,
    read_interactions,
)
from recsys_cl.data.prepare import MANIFEST
from recsys_cl.errors import ConfigError

from ..folder import RunFolder
from ..stages.data import build_split, prepare_split


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
        cfg: RunConfig = load_config(args.config, args.overrides)
        split = build_split(cfg.data, args.data_dir, cfg.seed)
        name = cfg.data.dataset or str(cfg.data.path)
        print(
            format_profile(
                profile(split), f"{name}: {split.method} split (indices fitted on train)"
            )
        )
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
    out = Path(args.out) if args.out else RunFolder(cfg.output_dir).data_dir
    prepare_split(cfg.data, args.data_dir, cfg.seed, out)
    # The profile is the manifest's: reading the split back would hold every part in memory.
    manifest = json.loads((out / MANIFEST).read_text())
    title = f"prepared {manifest['method']} split -> {out}"
    print(format_profile(DatasetProfile.from_dict(manifest["profile"]), title))
    return 0


__all__ = ["data_prepare", "data_stats"]
