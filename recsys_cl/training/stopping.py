"""When to stop training: patience that survives the contrastive dip.

Contrastive methods (SGL, SimGCL, XSimGCL) learn in two phases: the recommendation loss lifts the
validation metric for a few hundred optimizer steps, then the contrastive term spreads the
embeddings out and the metric falls — sometimes below most-popular — before it climbs again,
often far past its early peak. Plain patience counted from the first evaluation stops in that
dip. The rule here stops only when all four hold:

1. at least ``min_steps`` optimizer steps were taken (the dip's length is a matter of steps,
   not epochs: its bottom came after ~800 steps on Gowalla, ~400 on a planted log and ~1,400
   on ML-100K with XSimGCL; see ``benchmarks/RESULTS.md`` § Stopping);
2. ``patience`` evaluations have passed without a new best score;
3. the curve is not recovering: since its lowest point after the best, it has not climbed by
   more than ``recovery`` x best within the last ``patience`` evaluations;
4. some evaluation has beaten ``baseline`` (the most-popular model's score where the epoch is
   selected): stopping a model that is still worse than the trivial one saves time only to
   hand over a useless model, so such a run trains its whole budget.

With ``patience`` 0 training runs the whole epoch budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EarlyStopping:
    """The stopping rule (see the module docstring).

    Attributes:
        patience: evaluations without a new best before stopping may happen; 0 disables
            early stopping.
        min_steps: optimizer steps before stopping may happen.
        recovery: a climb of more than ``recovery`` x best score from the lowest point after
            the best, made within the last ``patience`` evaluations, keeps training going.
        baseline: a score some evaluation must beat before stopping may happen (None: none).
    """

    patience: int = 10
    min_steps: int = 0
    recovery: float = 0.0
    baseline: float | None = None

    def __post_init__(self) -> None:
        if self.patience < 0 or self.min_steps < 0 or self.recovery < 0:
            raise ValueError(f"stopping settings must be >= 0, got {self}")

    def should_stop(self, scores: Sequence[float], steps: int) -> bool:
        """Whether to stop after evaluations ``scores`` (oldest first) and ``steps`` steps."""
        if self.patience == 0 or not scores or steps < self.min_steps:
            return False
        best = best_index(scores)
        if len(scores) - 1 - best < self.patience:
            return False
        if self.baseline is not None and scores[best] <= self.baseline:
            return False
        return not self.recovering(scores, best)

    def recovering(self, scores: Sequence[float], best: int | None = None) -> bool:
        """Whether the curve is climbing back from a dip after its best evaluation."""
        if self.recovery == 0.0:
            return False
        best = best_index(scores) if best is None else best
        after = scores[best:]
        trough = min(range(len(after)), key=after.__getitem__)
        since = after[trough:]
        high = best_index(since)
        climbed = since[high] - since[0] > self.recovery * abs(scores[best])
        return climbed and len(since) - 1 - high < self.patience


def best_index(scores: Sequence[float]) -> int:
    """Index of the first best score (a later equal score is not an improvement)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
