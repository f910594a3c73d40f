"""Vectorized kernels on one chunk of users: CSR row gathers, top-K membership, per-user AUC.

No Python loop runs per user; every function works on whole chunks and stays on the device of
its inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Scores per slice in the AUC kernel (its int32 scratch is 4 bytes each).
AUC_SLICE_ENTRIES = 2**24


def csr_rows(indptr: Tensor, indices: Tensor, users: Tensor) -> tuple[Tensor, Tensor]:
    """The (row-in-chunk, item) pairs of the CSR rows ``users``, rows in chunk order.

    Shapes: ``indptr`` int64 [U + 1], ``indices`` int64 [nnz], ``users`` int64 [C]
    -> two int64 [n], ``n`` the total length of the gathered rows; within a row the items keep
    their CSR order.
    """
    starts = indptr[users]
    lengths = indptr[users + 1] - starts
    total = int(lengths.sum())
    rows = torch.repeat_interleave(
        torch.arange(len(users), device=users.device), lengths, output_size=total
    )
    out_start = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(total, device=users.device) - out_start[rows] + starts[rows]
    return rows, indices[pos]


def membership(rows: Tensor, cols: Tensor, candidates: Tensor, n_items: int) -> Tensor:
    """Whether ``candidates[r, j]`` is one of the items paired with row ``r`` in (rows, cols).

    A sorted-key search: key = row * I + item; no dense [C, I] block is built.
    Shapes: ``rows``, ``cols`` int64 [n]; ``candidates`` int64 [C, K] -> bool [C, K].
    """
    if rows.numel() == 0:
        return torch.zeros(candidates.shape, dtype=torch.bool, device=candidates.device)
    keys = torch.sort(rows * n_items + cols).values
    row_ids = torch.arange(candidates.shape[0], device=candidates.device).unsqueeze(1)
    query = row_ids * n_items + candidates
    pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
    return keys[pos] == query


def auc_block(scores: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Per-row ROC-AUC of ``scores`` (excluded items at -inf) with positives (rows, cols).

    For user u with candidates C_u = items whose score is > -inf, positives P = R_u ∩ C_u and
    negatives N = C_u \\ R_u:

        AUC_u = (1 / (|P| |N|)) * sum_{p in P, n in N} (1[s_p > s_n] + 0.5 * 1[s_p = s_n])

    computed without a sort of the [C, I] block. With g(s) = #{p : s_p > s} + 0.5 #{p : s_p = s}
    = |P| - (#{p : s_p < s} + #{p : s_p <= s}) / 2, the sum over negatives is
    sum_{c in C_u} g(s_c) - sum_{p in P} g(s_p), and the last term is |P|^2 / 2 exactly (each
    unordered pair of positives adds 1, each positive 1/2 for itself). The two counts come from
    ONE batched searchsorted into each row's positives merged with their float successors
    p+ = nextafter(p, +inf), because for floats p+ <= s exactly when p < s.
    NaN where |P| = 0 or |N| = 0.

    Shapes: ``scores`` float [C, I]; ``rows``, ``cols`` int64 [n] -> float64 [C].
    """
    n_rows = scores.shape[0]
    device = scores.device
    pos_scores = scores[rows, cols]
    keep = ~torch.isneginf(pos_scores)
    rows, pos_scores = rows[keep], pos_scores[keep]
    n_pos = torch.bincount(rows, minlength=n_rows)
    order = torch.argsort(rows, stable=True)
    rows, pos_scores = rows[order], pos_scores[order]
    row_start = torch.cumsum(n_pos, 0) - n_pos
    col = torch.arange(len(rows), device=device) - row_start[rows]
    width = max(int(n_pos.max()) if n_rows else 0, 1)
    # +inf padding sits above every finite score, so it is never counted at or below one
    padded = torch.full((n_rows, width), torch.inf, dtype=scores.dtype, device=device)
    padded[rows, col] = pos_scores
    merged = torch.cat([padded, torch.nextafter(padded, padded.new_tensor(torch.inf))], dim=1)
    merged = torch.sort(merged, dim=1).values

    # Row slices bound the scratch to ~AUC_SLICE_ENTRIES whatever the chunk; an excluded item
    # (-inf) counts 0 by itself, since every merged value is above -inf.
    n_items = scores.shape[1]
    exact_int32 = n_items * merged.shape[1] < 2**31  # a row's sum of counts fits int32
    step = max(1, AUC_SLICE_ENTRIES // max(n_items, 1))
    sum_lr = torch.empty(n_rows, dtype=torch.int64, device=device)
    n_cand = torch.empty(n_rows, dtype=torch.int64, device=device)
    for a in range(0, n_rows, step):
        part = scores[a : a + step]
        counts = torch.searchsorted(merged[a : a + step], part, right=True, out_int32=True)
        # a dtype other than the input's makes torch.sum cast the whole slice first
        sum_lr[a : a + step] = counts.sum(dim=1, dtype=torch.int32 if exact_int32 else None)
        n_cand[a : a + step] = n_items - torch.isneginf(part).sum(dim=1)

    n_pos_f = n_pos.to(torch.float64)
    sum_g = n_pos_f * n_cand.to(torch.float64) - 0.5 * sum_lr.to(torch.float64)
    u_stat = sum_g - 0.5 * n_pos_f * n_pos_f
    pairs = n_pos_f * (n_cand - n_pos).to(torch.float64)
    return u_stat / pairs.where(pairs > 0, torch.nan)
