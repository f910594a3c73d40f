"""One trainer for every method, seeded vectorized sampling, resumable checkpoints."""

from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .sampling import EpochSample, NegativeSampler, UniformNegativeSampler, sample_epoch
from .trainer import FitResult, Trainer

__all__ = [
    "EpochSample",
    "FitResult",
    "NegativeSampler",
    "TrainState",
    "Trainer",
    "UniformNegativeSampler",
    "load_checkpoint",
    "sample_epoch",
    "save_checkpoint",
]
