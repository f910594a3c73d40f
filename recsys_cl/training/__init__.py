"""One trainer for every method, seeded vectorized sampling, resumable checkpoints."""

from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .hooks import EmbeddingsFn, EpochHook
from .plan import Sampling, Schedule
from .sampling import (
    EdgeSampler,
    EdgeUniformSampler,
    EpochEdges,
    EpochSample,
    NegativeSampler,
    PositiveSet,
    RejectionNegativeSampler,
    UniformNegativeSampler,
    sample_epoch,
)
from .stopping import EarlyStopping
from .trainer import FitResult, Trainer

__all__ = [
    "EarlyStopping",
    "EdgeSampler",
    "EdgeUniformSampler",
    "EmbeddingsFn",
    "EpochEdges",
    "EpochHook",
    "EpochSample",
    "FitResult",
    "NegativeSampler",
    "PositiveSet",
    "RejectionNegativeSampler",
    "Sampling",
    "Schedule",
    "TrainState",
    "Trainer",
    "UniformNegativeSampler",
    "load_checkpoint",
    "sample_epoch",
    "save_checkpoint",
]
