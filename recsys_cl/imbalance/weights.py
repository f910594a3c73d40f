r"""Per-sample loss weights against popularity and label imbalance.

The trainer turns an item's weight into ``Batch.weights`` for every row whose positive is that
item; every loss that sums over samples applies it (BPR, softmax, InfoNCE; see
:func:`recsys_cl.losses._reduce.weighted_mean`, which divides by B, so the weights' mean is the
loss's scale). Weights are therefore normalized to mean 1 **over the training edges** (the rows
an edge-uniform epoch sees): :math:`\sum_i n_i w_i / \sum_i n_i = 1`, with n_i the item's
training popularity, so reweighting changes which samples dominate, not the learning rate.

Shapes: I items; ``popularity`` int [I] (training interactions per item, see
:func:`item_popularity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cl.data.user_items import UserItems

# Bisection steps on log c: the bracket below spans 2**±60, so 200 halvings reach float64
# resolution; the final scale is then solved exactly on the converged clip pattern.
_BISECTION_STEPS = 200
_LOG_BRACKET = 60.0 * np.log(2.0)


def item_popularity(train: UserItems) -> np.ndarray:
    """Training interactions per item, int64 [I]."""
    return np.bincount(train.indices, minlength=train.n_items).astype(np.int64)


def user_activity(train: UserItems) -> np.ndarray:
    """Training interactions per user, int64 [U]."""
    return train.counts().astype(np.int64)


def _check_clip(w_min: float, w_max: float) -> None:
    if not 0.0 < w_min <= 1.0 <= w_max:
        raise ValueError(
            f"the clip range must satisfy 0 < w_min <= 1 <= w_max (a mean of 1 must fit inside), "
            f"got [{w_min}, {w_max}]"
        )


def normalize_clipped(
    raw: np.ndarray, counts: np.ndarray, w_min: float, w_max: float
) -> np.ndarray:
    r"""Scale and clip raw weights to a sample-weighted mean of exactly 1 inside [w_min, w_max].

    Returns :math:`w_i = \mathrm{clip}(c \cdot r_i, w_{min}, w_{max})` with the one scale
    c > 0 for which :math:`\sum_i n_i w_i / \sum_i n_i = 1`. Clipping after a plain
    normalization would break the mean, normalizing after clipping would break the clip; the
    mean is monotone in c, so c is found by bisection and then solved exactly on the clip
    pattern it converged to. Needs :math:`0 < w_{min} \le 1 \le w_{max}`.

    Args:
        raw: float [I], positive and finite where ``counts`` > 0.
        counts: int [I], the samples of each item (weights of items with no sample are still
            returned, clipped, but do not enter the mean).
        w_min, w_max: the clip.

    Returns:
        float64 [I].
    """
    _check_clip(w_min, w_max)
    raw = np.asarray(raw, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    if raw.shape != n.shape:
        raise ValueError(f"raw {raw.shape} and counts {n.shape} differ in shape")
    live = n > 0
    if not live.any():
        return np.ones_like(raw)
    if not (np.isfinite(raw[live]).all() and (raw[live] > 0).all()):
        raise ValueError("raw weights must be positive and finite for every item with samples")
    r, cnt, total = raw[live], n[live], n[live].sum()
    # Centre the bracket on the scale that gives an unclipped mean of 1.
    log_c0 = -np.log((cnt * r).sum() / total)

    def mean_at(log_c: float) -> float:
        return float((cnt * np.clip(np.exp(log_c) * r, w_min, w_max)).sum() / total)

    lo, hi = log_c0 - _LOG_BRACKET, log_c0 + _LOG_BRACKET
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if mean_at(mid) < 1.0:
            lo = mid
        else:
            hi = mid
    c = np.exp(0.5 * (lo + hi))
    scaled = c * r
    low, high = scaled <= w_min, scaled >= w_max
    free = ~(low | high)
    if free.any():
        # mean = (n_low * w_min + n_high * w_max + c * sum_free(n r)) / N = 1, solved for c.
        fixed = (cnt[low] * w_min).sum() + (cnt[high] * w_max).sum()
        c = (total - fixed) / (cnt[free] * r[free]).sum()
    return np.clip(c * np.maximum(raw, np.finfo(np.float64).tiny), w_min, w_max)


def inverse_propensity_weights(
    popularity: np.ndarray, gamma: float, *, w_min: float, w_max: float
) -> np.ndarray:
    r"""Inverse-propensity item weights :math:`w_i \propto n_i^{-\gamma}`, clipped to
    [w_min, w_max] and normalized to mean 1 over the training edges (:func:`normalize_clipped`).

    The propensity of observing an interaction with item i is taken as its popularity to the
    power γ (γ = 0: all ones; γ = 1: full inverse popularity, usually too noisy unclipped).
    Items with no training interaction are treated as having one. Returns float64 [I].
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    pop = np.maximum(np.asarray(popularity, dtype=np.float64), 1.0)
    return normalize_clipped(pop ** (-gamma), popularity, w_min, w_max)


