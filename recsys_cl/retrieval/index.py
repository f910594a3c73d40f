"""FAISS indexes over item embeddings: build and search.

An index is a FAISS inner-product index over the item embeddings in item-index order (row
``i`` is item ``i``), so a search returns item indices directly. ``metric="cosine"`` stores
L2-normalized items and normalizes every query, so the inner product FAISS ranks by is the
cosine; ``"ip"`` ranks by the raw inner product, the score the models are trained with.

Saving and loading with checked metadata is in :mod:`.store`.

The GPU is used when FAISS sees one (the ``gpu`` extra) and ``device`` allows it; HNSW has no
FAISS GPU implementation and stays on the CPU, as does any index FAISS cannot move. With several
GPUs the index is sharded across all of them (``IndexShards``, FAISS's multi-GPU cloner with
``shard=True``: IVF lists split by item id modulo the GPU count, flat rows in ranges), each GPU
searching its part and the shards' top-k merged. An IVF-PQ + refine index puts its IVF-PQ part
on the GPU(s) and keeps the refine codes on the CPU (FAISS has no GPU refine index). GPU search
handles k ≤ 2048 (k·k_factor with a refine stage); a larger search runs on the CPU index.
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
    DEFAULT_K_FACTOR,
    DEFAULT_NPROBE,
    MAX_K_FACTOR,
    MIN_POINTS_PER_CENTROID,
    IndexSpec,
)
from recsys_cl.data import IdMap
from recsys_cl.errors import RecsysError, first_line

from .errors import IndexBuildError, IndexSpecError, RetrievalError

Device = Literal["auto", "cpu", "gpu"]
# FAISS GPU k-selection (and nprobe) stops at 2048 (faiss/gpu/utils/DeviceDefs.cuh).
GPU_MAX_K = 2048
# Spec search parameter -> FAISS ParameterSpace name.
_FAISS_PARAM = {"nprobe": "nprobe", "ef_search": "efSearch", "k_factor": "k_factor_rf"}


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


@dataclass
class Placement:
    """Where an index searches, from :func:`to_device`.

    Attributes:
        index: what searches run on (a CPU index, a GPU copy, GPU shards, or an IndexRefine
            over a GPU base with CPU refine codes).
        device: ``cpu`` or ``gpu``.
        n_shards: parts the items are split into (1 unless sharded).
        resources: GPU resources (and sub-indexes) that must outlive ``index``.
        cpu: the CPU index kept alongside ``index`` when ``index`` is not a plain copy FAISS
            can copy back (refine on GPU, CPU shards); None otherwise.
        note: why it stayed on the CPU although a GPU was there, or what stays on the CPU.
    """

    index: faiss.Index
    device: str = "cpu"
    n_shards: int = 1
    resources: Any = None
    cpu: faiss.Index | None = None
    note: str | None = None


class ItemIndex:
    """A FAISS index over item embeddings, with its metadata; see the module docstring.

    Search parameters (``nprobe``, ``ef_search``, ``k_factor``) can be changed with
    :meth:`set_search_params`; everything else is fixed at build.
    """

    def __init__(
        self,
        index: faiss.Index | Placement,
        meta: IndexMeta,
        *,
        gpu_resources: Any = None,
        device_note: str | None = None,
        mmap_path: str | None = None,
    ) -> None:
        placed = (
            index
            if isinstance(index, Placement)
            else Placement(
                index,
                "gpu" if gpu_resources is not None else "cpu",
                1,
                gpu_resources,
                None,
                device_note,
            )
        )
        self.index = placed.index
        self.meta = meta
        self.device_note = placed.note
        self.n_shards = placed.n_shards
        self.mmap_path = mmap_path  # the file the CPU index's data is memory-mapped from
        self._device = placed.device
        self._gpu_resources = placed.resources  # must outlive the GPU index it serves
        self._cpu_copy: faiss.Index | None = placed.cpu
        self._params = _param_names(
            placed.cpu if placed.cpu is not None else placed.index,
            on_gpu=placed.cpu is None and placed.device == "gpu",
        )
        self.set_search_params(
            nprobe=meta.spec.nprobe, ef_search=meta.spec.ef_search, k_factor=meta.spec.k_factor
        )

    @property
    def on_gpu(self) -> bool:
        return self._device == "gpu"

    @property
    def device(self) -> str:
        return self._device

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
        """``IVF810,Flat ip nprobe=32 on cpu``: what searches run on (``on gpu x4`` when
        sharded over 4 GPUs, ``mmap`` when the CPU index is memory-mapped)."""
        spec = self.spec
        params = [
            f"{k}={v}"
            for k, v in (
                ("nprobe", spec.nprobe),
                ("efSearch", spec.ef_search),
                ("k_factor", spec.k_factor),
            )
            if v
        ]
        where = self.device if self.n_shards == 1 else f"{self.device} x{self.n_shards}"
        return " ".join(
            [
                self.meta.factory,
                self.metric,
                *params,
                "on",
                where,
                *(["mmap"] if self.mmap_path else []),
            ]
        )

    def set_search_params(
        self,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        k_factor: int | None = None,
    ) -> None:
        """Set IVF ``nprobe``, HNSW ``ef_search`` and/or the refine stage's ``k_factor`` (None
        leaves one unchanged).

        Raises:
            IndexSpecError: the parameter does not apply to this index, or is out of range.
        """
        if nprobe is not None:
            if self.meta.nlist is None:
                raise IndexSpecError(
                    f"nprobe does not apply to a {self.meta.factory} index (it has no IVF lists)"
                )
            if not 0 < nprobe <= self.meta.nlist:
                raise IndexSpecError(
                    f"nprobe must be in [1, nlist={self.meta.nlist}], got {nprobe}"
                )
            if self.on_gpu and nprobe > GPU_MAX_K:
                raise IndexSpecError(f"FAISS GPU indexes take nprobe ≤ {GPU_MAX_K}, got {nprobe}")
        if k_factor is not None and not 0 < k_factor <= MAX_K_FACTOR:
            raise IndexSpecError(f"k_factor must be in [1, {MAX_K_FACTOR}], got {k_factor}")
        values = {"nprobe": nprobe, "ef_search": ef_search, "k_factor": k_factor}
        for name, value in values.items():
            if value is None:
                continue
            if _FAISS_PARAM[name] not in self._params:
                why = " (it has no refine stage)" if name == "k_factor" else ""
                raise IndexSpecError(f"{name} does not apply to a {self.meta.factory} index{why}")
            for target in (self.index, self._cpu_copy):
                if target is not None:
                    _set_param(
                        target,
                        _FAISS_PARAM[name],
                        value,
                        on_gpu=target is self.index and self.on_gpu,
                        factory=self.meta.factory,
                    )
        update = {k: v for k, v in values.items() if v is not None}
        if update:  # the search half of the spec only; its structure is fixed at build
            self.meta = replace(self.meta, spec=self.meta.spec.model_copy(update=update))

    def search(
        self, queries: Any, k: int, *, selector: faiss.IDSelector | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-``k`` items of each query by the index's metric.

        Args:
            queries: float [B, D] (user or item embeddings); normalized here for ``cosine``.
            k: list length; above I it is cut to I.
            selector: a FAISS ID selector (e.g. ``IDSelectorBitmap`` of an allow-list): only
                the items it selects are returned, with the index's current search
                parameters (:func:`selector_params`). Searched on the CPU index: FAISS GPU
                indexes and CPU shards take no selector (shards would see their local ids).

        Returns:
            scores float32 [B, k'] and item indices int64 [B, k'] (k' = min(k, I)), best
            first; an ANN index may return fewer than k' hits, padded with item -1 (as does
            any index when fewer than k' items are selected). With a refine stage the scores
            are the refine codes' (exact for ``flat``).

        Raises:
            IndexSpecError: a selector on an index type FAISS filters no search of.
        """
        q = as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have D={q.shape[1]}, the index D={self.dim}")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        k = min(k, self.n_items)
        if self.metric == "cosine":
            q = normalize_rows(q)
        if selector is not None:
            target = self.cpu_index()
            params, _keep = selector_params(target, selector, self.meta.factory)
            scores, items = target.search(q, k, params=params)
            return scores, items.astype(np.int64, copy=False)
        target = self.index
        if self.on_gpu and k * (self.spec.k_factor or 1) > GPU_MAX_K:
            target = self.cpu_index()
        scores, items = target.search(q, k)
        return scores, items.astype(np.int64, copy=False)

    def check_selectable(self) -> None:
        """Raise :class:`IndexSpecError` when searches of this index cannot take an ID selector
        (an allow-list), before any request is answered."""
        selector_params(self.cpu_index(), faiss.IDSelectorAll(), self.meta.factory)

    def cpu_index(self) -> faiss.Index:
        """The index on the CPU (itself, the CPU index kept alongside, or a copy of the GPU
        index made once; GPU shards are merged back into one index)."""
        if self._cpu_copy is not None:
            return self._cpu_copy
        if not self.on_gpu:
            return self.index
        self._cpu_copy = faiss.index_gpu_to_cpu(self.index)
        for name in ("nprobe", "ef_search", "k_factor"):
            value = getattr(self.spec, name)
            if value is not None:
                _set_param(
                    self._cpu_copy,
                    _FAISS_PARAM[name],
                    value,
                    on_gpu=False,
                    factory=self.meta.factory,
                )
        return self._cpu_copy

    def serialize(self) -> bytes:
        """FAISS's own serialization of the CPU index (unsharded)."""
        return faiss.serialize_index(self.cpu_index()).tobytes()


