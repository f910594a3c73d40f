r"""Alignment and uniformity on the unit hypersphere (Wang & Isola, ICML 2020), the two terms
of DirectAU (Wang et al., "Towards Representation Alignment and Uniformity in Collaborative
Filtering", KDD 2022).

Every row is L2-normalized first, :math:`\hat x = x / \lVert x \rVert`; shapes: ``x``, ``y``
[B, D], optional ``weights`` [B].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_cl.losses._reduce import weighted_mean

#: t of the uniformity kernel exp(-t ||x - y||²): 2, as in Wang & Isola (ICML 2020) and DirectAU.
UNIFORMITY_T = 2.0


def alignment_loss(x: Tensor, y: Tensor, weights: Tensor | None = None) -> Tensor:
    r"""Alignment of positive pairs, mean reduction:
    :math:`\ell_b = \lVert \hat x_b - \hat y_b \rVert^2 = 2 - 2\,\hat x_b \cdot \hat y_b`
    (DirectAU eq. 5, exponent α = 2). 0 for pairs pointing the same way, 4 for opposite ones.
    Returns a scalar.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must be equal [B, D], got {tuple(x.shape)}, {tuple(y.shape)}")
    per_pair = (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).pow(2).sum(dim=-1)
    return weighted_mean(per_pair, weights)


def uniformity_loss(x: Tensor, weights: Tensor | None = None, t: float = UNIFORMITY_T) -> Tensor:
    r"""Uniformity of a set of distinct rows ``x`` [n, D]: the log of the mean Gaussian
    potential over its n(n - 1) ordered pairs a ≠ b,
    :math:`\log \frac{\sum_{a \ne b} w_a w_b\, e^{-t \lVert \hat x_a - \hat x_b \rVert^2}}
    {\sum_{a \ne b} w_a w_b}` (DirectAU eq. 6; all w = 1 without ``weights``), computed with
    ``logsumexp`` on the [n, n] Gram matrix (:math:`\lVert \hat x_a - \hat x_b \rVert^2 = 2 - 2
    \hat x_a \cdot \hat x_b`). It lies in [-4t, 0]: 0 when every row points the same way, lower
    the more evenly they spread. The caller de-duplicates: a repeated row would be a pair at
    distance 0. Fewer than two rows have no pair and give 0.

    Args:
        x: float [n, D], one row per distinct user (or item).
        weights: optional float [n], each row's weight (> 0); a pair weighs w_a w_b.
        t: the kernel's scale > 0.

    Returns:
        scalar.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be [n, D], got {tuple(x.shape)}")
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    n = x.size(0)
    if n < 2:
        return x.new_zeros(())
    z = F.normalize(x, dim=-1)
    logits = -t * (2.0 - 2.0 * (z @ z.T))
    log_norm: float | Tensor
    if weights is None:
        log_norm = math.log(n * (n - 1))
    else:
        if weights.shape != (n,):
            raise ValueError(f"weights must be [{n}], got {tuple(weights.shape)}")
        w = weights.to(logits.dtype)
        log_w = torch.log(w)
        logits = logits + log_w.unsqueeze(1) + log_w.unsqueeze(0)
        # Σ_{a≠b} w_a w_b = (Σ w)² - Σ w².
        log_norm = torch.log(w.sum().square() - w.square().sum())
    diagonal = torch.eye(n, dtype=torch.bool, device=x.device)
    return torch.logsumexp(logits.masked_fill(diagonal, float("-inf")).flatten(), dim=0) - log_norm
