"""SimGCL / XSimGCL embedding noise (Yu et al., SIGIR 2022, eq. 7; TKDE 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_cl.augment._random import rand


def simgcl_noise(emb: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    r"""Add sign-aligned uniform noise of norm ``eps`` to each row.

    :math:`e' = e + \epsilon \cdot \mathrm{sign}(e) \odot \omega / \lVert\omega\rVert_2`,
    :math:`\omega \sim U(0, 1)^D`. The noise keeps each row in its own hyperoctant (the sign
    alignment of SimGCL §4.1), so it rotates the embedding by a small angle instead of moving
    it arbitrarily. Rows with zero entries get no noise in those coordinates (sign 0), so their
    noise norm is below ``eps``.

    Args:
        emb: float [..., D].
        eps: noise radius, >= 0 (SimGCL's best: 0.1; XSimGCL's: 0.2).
        generator: source of ω; None uses the global RNG.

    Returns:
        float [..., D], a new tensor; ``emb`` is not modified. Differentiable w.r.t. ``emb``
        (the sign is piecewise constant, so the gradient passes straight through).
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    omega = rand(tuple(emb.shape), emb.device, generator, dtype=emb.dtype)
    return emb + torch.sign(emb) * F.normalize(omega, dim=-1) * eps
