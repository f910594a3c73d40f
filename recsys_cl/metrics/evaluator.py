"""Batched full-ranking evaluation of user/item embeddings.

Protocol (README, "Evaluation protocols"): every user is ranked against ALL items by the inner
product ``user_emb @ item_emb.T``; the items in ``exclude`` (training items, and at test time the
validation items too) are set to -inf before one ``torch.topk`` per chunk of users, and every
cut-off is read from that one top-``max(ks)`` list. Users without ground-truth items are left out
of the means and counted in ``n_users_skipped``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import RecsysError
from recsys_cl.metrics._blocks import auc_block, csr_rows, membership
from recsys_cl.metrics.ranking import METRICS, check_ks, check_metrics, ranking_metrics
from recsys_cl.progress import progress as show_progress

# ~256 MB of scores per chunk on CPU: large enough that the per-chunk overhead vanishes, small
# enough to sit beside a training process. On CUDA a quarter of the free memory is used instead.
CPU_BLOCK_BYTES = 256 * 2**20
_GPU_FREE_FRACTION = 0.25

@dataclass(frozen=True)
class EvalResult:
    """The outcome of :func:`evaluate`.

    Attributes:
        metrics: mean over evaluated users, keyed ``"{metric}@{k}"`` (and ``"auc"``).
        n_users_evaluated: users with at least one ground-truth item (those averaged over).
        n_users_skipped: requested users with no ground-truth item (left out of the means).
        n_relevant_excluded: ground-truth pairs that were also excluded, so could never be hit;
            they still count in |R_u| (LightGCN). Non-zero means the splits overlap.
        ks: the cut-offs, as validated.
        top_k: the length of the ranked lists, ``min(max(ks), I)``.
        users: int64 [n_users_evaluated], the evaluated users in row order of ``per_user`` and
            ``topk``; None unless ``return_per_user`` or ``return_topk``.
        per_user: float64 [n_users_evaluated] per metric key (NaN where undefined: AUC of a
            user without rankable positives or negatives); None unless ``return_per_user``.
        topk: int64 [n_users_evaluated, top_k], ranked item ids, -1 where fewer than ``top_k``
            items were rankable; None unless ``return_topk``.

    Tensors are on the CPU.
    """

    metrics: dict[str, float]
    n_users_evaluated: int
    n_users_skipped: int
    n_relevant_excluded: int
    ks: tuple[int, ...]
    top_k: int
    users: Tensor | None = None
    per_user: dict[str, Tensor] | None = None
    topk: Tensor | None = None


def choose_chunk_size(
    n_items: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> int:
    """Users per chunk so that one [C, I] score block fits the budget.

    CPU: ``CPU_BLOCK_BYTES``, lowered to a quarter of the available RAM when that is smaller.
    CUDA: a quarter of the free memory reported by ``torch.cuda.mem_get_info``.
    """
    per_entry = torch.empty((), dtype=dtype).element_size()
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = int(free * _GPU_FREE_FRACTION)
    else:
        budget = CPU_BLOCK_BYTES
        available = _available_ram()
        if available is not None:
            budget = min(budget, available // 4)
    return max(1, budget // max(1, n_items * per_entry))


def _available_ram() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every OS exposes these sysconf names
        return None


def _as_list(exclude: UserItems | Sequence[UserItems] | None) -> list[UserItems]:
    if exclude is None:
        return []
    if isinstance(exclude, UserItems):
        return [exclude]
    return list(exclude)


def _check_shapes(
    user_emb: Tensor, item_emb: Tensor, ground_truth: UserItems, excludes: list[UserItems]
) -> None:
    if user_emb.dim() != 2 or item_emb.dim() != 2:
        raise ValueError(
            f"embeddings must be 2-D, got user {tuple(user_emb.shape)}, "
            f"item {tuple(item_emb.shape)}"
        )
    if user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(
            f"embedding dims differ: user D={user_emb.shape[1]}, item D={item_emb.shape[1]}"
        )
    if user_emb.device != item_emb.device:
        raise ValueError(f"embeddings on {user_emb.device} and {item_emb.device}")
    if not (user_emb.is_floating_point() and item_emb.is_floating_point()):
        raise ValueError(
            f"embeddings must be floating point, got {user_emb.dtype}, {item_emb.dtype}"
        )
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    if n_items == 0:
        raise ValueError("item_emb has no rows: there is nothing to rank")
    for name, table in [("ground_truth", ground_truth)] + [("exclude", e) for e in excludes]:
        if not isinstance(table, UserItems):
            raise ValueError(f"{name} must be a UserItems, got {type(table).__name__}")
        if table.n_users != n_users or table.n_items != n_items:
            raise ValueError(
                f"{name} is {table.n_users} users x {table.n_items} items but the embeddings "
                f"are {n_users} users x {n_items} items"
            )
    if not (bool(torch.isfinite(user_emb).all()) and bool(torch.isfinite(item_emb).all())):
        # Data, not a caller bug: a diverged model or a damaged embeddings file.
        raise RecsysError("embeddings contain NaN or inf; rankings of them would be meaningless")


def _select_users(users: Sequence[int] | np.ndarray | Tensor | None, n_users: int) -> np.ndarray:
    if users is None:
        return np.arange(n_users, dtype=np.int64)
    if isinstance(users, Tensor):
        users = users.detach().cpu().numpy()
    selected = np.asarray(users, dtype=np.int64).reshape(-1)
    if selected.size and (selected.min() < 0 or selected.max() >= n_users):
        raise ValueError(f"users contains an index outside [0, {n_users})")
    return selected


def _score_dtype(user_emb: Tensor, item_emb: Tensor) -> torch.dtype:
    # Half-precision scores would tie distinct items and are slow on CPU; score in float32 then.
    dtype = torch.promote_types(user_emb.dtype, item_emb.dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _csr_on(table: UserItems, device: torch.device) -> tuple[Tensor, Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(table.indptr, dtype=np.int64)).to(device),
        torch.from_numpy(np.ascontiguousarray(table.indices, dtype=np.int64)).to(device),
    )


def evaluate(
    user_emb: Tensor,
    item_emb: Tensor,
    ground_truth: UserItems,
    exclude: UserItems | Sequence[UserItems] | None,
    *,
    ks: Sequence[int] = (10, 20, 50),
    metrics: Sequence[str] = METRICS,
    auc: bool = False,
    users: Sequence[int] | np.ndarray | Tensor | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    return_per_user: bool = False,
    return_topk: bool = False,
) -> EvalResult:
    """Full-ranking evaluation of ``user_emb @ item_emb.T`` against ``ground_truth``.

    Args:
        user_emb: float [U, D]. item_emb: float [I, D], same device (the computation follows it).
        ground_truth: the held-out items of each user (U x I).
        exclude: items never ranked, set to -inf: the training items, and at test time the
            validation items too (pass a sequence). Required, so forgetting it is a choice:
            pass None only to rank seen items as well.
        ks: cut-offs; a ``k`` above I is read on the I-long list as if padded with non-relevant
            items (so Recall@k = Recall@I, Precision@k divides by k), see ``ranking``.
        metrics: names from :data:`recsys_cl.metrics.ranking.METRICS`; formulas in ``ranking``.
        auc: also the mean per-user ROC-AUC over all non-excluded items (key ``"auc"``; users
            with no rankable positive or negative are left out of that mean).
        users: evaluate only these user ids (default: all).
        chunk_size: users per score block; None picks it from memory (:func:`choose_chunk_size`).
        progress: report progress over chunks (:func:`recsys_cl.progress.progress`).
        return_per_user / return_topk: keep per-user values / the ranked top-K item ids.

    Scores are computed in float32 (float64 if an embedding is float64). Ties in score are
    broken by ``torch.topk`` in an unspecified order.
    """
    ks = check_ks(ks)
    metrics = check_metrics(metrics)
    excludes = _as_list(exclude)
    _check_shapes(user_emb, item_emb, ground_truth, excludes)
    device = user_emb.device
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    dtype = _score_dtype(user_emb, item_emb)
    requested = _select_users(users, n_users)
    evaluated = requested[ground_truth.counts()[requested] > 0]
    n_eval = len(evaluated)
    top_k = min(max(ks), n_items)
    if chunk_size is None:
        chunk_size = choose_chunk_size(n_items, device, dtype)
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chunk_size = max(1, min(chunk_size, n_eval))

    keys = [f"{name}@{k}" for name in metrics for k in ks] + (["auc"] if auc else [])
    per_user_parts: dict[str, list[Tensor]] = {key: [] for key in keys}
    topk_parts: list[Tensor] = []

    with torch.no_grad():
        # Accumulated on the device: one host sync at the end instead of several per chunk.
        sums = torch.zeros(len(keys), dtype=torch.float64, device=device)
        n_defined = torch.zeros(len(keys), dtype=torch.int64, device=device)
        n_relevant_excluded = torch.zeros((), dtype=torch.int64, device=device)
        ue = user_emb.detach().to(dtype)
        ie_t = item_emb.detach().to(dtype).T
        gt_ptr, gt_idx = _csr_on(ground_truth, device)
        ex_csr = [_csr_on(table, device) for table in excludes]
        evaluated_t = torch.from_numpy(evaluated).to(device)
        block = torch.empty(chunk_size, n_items, dtype=dtype, device=device)  # reused per chunk
        neg_inf = torch.tensor(-torch.inf, dtype=dtype, device=device)
        starts = range(0, n_eval, chunk_size)
        for start in show_progress(starts, desc="evaluate", unit="chunk", enabled=progress):
            chunk = evaluated_t[start : start + chunk_size]
            scores = block[: len(chunk)]
            torch.mm(ue[chunk], ie_t, out=scores)
            for ptr, idx in ex_csr:
                scores.index_put_(csr_rows(ptr, idx, chunk), neg_inf)
            top_scores, top_items = torch.topk(scores, top_k, dim=1)
            rankable = ~torch.isneginf(top_scores)
            gt_rows, gt_cols = csr_rows(gt_ptr, gt_idx, chunk)
            hits = membership(gt_rows, gt_cols, top_items, n_items) & rankable
            n_relevant = gt_ptr[chunk + 1] - gt_ptr[chunk]
            n_relevant_excluded += torch.isneginf(scores[gt_rows, gt_cols]).sum()
            values = ranking_metrics(hits, n_relevant, ks, metrics)
            if auc:
                values["auc"] = auc_block(scores, gt_rows, gt_cols)
            stacked = torch.stack([values[key] for key in keys])  # [len(keys), C]
            sums += stacked.nansum(dim=1)
            n_defined += (~torch.isnan(stacked)).sum(dim=1)
            if return_per_user:
                for key, v in zip(keys, stacked.cpu(), strict=True):
                    per_user_parts[key].append(v)
            if return_topk:
                topk_parts.append(top_items.masked_fill(~rankable, -1).cpu())
        del block
        means = dict(
            zip(keys, (sums / n_defined).tolist(), strict=True)
        )  # 0 / 0 = NaN: nobody evaluated
    keep_users = return_per_user or return_topk
    return EvalResult(
        metrics=means,
        n_users_evaluated=n_eval,
        n_users_skipped=len(requested) - n_eval,
        n_relevant_excluded=int(n_relevant_excluded),
        ks=ks,
        top_k=top_k,
        users=torch.from_numpy(evaluated.copy()) if keep_users else None,
        per_user=(
            {key: _cat(parts, torch.float64) for key, parts in per_user_parts.items()}
            if return_per_user
            else None
        ),
        topk=(
            _cat(topk_parts, torch.int64).reshape(-1, top_k) if return_topk else None
        ),
    )


def _cat(parts: list[Tensor], dtype: torch.dtype) -> Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)
