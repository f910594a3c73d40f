"""Class-imbalance strategies: reweighted losses, resampling, hard-negative mining.

Every strategy plugs into one of the trainer's or the methods' extension points, never into a
model class, so they compose and work with every method (``Sampling`` is the trainer's
``recsys_cl.training.Sampling`` record):

- loss weights per positive item — inverse propensity (:func:`inverse_propensity_weights`),
  class-balanced (:func:`class_balanced_weights`), both (:func:`item_loss_weights`):
  ``Sampling(item_weights=)``;
- label-ratio class weights of a labelled log (:func:`label_ratio_weights`,
  :class:`LabeledEdgeSampler`): ``Sampling(edge_sampler=)``;
- focal modulation and in-batch softmax with logQ (``BPRObjective``,
  ``InBatchSoftmaxObjective`` in ``recsys_cl.losses``): the methods' ``objective=``;
- popularity-aware negatives (:class:`PopularityNegativeSampler`): ``Sampling(sampler=)``;
- tail oversampling, head undersampling, user-balanced batches
  (:class:`ResampledEdgeSampler`): ``Sampling(edge_sampler=)``;
- DNS and MixGCF (:class:`DNSSelector`, :class:`MixGCFSelector`, with M candidates per row
  from ``Sampling(num_negatives=M)``): the methods' ``negative_selector=``;
- ANN-mined negatives (:class:`ANNNegativeSampler`): ``Sampling(sampler=, epoch_hooks=)``.

``recsys_cl.jobs.build.build_imbalance`` maps the ``imbalance:`` config block onto these.
"""

from recsys_cl.imbalance.hard import DNSSelector, MixGCFSelector, dns_select
from recsys_cl.imbalance.negatives import ANNNegativeSampler, PopularityNegativeSampler
from recsys_cl.imbalance.positives import (
    LabeledEdgeSampler,
    ResampledEdgeSampler,
    cap_per_item,
    segment_draw,
)
from recsys_cl.imbalance.weights import (
    ClassWeights,
    class_balanced_weights,
    inverse_propensity_weights,
    item_loss_weights,
    item_popularity,
    label_ratio_weights,
    normalize_clipped,
    user_activity,
)

__all__ = [
    "ANNNegativeSampler",
    "ClassWeights",
    "DNSSelector",
    "LabeledEdgeSampler",
    "MixGCFSelector",
    "PopularityNegativeSampler",
    "ResampledEdgeSampler",
    "cap_per_item",
    "class_balanced_weights",
    "dns_select",
    "inverse_propensity_weights",
    "item_loss_weights",
    "item_popularity",
    "label_ratio_weights",
    "normalize_clipped",
    "segment_draw",
    "user_activity",
]
