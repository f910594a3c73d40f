"""Embedding regularizers."""

from __future__ import annotations

import torch
from torch import Tensor


def ego_l2(*tensors: Tensor, batch_size: int) -> Tensor:
    r"""L2 penalty on the batch's layer-0 (ego) embeddings, per batch sample.

    :math:`\frac{1}{2B}\sum_{t} \lVert t \rVert_F^2`, e.g. for BPR
    :math:`\frac{1}{2B}(\lVert E^0_u \rVert^2 + \lVert E^0_{i^+} \rVert^2
    + \lVert E^0_{i^-} \rVert^2)`
    over the B rows of the batch (negatives may be [B, M, D]). This is the regularizer of the
    LightGCN reference PyTorch code (gusye1234/LightGCN-PyTorch, ``BPRLoss``), used there with a
    weight of 1e-4; the caller multiplies by its weight. Other libraries differ: SELFRec
    uses unsquared norms, and on the propagated rather than ego embeddings for SimGCL/XSimGCL;
    weight decay on the whole table would also hit rows that are not in the batch.

    Args:
        tensors: float tensors of any shape (typically [B, D] or [B, M, D]).
        batch_size: B, the divisor.

    Returns:
        scalar.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if not tensors:
        raise ValueError("ego_l2 needs at least one tensor")
    total = torch.stack([t.pow(2).sum() for t in tensors]).sum()
    return 0.5 * total / batch_size
