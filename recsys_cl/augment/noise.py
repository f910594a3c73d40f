"""SimGCL / XSimGCL embedding noise (Yu et al., SIGIR 2022, eq. 7; TKDE 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys_cl.rng import rand

# F.normalize's default floor on a row norm: _noise divides as F.normalize does.
_NORM_FLOOR = 1e-12


def _noise(emb: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    r""":math:`\epsilon \cdot \mathrm{sign}(e) \odot \omega / \lVert\omega\rVert_2` for each row
    of ``emb`` [..., D], :math:`\omega \sim U(0, 1)^D` drawn from ``generator``: the noise
    :func:`simgcl_noise` adds, as a constant (no autograd history).

    The same values as ``torch.sign(emb) * F.normalize(omega, dim=-1) * eps`` (the same
    operations in the same order, in place in ω's buffer), but one [..., D] temporary instead
    of four, and nothing for backward to go through: the sign is piecewise constant, so its
    branch of the graph only ever carried zeros (on Gowalla, two [N, D] products, a zero fill
    and an add per noisy layer and step).
    """
    with torch.no_grad():
        noise = rand(tuple(emb.shape), emb.device, generator, dtype=emb.dtype)
        noise.div_(torch.linalg.vector_norm(noise, dim=-1, keepdim=True).clamp_min_(_NORM_FLOOR))
        return noise.mul_(torch.sign(emb)).mul_(eps)


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
    return emb + _noise(emb, eps, generator)


class SimGCLNoise:
    """An encoder layer hook (``Encoder.forward(perturb=...)``) adding :func:`simgcl_noise`.

    Every layer output the encoder computes gets noise of radius ``eps`` (SimGCL eq. 7), drawn
    from ``generator`` layer by layer in pass order. With ``keep_layer`` = l*, that layer's
    noisy output [n, D] is also kept in :attr:`kept` (XSimGCL's cross-layer view, eq. 8), so
    use one hook per pass.

    Args:
        eps: noise radius, > 0.
        generator: source of the noise; None uses the global RNG.
        keep_layer: the layer whose output to keep, or None.
    """

    def __init__(
        self, eps: float, generator: torch.Generator | None, keep_layer: int | None = None
    ) -> None:
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = eps
        self.generator = generator
        self.keep_layer = keep_layer
        self.kept: Tensor | None = None

    def __call__(self, layer: int, x: Tensor) -> Tensor:
        x = simgcl_noise(x, self.eps, self.generator)
        if layer == self.keep_layer:
            self.kept = x
        return x
