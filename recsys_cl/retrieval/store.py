"""Saving and loading item indexes with their metadata, and every check that a loaded index is
the one the caller means.

On disk an index is two files, each written atomically, the FAISS bytes first and the metadata
last, so a metadata file always describes a complete index file::

    NAME.faiss   faiss.serialize_index of the CPU index (FAISS's own format, never a pickle)
    NAME.json    format, spec, dimension, item count, raw item ids, the SHA-256 of the item
                 embeddings it was built from and of NAME.faiss, build time, FAISS version

:func:`load_index` checks the file against its metadata (size and SHA-256, then dimension, item
count, metric, class and nlist of what FAISS read) and the metadata against what the caller
expects (dimension, item count, embeddings fingerprint, item ids, metric, spec), and raises a
one-line :class:`IndexFileError` / :class:`IndexMismatchError` rather than return an index that
would give wrong results.

``load_index(..., mmap=True)`` memory-maps the index file instead of reading it into memory
(FAISS ``IO_FLAG_MMAP_IFC``, which maps flat, scalar-quantizer, PQ, HNSW and IVF data and both
halves of a refine index; on a FAISS without it, ``IO_FLAG_MMAP``, which maps IVF lists only).
Pages are read from the file as searches touch them and can be shared by every process that maps
the same file; the file must not be modified in place while it is mapped (:func:`save_index`
replaces files by rename, which leaves a mapped file intact).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl
from pydantic import ValidationError

from recsys_cl.config.retrieval import IndexSpec
from recsys_cl.data import IdMap
from recsys_cl.errors import first_line
from recsys_cl.io import atomic_path, write_json

from .errors import IndexFileError, IndexMismatchError, RetrievalError
from .index import (
    Device,
    IndexMeta,
    ItemIndex,
    as_matrix,
    embeddings_fingerprint,
    faiss_message,
    gpu_available,
    to_device,
)

FORMAT = "recsys_cl.item_index"
FORMAT_VERSION = 1
INDEX_SUFFIX = ".faiss"
META_SUFFIX = ".json"


def meta_to_json(meta: IndexMeta, index_sha256: str, index_bytes: int) -> dict[str, Any]:
    """The JSON object saved as NAME.json."""
    ids = meta.item_ids
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": meta.spec.dump(),
        "factory": meta.factory,
        "dim": meta.dim,
        "n_items": meta.n_items,
        "embeddings_fingerprint": meta.fingerprint,
        "faiss_class": meta.faiss_class,
        "nlist": meta.nlist,
        "item_id_dtype": None
        if ids is None
        else ("int64" if ids.raw.dtype == pl.Int64 else "string"),
        "item_ids": None if ids is None else ids.raw.to_list(),
        "build_seconds": meta.build_seconds,
        "faiss_version": meta.faiss_version,
        "index_sha256": index_sha256,
        "index_bytes": index_bytes,
    }


def meta_from_json(raw: Any, source: str) -> tuple[IndexMeta, str, int]:
    """The metadata, the index file's SHA-256 and its size in bytes.

    Raises:
        IndexFileError: not metadata written by :func:`save_index`.
    """

    def bad(why: str) -> IndexFileError:
        return IndexFileError(
            f"{source}: corrupt index metadata ({why}); rebuild it with `recsys-cl index`"
        )

    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} file")
    if raw.get("format_version") != FORMAT_VERSION:
        raise bad(
            f"format_version {raw.get('format_version')!r}, this version reads {FORMAT_VERSION}"
        )
    try:
        spec = IndexSpec.model_validate(raw["spec"])
        dtype = raw["item_id_dtype"]
        ids = None
        if dtype is not None:
            polars_type = {"int64": pl.Int64, "string": pl.String}[dtype]
            ids = IdMap(pl.Series("raw", raw["item_ids"], dtype=polars_type))
        meta = IndexMeta(
            spec=spec,
            factory=str(raw["factory"]),
            dim=_int(raw["dim"]),
            n_items=_int(raw["n_items"]),
            fingerprint=str(raw["embeddings_fingerprint"]),
            faiss_class=str(raw["faiss_class"]),
            nlist=None if raw["nlist"] is None else _int(raw["nlist"]),
            item_ids=ids,
            build_seconds=float(raw["build_seconds"]),
            faiss_version=str(raw["faiss_version"]),
        )
        sha, size = str(raw["index_sha256"]), _int(raw["index_bytes"])
    except KeyError as exc:
        raise bad(f"missing key {exc}") from None
    except ValidationError as exc:
        raise bad(f"spec: {exc.errors()[0]['msg']}") from None
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise bad(first_line(exc)) from None
    if ids is not None and ids.size != meta.n_items:
        raise bad(f"{ids.size} item ids for {meta.n_items} items")
    return meta, sha, size


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def index_paths(path: str | Path) -> tuple[Path, Path]:
    """(NAME.faiss, NAME.json) for ``path`` given as NAME.faiss, NAME.json or NAME; a folder
    holding exactly one ``*.faiss`` names that one.

    Raises:
        IndexFileError: a folder with no or several indexes.
    """
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob(f"*{INDEX_SUFFIX}"))
        if len(found) != 1:
            listed = ", ".join(f.name for f in found) or "none"
            raise IndexFileError(
                f"{p}: a folder must hold exactly one {INDEX_SUFFIX} index to be used as one "
                f"(found {listed}); pass the file"
            )
        p = found[0]
    return _pair(p)


def _pair(path: Path) -> tuple[Path, Path]:
    if path.suffix in (INDEX_SUFFIX, META_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + INDEX_SUFFIX), path.with_name(path.name + META_SUFFIX)


def save_index(index: ItemIndex, path: str | Path) -> tuple[Path, Path]:
    """Write ``index`` to NAME.faiss and its metadata to NAME.json, each atomically, the
    metadata last. Returns both paths."""
    faiss_path, meta_path = _pair(Path(path))
    data = index.serialize()
    with atomic_path(faiss_path) as tmp:
        tmp.write_bytes(data)
    write_json(meta_path, meta_to_json(index.meta, hashlib.sha256(data).hexdigest(), len(data)))
    return faiss_path, meta_path


def load_index(
    path: str | Path,
    *,
    item_emb: Any = None,
    item_ids: IdMap | None = None,
    spec: IndexSpec | None = None,
    metric: str | None = None,
    device: Device = "auto",
    mmap: bool = False,
) -> ItemIndex:
    """Read an index written by :func:`save_index` and check it.

    Args:
        path: NAME.faiss, NAME.json, NAME, or a folder holding one index.
        item_emb: when given, the index must have been built from exactly these embeddings
            (same D, same I, same SHA-256 fingerprint).
        item_ids: when given, the index's raw item ids must equal these.
        spec: when given, the index must have this structure (kind, metric, nlist, PQ/HNSW
            shape; search parameters may differ and are not changed).
        metric: when given, the index must use this metric.
        device: as in :func:`build_index`.
        mmap: memory-map the index file rather than read it into memory (see the module
            docstring); the index then stays on the CPU (``auto`` means cpu; ``gpu`` is an
            error, as a GPU copy would read all of it anyway).

    Raises:
        IndexFileError: a missing, unreadable or corrupt file, or one that disagrees with its
            metadata; with ``mmap``, an index FAISS cannot memory-map.
        IndexMismatchError: a sound index built for something else.
        RetrievalError: ``mmap`` with the index placed on a GPU.
    """
    faiss_path, meta_path = index_paths(path)
    if not faiss_path.is_file():
        raise IndexFileError(
            f"{faiss_path}: index file not found; build one with `recsys-cl index`"
        )
    if not meta_path.is_file():
        raise IndexFileError(
            f"{meta_path}: index metadata not found (an index is NAME.faiss + NAME.json, both "
            "written by `recsys-cl index`)"
        )
    try:
        raw = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexFileError(f"{meta_path}: corrupt index metadata (not JSON: {exc})") from None
    meta, sha, size = meta_from_json(raw, str(meta_path))
    if mmap and device == "gpu":
        raise RetrievalError(
            f"{faiss_path}: mmap keeps the index on the CPU, but device gpu places it on the GPU "
            "(a GPU copy reads all of it into GPU memory); use device cpu or auto, or mmap=False"
        )
    use_gpu = not mmap and gpu_available(device)
    if mmap:
        # Hash from the file in chunks (the bytes are never all in memory at once), then let
        # FAISS map the file it just hashed.
        digest = hashlib.sha256()
        with faiss_path.open("rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
        found_size, found_sha = faiss_path.stat().st_size, digest.hexdigest()
    else:
        data = faiss_path.read_bytes()
        found_size, found_sha = len(data), hashlib.sha256(data).hexdigest()
    if found_size != size or found_sha != sha:
        raise IndexFileError(
            f"{faiss_path}: contents do not match {meta_path.name} (size or SHA-256 differ): the "
            "file is corrupt or was replaced; rebuild it with `recsys-cl index`"
        )
    try:
        if mmap:
            cpu = faiss.read_index(str(faiss_path), MMAP_FLAG)
        else:
            cpu = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as exc:
        raise IndexFileError(f"{faiss_path}: FAISS cannot read it ({faiss_message(exc)})") from None
    _check_against_meta(cpu, meta, faiss_path)
    _check_expected(meta, faiss_path, item_emb, item_ids, spec, metric)
    if mmap and mapped_bytes(faiss_path) == 0:  # None (no /proc): cannot tell, trust FAISS
        raise IndexFileError(
            f"{faiss_path}: FAISS {faiss.__version__} read this {meta.faiss_class} into memory "
            "instead of mapping it (it cannot memory-map this index type); load it with mmap=False"
        )
    return ItemIndex(to_device(cpu, use_gpu), meta, mmap_path=str(faiss_path) if mmap else None)


# IO_FLAG_MMAP_IFC (recent FAISS; 1.15 has it) maps every index type's data, IO_FLAG_MMAP
# (older ones) IVF lists only.
MMAP_FLAG: int = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)


def mapped_bytes(path: str | Path) -> int | None:
    """Bytes of ``path`` memory-mapped into this process (Linux ``/proc/self/maps``), or None
    where that cannot be read."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    target = os.path.realpath(path)
    total = 0
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            start, end = fields[0].split("-")
            total += int(end, 16) - int(start, 16)
    return total


