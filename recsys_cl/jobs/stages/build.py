"""Typed configs to library objects: the method, and the class-imbalance strategies that plug
into the trainer and the method. Each config model builds its own objects (``build``); this
module only puts them together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from recsys_cl.config import ImbalanceConfig, MethodConfig
from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError
from recsys_cl.imbalance import item_popularity
from recsys_cl.losses import RecObjective
from recsys_cl.models import NegativeSelector, Recommender
from recsys_cl.training import EdgeUniformSampler, Sampling


def build_method(
    model: MethodConfig,
    n_users: int,
    n_items: int,
    generator: torch.Generator | None = None,
    *,
    objective: RecObjective | None = None,
    negative_selector: NegativeSelector | None = None,
    train: UserItems | None = None,
) -> Recommender:
    """Instantiate the configured method over ``n_users`` x ``n_items``; ``generator`` draws
    the initial embedding table; ``objective`` and ``negative_selector`` come from
    :func:`build_imbalance` (None: plain BPR on the drawn negatives); ``train`` is the training
    log (a contrastive method's neighbour positives are found in it). Each trained method's
    config model (``MethodConfig.build``) builds its own method, so a new method needs no entry
    here."""
    return model.build(
        n_users,
        n_items,
        generator,
        objective=objective,
        negative_selector=negative_selector,
        train=train,
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
    """Put the parts of the ``imbalance:`` block together; each part's config model builds
    its own objects (``cfg.positives.build``, ``cfg.loss.build``, ...).

    Args:
        cfg: the block.
        train: the training positives (popularity is counted on them).
        explicit_negatives: the labelled log's label-0 training pairs; required exactly when
            ``weights.label_threshold`` is set.
    """
    if train.nnz == 0:
        raise DataError("no training positives to learn from")
    popularity = item_popularity(train)
    edge_sampler = cfg.positives.build(train, popularity)
    # Item weights have mean 1 over the rows an epoch actually holds (resampling shifts them).
    rows_per_item = (
        None if edge_sampler is None else edge_sampler.item_marginal().numpy() * train.nnz
    )
    item_weights, weight_summary = cfg.weights.item_weights(popularity, rows_per_item)
    edge_sampler, label_summary = cfg.weights.label_sampler(
        edge_sampler, train, explicit_negatives
    )
    sampler, hooks = cfg.negatives.sampler(train, popularity)
    item_marginal = (edge_sampler or EdgeUniformSampler(train)).item_marginal()
    return ImbalanceParts(
        sampling=Sampling(
            num_negatives=cfg.num_negatives,
            sampler=sampler,
            edge_sampler=edge_sampler,
            item_weights=item_weights,
            epoch_hooks=hooks,
        ),
        objective=cfg.loss.build(train, item_marginal),
        negative_selector=cfg.negatives.selector(),
        summary={**weight_summary, **label_summary},
    )
