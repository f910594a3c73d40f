"""Fold-in: the embedding of a user given as a history of items, by the method's own rule, so
a candidate model answers users it never trained on (and known users whose history moved on)
without retraining.

Three rules, one per family of methods (:func:`fold_in_of` picks it from the run's config):

- :class:`PropagationFoldIn`, the LightGCN-based methods (LightGCN, SGL, SimGCL, XSimGCL). A
  user's layer l+1 is ``Σ_{i ∈ h} e_i^(l) / sqrt(d_u d_i)`` over its history h, with
  ``d_u = |h|`` and ``d_i`` the item's training degree (LightGCN eq. 3), and the user's
  embedding is the mean of its layers as the method averages them. The bundle stores the
  item rows of layers 0..L-1 and the item degrees (and, for known users, their layer-0 rows).
  For a new user (layer-0 row zero: it was never trained) this is exactly what a full
  propagation gives that user with those edges added, *other nodes' degrees held fixed*, up
  to L = 4 layers: the history's items gain one edge each in the full graph, which would
  rescale their other neighbours' terms; here they keep their training degree (an item with
  none counts the new edge, degree 1). The user's own layer l - 1 returning through its items
  (``Σ_i A_ui² e_u^(l-1)``) is added; what returns through other users (from layer 5 on) is
  left out. A known user keeps its layer-0 row and the stored item layers, which already hold
  its training edges: folding in its own training history gives back its stored embedding
  exactly; a different history is approximate in the same way.
- :class:`LeastSquaresFoldIn`, iALS: the user step of alternating least squares against the
  fixed item factors (``implicit``'s ``recalculate_user``, an exact Cholesky solve of
  ``(YᵀY + λI + Σ_{i∈h} (c - 1) y_i y_iᵀ) x = Σ_{i∈h} c y_i`` with confidence ``c = alpha``).
- :class:`MultiHotFoldIn`, EASE: the user's row *is* its history (a 0/1 row over the items).

A method without a rule (MF: a user's row is a free parameter) has none: a given history then
only masks the items, and an unknown user falls back to the cold-start policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from recsys_cl.data import IdMap
from recsys_cl.errors import DataError
from recsys_cl.io import read_table

FOLD_IN_ITEMS_FILE = "fold_in_items.parquet"
FOLD_IN_USERS_FILE = "fold_in_users.parquet"


class FoldIn(ABC):
    """A method's fold-in rule: user embeddings [B, D] from histories of item indices."""

    kind: ClassVar[str]

    @abstractmethod
    def embed(self, histories: Sequence[np.ndarray], users: np.ndarray) -> np.ndarray:
        """float32 [B, D]: row b folded in from ``histories[b]`` (unique item indices, not
        empty); ``users[b]`` is the user's index, -1 for a user the model never saw."""

    def params(self) -> dict[str, Any]:
        """What ``bundle.json`` records of the rule (``kind`` and its scalars)."""
        return {"kind": self.kind}

    def tables(self, users: IdMap, items: IdMap) -> dict[str, dict[str, Any]]:
        """The bundle files the rule needs beyond the embeddings: name -> columns."""
        return {}

    @property
    def nbytes(self) -> int:
        """Bytes of what the rule stores beyond the model's embeddings."""
        return 0


