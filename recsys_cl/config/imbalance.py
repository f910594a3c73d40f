"""The ``imbalance:`` block of a run config: which class-imbalance strategies train the model.

Every part defaults to "off", so an absent block is plain training (edge-uniform batches,
uniform negatives, unweighted BPR). Parts compose: weights multiply, the positive-edge and
negative samplers are independent, the hard-negative miner takes its candidates from the
negative sampler. Combinations that have no meaning are rejected at load with the reason.

```yaml
imbalance:
  weights: {propensity_gamma: 0.5, class_balanced_beta: null, w_min: 0.1, w_max: 10.0,
            label_threshold: null}
  loss: {kind: bpr, focal_gamma: 0.0}        # or {kind: softmax, tau: 0.2, logq: true}
  positives: {batches: edge, tail_beta: 0.0, item_cap: null}
  negatives:
    alpha: 0.0                               # P(j) ∝ pop_j^α
    hard: null                               # {kind: dns|mixgcf|ann, ...}
```
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Frozen


class WeightsConfig(Frozen):
    """Per-sample loss weights (recsys_cl.imbalance.weights); all off by default.

    ``propensity_gamma`` γ: inverse propensity w ∝ pop^-γ (0: off). ``class_balanced_beta``
    β: (1 - β) / (1 - β^n) (Cui et al., CVPR 2019; null: off). Both multiply, then are clipped
    to [w_min, w_max] and normalized to mean 1 over the training edges. ``label_threshold``:
    for a log with ratings, rows with rating ≥ threshold are positives and the rest explicit
    negatives, with class weights N / (2 N_y) from the label ratio (null: off).
    """

    propensity_gamma: float = Field(0.0, ge=0.0)
    class_balanced_beta: float | None = Field(None, ge=0.0, lt=1.0)
    w_min: float = Field(0.1, gt=0.0, le=1.0)
    w_max: float = Field(10.0, ge=1.0)
    label_threshold: float | None = None

    @property
    def item_weighted(self) -> bool:
        return self.propensity_gamma > 0 or self.class_balanced_beta is not None


class BPRLossConfig(Frozen):
    """BPR, optionally focal-modulated (Lin et al., ICCV 2017): -(1 - p)^γ log p."""

    kind: Literal["bpr"] = "bpr"
    focal_gamma: float = Field(0.0, ge=0.0)


class SoftmaxLossConfig(Frozen):
    """In-batch sampled softmax; ``logq`` subtracts log q_i, the item's in-batch sampling
    probability (Yi et al., RecSys 2019). The batch's positives are the only negatives."""

    kind: Literal["softmax"] = "softmax"
    tau: float = Field(0.2, gt=0.0)
    logq: bool = True
    focal_gamma: float = Field(0.0, ge=0.0)


LossConfig = Annotated[BPRLossConfig | SoftmaxLossConfig, Field(discriminator="kind")]


class PositivesConfig(Frozen):
    """Which (user, positive) rows an epoch trains on.

    ``batches``: ``edge`` (every training edge equally likely) or ``user`` (a user uniformly,
    then one of their items). ``tail_beta`` β: tail oversampling, P(edge u,i) ∝ pop_i^-β
    (0: off). ``item_cap``: head undersampling, at most this many rows per item per epoch.
    """

    batches: Literal["edge", "user"] = "edge"
    tail_beta: float = Field(0.0, ge=0.0)
    item_cap: int | None = Field(None, ge=1)


class DNSConfig(Frozen):
    """DNS (Zhang et al., SIGIR 2013): score ``candidates`` negatives with the current model,
    train on the top ``keep``."""

    kind: Literal["dns"] = "dns"
    candidates: int = Field(16, ge=2)
    keep: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _keep(self) -> DNSConfig:
        if self.keep >= self.candidates:
            raise ValueError(f"keep ({self.keep}) must be < candidates ({self.candidates})")
        return self


class MixGCFConfig(Frozen):
    """MixGCF (Huang et al., KDD 2021): synthesize one negative from ``candidates`` (32, the
    reference code's Alibaba setting; 16-64 there) by positive and hop mixing."""

    kind: Literal["mixgcf"] = "mixgcf"
    candidates: int = Field(32, ge=2)


class ANNConfig(Frozen):
    """ANN-mined negatives: ranks [rank_min, rank_max] of each user's nearest non-positive
    items under the current embeddings (FAISS inner product), rebuilt every
    ``rebuild_every`` epochs."""

    kind: Literal["ann"] = "ann"
    rank_min: int = Field(10, ge=1)
    rank_max: int = Field(100, ge=1)
    rebuild_every: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _ranks(self) -> ANNConfig:
        if self.rank_max < self.rank_min:
            raise ValueError(f"rank_max ({self.rank_max}) must be >= rank_min ({self.rank_min})")
        return self


HardNegativeConfig = Annotated[
    DNSConfig | MixGCFConfig | ANNConfig, Field(discriminator="kind")
]


class NegativesConfig(Frozen):
    """Negative sampling: ``alpha`` α of P(j) ∝ pop_j^α (0 uniform, 0.75 word2vec, 1
    popularity); ``hard`` an optional miner (DNS and MixGCF draw their candidates with α)."""

    alpha: float = Field(0.0, ge=0.0)
    hard: HardNegativeConfig | None = None

    @model_validator(mode="after")
    def _ann(self) -> NegativesConfig:
        if isinstance(self.hard, ANNConfig) and self.alpha != 0.0:
            raise ValueError("hard 'ann' draws its own negatives: alpha must stay 0")
        return self


class ImbalanceConfig(Frozen):
    """All class-imbalance strategies of a run (module docstring)."""

    weights: WeightsConfig = WeightsConfig()
    loss: LossConfig = Field(default_factory=BPRLossConfig)
    positives: PositivesConfig = PositivesConfig()
    negatives: NegativesConfig = NegativesConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_loss(cls, raw: object) -> object:
        # A loss section without ``kind`` (e.g. only focal_gamma) means BPR, not a union error.
        if isinstance(raw, dict) and isinstance(raw.get("loss"), dict):
            if "kind" not in raw["loss"]:
                raw = {**raw, "loss": {"kind": "bpr", **raw["loss"]}}
        return raw

    @model_validator(mode="after")
    def _combinations(self) -> ImbalanceConfig:
        if isinstance(self.loss, SoftmaxLossConfig):
            if self.negatives.alpha != 0.0 or self.negatives.hard is not None:
                raise ValueError(
                    "loss 'softmax' uses the batch's positives as negatives: negatives.alpha "
                    "and negatives.hard do not apply"
                )
            if self.weights.label_threshold is not None:
                raise ValueError(
                    "weights.label_threshold pairs explicit negatives with BPR: use loss 'bpr'"
                )
        if self.weights.label_threshold is not None and self.negatives.hard is not None:
            raise ValueError(
                "weights.label_threshold trains on explicit negatives; a hard-negative miner "
                "would replace them: use one or the other"
            )
        return self

    @property
    def num_negatives(self) -> int:
        """Negatives drawn per row: the miner's candidates, else 1."""
        hard = self.negatives.hard
        if isinstance(hard, (DNSConfig, MixGCFConfig)):
            return hard.candidates
        return 1
