"""The candidate bundle's files and their header, ``bundle.json`` (:class:`BundleInfo`): the
layout :class:`~recsys_cl.retrieval.candidate_model.CandidateModel` saves and loads (see
its module doc), with the checks every load makes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys_cl.config.retrieval import (
    DEFAULT_MAX_K,
    DEFAULT_MAX_LIST,
    DEFAULT_MAX_ROWS,
    is_positive_int,
    limits_problem,
)
from recsys_cl.data import IdMap
from recsys_cl.errors import DataError
from recsys_cl.io import read_table

ColdStart = Literal["popular", "error"]

FORMAT = "recsys_cl.candidate_bundle"
# 2 added the request limits; a version 1 bundle reads with the default limits. 3 added
# max_list and the allow-list (n_allowed + allowed.parquet); a version 1 or 2 bundle reads with
# the default max_list and allows every item. 4 added fold_in (the fold-in rule and its files);
# an older bundle has none.
FORMAT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)
BUNDLE_FILE = "bundle.json"
USER_FILE = "user_embeddings.parquet"
ITEM_FILE = "item_embeddings.parquet"
SEEN_FILE = "seen.parquet"
POPULAR_FILE = "popular.parquet"
ALLOWED_FILE = "allowed.parquet"
INDEX_FILE = "index.faiss"
IN_BUNDLE = "missing from the candidate bundle"


@dataclass(frozen=True)
class BundleInfo:
    """``bundle.json``: enough to describe the model (its MLflow signature) without loading
    embeddings or the index. Id dtypes are ``int64`` or ``string``; ``source_run`` is the run
    folder's name (not its path: the bundle travels to other machines); ``max_k``, ``max_rows``
    and ``max_list`` bound a request's list length, rows and ids per list cell; ``n_allowed``
    is the size of the allow-list (None: every item may be returned); ``fold_in`` names the
    fold-in rule and its parameters (:mod:`recsys_cl.retrieval.fold_in`; None: no rule)."""

    k: int
    cold_start: ColdStart
    metric: str
    index: str
    user_id_dtype: str
    item_id_dtype: str
    n_users: int
    n_items: int
    dim: int
    n_seen: int
    source_run: str
    max_k: int = DEFAULT_MAX_K
    max_rows: int = DEFAULT_MAX_ROWS
    max_list: int = DEFAULT_MAX_LIST
    n_allowed: int | None = None
    fold_in: dict[str, Any] | None = None

    @classmethod
    def read(cls, bundle_dir: str | Path) -> BundleInfo:
        """Read and check ``bundle_dir/bundle.json``.

        Raises:
            DataError: no bundle there, or a file of another format, version or shape.
        """
        path = Path(bundle_dir) / BUNDLE_FILE
        if not path.is_file():
            raise DataError(f"{path}: not found; is {Path(bundle_dir)} a candidate bundle?")
        try:
            raw = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT:
            raise DataError(f"{path}: not a {FORMAT} file")
        if (version := raw.pop("format_version", None)) not in _READABLE_VERSIONS:
            raise DataError(
                f"{path}: format_version {version!r}, this version reads {_READABLE_VERSIONS}"
            )
        if version == 1 and is_positive_int(raw.get("k")):
            # Version 1 had no limits: its default list length must stay servable.
            raw.setdefault("max_k", max(DEFAULT_MAX_K, raw["k"]))
        if version in (1, 2) and ({"max_list", "n_allowed"} & set(raw)):
            raise DataError(f"{path}: format_version {version} has no max_list or n_allowed")
        if version != 4 and "fold_in" in raw:
            raise DataError(f"{path}: format_version {version} has no fold_in")
        try:
            info = cls(**raw)
        except TypeError as exc:
            raise DataError(f"{path}: unexpected keys ({exc})") from None
        if info.cold_start not in ("popular", "error"):
            raise DataError(f"{path}: cold_start must be popular or error, got {raw}")
        if problem := limits_problem(info.k, info.max_k, info.max_rows, info.max_list):
            raise DataError(f"{path}: {problem}")
        if info.n_allowed is not None and not (
            is_positive_int(info.n_allowed) and info.n_allowed <= info.n_items
        ):
            raise DataError(
                f"{path}: n_allowed must be null or 1..n_items ({info.n_items}), "
                f"got {info.n_allowed!r}"
            )
        if info.fold_in is not None and not (
            isinstance(info.fold_in, dict) and isinstance(info.fold_in.get("kind"), str)
        ):
            raise DataError(f"{path}: fold_in must be null or an object with a kind")
        return info


def bundle_size(bundle_dir: str | Path) -> str:
    """The bundle's size on disk, and what fold-in adds, as one line for a person."""
    root = Path(bundle_dir)
    sizes = {p.name: p.stat().st_size for p in root.iterdir() if p.is_file()}
    fold_in = sum(size for name, size in sizes.items() if name.startswith("fold_in_"))
    extra = f", of which the fold-in tables {fold_in / 2**20:,.1f} MiB" if fold_in else ""
    return f"{sum(sizes.values()) / 2**20:,.1f} MiB{extra}"


def id_dtype(ids: IdMap) -> str:
    return "int64" if ids.raw.dtype == pl.Int64 else "string"


def read_embeddings(path: Path, key: str, n: int, dim: int) -> tuple[IdMap, np.ndarray]:
    frame = read_table(path, [key, "embedding"], missing=IN_BUNDLE)
    try:
        ids = IdMap(frame[key])
        emb = np.ascontiguousarray(np.stack(list(frame["embedding"].to_numpy())), dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: not embeddings in id order ({exc})") from None
    if emb.shape != (n, dim) or not np.isfinite(emb).all():
        raise DataError(f"{path}: expected {n} finite rows of D={dim}, found shape {emb.shape}")
    return ids, emb


def indices_of(ids: IdMap, values: pl.Series, path: Path) -> np.ndarray:
    return ids.to_index(values, source=f"{path}: {values.name}").to_numpy().astype(np.int64)


def read_allowed(path: Path, items: IdMap, n_allowed: int) -> np.ndarray:
    """The allow-list's item indices [n_allowed] from ``allowed.parquet``.

    Raises:
        DataError: a missing file, an unknown or repeated item, or a count other than
            ``n_allowed``.
    """
    table = read_table(path, ["item_id"], missing=IN_BUNDLE)
    allowed = indices_of(items, table["item_id"], path)
    if np.unique(allowed).size != allowed.size or allowed.size != n_allowed:
        raise DataError(
            f"{path}: must list {n_allowed} distinct items (bundle.json n_allowed), "
            f"found {allowed.size}"
        )
    return allowed


__all__ = [
    "ALLOWED_FILE",
    "BUNDLE_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "IN_BUNDLE",
    "ITEM_FILE",
    "POPULAR_FILE",
    "SEEN_FILE",
    "USER_FILE",
    "BundleInfo",
    "ColdStart",
    "bundle_size",
    "id_dtype",
    "indices_of",
    "read_allowed",
    "read_embeddings",
]
