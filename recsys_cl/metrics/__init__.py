"""Ranking metrics, the batched full-ranking evaluator and long-tail (popularity) metrics."""

from recsys_cl.metrics.baselines import ScoringEmbeddings, most_popular_scores
from recsys_cl.metrics.evaluator import EvalResult, choose_chunk_size, evaluate
from recsys_cl.metrics.popularity import (
    ITEM_GROUPS,
    USER_GROUPS,
    PopularityReport,
    format_popularity,
    popularity_groups,
    popularity_metrics,
)
from recsys_cl.metrics.ranking import (
    METRICS,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

__all__ = [
    "ITEM_GROUPS",
    "METRICS",
    "USER_GROUPS",
    "EvalResult",
    "PopularityReport",
    "ScoringEmbeddings",
    "choose_chunk_size",
    "evaluate",
    "format_popularity",
    "hit_rate_at_k",
    "most_popular_scores",
    "mrr_at_k",
    "ndcg_at_k",
    "popularity_groups",
    "popularity_metrics",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]
