r"""Metrics that show the long tail, read off the evaluator's ranked lists (no re-ranking).

Items are split by training popularity :math:`n_i` into **head** (the ``ceil(head·I)`` most
popular), **tail** (the ``floor(tail·I)`` least popular) and **mid** (the rest); ties are broken
by item index, so the groups are a partition of fixed sizes. Users are split the same way by
training activity into **high**, **mid** and **low**. With T_u the top-K list of user u (the
evaluator's ``topk``; unrankable slots, -1, are skipped), R_u its test items and
:math:`R^g_u = R_u \cap G`:

- ``{g}_recall@K`` = :math:`|T_u \cap R^g_u| / |R^g_u|` and ``{g}_ndcg@K`` = DCG of the hits
  on :math:`R^g_u` over IDCG of :math:`\min(|R^g_u|, K)` positions (the LightGCN definitions of
  :mod:`recsys_cl.metrics.ranking`, with :math:`R^g_u` as the relevant set; the list itself is
  not restricted), averaged over the users with :math:`R^g_u \ne \emptyset`;
- ``coverage@K`` = :math:`|\bigcup_u T_u| / I`;
- ``arp@K`` (average recommendation popularity, Abdollahpouri et al., FLAIRS 2019) =
  :math:`\frac{1}{|U|}\sum_u \frac{1}{|T_u|}\sum_{i \in T_u} n_i`, in training interactions;
- ``gini@K`` = Gini index of the exposure counts :math:`c_i = |\{u : i \in T_u\}|` over all I
  items, :math:`G = \sum_r (2r - I - 1) c_{(r)} / (I \sum_i c_i)` with c sorted ascending,
  r = 1..I (0: every item recommended equally often; → 1: a few items take every slot);
- ``user_{a}_recall@K`` / ``user_{a}_ndcg@K``: the overall per-user metrics averaged over the
  users of activity group a.

All are over the evaluated users (those with test items). Shapes: U users, I items, K cut-off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsys_cl.data.stats import gini
from recsys_cl.data.user_items import UserItems
from recsys_cl.metrics._blocks import membership
from recsys_cl.metrics.evaluator import EvalResult
from recsys_cl.metrics.ranking import check_ks, ranking_metrics

ITEM_GROUPS: tuple[str, ...] = ("head", "mid", "tail")
USER_GROUPS: tuple[str, ...] = ("high", "mid", "low")
#: Share of items in the head (the "short head": top 20%, as in ``recsys-cl data stats``).
HEAD_FRACTION = 0.2
#: Share of items in the tail (the less popular half).
TAIL_FRACTION = 0.5


def popularity_groups(
    counts: np.ndarray, head: float = HEAD_FRACTION, tail: float = TAIL_FRACTION
) -> np.ndarray:
    """Group of each entry by its count: 0 head (largest), 1 mid, 2 tail (smallest).

    The ``ceil(head·n)`` largest counts are head, the ``floor(tail·n)`` smallest tail (never
    overlapping the head), ties by index (lower index ranks as more popular). int8 [n].
    """
    if not (0.0 <= head <= 1.0 and 0.0 <= tail <= 1.0 and head + tail <= 1.0 + 1e-12):
        raise ValueError(f"need head, tail in [0, 1] with head + tail <= 1, got {head}, {tail}")
    x = np.asarray(counts)
    n = x.size
    n_head = min(n, math.ceil(head * n - 1e-9))
    n_tail = min(n - n_head, math.floor(tail * n + 1e-9))
    order = np.lexsort((np.arange(n), -x.astype(np.float64)))  # count desc, index asc
    groups = np.ones(n, dtype=np.int8)
    groups[order[:n_head]] = 0
    groups[order[n - n_tail :]] = 2
    return groups


@dataclass(frozen=True)
class PopularityReport:
    """The outcome of :func:`popularity_metrics`.

    Attributes:
        metrics: flat ``{name: value}`` (keys in the module docstring); NaN for a group with no
            evaluated user.
        item_group_sizes: items per group, ``{"head", "mid", "tail"}``.
        users_per_item_group: evaluated users with a test item in each item group.
        users_per_activity_group: evaluated users in each activity group.
    """

    metrics: dict[str, float]
    item_group_sizes: dict[str, int]
    users_per_item_group: dict[str, int]
    users_per_activity_group: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {
            "metrics": dict(self.metrics),
            "item_group_sizes": dict(self.item_group_sizes),
            "users_per_item_group": dict(self.users_per_item_group),
            "users_per_activity_group": dict(self.users_per_activity_group),
        }


def popularity_metrics(
    result: EvalResult,
    ground_truth: UserItems,
    train: UserItems,
    *,
    ks: Sequence[int] | None = None,
    head: float = HEAD_FRACTION,
    tail: float = TAIL_FRACTION,
) -> PopularityReport:
    """Head/mid/tail accuracy, coverage, ARP, Gini and activity-group metrics (module docstring).

    Args:
        result: from :func:`~recsys_cl.metrics.evaluate` with ``return_topk=True`` and
            ``return_per_user=True`` (recall and ndcg among its metrics), on ``ground_truth``.
        ground_truth: the held-out items that ``result`` was scored on (U x I).
        train: the training items; popularity and activity are counted on it.
        ks: cut-offs (default: ``result.ks``); each must be one of ``result.ks`` for the
            activity-group metrics.
        head, tail: the item (and user) group fractions.
    """
    if result.topk is None or result.users is None or result.per_user is None:
        raise ValueError(
            "popularity_metrics needs evaluate(..., return_topk=True, return_per_user=True)"
        )
    ks = check_ks(result.ks if ks is None else ks)
    n_items = ground_truth.n_items
    if train.n_items != n_items or train.n_users != ground_truth.n_users:
        raise ValueError("train and ground_truth must cover the same users and items")
    popularity = np.bincount(train.indices, minlength=n_items)
    item_group = torch.from_numpy(popularity_groups(popularity, head, tail).astype(np.int64))
    user_group = popularity_groups(train.counts(), head, tail)

    users = result.users
    topk = result.topk  # [n, K]; -1 where nothing was rankable
    valid = topk >= 0
    safe = topk.clamp(min=0)
    gt_ptr = torch.from_numpy(ground_truth.indptr)
    gt_idx = torch.from_numpy(ground_truth.indices)
    starts, lengths = gt_ptr[users], gt_ptr[users + 1] - gt_ptr[users]
    rows = torch.repeat_interleave(torch.arange(len(users)), lengths)
    offs = torch.arange(int(lengths.sum())) - (torch.cumsum(lengths, 0) - lengths)[rows]
    cols = gt_idx[starts[rows] + offs]
    hits = membership(rows, cols, safe, n_items) & valid

    out: dict[str, float] = {}
    users_per_item_group: dict[str, int] = {}
    top_group = item_group[safe]
    for g, name in enumerate(ITEM_GROUPS):
        n_rel = torch.bincount(rows[item_group[cols] == g], minlength=len(users))
        has = n_rel > 0
        users_per_item_group[name] = int(has.sum())
        group_hits = hits & (top_group == g)
        values = ranking_metrics(group_hits[has], n_rel[has], ks, ("recall", "ndcg"))
        for key, v in values.items():
            metric, cutoff = key.split("@")
            out[f"{name}_{metric}@{cutoff}"] = float(v.mean()) if len(v) else float("nan")

    pop_t = torch.from_numpy(popularity.astype(np.float64))
    for k in ks:
        top = safe[:, :k]
        ok = valid[:, :k]
        shown = top[ok]
        exposure = torch.bincount(shown, minlength=n_items)
        out[f"coverage@{k}"] = float((exposure > 0).sum()) / n_items
        per_user_len = ok.sum(dim=1)
        pop_sum = (pop_t[top] * ok).sum(dim=1)
        has_list = per_user_len > 0
        arp = pop_sum[has_list] / per_user_len[has_list]
        out[f"arp@{k}"] = float(arp.mean()) if len(arp) else float("nan")
        out[f"gini@{k}"] = gini(exposure.numpy())

    users_per_activity_group: dict[str, int] = {}
    groups_of_users = torch.from_numpy(user_group.astype(np.int64))[users]
    for a, name in enumerate(USER_GROUPS):
        members = groups_of_users == a
        users_per_activity_group[name] = int(members.sum())
        for metric in ("recall", "ndcg"):
            for k in ks:
                per_user = result.per_user.get(f"{metric}@{k}")
                if per_user is None:
                    raise ValueError(f"result has no per-user {metric}@{k}")
                v = per_user[members]
                out[f"user_{name}_{metric}@{k}"] = float(v.mean()) if len(v) else float("nan")

    sizes = torch.bincount(item_group, minlength=3).tolist()
    return PopularityReport(
        metrics=out,
        item_group_sizes=dict(zip(ITEM_GROUPS, sizes, strict=True)),
        users_per_item_group=users_per_item_group,
        users_per_activity_group=users_per_activity_group,
    )


def format_popularity(report: PopularityReport, ks: Sequence[int]) -> str:
    """A table of the long-tail metrics, one column per cut-off."""
    ks = check_ks(ks)
    head = f"{'long tail':<18}" + "".join(f"{'@' + str(k):>10}" for k in ks)
    lines = [head]
    sizes = report.item_group_sizes
    names = [f"{g}_{m}" for m in ("recall", "ndcg") for g in ITEM_GROUPS]
    names += ["coverage", "arp", "gini"]
    names += [f"user_{a}_{m}" for m in ("recall", "ndcg") for a in USER_GROUPS]
    for name in names:
        lines.append(f"{name:<18}" + "".join(f"{report.metrics[f'{name}@{k}']:>10.4f}" for k in ks))
    lines.append(
        "items per group: "
        + ", ".join(f"{g} {sizes[g]:,}" for g in ITEM_GROUPS)
        + "; users per activity group: "
        + ", ".join(f"{a} {report.users_per_activity_group[a]:,}" for a in USER_GROUPS)
    )
    return "\n".join(lines)
