"""Epoch hooks: the explicit way a sampler that needs the current model gets it.

Model-aware negative samplers (ANN-mined negatives) must see the model as it is now, and their
state (a neighbour table built from an earlier epoch's embeddings) must survive a resume. The
trainer calls every hook at the start of each epoch, before the epoch's rows and negatives are
drawn, and stores each hook's ``state_dict`` in the checkpoint next to the generators, so a run
killed and resumed draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor

#: Lazily computes the current clean (no noise, no augmentation) embeddings, user [U, D] and
#: item [I, D], under ``torch.no_grad``; a hook that does not need them this epoch never pays
#: for the propagation.
EmbeddingsFn = Callable[[], tuple[Tensor, Tensor]]


class EpochHook(Protocol):
    """Called by the trainer at the start of every epoch (1-based ``epoch``)."""

    def on_epoch_start(self, epoch: int, embeddings: EmbeddingsFn) -> None: ...

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors that, loaded back, restore the hook exactly (written to checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...
