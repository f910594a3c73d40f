"""Typed, frozen spec of a FAISS item index (``recsys-cl index --config configs/index/*.yaml``).

A spec has two halves: the **structure** (kind, metric, nlist, PQ shape and refine stage, HNSW
shape) that fixes what is built and is checked when a saved index is loaded, and the **search
parameters** (``nprobe``, ``ef_search``, ``k_factor``) that may change on every search. Fields
that do not apply to the chosen kind are rejected when set, so ``--spec flat --nprobe 8`` fails
at load instead of being ignored.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

from pydantic import Field, model_validator

from .base import Frozen

IndexKind = Literal["flat", "ivf", "ivfpq", "hnsw", "factory"]
Metric = Literal["ip", "cosine"]
Refine = Literal["none", "flat", "fp16", "sq8", "sq6", "sq4"]
NAMED_KINDS: tuple[str, ...] = ("flat", "ivf", "ivfpq", "hnsw")

# FAISS's k-means warns below 39 training points per centroid (ClusteringParameters.
# min_points_per_centroid) and its centroids are then poor: IVF lists and PQ codebooks are
# refused below it.
MIN_POINTS_PER_CENTROID = 39
# FAISS wiki, "Guidelines to choose an index": nlist between 4·sqrt(N) and 16·sqrt(N); the
# low end keeps each list large enough to train on small catalogues.
AUTO_NLIST_PER_SQRT_N = 4
# Search defaults, from `benchmarks/bench_index.py --n 50000` (50,000 x 64 synthetic clustered
# vectors, K=20, 2-core CPU): IVF nprobe 8 reached recall 0.68 and 32 reached 1.00 at 4x the flat
# index's throughput; HNSW32 efSearch 64 reached 0.984 and 128 0.986. Revisit with the 1M run.
DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128
# IVF-PQ + refine: the base index returns k·k_factor candidates that the refine codes re-rank.
# From `benchmarks/bench_large_index.py` (1M x 64 clustered, IVF-PQ16x8 + SQ8 refine, K=20):
# k_factor 4 reached recall 0.70 and 16 reached 0.95; 64 adds 0.02 at half the throughput.
DEFAULT_K_FACTOR = 16
MAX_K_FACTOR = 1024
# Candidate lists: the default length, and the served model's request limits. A list longer
# than a re-ranker reads, or a batch whose answer (rows x k, one JSON object per candidate)
# would run to hundreds of MB, is refused rather than computed. The one source of these
# numbers (the run config, the command line, the bundle and the served model read them here).
DEFAULT_K = 20
DEFAULT_MAX_K = 1000
DEFAULT_MAX_ROWS = 1000
# The most ids one list cell of a request may hold (a row's ``exclude``): a business filter
# of a few hundred ids is common, one of a whole catalogue is a mistake, and a row's search
# over-fetches K + its list's length.
DEFAULT_MAX_LIST = 1000
# The refine stage of `kind: ivfpq` as a FAISS index_factory suffix: the refine index stores
# every vector again, in these codes (bytes per vector at D=64: flat 256, fp16 128, sq8 64,
# sq6 48, sq4 32), and re-ranks the base index's k·k_factor candidates with them.
REFINE_FACTORY: dict[str, str] = {
    "flat": "RFlat",
    "fp16": "Refine(SQfp16)",
    "sq8": "Refine(SQ8)",
    "sq6": "Refine(SQ6)",
    "sq4": "Refine(SQ4)",
}

_APPLIES: dict[str, tuple[str, ...]] = {
    "factory": ("factory",),
    "nlist": ("ivf", "ivfpq"),
    "nprobe": ("ivf", "ivfpq", "factory"),
    "pq_m": ("ivfpq",),
    "pq_bits": ("ivfpq",),
    "hnsw_m": ("hnsw",),
    "ef_construction": ("hnsw",),
    "ef_search": ("hnsw", "factory"),
    "refine": ("ivfpq",),
    "k_factor": ("ivfpq", "factory"),
}
STRUCTURE_FIELDS: tuple[str, ...] = (
    "kind",
    "factory",
    "metric",
    "nlist",
    "pq_m",
    "pq_bits",
    "refine",
    "hnsw_m",
    "ef_construction",
)


class IndexSpec(Frozen):
    """What index to build over the item embeddings, and how to search it.

    Attributes:
        kind: ``flat`` (exact inner product), ``ivf`` (IVF-Flat), ``ivfpq`` (IVF-PQ), ``hnsw``
            (HNSW-Flat) or ``factory`` (any FAISS ``index_factory`` string in ``factory``).
        metric: ``ip`` ranks by the inner product, the score the models are trained with;
            ``cosine`` L2-normalizes items and queries first.
        nlist: IVF lists; None picks 4·sqrt(I), at most I/39 (see ``resolved_nlist``).
        nprobe: IVF lists visited per query (default 32, at most nlist).
        pq_m, pq_bits: PQ sub-quantizers (must divide the dimension) and bits per code.
        refine: IVF-PQ only: ``none``, or a refine stage that keeps every vector again in
            ``flat`` (float32), ``fp16``, ``sq8``, ``sq6`` or ``sq4`` codes and re-ranks the
            IVF-PQ candidates with them (a factory string says it itself: ``…,RFlat``,
            ``…,Refine(SQ8)``).
        k_factor: with a refine stage, the base index fetches k·k_factor candidates for the
            refine codes to re-rank (default 16).
        hnsw_m: HNSW neighbours per node; ef_construction: its build-time beam.
        ef_search: HNSW search beam (default 128; FAISS uses max(ef_search, k)).
    """

    kind: IndexKind = "flat"
    factory: str | None = None
    metric: Metric = "ip"
    nlist: int | None = Field(None, gt=0)
    nprobe: int | None = Field(None, gt=0)
    pq_m: int = Field(16, gt=0)
    pq_bits: int = Field(8, ge=1, le=16)
    # HNSW: M=32, efConstruction=200 (efConstruction above FAISS's default 40 buys recall at
    # high efSearch for a longer build; hnswlib's README recommends 200).
    hnsw_m: int = Field(32, ge=2)
    ef_construction: int = Field(200, gt=0)
    ef_search: int | None = Field(None, gt=0)
    refine: Refine = "none"
    k_factor: int | None = Field(None, ge=1, le=MAX_K_FACTOR)

    @model_validator(mode="after")
    def _applies(self) -> IndexSpec:
        if self.kind == "factory" and not (self.factory and self.factory.strip()):
            raise ValueError("kind 'factory' needs a FAISS factory string in 'factory'")
        for name in sorted(self.model_fields_set):
            kinds = _APPLIES.get(name)
            value = getattr(self, name)
            if kinds is not None and self.kind not in kinds and value not in (None, "none"):
                raise ValueError(
                    f"{name} applies to index kind {' / '.join(kinds)}, not {self.kind}"
                )
        if self.kind == "ivfpq" and self.refine == "none" and self.k_factor is not None:
            raise ValueError(
                "k_factor applies to an index with a refine stage; set refine "
                f"({' / '.join(REFINE_FACTORY)}) or drop k_factor"
            )
        if self.nlist is not None and self.nprobe is not None and self.nprobe > self.nlist:
            raise ValueError(f"nprobe ({self.nprobe}) must be ≤ nlist ({self.nlist})")
        return self

    @staticmethod
    def from_cli(spec: str) -> dict[str, str]:
        """The fields a ``--spec`` value sets: a named kind, else a factory string."""
        value = spec.strip()
        if value.lower() in NAMED_KINDS:
            return {"kind": value.lower()}
        return {"kind": "factory", "factory": value}

    def resolved_nlist(self, n_items: int) -> int:
        """``nlist``, or for None: round(4·sqrt(I)) bounded to [1, I // 39]."""
        if self.nlist is not None:
            return self.nlist
        auto = round(AUTO_NLIST_PER_SQRT_N * math.sqrt(max(n_items, 1)))
        return max(1, min(auto, n_items // MIN_POINTS_PER_CENTROID))

    def resolve(self, n_items: int) -> IndexSpec:
        """A copy with the automatic values filled in for a catalogue of ``n_items``."""
        update: dict[str, int] = {}
        if self.kind in ("ivf", "ivfpq"):
            nlist = self.resolved_nlist(n_items)
            update["nlist"] = nlist
            update["nprobe"] = min(self.nprobe or DEFAULT_NPROBE, nlist)
        if self.kind == "ivfpq" and self.refine != "none":
            update["k_factor"] = self.k_factor or DEFAULT_K_FACTOR
        if self.kind == "hnsw":
            update["ef_search"] = self.ef_search or DEFAULT_EF_SEARCH
        return self.model_copy(update=update) if update else self

    def factory_string(self, n_items: int) -> str:
        """The FAISS ``index_factory`` string this spec builds (e.g. ``IVF810,PQ16x8`` or
        ``IVF810,PQ16x8,Refine(SQ8)``)."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "ivf":
            return f"IVF{self.resolved_nlist(n_items)},Flat"
        if self.kind == "ivfpq":
            ivfpq = f"IVF{self.resolved_nlist(n_items)},PQ{self.pq_m}x{self.pq_bits}"
            return ivfpq if self.refine == "none" else f"{ivfpq},{REFINE_FACTORY[self.refine]}"
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m}"
        assert self.factory is not None  # the validator requires it
        return self.factory.strip()

    def applies(self, name: str) -> bool:
        """Whether field ``name`` means something for this spec's kind."""
        kinds = _APPLIES.get(name)
        return kinds is None or self.kind in kinds

    def dump(self) -> dict[str, object]:
        """The fields that apply to this kind, as JSON-ready values (what a saved index
        records; :meth:`model_validate` reads it back)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if self.applies(k)}

    def structure(self) -> dict[str, object]:
        """The applicable fields that fix what is built (not the search parameters)."""
        return {name: getattr(self, name) for name in STRUCTURE_FIELDS if self.applies(name)}

    def name(self) -> str:
        """A file-name-safe short name: the kind (``ivfpq-sq8`` with a refine stage), or
        ``factory-<string>``."""
        if self.kind == "ivfpq" and self.refine != "none":
            return f"ivfpq-{self.refine}"
        if self.kind != "factory":
            return self.kind
        assert self.factory is not None
        safe = "".join(c if c.isalnum() else "-" for c in self.factory.strip())
        return f"factory-{safe.strip('-')}"


def is_positive_int(value: object) -> bool:
    """An integer >= 1 (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def limits_problem(
    k: object, max_k: object, max_rows: object, max_list: object = DEFAULT_MAX_LIST
) -> str | None:
    """What is wrong with the request limits ``k`` (the default list length), ``max_k`` (the
    longest list), ``max_rows`` (the most rows per request) and ``max_list`` (the most ids in
    one list cell, e.g. a row's ``exclude``), or None: each must be an integer >= 1, and
    ``k <= max_k``. The one check of the limits, wherever they are set."""
    limits = (("k", k), ("max_k", max_k), ("max_rows", max_rows), ("max_list", max_list))
    for name, value in limits:
        if not is_positive_int(value):
            return f"{name} must be an integer >= 1, got {value!r}"
    assert isinstance(k, numbers.Integral) and isinstance(max_k, numbers.Integral)
    if int(k) > int(max_k):
        return f"k ({k}) must be at most max_k ({max_k})"
    return None
