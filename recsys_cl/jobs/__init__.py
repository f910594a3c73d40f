"""Stages driven by typed configs: the only library code that reads config objects.

The CLI (``recsys_cl.cli``) and the MLflow entry points (``pipelines/``) call these; the rest
of the library takes plain arguments. The FAISS stages live in ``recsys_cl.jobs.retrieval`` and
``recsys_cl.jobs.recommend`` and are not imported here: training must work without FAISS
installed (it is an extra).
"""

from .build import ImbalanceParts, build_imbalance, build_method
from .data import build_split, data_prepare, data_stats, load_raw
from .evaluate import score_run
from .train import TrainReport, run_training

__all__ = [
    "ImbalanceParts",
    "TrainReport",
    "build_imbalance",
    "build_method",
    "build_split",
    "data_prepare",
    "data_stats",
    "load_raw",
    "run_training",
    "score_run",
]