def class_balanced_weights(
    popularity: np.ndarray, beta: float, *, w_min: float, w_max: float
) -> np.ndarray:
    r"""Class-balanced item weights by the effective number of samples (Cui et al., CVPR 2019).

    Each item is a class with :math:`n_i` samples; its effective number is
    :math:`E_{n_i} = (1 - \beta^{n_i}) / (1 - \beta)` and its weight
    :math:`w_i \propto 1 / E_{n_i} = (1 - \beta) / (1 - \beta^{n_i})`, clipped and normalized
    to mean 1 over the training edges. β = 0 gives equal weights, β → 1 inverse frequency;
    the paper uses β ∈ {0.9, 0.99, 0.999, 0.9999}. Returns float64 [I].
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    return normalize_clipped(_class_balanced_raw(popularity, beta), popularity, w_min, w_max)


def _class_balanced_raw(popularity: np.ndarray, beta: float) -> np.ndarray:
    n = np.maximum(np.asarray(popularity, dtype=np.float64), 1.0)
    # 1 - β^n computed as -expm1(n log β): exact for β near 1, where β^n is close to 1.
    return (1.0 - beta) / -np.expm1(n * np.log(beta)) if beta > 0 else np.ones_like(n)


def item_loss_weights(
    popularity: np.ndarray,
    *,
    propensity_gamma: float = 0.0,
    class_balanced_beta: float | None = None,
    w_min: float,
    w_max: float,
    rows_per_item: np.ndarray | None = None,
) -> np.ndarray:
    """Inverse propensity and class-balanced weights combined: the product of both raw
    weights, clipped and normalized once to mean 1 over an epoch's rows. Either alone is
    :func:`inverse_propensity_weights` / :func:`class_balanced_weights`. Returns float64 [I].

    ``rows_per_item`` is how many rows of an epoch hold each item (default: the popularity,
    i.e. every training edge once). A resampling edge sampler changes it, and the weights
    must average 1 over the rows actually trained on, or the recommendation term grows against
    the regularizer and contrastive terms and the tail is corrected twice.
    """
    if not propensity_gamma >= 0:
        raise ValueError(f"propensity_gamma must be >= 0, got {propensity_gamma}")
    pop = np.maximum(np.asarray(popularity, dtype=np.float64), 1.0)
    raw = pop ** (-propensity_gamma)
    if class_balanced_beta is not None:
        if not 0.0 <= class_balanced_beta < 1.0:
            raise ValueError(f"class_balanced_beta must be in [0, 1), got {class_balanced_beta}")
        raw = raw * _class_balanced_raw(popularity, class_balanced_beta)
    counts = popularity if rows_per_item is None else rows_per_item
    return normalize_clipped(raw, counts, w_min, w_max)


@dataclass(frozen=True)
class ClassWeights:
    """Loss weights of the two label classes of a labelled log (see :func:`label_ratio_weights`)."""

    positive: float
    negative: float
    n_positive: int
    n_negative: int


def label_ratio_weights(labels: np.ndarray) -> ClassWeights:
    r"""Balanced class weights from the label ratio: :math:`w_y = N / (2 N_y)`.

    For a log with an explicit binary label (a click, a rating above a threshold), each class
    then carries half of the total weight whatever its share, and the weights have mean 1 over
    the N rows: :math:`(N_1 w_1 + N_0 w_0) / N = 1` (King & Zeng 2001's prior correction; the
    "balanced" weights of scikit-learn). A class with no row gets weight 1 and the other 1 too.

    Args:
        labels: bool [N] (True: positive).
    """
    y = np.asarray(labels, dtype=bool)
    n, n_pos = y.size, int(y.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return ClassWeights(1.0, 1.0, n_pos, n_neg)
    return ClassWeights(n / (2.0 * n_pos), n / (2.0 * n_neg), n_pos, n_neg)