def selector_params(
    index: faiss.Index, selector: faiss.IDSelector, factory: str
) -> tuple[faiss.SearchParameters, list[Any]]:
    """FAISS search parameters that filter ``index``'s search by ``selector`` and otherwise
    search as the index is set now (IVF nprobe, HNSW efSearch, refine k_factor: FAISS's
    parameter objects carry their own defaults, nprobe 1 among them, not the index's).

    Returns:
        the parameters, and every object they point to: SWIG does not keep nested parameters
        (or the selector) alive, so the caller holds the list until the search returns.

    Raises:
        IndexSpecError: an index type whose search FAISS cannot filter (IndexPQ, an additive
            quantizer, ...): use flat, ivf, ivfpq or hnsw.
    """
    api: Any = faiss  # FAISS's stubs lack the parameter classes' keyword constructors
    index = faiss.downcast_index(index)
    keep: list[Any] = [selector]
    params: Any
    if isinstance(index, faiss.IndexPreTransform):
        inner, held = selector_params(index.index, selector, factory)
        params = api.SearchParametersPreTransform(index_params=inner)
        keep += [inner, *held]
    elif isinstance(index, faiss.IndexRefine):
        # The refine stage re-ranks what the base returns: the base must filter (a selector
        # on the refine parameters themselves is ignored by FAISS 1.15).
        inner, held = selector_params(index.base_index, selector, factory)
        params = api.IndexRefineSearchParameters(
            k_factor=float(index.k_factor), base_index_params=inner
        )
        keep += [inner, *held]
    elif isinstance(index, faiss.IndexIVF):
        params = api.SearchParametersIVF(
            sel=selector, nprobe=int(index.nprobe), max_codes=int(index.max_codes)
        )
    elif isinstance(index, faiss.IndexHNSW):
        params = api.SearchParametersHNSW(sel=selector, efSearch=int(index.hnsw.efSearch))
    elif isinstance(index, faiss.IndexFlatCodes) and not isinstance(index, faiss.IndexPQ):
        params = api.SearchParameters(sel=selector)
    else:
        raise IndexSpecError(
            f"{factory}: FAISS cannot filter a search of a {type(index).__name__} by item id "
            "(an allow-list needs it); use a flat, ivf, ivfpq or hnsw index"
        )
    return params, keep


