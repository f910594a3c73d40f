"""Typed, frozen spec of a FAISS item index (``recsys-cl index --config configs/index/*.yaml``).

A spec has two halves: the **structure** (kind, metric, nlist, PQ and HNSW shape) that fixes
what is built and is checked when a saved index is loaded, and the **search parameters**
(``nprobe``, ``ef_search``) that may change on every search. Fields that do not apply to the
chosen kind are rejected when set, so ``--spec flat --nprobe 8`` fails at load instead of being
ignored.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

IndexKind = Literal["flat", "ivf", "ivfpq", "hnsw", "factory"]
Metric = Literal["ip", "cosine"]
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

_APPLIES: dict[str, tuple[str, ...]] = {
    "factory": ("factory",),
    "nlist": ("ivf", "ivfpq"),
    "nprobe": ("ivf", "ivfpq", "factory"),
    "pq_m": ("ivfpq",),
    "pq_bits": ("ivfpq",),
    "hnsw_m": ("hnsw",),
    "ef_construction": ("hnsw",),
    "ef_search": ("hnsw", "factory"),
}
STRUCTURE_FIELDS: tuple[str, ...] = (
    "kind", "factory", "metric", "nlist", "pq_m", "pq_bits", "hnsw_m", "ef_construction",
)


class IndexSpec(BaseModel):
    """What index to build over the item embeddings, and how to search it.

    Attributes:
        kind: ``flat`` (exact inner product), ``ivf`` (IVF-Flat), ``ivfpq`` (IVF-PQ), ``hnsw``
            (HNSW-Flat) or ``factory`` (any FAISS ``index_factory`` string in ``factory``).
        metric: ``ip`` ranks by the inner product, the score the models are trained with;
            ``cosine`` L2-normalizes items and queries first.
        nlist: IVF lists; None picks 4·sqrt(I), at most I/39 (see ``resolved_nlist``).
        nprobe: IVF lists visited per query (default 32, at most nlist).
        pq_m, pq_bits: PQ sub-quantizers (must divide the dimension) and bits per code.
        hnsw_m: HNSW neighbours per node; ef_construction: its build-time beam.
        ef_search: HNSW search beam (default 128; FAISS uses max(ef_search, k)).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

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

    @model_validator(mode="after")
    def _applies(self) -> IndexSpec:
        if self.kind == "factory" and not (self.factory and self.factory.strip()):
            raise ValueError("kind 'factory' needs a FAISS factory string in 'factory'")
        for name in sorted(self.model_fields_set):
            kinds = _APPLIES.get(name)
            if kinds is not None and self.kind not in kinds and getattr(self, name) is not None:
                raise ValueError(
                    f"{name} applies to index kind {' / '.join(kinds)}, not {self.kind}"
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
        if self.kind == "hnsw":
            update["ef_search"] = self.ef_search or DEFAULT_EF_SEARCH
        return self.model_copy(update=update) if update else self

    def factory_string(self, n_items: int) -> str:
        """The FAISS ``index_factory`` string this spec builds (e.g. ``IVF810,PQ16x8``)."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "ivf":
            return f"IVF{self.resolved_nlist(n_items)},Flat"
        if self.kind == "ivfpq":
            return f"IVF{self.resolved_nlist(n_items)},PQ{self.pq_m}x{self.pq_bits}"
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
        """A file-name-safe short name: the kind, or ``factory-<string>``."""
        if self.kind != "factory":
            return self.kind
        assert self.factory is not None
        safe = "".join(c if c.isalnum() else "-" for c in self.factory.strip())
        return f"factory-{safe.strip('-')}"
