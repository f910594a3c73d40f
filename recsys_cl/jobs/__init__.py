"""Stages driven by typed configs: the only library code that reads config objects.

The CLI (``recsys_cl.cli``) and the MLflow entry points (``pipelines/``) call these; the rest
of the library takes plain arguments.
"""

from .build import build_method
from .data import build_split, data_prepare, data_stats, load_raw
from .train import TrainReport, evaluate, run_training, train

__all__ = [
    "TrainReport",
    "build_method",
    "build_split",
    "data_prepare",
    "data_stats",
    "evaluate",
    "load_raw",
    "run_training",
    "train",
]