def _param_names(index: faiss.Index, *, on_gpu: bool) -> set[str]:
    """The search parameters FAISS's ParameterSpace knows for ``index`` (through shards)."""
    index = faiss.downcast_index(index)
    while isinstance(index, (faiss.IndexShards, faiss.IndexReplicas)):
        threaded: Any = index  # FAISS's stubs lack the ThreadedIndex methods
        if threaded.count() == 0:
            break
        index = faiss.downcast_index(threaded.at(0))
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    space.initialize(index)
    return {space.parameter_ranges.at(i).name for i in range(space.parameter_ranges.size())}


def _set_param(index: faiss.Index, name: str, value: int, *, on_gpu: bool, factory: str) -> None:
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    try:
        space.set_index_parameter(index, name, value)
    except RuntimeError as exc:
        raise IndexSpecError(
            f"cannot set {name}={value} on {factory}: {faiss_message(exc)}"
        ) from None


def _check_trainable(
    spec: IndexSpec, factory: str, n_items: int, dim: int, nlist: int | None
) -> None:
    if nlist is not None:
        need = MIN_POINTS_PER_CENTROID * nlist
        if n_items < need:
            most = n_items // MIN_POINTS_PER_CENTROID
            hint = f"use nlist ≤ {most}" if most else "use the flat or hnsw index"
            raise IndexBuildError(
                f"{factory}: IVF with nlist={nlist} needs at least "
                f"{MIN_POINTS_PER_CENTROID}·nlist = {need:,} item vectors to train its k-means, "
                f"but there are {n_items:,}; {hint}"
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
        # FAISS's stubs type downcast_index as the base Index; here it is an IndexHNSW.
        faiss.downcast_index(index).hnsw.efConstruction = spec.ef_construction  # type: ignore[attr-defined]
    return index


def _factory_defaults(spec: IndexSpec, index: faiss.Index, nlist: int | None) -> IndexSpec:
    """Our nprobe / efSearch / k_factor defaults for a factory index that has them (FAISS's
    own, 1, 16 and 1, favour speed over recall far more than the named kinds do)."""
    names = _param_names(index, on_gpu=False)
    update: dict[str, int] = {}
    if spec.nprobe is None and nlist is not None and "nprobe" in names:
        update["nprobe"] = min(DEFAULT_NPROBE, nlist)
    if spec.ef_search is None and "efSearch" in names:
        update["ef_search"] = DEFAULT_EF_SEARCH
    if spec.k_factor is None and "k_factor_rf" in names:
        update["k_factor"] = DEFAULT_K_FACTOR
    return spec.model_copy(update=update) if update else spec


def _stored_class(index: faiss.Index) -> str:
    """The class FAISS reads the index back as (``Flat`` is built as ``IndexFlat`` and read
    as ``IndexFlatIP``); found on the still-empty index, so it costs nothing."""
    return type(
        faiss.downcast_index(faiss.deserialize_index(faiss.serialize_index(index)))
    ).__name__


def _is_hnsw(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexHNSW)


def _refine_of(index: faiss.Index) -> Any:
    """The IndexRefine (or IndexRefineFlat) ``index`` is, else None."""
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexRefine) else None


