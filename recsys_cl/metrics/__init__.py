"""Ranking metrics and the batched full-ranking evaluator."""

from recsys_cl.metrics.baselines import ScoringEmbeddings, most_popular_scores
from recsys_cl.metrics.evaluator import EvalResult, choose_chunk_size, evaluate, mlflow_name
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
    "METRICS",
    "EvalResult",
    "ScoringEmbeddings",
    "choose_chunk_size",
    "evaluate",
    "hit_rate_at_k",
    "mlflow_name",
    "most_popular_scores",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]