def _check_against_meta(cpu: faiss.Index, meta: IndexMeta, path: Path) -> None:
    ivf = faiss.try_extract_index_ivf(cpu)
    found = {
        "dimension": (cpu.d, meta.dim),
        "item count": (cpu.ntotal, meta.n_items),
        "metric": (cpu.metric_type, faiss.METRIC_INNER_PRODUCT),
        "index class": (type(faiss.downcast_index(cpu)).__name__, meta.faiss_class),
        "nlist": (None if ivf is None else int(ivf.nlist), meta.nlist),
    }
    for what, (actual, recorded) in found.items():
        if actual != recorded:
            raise IndexFileError(
                f"{path}: the index disagrees with its metadata ({what} {actual} in the file, "
                f"{recorded} recorded); rebuild it with `recsys-cl index`"
            )


def _check_expected(
    meta: IndexMeta,
    path: Path,
    item_emb: Any,
    item_ids: IdMap | None,
    spec: IndexSpec | None,
    metric: str | None,
) -> None:
    rebuild = "rebuild it with `recsys-cl index`"
    if metric is not None and metric != meta.spec.metric:
        raise IndexMismatchError(f"{path}: the index ranks by {meta.spec.metric}, not {metric}")
    if spec is not None:
        wanted = spec.resolve(meta.n_items)
        if wanted.structure() != meta.spec.structure():
            raise IndexMismatchError(
                f"{path}: the index is {meta.factory} ({meta.spec.metric}) but "
                f"{wanted.factory_string(meta.n_items)} ({wanted.metric}) was asked for"
            )
    if item_emb is not None:
        x = as_matrix(item_emb, "item embeddings")
        if x.shape[1] != meta.dim:
            raise IndexMismatchError(
                f"{path}: the index holds D={meta.dim} vectors but the item embeddings have "
                f"D={x.shape[1]}; {rebuild}"
            )
        if x.shape[0] != meta.n_items:
            raise IndexMismatchError(
                f"{path}: the index holds {meta.n_items:,} items but there are {x.shape[0]:,} "
                f"item embeddings; {rebuild}"
            )
        if embeddings_fingerprint(x) != meta.fingerprint:
            raise IndexMismatchError(
                f"{path}: the index was built from other item embeddings (fingerprint "
                f"differs; the model was retrained?); {rebuild}"
            )
    if item_ids is not None:
        if meta.item_ids is None:
            raise IndexMismatchError(f"{path}: the index was saved without item ids; {rebuild}")
        if meta.item_ids != item_ids:
            raise IndexMismatchError(
                f"{path}: the index's {meta.item_ids.size:,} item ids differ from the run's "
                f"{item_ids.size:,}; {rebuild}"
            )