def _history_matrix(
    histories: Sequence[np.ndarray], n_items: int, weights: Sequence[np.ndarray] | None = None
) -> csr_matrix:
    """[B, I] sparse rows: row b holds ``weights[b]`` (default 1) at ``histories[b]``."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = (
        np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
        if len(histories)
        else np.zeros(0, dtype=np.int64)
    )
    data = (
        np.concatenate(weights).astype(np.float32)
        if weights is not None and len(histories)
        else np.ones(indices.size, dtype=np.float32)
    )
    return csr_matrix((data, indices, indptr), shape=(len(histories), n_items))


@dataclass(frozen=True, eq=False)
class PropagationFoldIn(FoldIn):
    """LightGCN's propagation rule (module docstring).

    Attributes:
        item_layers: float32 [L, I, D], the items' rows of layers 0..L-1 (L >= 1).
        item_degree: float32 [I], each item's training degree.
        user_ego: float32 [U, D], the known users' layer-0 rows.
        include_layer0: whether layer 0 enters the mean (LightGCN, SGL) or not (SimGCL,
            XSimGCL).
    """

    item_layers: np.ndarray
    item_degree: np.ndarray
    user_ego: np.ndarray
    include_layer0: bool

    kind: ClassVar[str] = "propagation"

    def __post_init__(self) -> None:
        layers, n_items, dim = self.item_layers.shape
        if layers < 1 or self.item_degree.shape != (n_items,) or self.user_ego.shape[1] != dim:
            raise ValueError(
                f"item_layers {self.item_layers.shape}, item_degree {self.item_degree.shape} "
                f"and user_ego {self.user_ego.shape} do not fit together"
            )

    @property
    def n_layers(self) -> int:
        return int(self.item_layers.shape[0])

    def embed(self, histories: Sequence[np.ndarray], users: np.ndarray) -> np.ndarray:
        # A_ui = 1 / sqrt(d_u d_i) for every history item; an item never trained on gets the
        # history's edge as its one edge.
        weights = [1.0 / np.sqrt(len(h) * np.maximum(self.item_degree[h], 1.0)) for h in histories]
        adj = _history_matrix(histories, self.item_layers.shape[1], weights)
        users = np.asarray(users, dtype=np.int64)
        known = users >= 0
        # A new user's own layer l - 1 comes back to it through its items at layer l + 1:
        # Σ_i A_ui² e_u^(l-1). A known user's stored item layers hold its training edges
        # already, so only new users get the echo.
        echo = np.where(known, 0.0, [float(np.sum(w * w)) for w in weights]).astype(np.float32)
        layers = [np.zeros((len(histories), self.item_layers.shape[2]), dtype=np.float32)]
        layers[0][known] = self.user_ego[users[known]]
        for depth, item_layer in enumerate(self.item_layers):  # user layer l + 1 from item l
            layer = np.asarray(adj @ item_layer, dtype=np.float32)
            if depth >= 1:
                layer += echo[:, None] * layers[depth - 1]
            layers.append(layer)
        total = sum(layers[0 if self.include_layer0 else 1 :], np.zeros_like(layers[0]))
        return total / np.float32(self.n_layers + int(self.include_layer0))

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layers": self.n_layers,
            "include_layer0": self.include_layer0,
        }

    def tables(self, users: IdMap, items: IdMap) -> dict[str, dict[str, Any]]:
        item_columns: dict[str, Any] = {"item_id": items.raw, "degree": self.item_degree}
        for layer, rows in enumerate(self.item_layers):
            item_columns[f"layer_{layer}"] = rows
        return {
            FOLD_IN_ITEMS_FILE: item_columns,
            FOLD_IN_USERS_FILE: {"user_id": users.raw, "ego": self.user_ego},
        }

    @property
    def nbytes(self) -> int:
        return int(self.item_layers.nbytes + self.item_degree.nbytes + self.user_ego.nbytes)

    @classmethod
    def read(
        cls, root: Path, params: dict[str, Any], users: IdMap, items: IdMap
    ) -> PropagationFoldIn:
        layers, include_layer0 = params.get("layers"), params.get("include_layer0")
        if not (isinstance(layers, int) and layers >= 1 and isinstance(include_layer0, bool)):
            raise DataError(f"{root / 'bundle.json'}: fold_in needs layers >= 1 and include_layer0")
        names = [f"layer_{layer}" for layer in range(layers)]
        path = root / FOLD_IN_ITEMS_FILE
        table = read_table(path, ["item_id", "degree", *names], missing="missing from the bundle")
        _same_ids(table["item_id"], items, path)
        item_layers = np.stack([_rows(table[name], path) for name in names])
        degree = table["degree"].to_numpy().astype(np.float32)
        path = root / FOLD_IN_USERS_FILE
        table = read_table(path, ["user_id", "ego"], missing="missing from the bundle")
        _same_ids(table["user_id"], users, path)
        ego = _rows(table["ego"], path)
        if ego.shape[1:] != item_layers.shape[2:] or not np.isfinite(degree).all():
            raise DataError(f"{path}: its rows do not match {FOLD_IN_ITEMS_FILE}")
        return cls(item_layers, degree, ego, include_layer0)


@dataclass(frozen=True, eq=False)
class LeastSquaresFoldIn(FoldIn):
    """iALS's user step against the fixed item factors (module docstring).

    Attributes:
        item_factors: float32 [I, D] (the model's item embeddings; nothing extra is stored).
        regularization, alpha: the fit's ``implicit`` parameters.
    """

    item_factors: np.ndarray
    regularization: float
    alpha: float

    kind: ClassVar[str] = "least_squares"

    @cached_property
    def _als(self) -> Any:
        """implicit's model over the fixed item factors, made once: it keeps YᵀY, which
        every request would otherwise recompute (I x D² work)."""
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit warns under a multi-threaded BLAS
            als = AlternatingLeastSquares(
                factors=self.item_factors.shape[1],
                regularization=self.regularization,
                alpha=self.alpha,
                num_threads=1,
            )
        als.item_factors = self.item_factors
        return als

    def embed(self, histories: Sequence[np.ndarray], users: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        matrix = _history_matrix(histories, self.item_factors.shape[0])
        with threadpool_limits(1, "blas"):
            out = self._als.recalculate_user(np.arange(len(histories)), matrix)
        return np.ascontiguousarray(out, dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "regularization": self.regularization, "alpha": self.alpha}


@dataclass(frozen=True, eq=False)
class MultiHotFoldIn(FoldIn):
    """EASE's user row: the history as a 0/1 row over the I items."""

    n_items: int

    kind: ClassVar[str] = "multi_hot"

    def embed(self, histories: Sequence[np.ndarray], users: np.ndarray) -> np.ndarray:
        return _history_matrix(histories, self.n_items).toarray()


def read_fold_in(
    root: Path, params: dict[str, Any] | None, users: IdMap, items: IdMap, item_emb: np.ndarray
) -> FoldIn | None:
    """The rule ``bundle.json``'s ``fold_in`` names (None: the model has none).

    Raises:
        DataError: an unknown kind, bad parameters or a missing / mismatched file.
    """
    if params is None:
        return None
    where = root / "bundle.json"
    kind = params.get("kind")
    if kind == PropagationFoldIn.kind:
        return PropagationFoldIn.read(root, params, users, items)
    if kind == LeastSquaresFoldIn.kind:
        reg, alpha = params.get("regularization"), params.get("alpha")
        if not (isinstance(reg, (int, float)) and reg >= 0 and isinstance(alpha, (int, float))):
            raise DataError(f"{where}: fold_in least_squares needs regularization and alpha")
        return LeastSquaresFoldIn(item_emb, float(reg), float(alpha))
    if kind == MultiHotFoldIn.kind:
        if item_emb.shape[1] != items.size:
            raise DataError(f"{where}: fold_in multi_hot needs D = I ({items.size})")
        return MultiHotFoldIn(items.size)
    raise DataError(f"{where}: unknown fold_in kind {kind!r}")


def fold_in_of(
    model: Any,
    state: dict[str, Any],
    train_indptr: np.ndarray,
    train_indices: np.ndarray,
    item_emb: np.ndarray,
) -> FoldIn | None:
    """The fold-in rule of a finished run: its ``model`` config block, its saved ``state``
    (``model.pt``) and its training pairs as CSR (``train_indptr`` [U + 1], ``train_indices``,
    the graph it propagated over). None for a method without one (MF, or zero layers)."""
    from recsys_cl.config import EASEConfig, IALSConfig
    from recsys_cl.config.schema import GraphMethodConfig

    if isinstance(model, IALSConfig):
        return LeastSquaresFoldIn(item_emb, float(model.regularization), float(model.alpha))
    if isinstance(model, EASEConfig):
        return MultiHotFoldIn(item_emb.shape[0])
    if isinstance(model, GraphMethodConfig) and model.layers >= 1:
        return _propagation_of(
            model.layers, model.include_layer0, state, train_indptr, train_indices
        )
    return None


def _propagation_of(
    layers: int,
    include_layer0: bool,
    state: dict[str, Any],
    indptr: np.ndarray,
    indices: np.ndarray,
) -> PropagationFoldIn:
    """The item rows of layers 0..L-1 of the saved table propagated over the training graph."""
    weight = state.get("encoder.weight")
    if weight is None:
        raise DataError("model.pt has no encoder.weight: not a LightGCN-based run")
    import torch

    from recsys_cl.graph import build_graph, sym_spmm

    table = weight.detach().cpu().float()
    n_users = len(indptr) - 1
    n_items = table.shape[0] - n_users
    rows = np.repeat(np.arange(n_users), np.diff(indptr))
    # The graph and propagation the encoder used (LightGCN eq. 3), layer by layer.
    graph = build_graph(
        torch.from_numpy(rows), torch.from_numpy(np.asarray(indices)), n_users, n_items
    )
    x, item_layers = table, [table[n_users:]]
    with torch.no_grad():
        for _ in range(layers - 1):
            x = sym_spmm(graph.adj, x)
            item_layers.append(x[n_users:])
    return PropagationFoldIn(
        torch.stack(item_layers).numpy().astype(np.float32),
        np.bincount(indices, minlength=n_items).astype(np.float32),
        np.ascontiguousarray(table[:n_users].numpy()),
        include_layer0,
    )


def _rows(column: pl.Series, path: Path) -> np.ndarray:
    try:
        rows = np.stack(list(column.to_numpy())).astype(np.float32)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: {column.name} is not one vector per row ({exc})") from None
    if not np.isfinite(rows).all():
        raise DataError(f"{path}: {column.name} holds a non-finite value")
    return rows


def _same_ids(column: pl.Series, ids: IdMap, path: Path) -> None:
    if column.len() != ids.size or not column.equals(ids.raw, check_names=False):
        raise DataError(f"{path}: its ids are not the bundle's, in the bundle's order")


__all__ = [
    "FOLD_IN_ITEMS_FILE",
    "FOLD_IN_USERS_FILE",
    "FoldIn",
    "LeastSquaresFoldIn",
    "MultiHotFoldIn",
    "PropagationFoldIn",
    "fold_in_of",
    "read_fold_in",
]
