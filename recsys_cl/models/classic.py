"""The classic baselines a team runs first: EASE (closed form) and iALS (``implicit``).

Neither is trained by the gradient trainer; each is fitted once on the training pairs and
exported as a pair of tables whose inner product is the model's score, like every other
method's embeddings, so the evaluator, the FAISS index, candidates and serving are unchanged:

- EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the item-item
  matrix B [I, I] = argmin ||X - XB||² + λ||B||² with diag(B) = 0, in closed form
  ``P = (XᵀX + λI)⁻¹``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0`` (eq. 8 of the
  paper). A user's score of item i is ``X_u · B[:, i]``: the user table is the user's training
  row X_u (D = I, 0/1) and item i's row is column i of B.
- iALS (Hu, Koren and Volinsky, ICDM 2008) as implemented by the ``implicit`` library
  (Frederickson): confidence ``1 + alpha * x_ui``, L2 ``regularization``, ``iterations``
  alternating least-squares sweeps. Its factors are the user and item tables (D = factors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from recsys_cl.data.user_items import UserItems

# float32 entries of one dense I x I matrix.
_F32 = 4
# One column block of XᵀX (its sparse product and dense copy) stays under this.
_GRAM_BLOCK_BYTES = 256 * 2**20
_EASE_CUBE_PER_SECOND = 2e10


@dataclass(frozen=True, eq=False)
class FittedTables:
    """A fitted classic model as score tables: ``score(u, i) = user[u] · item[i]``.

    Attributes:
        user: float32 [U, D]. item: float32 [I, D]. Both on the CPU, owning their memory.
        state: the fitted parameters to save (``model.pt``), tensors only.
    """

    user: Tensor
    item: Tensor
    state: dict[str, Tensor]


def ease_memory_bytes(n_users: int, n_items: int) -> int:
    """Peak bytes of :func:`fit_ease`: two I x I float32 matrices at once (the Gram matrix and
    its Cholesky factor, then the factor and the inverse), plus the user table (U x I)."""
    return (2 * n_items * n_items + n_users * n_items) * _F32


def ease_seconds_estimate(n_items: int) -> float:
    """A pessimistic guess of :func:`ease_item_matrix`'s seconds on a 2-core CPU: the
    Cholesky inverse is cubic in I; the whole fit measured 1.8e10 to 8.7e10 I³ per second here
    for I from 2,000 to 8,000 (benchmarks/bench_ease.py, RESULTS.md); near the low end is
    used."""
    return n_items**3 / _EASE_CUBE_PER_SECOND


def gram_matrix(train: UserItems) -> Tensor:
    """XᵀX, float32 [I, I], of the 0/1 interaction matrix X [U, I]: co-occurrence counts.

    A sparse product, column block by column block (each block's sparse result and its dense
    copy stay under ``_GRAM_BLOCK_BYTES``), so the work is the sum over users of their
    squared history length, not U x I² as a dense product of X would be.
    """
    from scipy.sparse import csr_matrix

    n_items = train.n_items
    x = csr_matrix(
        (np.ones(train.nnz, dtype=np.float32), train.indices, train.indptr),
        shape=(train.n_users, n_items),
    )
    x_t, x_cols = x.T.tocsr(), x.tocsc()
    gram = torch.empty(n_items, n_items, dtype=torch.float32)
    width = max(1, _GRAM_BLOCK_BYTES // (n_items * _F32))
    for lo in range(0, n_items, width):
        hi = min(lo + width, n_items)
        gram[:, lo:hi] = torch.from_numpy((x_t @ x_cols[:, lo:hi]).toarray())
    return gram


def ease_item_matrix(train: UserItems, lam: float, device: torch.device | str = "cpu") -> Tensor:
    """EASE's item-item weights B, float32 [I, I], zero diagonal (module docstring).

    The Gram matrix ``XᵀX + λI`` is symmetric positive definite for ``lam`` > 0, so it is
    inverted through its Cholesky factor (half the work of a general inverse).
    """
    if not lam > 0:
        raise ValueError(f"EASE lambda must be > 0, got {lam}")
    gram = gram_matrix(train).to(device)
    gram.diagonal().add_(lam)
    factor = torch.linalg.cholesky(gram)
    del gram
    p = torch.cholesky_inverse(factor)
    del factor
    b = p.div_(-p.diagonal().clone())
    b.diagonal().zero_()
    return b


def dense_rows(train: UserItems, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of the 0/1 interaction matrix, float32 [stop - start, I]."""
    stop = min(stop, train.n_users)
    lo, hi = train.indptr[start], train.indptr[stop]
    rows = np.repeat(np.arange(stop - start), np.diff(train.indptr[start : stop + 1]))
    out = torch.zeros(stop - start, train.n_items, dtype=torch.float32)
    out[torch.from_numpy(rows), torch.from_numpy(train.indices[lo:hi])] = 1.0
    return out


def fit_ease(train: UserItems, lam: float, device: torch.device | str = "cpu") -> FittedTables:
    """EASE as score tables: user rows X [U, I] (0/1), item rows Bᵀ [I, I]."""
    b = ease_item_matrix(train, lam, device)
    user = dense_rows(train, 0, train.n_users)
    item = b.T.contiguous()
    return FittedTables(user.cpu(), item.cpu(), {"item_item": b.cpu()})


def fit_ials(
    train: UserItems,
    *,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int,
    seed: int,
    use_gpu: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> FittedTables:
    """iALS factors from ``implicit.als.AlternatingLeastSquares`` fitted on the training pairs
    (every pair a 1; confidence ``1 + alpha``).

    Args:
        use_gpu: fit with implicit's CUDA build (``implicit.gpu.HAS_CUDA`` must hold).
        threads: CPU threads for implicit's solver (0: all cores).
    """
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    matrix = csr_matrix(
        (np.ones(train.nnz, dtype=np.float32), train.indices, train.indptr),
        shape=(train.n_users, train.n_items),
    )
    # implicit parallelises over users itself; a multi-threaded BLAS under it oversubscribes
    # the cores (implicit checks for this when the model is made, and warns).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            use_gpu=use_gpu,
            num_threads=threads,
            calculate_training_loss=False,
        )
        model.fit(matrix, show_progress=progress)
    if use_gpu:
        model = model.to_cpu()
    user = torch.from_numpy(np.ascontiguousarray(model.user_factors, dtype=np.float32))
    item = torch.from_numpy(np.ascontiguousarray(model.item_factors, dtype=np.float32))
    return FittedTables(user, item, {"user_factors": user, "item_factors": item})


def implicit_has_cuda() -> bool:
    """Whether the installed ``implicit`` was built with CUDA and sees a GPU."""
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


__all__ = [
    "FittedTables",
    "ease_item_matrix",
    "ease_memory_bytes",
    "ease_seconds_estimate",
    "fit_ease",
    "fit_ials",
    "implicit_has_cuda",
]
