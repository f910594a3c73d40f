"""Benchmark datasets: where to get them, how to verify them, how to read them.

Hashes are registered only where they were verified byte for byte (gowalla from the
LightGCN repository, MovieLens-100K ``u.data``). Yelp2018, Amazon-Book and MovieLens-1M have
``sha256=None``: the first download records the hash of the file in a ``<file>.sha256``
sidecar and every later use is checked against it (trust on first use). For MovieLens the
hash is that of the extracted data file, since GroupLens may repackage the zip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import polars as pl

from recsys_cl.data.download import download_file, record_sha256, verify
from recsys_cl.data.readers import Format, read_interactions
from recsys_cl.errors import DataError

Role = Literal["train", "test", "interactions"]
DATA_ENV = "RECSYS_CL_DATA"
CACHE_ENV = "RECSYS_CL_CACHE"
DEFAULT_CACHE = Path("~/.cache/recsys_cl")

_LIGHTGCN_URL = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/{}/{}"
_GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{}.zip"
_LIGHTGCN_CITATION = (
    "He et al. LightGCN: Simplifying and Powering Graph Convolution Network for "
    "Recommendation. SIGIR 2020 (split of Wang et al., Neural Graph Collaborative "
    "Filtering, SIGIR 2019)."
)
_MOVIELENS_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. The MovieLens Datasets: History and Context. "
    "ACM TiiS 5(4), 2015."
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    Attributes:
        name: file name inside the dataset folder.
        role: ``train``/``test`` for given splits, ``interactions`` for a single log.
        url: where it is downloaded from (a zip archive when ``member`` is set).
        sha256: hex SHA-256 of the file itself, or ``None`` when not verified (see module doc).
        size: bytes, when known.
        member: path of the file inside the zip archive at ``url``.
    """

    name: str
    role: Role
    url: str
    sha256: str | None
    size: int | None = None
    member: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark dataset: its files, their format and where it comes from."""

    name: str
    files: tuple[RemoteFile, ...]
    format: Format
    description: str
    citation: str

    @property
    def given_split(self) -> bool:
        """Whether the dataset ships its own train/test files."""
        return any(f.role == "train" for f in self.files)


@dataclass(frozen=True, eq=False)
class RawDataset:
    """A loaded dataset: ``interactions`` for a single log, else ``train`` and ``test``.

    ``spec`` is the registry entry of a benchmark, ``None`` for a user's own given split.
    """

    spec: DatasetSpec | None
    folder: Path
    interactions: pl.DataFrame | None = None
    train: pl.DataFrame | None = None
    test: pl.DataFrame | None = None


def _lightgcn(
    name: str, description: str, hashes: dict[str, tuple[str, int]] | None
) -> DatasetSpec:
    files = tuple(
        RemoteFile(
            name=f"{role}.txt",
            role=role,
            url=_LIGHTGCN_URL.format(name, f"{role}.txt"),
            sha256=hashes[role][0] if hashes else None,
            size=hashes[role][1] if hashes else None,
        )
        for role in ("train", "test")
    )
    return DatasetSpec(name, files, "lightgcn", description, _LIGHTGCN_CITATION)


def _movielens(
    name: str, member: str, sha256: str | None, size: int | None, description: str
) -> DatasetSpec:
    file = RemoteFile(
        name=Path(member).name,
        role="interactions",
        url=_GROUPLENS_URL.format(name),
        sha256=sha256,
        size=size,
        member=member,
    )
    return DatasetSpec(name, (file,), "movielens", description, _MOVIELENS_CITATION)


REGISTRY: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _lightgcn(
                "gowalla",
                "Gowalla check-ins, 10-core, LightGCN 80/20 split: 29,858 users, 40,981 items.",
                {
                    "train": (
                        "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
                        4633414,
                    ),
                    "test": (
                        "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
                        1372559,
                    ),
                },
            ),
            _lightgcn("yelp2018", "Yelp 2018 challenge, 10-core, LightGCN split.", None),
            _lightgcn("amazon-book", "Amazon-Book reviews, 10-core, LightGCN split.", None),
            _movielens(
                "ml-100k",
                "ml-100k/u.data",
                "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                1979173,
                "MovieLens 100K explicit ratings 1-5 with timestamps: 943 users, 1,682 items.",
            ),
            _movielens(
                "ml-1m",
                "ml-1m/ratings.dat",
                None,
                None,
                "MovieLens 1M explicit ratings 1-5 with timestamps.",
            ),
        )
    }
)


def dataset_names() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """The registered spec of ``name``; unknown names raise DataError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}") from None


def _root(arg: str | Path | None, env: str, default: Path | None) -> Path | None:
    value = arg if arg is not None else os.environ.get(env) or default
    return None if value is None else Path(value).expanduser()


def resolve(
    name: str | DatasetSpec,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> Path:
    """The verified folder holding the files of dataset ``name``.

    Lookup order:

    1. ``data_dir`` (else env ``RECSYS_CL_DATA``): ``<data_dir>/<name>/<files>`` is used in
       place, never written to, but checked against the registered hash (or a sidecar next to
       it, if any). A folder missing some files is an error; no folder falls through to 2.
    2. ``cache_dir`` (else env ``RECSYS_CL_CACHE``, else ``~/.cache/recsys_cl``): missing files
       are downloaded (when ``download``) and verified.

    Raises:
        DataError: unknown name; incomplete ``data_dir`` folder; file absent with
            ``download=False``.
        ChecksumError: a file does not match its hash (names file, expected and actual hash).
        DownloadError: a download failed (names the URL and where to put the file by hand).
    """
    spec = get_spec(name) if isinstance(name, str) else name
    data_root = _root(data_dir, DATA_ENV, None)
    if data_root is not None and (data_root / spec.name).is_dir():
        folder = data_root / spec.name
        missing = [f.name for f in spec.files if not (folder / f.name).is_file()]
        if missing:
            raise DataError(f"{folder}: dataset {spec.name} lacks {', '.join(missing)}")
        for f in spec.files:
            verify(folder / f.name, f.sha256, fix=f"replace it with a fresh copy of {f.url}")
        return folder
    folder = _root(cache_dir, CACHE_ENV, DEFAULT_CACHE) / spec.name  # type: ignore[operator]
    for f in spec.files:
        path = folder / f.name
        if path.is_file():
            if not verify(path, f.sha256, fix="delete it to download it again"):
                record_sha256(path)  # a cached file from before sidecars: trust it now
        elif not download:
            raise DataError(
                f"{path}: not found and download is off; download {f.url} or set {DATA_ENV}"
            )
        else:
            folder.mkdir(parents=True, exist_ok=True)
            download_file(f.url, path, sha256=f.sha256, member=f.member)
    return folder


def load_benchmark(
    name: str | DatasetSpec,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> RawDataset:
    """Resolve (see :func:`resolve`) and read a benchmark into canonical frames."""
    spec = get_spec(name) if isinstance(name, str) else name
    folder = resolve(spec, data_dir=data_dir, cache_dir=cache_dir, download=download)
    frames = {f.role: read_interactions(folder / f.name, format=spec.format) for f in spec.files}
    return RawDataset(spec=spec, folder=folder, **frames)