def to_device(index: faiss.Index, use_gpu: bool, *, n_gpus: int | None = None) -> Placement:
    """Place a CPU index for searching: on the CPU, on one GPU, or sharded over several.

    Args:
        index: a trained CPU index (it is not modified; a refine index keeps it).
        use_gpu: see :func:`gpu_available`.
        n_gpus: GPUs to shard over (default: every GPU FAISS sees; 1 = no sharding).

    Stays on the CPU, with a note, for HNSW and for anything FAISS cannot move.
    """
    if not use_gpu:
        return Placement(index)
    if _is_hnsw(index):
        return Placement(index, note="HNSW has no FAISS GPU implementation; it runs on the CPU")
    n = faiss.get_num_gpus() if n_gpus is None else min(n_gpus, faiss.get_num_gpus())
    refine = _refine_of(index)
    base = index if refine is None else refine.base_index
    try:
        if n > 1:
            resources = [faiss.StandardGpuResources() for _ in range(n)]
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True  # split the items over the GPUs (not a replica on each)
            placed = faiss.index_cpu_to_gpu_multiple_py(resources, base, options, list(range(n)))
        else:
            resources = [faiss.StandardGpuResources()]
            placed = faiss.index_cpu_to_gpu(resources[0], 0, base)
    except RuntimeError as exc:
        return Placement(
            index,
            note=f"FAISS cannot move it to the GPU ({faiss_message(exc)}); it runs on the CPU",
        )
    if refine is None:
        return Placement(placed, "gpu", n, resources)
    # FAISS has no GPU refine index: the GPU base proposes k·k_factor candidates, the CPU
    # refine codes re-rank them. The CPU original serves serialize() and k·k_factor > 2048.
    wrapped = faiss.IndexRefine(placed, refine.refine_index)
    wrapped.k_factor = refine.k_factor
    note = "IVF-PQ on the GPU, refine codes on the CPU (FAISS has no GPU refine index)"
    return Placement(wrapped, "gpu", n, [resources, placed], cpu=index, note=note)


