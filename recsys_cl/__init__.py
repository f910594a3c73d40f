"""recsys_cl: graph contrastive learning for recommendation, with class-imbalance strategies,
FAISS retrieval and MLflow tracking.

The names below are what a Python user needs to train and score a model (see the README's
"Python API"); each lives in its subpackage and is imported from there on first use, so that
``import recsys_cl`` loads neither torch nor FAISS nor MLflow (the command line sets torch's
threads before torch loads, and FAISS is an optional extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys_cl._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it.
_API = {
    # data
    "load_benchmark": "recsys_cl.data",
    "prepare": "recsys_cl.data",
    "read_interactions": "recsys_cl.data",
    # graph
    "BipartiteGraph": "recsys_cl.graph",
    "build_graph": "recsys_cl.graph",
    # models
    "Contrast": "recsys_cl.models",
    "LightGCN": "recsys_cl.models",
    "MF": "recsys_cl.models",
    "NeighbourPositives": "recsys_cl.models",
    "SGL": "recsys_cl.models",
    "SimGCL": "recsys_cl.models",
    "XSimGCL": "recsys_cl.models",
    # training
    "EarlyStopping": "recsys_cl.training",
    "Sampling": "recsys_cl.training",
    "Schedule": "recsys_cl.training",
    "Trainer": "recsys_cl.training",
    # evaluation
    "evaluate": "recsys_cl.metrics",
    # configs and run folders
    "load_config": "recsys_cl.config",
    "RunFolder": "recsys_cl.jobs",
    "run_training": "recsys_cl.jobs",
    # candidates (needs the cpu or gpu extra: FAISS)
    "CandidateModel": "recsys_cl.retrieval",
}

__all__ = sorted(_API)

if TYPE_CHECKING:
    # `name as name` marks a re-export for linters and type checkers, which cannot read the
    # computed __all__.
    from recsys_cl.config import load_config as load_config
    from recsys_cl.data import load_benchmark as load_benchmark
    from recsys_cl.data import prepare as prepare
    from recsys_cl.data import read_interactions as read_interactions
    from recsys_cl.graph import BipartiteGraph as BipartiteGraph
    from recsys_cl.graph import build_graph as build_graph
    from recsys_cl.jobs import RunFolder as RunFolder
    from recsys_cl.jobs import run_training as run_training
    from recsys_cl.metrics import evaluate as evaluate
    from recsys_cl.models import MF as MF
    from recsys_cl.models import SGL as SGL
    from recsys_cl.models import Contrast as Contrast
    from recsys_cl.models import LightGCN as LightGCN
    from recsys_cl.models import NeighbourPositives as NeighbourPositives
    from recsys_cl.models import SimGCL as SimGCL
    from recsys_cl.models import XSimGCL as XSimGCL
    from recsys_cl.retrieval import CandidateModel as CandidateModel
    from recsys_cl.training import EarlyStopping as EarlyStopping
    from recsys_cl.training import Sampling as Sampling
    from recsys_cl.training import Schedule as Schedule
    from recsys_cl.training import Trainer as Trainer


__getattr__, __dir__ = lazy_exports(__name__, _API, globals())
