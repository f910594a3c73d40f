"""FAISS indexes over item embeddings: build and search.

An index is a FAISS inner-product index over the item embeddings in item-index order (row
``i`` is item ``i``), so a search returns item indices directly. ``metric="cosine"`` stores
L2-normalized items and normalizes every query, so the inner product FAISS ranks by is the
cosine; ``"ip"`` ranks by the raw inner product, the score the models are trained with.

Saving and loading with checked metadata is in :mod:`.store`.

The GPU is used when FAISS sees one (the ``gpu`` extra) and ``device`` allows it; HNSW has no
FAISS GPU implementation and stays on the CPU, as does any index FAISS cannot move. GPU search
handles k ≤ 2048; a larger search runs on a CPU copy made on first use.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import faiss
import numpy as np

from recsys_cl.config.retrieval import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    MIN_POINTS_PER_CENTROID,
    IndexSpec,
)
from recsys_cl.data import IdMap
from recsys_cl.errors import RecsysError, first_line

from .errors import IndexBuildError, IndexSpecError, RetrievalError

Device = Literal["auto", "cpu", "gpu"]
# FAISS GPU k-selection (and nprobe) stops at 2048 (faiss/gpu/utils/DeviceDefs.cuh).
GPU_MAX_K = 2048


def as_matrix(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy array or torch tensor) as a C-contiguous float32 [N, D] numpy array.

    Raises:
        ValueError: not 2-D. RecsysError: NaN or inf values (a diverged model, a damaged file).
    """
    if hasattr(x, "detach"):  # a torch tensor; torch is not imported here
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise RecsysError(f"{name} contain NaN or inf; an index of them would be meaningless")
    return arr


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero); a new float32 array."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def embeddings_fingerprint(item_emb: Any) -> str:
    """``sha256:<hex>`` of the float32 item embeddings [I, D] (shape included)."""
    x = as_matrix(item_emb, "item embeddings")
    digest = hashlib.sha256(f"{x.shape[0]}x{x.shape[1]}:float32:".encode())
    digest.update(x.tobytes())
    return f"sha256:{digest.hexdigest()}"


def faiss_message(exc: BaseException) -> str:
    """FAISS's error text without its C++ signature and source location, on one line."""
    text = re.sub(r"^Error in .*? at \S+:\d+: ", "", first_line(exc))
    return re.sub(r"^Error: '.*?' failed: ", "", text)


