"""Recommendation, contrastive and regularization losses (mean reduction, optional weights),
and the recommendation objectives methods are handed (BPR, in-batch and sampled softmax,
focal, logQ, DirectAU's alignment and uniformity, SimpleX's CCL)."""

from recsys_cl.losses._reduce import mean_per_id
from recsys_cl.losses.alignment import alignment_loss, uniformity_loss
from recsys_cl.losses.objectives import (
    BPRObjective,
    CosineContrastiveObjective,
    DirectAUObjective,
    InBatchSoftmaxObjective,
    RecObjective,
    SampledSoftmaxObjective,
)
from recsys_cl.losses.pairwise import (
    bpr_loss,
    margin_contrastive_loss,
    triplet_margin_loss,
)
from recsys_cl.losses.regularization import ego_l2
from recsys_cl.losses.softmax import (
    in_batch_softmax_loss,
    info_nce,
    sampled_softmax_loss,
)

__all__ = [
    "BPRObjective",
    "CosineContrastiveObjective",
    "DirectAUObjective",
    "InBatchSoftmaxObjective",
    "RecObjective",
    "SampledSoftmaxObjective",
    "alignment_loss",
    "bpr_loss",
    "ego_l2",
    "in_batch_softmax_loss",
    "info_nce",
    "margin_contrastive_loss",
    "mean_per_id",
    "sampled_softmax_loss",
    "triplet_margin_loss",
    "uniformity_loss",
]
