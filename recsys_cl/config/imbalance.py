"""The ``imbalance:`` block of a run config: which class-imbalance strategies train the model.

Every part defaults to "off", so an absent block is plain training (edge-uniform batches,
uniform negatives, unweighted BPR). Parts compose: weights multiply, the positive-edge and
negative samplers are independent, the hard-negative miner takes its candidates from the
negative sampler. Combinations that have no meaning are rejected at load with the reason.

```yaml
imbalance:
  weights: {propensity_gamma: 0.5, class_balanced_beta: null, w_min: 0.1, w_max: 10.0,
            label_threshold: null}
  loss: {kind: bpr, focal_gamma: 0.0}        # or {kind: softmax, tau: 0.2, logq: true},
                                             # {kind: ssm, ...}, {kind: directau, gamma: 1.0},
                                             # {kind: ccl, negatives: 10, margin: 0.9, ...}
  positives: {batches: edge, tail_beta: 0.0, item_cap: null}
  negatives:
    alpha: 0.0                               # P(j) ∝ pop_j^α
    hard: null                               # {kind: dns|mixgcf|ann, ...}
```

Each part's config model builds its own objects (``build``), as a method's does; the library is
imported when a part is built, not when a config is read. :func:`recsys_cl.jobs.stages.build.
build_imbalance` only puts the parts together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import Frozen

if TYPE_CHECKING:
    import numpy as np
    import torch

    from recsys_cl.data.user_items import UserItems
    from recsys_cl.losses import RecObjective
    from recsys_cl.models import NegativeSelector
    from recsys_cl.training import EdgeSampler, EpochHook, NegativeSampler


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

    def item_weights(
        self, popularity: np.ndarray, rows_per_item: np.ndarray | None
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """Per-item loss weights (None when off) and their range for ``metrics.json``;
        ``rows_per_item``: the expected rows of each item in an epoch, where resampling
        shifts them (the weights have mean 1 over the rows an epoch actually holds)."""
        if not self.item_weighted:
            return None, {}
        import torch

        from recsys_cl.imbalance import item_loss_weights

        weights = item_loss_weights(
            popularity,
            propensity_gamma=self.propensity_gamma,
            class_balanced_beta=self.class_balanced_beta,
            w_min=self.w_min,
            w_max=self.w_max,
            rows_per_item=rows_per_item,
        )
        live = weights[popularity > 0]
        summary = {"item_weights": {"min": float(live.min()), "max": float(live.max())}}
        return torch.from_numpy(weights).float(), summary

    def label_sampler(
        self,
        base: EdgeSampler | None,
        train: UserItems,
        explicit_negatives: UserItems | None,
    ) -> tuple[EdgeSampler | None, dict[str, Any]]:
        """With ``label_threshold``: ``base`` (else edge-uniform batches) with the explicit
        negatives paired in and class-weighted, and the classes for ``metrics.json``; without
        it, ``base`` unchanged."""
        if self.label_threshold is None:
            if explicit_negatives is not None:
                raise ValueError("explicit_negatives given but weights.label_threshold is not set")
            return base, {}
        if explicit_negatives is None:
            raise ValueError("weights.label_threshold needs explicit_negatives")
        import numpy as np

        from recsys_cl.imbalance import LabeledEdgeSampler, label_ratio_weights
        from recsys_cl.training import EdgeUniformSampler

        labels = np.concatenate(
            [np.ones(train.nnz, dtype=bool), np.zeros(explicit_negatives.nnz, dtype=bool)]
        )
        class_weights = label_ratio_weights(labels)
        labeled = LabeledEdgeSampler(
            base if base is not None else EdgeUniformSampler(train),
            train,
            explicit_negatives,
            class_weights,
        )
        summary = {
            "label_classes": {
                "positive_rows": class_weights.n_positive,
                "negative_rows": class_weights.n_negative,
                "positive_weight": class_weights.positive,
                "negative_weight": class_weights.negative,
                "unpaired_negatives": labeled.n_unpaired,
            }
        }
        return labeled, summary


class BPRLossConfig(Frozen):
    """BPR, optionally focal-modulated (Lin et al., ICCV 2017): -(1 - p)^γ log p."""

    kind: Literal["bpr"] = "bpr"
    focal_gamma: float = Field(0.0, ge=0.0)

    def build(self, train: UserItems, item_marginal: torch.Tensor) -> RecObjective:
        """The objective (``train`` and ``item_marginal`` are the softmax's concern)."""
        del train, item_marginal
        from recsys_cl.losses import BPRObjective

        return BPRObjective(self.focal_gamma)


class SoftmaxLossConfig(Frozen):
    """In-batch sampled softmax; ``logq`` subtracts log q_i, the item's in-batch sampling
    probability (Yi et al., RecSys 2019). The batch's positives are the only negatives."""

    kind: Literal["softmax"] = "softmax"
    tau: float = Field(0.2, gt=0.0)
    logq: bool = True
    focal_gamma: float = Field(0.0, ge=0.0)

    def build(self, train: UserItems, item_marginal: torch.Tensor) -> RecObjective:
        """The objective over ``train``'s positives; ``item_marginal``: each item's share of
        an epoch's rows, the in-batch sampling probability log q corrects for."""
        import numpy as np
        import torch

        from recsys_cl.losses import InBatchSoftmaxObjective

        log_q = None
        if self.logq:
            # An item no row ever holds is never an in-batch candidate; its entry is unused.
            tiny = torch.finfo(torch.float64).tiny
            log_q = torch.log(item_marginal.clamp_min(tiny)).float()
        return InBatchSoftmaxObjective(
            self.tau,
            item_log_q=log_q,
            positives=(
                torch.from_numpy(np.ascontiguousarray(train.indptr, dtype=np.int64)),
                torch.from_numpy(np.ascontiguousarray(train.indices, dtype=np.int64)),
            ),
            n_items=train.n_items,
            focal_gamma=self.focal_gamma,
        )


class SampledSoftmaxLossConfig(Frozen):
    """Sampled softmax (SSM, Wu et al., TOIS 2024): each row's positive against the batch's
    B x ``negatives`` uniformly drawn items (shared by the rows; a row's own training
    positives masked), on cosine similarity (``cosine``) at temperature ``tau``."""

    kind: Literal["ssm"] = "ssm"
    negatives: int = Field(1, ge=1)
    tau: float = Field(0.1, gt=0.0)
    cosine: bool = True

    def build(self, train: UserItems, item_marginal: torch.Tensor) -> RecObjective:
        """The objective over ``train``'s positives (uniform draws need no log q:
        ``item_marginal`` is unused)."""
        del item_marginal
        import numpy as np
        import torch

        from recsys_cl.losses import SampledSoftmaxObjective

        return SampledSoftmaxObjective(
            self.tau,
            positives=(
                torch.from_numpy(np.ascontiguousarray(train.indptr, dtype=np.int64)),
                torch.from_numpy(np.ascontiguousarray(train.indices, dtype=np.int64)),
            ),
            n_items=train.n_items,
            cosine=self.cosine,
        )


class DirectAULossConfig(Frozen):
    """DirectAU (Wang et al., KDD 2022): alignment of each (user, positive) pair plus
    ``gamma`` γ x the uniformity of the batch's users and items, on L2-normalized embeddings;
    no negatives. γ 1 is the reference code's default (it searches 0.01-10). ``distinct``:
    uniformity over the batch's distinct users and items, each once (true), or over its rows
    as they come, as the reference code does, so popular items weigh more (false)."""

    kind: Literal["directau"] = "directau"
    gamma: float = Field(1.0, ge=0.0)
    distinct: bool = True

    def build(self, train: UserItems, item_marginal: torch.Tensor) -> RecObjective:
        """The objective (it reads neither ``train`` nor ``item_marginal``)."""
        del train, item_marginal
        from recsys_cl.losses import DirectAUObjective

        return DirectAUObjective(self.gamma, distinct=self.distinct)


class CosineContrastiveLossConfig(Frozen):
    """SimpleX's cosine contrastive loss (CCL; Mao et al., CIKM 2021): 1 - cos(user,
    positive) plus ``negative_weight`` w x the mean over the row's ``negatives`` drawn items
    of max(0, cos(user, negative) - ``margin``). m 0.9 and w 150 are common SimpleX settings
    (there with 1,000 negatives on a GPU). Each row gathers its own ``negatives``: on one CPU
    core shared with another job an ML-100K epoch took about 4 s with 10 and 45 s with 100
    (BPR alone: 0.9 s), hence 10."""

    kind: Literal["ccl"] = "ccl"
    negatives: int = Field(10, ge=1)
    margin: float = Field(0.9, ge=-1.0, lt=1.0)
    negative_weight: float = Field(150.0, ge=0.0)

    def build(self, train: UserItems, item_marginal: torch.Tensor) -> RecObjective:
        """The objective (it reads neither ``train`` nor ``item_marginal``)."""
        del train, item_marginal
        from recsys_cl.losses import CosineContrastiveObjective

        return CosineContrastiveObjective(self.margin, self.negative_weight)


LossConfig = Annotated[
    BPRLossConfig
    | SoftmaxLossConfig
    | SampledSoftmaxLossConfig
    | DirectAULossConfig
    | CosineContrastiveLossConfig,
    Field(discriminator="kind"),
]


class PositivesConfig(Frozen):
    """Which (user, positive) rows an epoch trains on.

    ``batches``: ``edge`` (every training edge equally likely) or ``user`` (a user uniformly,
    then one of their items). ``tail_beta`` β: tail oversampling, P(edge u,i) ∝ pop_i^-β
    (0: off). ``item_cap``: head undersampling, at most this many rows per item per epoch.
    """

    batches: Literal["edge", "user"] = "edge"
    tail_beta: float = Field(0.0, ge=0.0)
    item_cap: int | None = Field(None, ge=1)

    def build(self, train: UserItems, popularity: np.ndarray) -> EdgeSampler | None:
        """The resampled edge sampler, or None for the trainer's edge-uniform batches."""
        if self.batches == "edge" and self.tail_beta == 0 and self.item_cap is None:
            return None
        from recsys_cl.imbalance import ResampledEdgeSampler

        return ResampledEdgeSampler(
            train,
            tail_beta=self.tail_beta,
            item_cap=self.item_cap,
            user_balanced=self.batches == "user",
            popularity=popularity,
        )


class HardNegativeMiner(Frozen):
    """Base of the ``negatives.hard`` miners. A miner either picks among candidates the
    negative sampler draws, with the model (:meth:`selector`, ``candidates`` per row), or
    draws the negatives itself (:meth:`sampler`); the defaults do neither."""

    @property
    def negatives_per_row(self) -> int:
        """Negatives the sampler draws per row for this miner."""
        return 1

    def selector(self) -> NegativeSelector | None:
        """The selector that picks a row's negative among its candidates, if this miner does."""
        return None

    def sampler(self, train: UserItems) -> tuple[NegativeSampler, tuple[EpochHook, ...]] | None:
        """The sampler that draws the negatives (and its epoch hooks), if this miner does."""
        del train
        return None


class DNSConfig(HardNegativeMiner):
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

    @property
    def negatives_per_row(self) -> int:
        return self.candidates

    def selector(self) -> NegativeSelector:
        from recsys_cl.imbalance import DNSSelector

        return DNSSelector(self.keep)


class MixGCFConfig(HardNegativeMiner):
    """MixGCF (Huang et al., KDD 2021): synthesize one negative from ``candidates`` (32, the
    reference code's Alibaba setting; 16-64 there) by positive and hop mixing."""

    kind: Literal["mixgcf"] = "mixgcf"
    candidates: int = Field(32, ge=2)

    @property
    def negatives_per_row(self) -> int:
        return self.candidates

    def selector(self) -> NegativeSelector:
        from recsys_cl.imbalance import MixGCFSelector

        return MixGCFSelector()


class ANNConfig(HardNegativeMiner):
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

    def sampler(self, train: UserItems) -> tuple[NegativeSampler, tuple[EpochHook, ...]]:
        """The sampler, which is also its epoch hook (it mines again every ``rebuild_every``)."""
        from recsys_cl.imbalance import ANNNegativeSampler
        from recsys_cl.optional import require_faiss

        # Fail at start-up, not at epoch 1 after the data is prepared.
        require_faiss("imbalance.negatives.hard: ann")
        ann = ANNNegativeSampler(train, self.rank_min, self.rank_max, self.rebuild_every)
        return ann, (ann,)


HardNegativeConfig = Annotated[DNSConfig | MixGCFConfig | ANNConfig, Field(discriminator="kind")]


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

    def sampler(
        self, train: UserItems, popularity: np.ndarray
    ) -> tuple[NegativeSampler, tuple[EpochHook, ...]]:
        """The sampler that draws each row's negatives, and the epoch hooks it needs."""
        if self.hard is not None and (own := self.hard.sampler(train)) is not None:
            return own
        if self.alpha > 0:
            from recsys_cl.imbalance import PopularityNegativeSampler

            return PopularityNegativeSampler(train, popularity, self.alpha), ()
        from recsys_cl.training import UniformNegativeSampler

        return UniformNegativeSampler(train), ()

    def selector(self) -> NegativeSelector | None:
        """The miner that picks among the drawn candidates with the model (DNS, MixGCF)."""
        return None if self.hard is None else self.hard.selector()


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
        if isinstance(self.loss, SoftmaxLossConfig) and (
            self.negatives.alpha != 0.0 or self.negatives.hard is not None
        ):
            raise ValueError(
                "loss 'softmax' uses the batch's positives as negatives: negatives.alpha "
                "and negatives.hard do not apply"
            )
        if isinstance(self.loss, DirectAULossConfig) and (
            self.negatives.alpha != 0.0 or self.negatives.hard is not None
        ):
            raise ValueError(
                "loss 'directau' uses no negatives: negatives.alpha and negatives.hard "
                "do not apply"
            )
        if isinstance(self.loss, CosineContrastiveLossConfig) and self.negatives.hard is not None:
            raise ValueError(
                "loss 'ccl' averages over all its drawn negatives: negatives.hard does not apply"
            )
        if self.weights.label_threshold is not None and isinstance(
            self.loss, SoftmaxLossConfig | DirectAULossConfig | CosineContrastiveLossConfig
        ):
            raise ValueError(
                "weights.label_threshold pairs explicit negatives with BPR: use loss 'bpr'"
            )
        if isinstance(self.loss, SampledSoftmaxLossConfig) and (
            self.negatives.alpha != 0.0 or self.negatives.hard is not None
        ):
            raise ValueError(
                "loss 'ssm' draws its negatives uniformly (no logQ correction): "
                "negatives.alpha and negatives.hard do not apply"
            )
        if self.weights.label_threshold is not None and self.negatives.hard is not None:
            raise ValueError(
                "weights.label_threshold trains on explicit negatives; a hard-negative miner "
                "would replace them: use one or the other"
            )
        return self

    @property
    def num_negatives(self) -> int:
        """Negatives drawn per row: the sampled softmax's or CCL's, the miner's candidates,
        else 1."""
        if isinstance(self.loss, SampledSoftmaxLossConfig | CosineContrastiveLossConfig):
            return self.loss.negatives
        hard = self.negatives.hard
        return 1 if hard is None else hard.negatives_per_row
