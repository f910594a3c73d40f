"""The one mapping from typed configs to library objects (no lookup by string): the method,
and the class-imbalance strategies that plug into the trainer and the method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recsys_cl.config import (
    ANNConfig,
    DNSConfig,
    ImbalanceConfig,
    MethodConfig,
    MixGCFConfig,
    SoftmaxLossConfig,
)
from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError
from recsys_cl.imbalance import (
    ANNNegativeSampler,
    DNSSelector,
    LabeledEdgeSampler,
    MixGCFSelector,
    PopularityNegativeSampler,
    ResampledEdgeSampler,
    item_loss_weights,
    item_popularity,
    label_ratio_weights,
)
from recsys_cl.losses import BPRObjective, InBatchSoftmaxObjective, RecObjective
from recsys_cl.models import NegativeSelector, Recommender
from recsys_cl.optional import require_faiss
from recsys_cl.training import (
    EdgeSampler,
    EdgeUniformSampler,
    EpochHook,
    NegativeSampler,
    Sampling,
    UniformNegativeSampler,
)


def build_method(
    model: MethodConfig,
    n_users: int,
    n_items: int,
    generator: torch.Generator | None = None,
    *,
    objective: RecObjective | None = None,
    negative_selector: NegativeSelector | None = None,
) -> Recommender:
    """Instantiate the configured method over ``n_users`` x ``n_items``; ``generator`` draws
    the initial embedding table; ``objective`` and ``negative_selector`` come from
    :func:`build_imbalance` (None: plain BPR on the drawn negatives). Each trained method's config
    model (``MethodConfig.build``) builds its own method, so a new method needs no entry
    here."""
    return model.build(
        n_users, n_items, generator, objective=objective, negative_selector=negative_selector
    )


@dataclass(frozen=True, eq=False)
class ImbalanceParts:
    """The objects an ``imbalance:`` block becomes, ready for the trainer and the method.

    ``sampling`` goes to the trainer as it is (``Trainer(sampling=parts.sampling)``);
    ``objective`` and ``negative_selector`` go to :func:`build_method`. ``summary`` describes
    them for ``metrics.json`` (weight range, class weights, ...).
    """

    sampling: Sampling
    objective: RecObjective
    negative_selector: NegativeSelector | None
    summary: dict[str, Any] = field(default_factory=dict)


def build_imbalance(
    cfg: ImbalanceConfig, train: UserItems, explicit_negatives: UserItems | None = None
) -> ImbalanceParts:
    """Map the ``imbalance:`` block onto samplers, weights, objective and selector.

    Args:
        cfg: the block.
        train: the training positives (popularity is counted on them).
        explicit_negatives: the labelled log's label-0 training pairs; required exactly when
            ``weights.label_threshold`` is set.
    """
    if train.nnz == 0:
        raise DataError("no training positives to learn from")
    summary: dict[str, Any] = {}
    popularity = item_popularity(train)
    w = cfg.weights

    pos = cfg.positives
    edge_sampler: EdgeSampler | None = None
    if pos.batches == "user" or pos.tail_beta > 0 or pos.item_cap is not None:
        edge_sampler = ResampledEdgeSampler(
            train,
            tail_beta=pos.tail_beta,
            item_cap=pos.item_cap,
            user_balanced=pos.batches == "user",
            popularity=popularity,
        )
    item_weights = None
    if w.item_weighted:
        weights = item_loss_weights(
            popularity,
            propensity_gamma=w.propensity_gamma,
            class_balanced_beta=w.class_balanced_beta,
            w_min=w.w_min,
            w_max=w.w_max,
            # Mean 1 over the rows an epoch actually holds (resampling shifts them).
            rows_per_item=None
            if edge_sampler is None
            else edge_sampler.item_marginal().numpy() * train.nnz,
        )
        item_weights = torch.from_numpy(weights).float()
        live = weights[popularity > 0]
        summary["item_weights"] = {"min": float(live.min()), "max": float(live.max())}

    if w.label_threshold is not None:
        if explicit_negatives is None:
            raise ValueError("weights.label_threshold needs explicit_negatives")
        labels = np.concatenate(
            [np.ones(train.nnz, dtype=bool), np.zeros(explicit_negatives.nnz, dtype=bool)]
        )
        class_weights = label_ratio_weights(labels)
        labeled = LabeledEdgeSampler(
            edge_sampler if edge_sampler is not None else EdgeUniformSampler(train),
            train,
            explicit_negatives,
            class_weights,
        )
        edge_sampler = labeled
        summary["label_classes"] = {
            "positive_rows": class_weights.n_positive,
            "negative_rows": class_weights.n_negative,
            "positive_weight": class_weights.positive,
            "negative_weight": class_weights.negative,
            "unpaired_negatives": labeled.n_unpaired,
        }
    elif explicit_negatives is not None:
        raise ValueError("explicit_negatives given but weights.label_threshold is not set")

    neg = cfg.negatives
    hooks: tuple[EpochHook, ...] = ()
    sampler: NegativeSampler
    if isinstance(neg.hard, ANNConfig):
        # Fail at start-up, not at epoch 1 after the data is prepared.
        require_faiss("imbalance.negatives.hard: ann")
        ann = ANNNegativeSampler(
            train, neg.hard.rank_min, neg.hard.rank_max, neg.hard.rebuild_every
        )
        sampler, hooks = ann, (ann,)
    elif neg.alpha > 0:
        sampler = PopularityNegativeSampler(train, popularity, neg.alpha)
    else:
        sampler = UniformNegativeSampler(train)

    selector: NegativeSelector | None = None
    if isinstance(neg.hard, DNSConfig):
        selector = DNSSelector(neg.hard.keep)
    elif isinstance(neg.hard, MixGCFConfig):
        selector = MixGCFSelector()

    objective: RecObjective
    if isinstance(cfg.loss, SoftmaxLossConfig):
        log_q = None
        if cfg.loss.logq:
            marginal = (edge_sampler or EdgeUniformSampler(train)).item_marginal()
            # An item no row ever holds is never an in-batch candidate; its entry is unused.
            log_q = torch.log(marginal.clamp_min(torch.finfo(torch.float64).tiny)).float()
        objective = InBatchSoftmaxObjective(
            cfg.loss.tau,
            item_log_q=log_q,
            positives=(
                torch.from_numpy(np.ascontiguousarray(train.indptr, dtype=np.int64)),
                torch.from_numpy(np.ascontiguousarray(train.indices, dtype=np.int64)),
            ),
            n_items=train.n_items,
            focal_gamma=cfg.loss.focal_gamma,
        )
    else:
        objective = BPRObjective(cfg.loss.focal_gamma)

    return ImbalanceParts(
        sampling=Sampling(
            num_negatives=cfg.num_negatives,
            sampler=sampler,
            edge_sampler=edge_sampler,
            item_weights=item_weights,
            epoch_hooks=hooks,
        ),
        objective=objective,
        negative_selector=selector,
        summary=summary,
    )