def gpu_available(device: Device) -> bool:
    """Whether to use the GPU: FAISS sees one and ``device`` is ``auto`` or ``gpu``.

    Raises:
        RetrievalError: ``device="gpu"`` but FAISS sees no GPU.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be auto, cpu or gpu, got {device!r}")
    n_gpus = faiss.get_num_gpus()
    if device == "gpu" and n_gpus == 0:
        raise RetrievalError(
            "device gpu: FAISS sees no GPU (the cpu extra is installed, or no GPU is visible); "
            "install the gpu extra (faiss-gpu) or use device auto/cpu"
        )
    return device != "cpu" and n_gpus > 0


@dataclass(frozen=True, eq=False)
class IndexMeta:
    """What an index was built from and as.

    Attributes:
        spec: the spec with automatic values resolved (nlist, nprobe, ef_search).
        factory: the FAISS factory string built (e.g. ``IVF810,Flat``).
        dim, n_items: D and I.
        fingerprint: :func:`embeddings_fingerprint` of the raw (unnormalized) item embeddings.
        faiss_class: class of the CPU index (``IndexIVFFlat``), checked on load.
        nlist: IVF lists when the index has an IVF part, else None.
        item_ids: raw item ids in index order, or None when built without them.
        build_seconds: train + add wall time.
    """

    spec: IndexSpec
    factory: str
    dim: int
    n_items: int
    fingerprint: str
    faiss_class: str
    nlist: int | None
    item_ids: IdMap | None
    build_seconds: float
    faiss_version: str = faiss.__version__

class ItemIndex:
    """A FAISS index over item embeddings, with its metadata; see the module docstring.

    Search parameters (``nprobe``, ``ef_search``) can be changed with
    :meth:`set_search_params`; everything else is fixed at build.
    """

    def __init__(
        self,
        index: faiss.Index,
        meta: IndexMeta,
        *,
        gpu_resources: Any = None,
        device_note: str | None = None,
    ) -> None:
        self.index = index
        self.meta = meta
        self.device_note = device_note
        self._gpu_resources = gpu_resources  # must outlive the GPU index it serves
        self._cpu_copy: faiss.Index | None = None
        self.set_search_params(nprobe=meta.spec.nprobe, ef_search=meta.spec.ef_search)

    @property
    def on_gpu(self) -> bool:
        return self._gpu_resources is not None

    @property
    def device(self) -> str:
        return "gpu" if self.on_gpu else "cpu"

    @property
    def metric(self) -> str:
        return self.meta.spec.metric

    @property
    def dim(self) -> int:
        return self.meta.dim

    @property
    def n_items(self) -> int:
        return self.meta.n_items

    @property
    def spec(self) -> IndexSpec:
        return self.meta.spec

    def describe(self) -> str:
        """``IVF810,Flat ip nprobe=32 on cpu``: what searches run on."""
        params = [f"{k}={v}" for k, v in (("nprobe", self.spec.nprobe), ("efSearch", self.spec.ef_search)) if v]
        return " ".join([self.meta.factory, self.metric, *params, "on", self.device])

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set IVF ``nprobe`` and/or HNSW ``ef_search`` (None leaves one unchanged).

        Raises:
            IndexSpecError: the parameter does not apply to this index, or nprobe > nlist.
        """
        if nprobe is not None:
            if self.meta.nlist is None:
                raise IndexSpecError(f"nprobe does not apply to a {self.meta.factory} index (it has no IVF lists)")
            if not 0 < nprobe <= self.meta.nlist:
                raise IndexSpecError(f"nprobe must be in [1, nlist={self.meta.nlist}], got {nprobe}")
            if self.on_gpu and nprobe > GPU_MAX_K:
                raise IndexSpecError(f"FAISS GPU indexes take nprobe ≤ {GPU_MAX_K}, got {nprobe}")
        for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
            if value is None:
                continue
            for target in (self.index, self._cpu_copy):
                if target is not None:
                    _set_param(target, name, value, on_gpu=target is self.index and self.on_gpu,
                               factory=self.meta.factory)
        update = {k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search)) if v is not None}
        if update:  # the search half of the spec only; its structure is fixed at build
            self.meta = replace(self.meta, spec=self.meta.spec.model_copy(update=update))

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-``k`` items of each query by the index's metric.

        Args:
            queries: float [B, D] (user embeddings); normalized here for ``cosine``.
            k: list length; above I it is cut to I.

        Returns:
            scores float32 [B, k'] and item indices int64 [B, k'] (k' = min(k, I)), best
            first; an ANN index may return fewer than k' hits, padded with item -1.
        """
        q = as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have D={q.shape[1]}, the index D={self.dim}")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        k = min(k, self.n_items)
        if self.metric == "cosine":
            q = normalize_rows(q)
        target = self.index
        if self.on_gpu and k > GPU_MAX_K:
            target = self.cpu_index()
        scores, items = target.search(q, k)
        return scores, items.astype(np.int64, copy=False)

    def cpu_index(self) -> faiss.Index:
        """The index on the CPU (itself, or a copy of the GPU index made once)."""
        if not self.on_gpu:
            return self.index
        if self._cpu_copy is None:
            self._cpu_copy = faiss.index_gpu_to_cpu(self.index)
            for name, value in (("nprobe", self.spec.nprobe), ("efSearch", self.spec.ef_search)):
                if value is not None:
                    _set_param(self._cpu_copy, name, value, on_gpu=False, factory=self.meta.factory)
        return self._cpu_copy

    def serialize(self) -> bytes:
        """FAISS's own serialization of the CPU index."""
        return faiss.serialize_index(self.cpu_index()).tobytes()


def _set_param(index: faiss.Index, name: str, value: int, *, on_gpu: bool, factory: str) -> None:
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    space.initialize(index)
    names = {space.parameter_ranges.at(i).name for i in range(space.parameter_ranges.size())}
    if name not in names:
        label = "ef_search" if name == "efSearch" else name
        raise IndexSpecError(f"{label} does not apply to a {factory} index")
    try:
        space.set_index_parameter(index, name, value)
    except RuntimeError as exc:
        raise IndexSpecError(f"cannot set {name}={value} on {factory}: {faiss_message(exc)}") from None


def _check_trainable(spec: IndexSpec, factory: str, n_items: int, dim: int, nlist: int | None) -> None:
    if nlist is not None:
        need = MIN_POINTS_PER_CENTROID * nlist
        if n_items < need:
            most = n_items // MIN_POINTS_PER_CENTROID
            hint = f"use nlist ≤ {most}" if most else "use the flat or hnsw index"
            raise IndexBuildError(
                f"{factory}: IVF with nlist={nlist} needs at least {MIN_POINTS_PER_CENTROID}·nlist = "
                f"{need:,} item vectors to train its k-means, but there are {n_items:,}; {hint}"
            )
    if spec.kind == "ivfpq":
        if dim % spec.pq_m:
            raise IndexBuildError(
                f"{factory}: pq_m={spec.pq_m} sub-quantizers must divide the dimension D={dim}"
            )
        need = MIN_POINTS_PER_CENTROID * 2**spec.pq_bits
        if n_items < need:
            raise IndexBuildError(
                f"{factory}: PQ with {spec.pq_bits}-bit codes needs at least "
                f"{MIN_POINTS_PER_CENTROID}·2^{spec.pq_bits} = {need:,} item vectors to train its "
                f"codebooks, but there are {n_items:,}; lower pq_bits or use ivf/hnsw"
            )


def _new_cpu_index(spec: IndexSpec, factory: str, dim: int) -> faiss.Index:
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexSpecError(
            f"spec {factory!r}: FAISS cannot build it ({faiss_message(exc)}); use flat, ivf, "
            "ivfpq, hnsw or a FAISS index_factory string such as 'IVF1024,Flat'"
        ) from None
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexSpecError(f"spec {factory!r}: FAISS builds it without inner-product support")
    if spec.kind == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = spec.ef_construction
    return index


def _factory_defaults(spec: IndexSpec, index: faiss.Index, nlist: int | None) -> IndexSpec:
    """Our nprobe / efSearch defaults for a factory index that has them (FAISS's own, 1 and
    16, favour speed over recall far more than the named kinds do)."""
    space = faiss.ParameterSpace()
    space.initialize(index)
    names = {space.parameter_ranges.at(i).name for i in range(space.parameter_ranges.size())}
    update: dict[str, int] = {}
    if spec.nprobe is None and nlist is not None and "nprobe" in names:
        update["nprobe"] = min(DEFAULT_NPROBE, nlist)
    if spec.ef_search is None and "efSearch" in names:
        update["ef_search"] = DEFAULT_EF_SEARCH
    return spec.model_copy(update=update) if update else spec


def _stored_class(index: faiss.Index) -> str:
    """The class FAISS reads the index back as (``Flat`` is built as ``IndexFlat`` and read
    as ``IndexFlatIP``); found on the still-empty index, so it costs nothing."""
    return type(faiss.downcast_index(faiss.deserialize_index(faiss.serialize_index(index)))).__name__


def _is_hnsw(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexHNSW)


def to_device(index: faiss.Index, use_gpu: bool) -> tuple[faiss.Index, Any, str | None]:
    """(index, GPU resources or None, why it stayed on the CPU when a GPU was there)."""
    if not use_gpu:
        return index, None, None
    if _is_hnsw(index):
        return index, None, "HNSW has no FAISS GPU implementation; it runs on the CPU"
    resources = faiss.StandardGpuResources()
    try:
        return faiss.index_cpu_to_gpu(resources, 0, index), resources, None
    except RuntimeError as exc:
        return index, None, f"FAISS cannot move it to the GPU ({faiss_message(exc)}); it runs on the CPU"


def build_index(
    item_emb: Any,
    spec: IndexSpec,
    *,
    item_ids: IdMap | None = None,
    device: Device = "auto",
) -> ItemIndex:
    """Build the index ``spec`` describes over ``item_emb`` (float [I, D], row i = item i).

    Args:
        item_emb: the raw item embeddings (normalized here when ``spec.metric == "cosine"``).
        spec: what to build; automatic values (nlist, nprobe, ef_search) resolve against I.
        item_ids: the raw item ids in index order, stored in the metadata and checked on load.
        device: ``auto`` uses the GPU when FAISS sees one, ``cpu`` never, ``gpu`` requires one.

    Raises:
        IndexSpecError: FAISS cannot build or parametrize the spec.
        IndexBuildError: too few item vectors to train it, or FAISS fails while training.
    """
    x = as_matrix(item_emb, "item embeddings")
    n_items, dim = x.shape
    if n_items == 0:
        raise IndexBuildError("no item embeddings: there is nothing to index")
    if item_ids is not None and item_ids.size != n_items:
        raise ValueError(f"{item_ids.size} item ids for {n_items} item embeddings")
    use_gpu = gpu_available(device)
    spec = spec.resolve(n_items)
    factory = spec.factory_string(n_items)
    # Named kinds are checked before FAISS sees them (its own errors are less specific);
    # a factory string's IVF part only once FAISS has parsed it.
    _check_trainable(spec, factory, n_items, dim, spec.nlist)
    cpu = _new_cpu_index(spec, factory, dim)
    ivf = faiss.try_extract_index_ivf(cpu)
    nlist = None if ivf is None else int(ivf.nlist)
    if spec.kind == "factory":
        _check_trainable(spec, factory, n_items, dim, nlist)
        spec = _factory_defaults(spec, cpu, nlist)
    faiss_class = _stored_class(cpu)
    vectors = normalize_rows(x) if spec.metric == "cosine" else x

    index, resources, note = to_device(cpu, use_gpu)
    start = time.perf_counter()
    try:
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
    except RuntimeError as exc:
        raise IndexBuildError(
            f"{factory}: FAISS could not build it over {n_items:,} x {dim} item vectors "
            f"({faiss_message(exc)})"
        ) from None
    seconds = time.perf_counter() - start
    meta = IndexMeta(
        spec=spec,
        factory=factory,
        dim=dim,
        n_items=n_items,
        fingerprint=embeddings_fingerprint(x),
        faiss_class=faiss_class,
        nlist=nlist,
        item_ids=item_ids,
        build_seconds=seconds,
    )
    return ItemIndex(index, meta, gpu_resources=resources, device_note=note)


__all__ = [
    "Device",
    "GPU_MAX_K",
    "IndexMeta",
    "ItemIndex",
    "as_matrix",
    "build_index",
    "embeddings_fingerprint",
    "faiss_message",
    "gpu_available",
    "normalize_rows",
    "to_device",
]
