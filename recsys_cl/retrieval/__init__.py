"""FAISS retrieval: item indexes over learned embeddings, filtered top-K candidates, and the
checks that they agree with exact search and with full-ranking evaluation.

- :mod:`.index`: build (flat / IVF-Flat / IVF-PQ / HNSW / any factory string; ip or cosine)
  and search; GPU when FAISS sees one.
- :mod:`.store`: save and load with metadata, refusing corrupt or mismatched files.
- :mod:`.candidates`: top-K unseen items per user, and similar items, by over-fetch and filter
  under an allow-list (a FAISS ID selector); most-popular items.
- :mod:`.filters`: per-row exclusions (:class:`PairSet`), the allow-list (:class:`AllowList`)
  and exact filtered search, the oracle and the ANN fallback.
- :mod:`.quality`: ANN recall@K vs exact search; Recall/NDCG of candidate lists.
- :mod:`.output`: the candidates Parquet file, written in chunks, atomically.
- :mod:`.candidate_model`: top-K unseen items for raw user ids and similar items for raw item
  ids, the one object behind ``recsys-cl recommend`` / ``similar`` and the served MLflow
  model, saved as a candidate bundle (:mod:`.bundle`); requests read by :mod:`.request`.
"""

from recsys_cl.config.retrieval import IndexSpec

from .candidate_model import BundleInfo, CandidateModel, CandidateRequestError
from .candidates import (
    DEFAULT_CHUNK_USERS,
    Candidates,
    candidates_for,
    fetch_sizes,
    iter_candidates,
    most_popular,
    search_filtered,
    similar_items,
    top_k_candidates,
)
from .errors import (
    IndexBuildError,
    IndexFileError,
    IndexMismatchError,
    IndexSpecError,
    RetrievalError,
    UnknownItemError,
    UnknownUserError,
)
from .filters import AllowList, PairSet, exact_filtered_top_k
from .ids import (
    InvalidIdError,
    InvalidItemIdError,
    InvalidUserIdError,
    integer_id,
    typed_ids,
    typed_user_ids,
)
from .index import (
    GPU_MAX_K,
    IndexMeta,
    ItemIndex,
    build_index,
    embeddings_fingerprint,
    gpu_available,
    normalize_rows,
)
from .output import candidate_schema, candidate_table, write_candidates
from .quality import (
    CandidateQuality,
    CandidateScorer,
    ann_recall,
    candidate_quality,
    exact_top_k,
    recall_vs_exact,
)
from .store import index_paths, load_index, save_index

__all__ = [
    "DEFAULT_CHUNK_USERS",
    "AllowList",
    "BundleInfo",
    "CandidateModel",
    "CandidateRequestError",
    "GPU_MAX_K",
    "CandidateQuality",
    "CandidateScorer",
    "Candidates",
    "IndexBuildError",
    "IndexFileError",
    "IndexMeta",
    "IndexMismatchError",
    "IndexSpec",
    "IndexSpecError",
    "InvalidIdError",
    "InvalidItemIdError",
    "InvalidUserIdError",
    "ItemIndex",
    "PairSet",
    "RetrievalError",
    "UnknownItemError",
    "UnknownUserError",
    "ann_recall",
    "build_index",
    "candidate_quality",
    "candidate_schema",
    "candidate_table",
    "candidates_for",
    "embeddings_fingerprint",
    "exact_filtered_top_k",
    "exact_top_k",
    "fetch_sizes",
    "gpu_available",
    "integer_id",
    "index_paths",
    "iter_candidates",
    "load_index",
    "most_popular",
    "normalize_rows",
    "recall_vs_exact",
    "save_index",
    "search_filtered",
    "similar_items",
    "top_k_candidates",
    "typed_ids",
    "typed_user_ids",
    "write_candidates",
]