def shard_index(index: faiss.Index, n_shards: int) -> faiss.Index:
    """``index`` split into ``n_shards`` CPU sub-indexes behind one ``faiss.IndexShards``, the
    layout FAISS's multi-GPU cloner gives with ``shard=True``: IVF lists split by item id
    modulo n_shards (each shard with the same coarse quantizer), flat rows in contiguous
    ranges; a refine index has its base sharded and its refine codes shared. A search asks
    every shard and merges their top-k, so results equal the unsharded index's.

    This is the CPU counterpart of the GPU sharding in :func:`to_device` (what the tests run
    where there is no GPU); it copies the data, the original is unchanged.

    Raises:
        IndexSpecError: an index type FAISS cannot shard (HNSW, fast-scan IVF, ...).
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be positive, got {n_shards}")
    refine = _refine_of(index)
    if refine is not None:
        sharded = shard_index(refine.base_index, n_shards)
        wrapped = faiss.IndexRefine(sharded, refine.refine_index)
        wrapped.k_factor = refine.k_factor
        return wrapped
    index = faiss.downcast_index(index)
    api: Any = faiss  # FAISS's stubs lack IndexShards' constructors and the IVF subset API
    if isinstance(index, faiss.IndexFlat):
        shards = api.IndexShards(index.d, True, True)  # threaded, ids = row offsets
        xb = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(
            index.ntotal, index.d
        )
        for i in range(n_shards):
            part = faiss.IndexFlat(index.d, index.metric_type)
            part.add(xb[index.ntotal * i // n_shards : index.ntotal * (i + 1) // n_shards])
            shards.add_shard(part)
        return shards
    if type(index) in (faiss.IndexIVFFlat, faiss.IndexIVFPQ, faiss.IndexIVFScalarQuantizer):
        shards = api.IndexShards(index.d, True, False)  # threaded, ids stored in the lists
        for i in range(n_shards):
            sub: Any = api.clone_index(index)  # its own copy of the coarse quantizer
            sub.reset()
            ivf: Any = index
            ivf.copy_subset_to(sub, api.InvertedLists.SUBSET_TYPE_ID_MOD, n_shards, i)
            shards.add_shard(sub)
        return shards
    raise IndexSpecError(
        f"cannot shard a {type(index).__name__}: FAISS shards IndexFlat, IndexIVFFlat, "
        "IndexIVFScalarQuantizer and IndexIVFPQ (the types its multi-GPU cloner shards)"
    )


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
        spec: what to build; automatic values (nlist, nprobe, ef_search, k_factor) resolve
            against I.
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

    # One GPU: train and fill the GPU copy (GPU k-means), as FAISS intends. A refine index
    # (no GPU refine) and GPU shards (one quantizer for all shards) are trained on the CPU,
    # then placed.
    placement = None
    if use_gpu and faiss.get_num_gpus() == 1 and _refine_of(cpu) is None:
        placement = to_device(cpu, True)
    work = cpu if placement is None else placement.index
    start = time.perf_counter()
    try:
        if not work.is_trained:
            work.train(vectors)
        work.add(vectors)
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
    return ItemIndex(placement or to_device(cpu, use_gpu), meta)


__all__ = [
    "Device",
    "GPU_MAX_K",
    "IndexMeta",
    "ItemIndex",
    "Placement",
    "as_matrix",
    "build_index",
    "embeddings_fingerprint",
    "faiss_message",
    "gpu_available",
    "normalize_rows",
    "selector_params",
    "shard_index",
    "to_device",
]
