"""Encoders (LightGCN, MF) and training methods (BPR baselines, SGL, SimGCL, XSimGCL; new
contrastive methods subclass :class:`ContrastiveMethod` and take their λ and τ as one
:class:`Contrast`)."""

from recsys_cl.models.base import (
    Batch,
    LossBreakdown,
    NegativeSelector,
    Recommender,
    SelectedNegatives,
    batch_info_nce,
)
from recsys_cl.models.encoders import (
    MF,
    Adjacency,
    Encoder,
    Graph,
    LayerHook,
    LightGCN,
    LocalGraph,
    Propagation,
)
from recsys_cl.models.methods import (
    SGL,
    Contrast,
    ContrastiveMethod,
    LightGCNRec,
    MFRec,
    SGLAugmentation,
    SGLViews,
    SimGCL,
    XSimGCL,
)
from recsys_cl.models.neighbours import NeighbourPositives, top_k_cosine

__all__ = [
    "MF",
    "SGL",
    "Adjacency",
    "Batch",
    "Contrast",
    "ContrastiveMethod",
    "Encoder",
    "Graph",
    "LayerHook",
    "LightGCN",
    "LightGCNRec",
    "LocalGraph",
    "LossBreakdown",
    "MFRec",
    "NegativeSelector",
    "NeighbourPositives",
    "Propagation",
    "Recommender",
    "SGLAugmentation",
    "SGLViews",
    "SelectedNegatives",
    "SimGCL",
    "XSimGCL",
    "batch_info_nce",
    "top_k_cosine",
]
