"""Per-user item sets in CSR form, the exchange format between data, training and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only to_torch_csr needs torch; data preparation never loads it
    import torch


@dataclass(frozen=True)
class UserItems:
    """The items of each user as CSR rows: user ``u`` holds ``indices[indptr[u]:indptr[u + 1]]``.

    Shapes: ``indptr`` int64 [U + 1], ``indices`` int64 [nnz], sorted and unique within a row.
    """

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @classmethod
    def from_pairs(
        cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
    ) -> UserItems:
        """Build from parallel arrays of (user, item) indices; duplicate pairs are kept once."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError(f"users {users.shape} and items {items.shape} differ in shape")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"user index out of range [0, {n_users})")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item index out of range [0, {n_items})")
        key = np.unique(users * n_items + items)
        rows, cols = np.divmod(key, n_items)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
        return cls(indptr=indptr, indices=cols.astype(np.int64), n_items=n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def counts(self) -> np.ndarray:
        """Items per user, int64 [U]."""
        return np.diff(self.indptr)

    def items_of(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def rows(self) -> np.ndarray:
        """The user of every stored pair, int64 [nnz] (the COO row vector)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.counts())

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Vectorized membership: bool [B], whether ``items[b]`` is in the row of ``users[b]``."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        keys = self.rows() * self.n_items + self.indices  # sorted, since rows and cols are
        query = users * self.n_items + items
        pos = np.searchsorted(keys, query)
        pos = np.minimum(pos, max(len(keys) - 1, 0))
        return (keys[pos] == query) if len(keys) else np.zeros(len(query), dtype=bool)

    def to_torch_csr(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """A [U, I] ``torch.sparse_csr`` tensor of ones."""
        import torch

        return torch.sparse_csr_tensor(
            torch.from_numpy(self.indptr),
            torch.from_numpy(self.indices),
            torch.ones(self.nnz, dtype=torch.float32),
            size=(self.n_users, self.n_items),
            device=device,
        )
