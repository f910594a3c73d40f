r"""Negative samplers: popularity-aware and ANN-mined (the trainer's ``NegativeSampler``).

- :class:`PopularityNegativeSampler`: :math:`P(j \mid u) \propto n_j^{\alpha}` over the items u
  has not interacted with in training (α = 0 uniform, 0.75 as word2vec's unigram^0.75
  (Mikolov et al., NeurIPS 2013), 1 popularity-proportional).
- :class:`ANNNegativeSampler`: hard negatives from a FAISS inner-product index over the current
  item embeddings, rebuilt every R epochs; a user's negatives are drawn uniformly from the items
  at ranks [r_min, r_max] of their nearest neighbours, counted among items they have not
  interacted with. Skipping ranks below r_min avoids the likeliest false negatives (unobserved
  items the user would like). It needs the model, so it is also an
  :class:`~recsys_cl.training.EpochHook`; its neighbour table is checkpointed.

Both never return a training positive of the user (rejection / filtering against the positive
set). Shapes: U users, I items, B rows.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys_cl.data.user_items import UserItems
from recsys_cl.errors import DataError
from recsys_cl.training.hooks import EmbeddingsFn
from recsys_cl.training.sampling import PositiveSet, RejectionNegativeSampler

# Users per FAISS search call when mining neighbours: bounds the [chunk, k] result arrays.
ANN_USER_CHUNK = 4096


class PopularityNegativeSampler(RejectionNegativeSampler):
    r"""Negatives with :math:`P(j \mid u) = n_j^{\alpha} / \sum_{k \notin P_u} n_k^{\alpha}`.

    Proposals come from the global :math:`n^\alpha` distribution by inverse CDF and training
    positives are rejected, which leaves exactly the distribution restricted to the user's
    non-positive items. With α > 0 an item without training interactions (n = 0) is never drawn.

    Args:
        positives: the training positives (never returned).
        popularity: int [I], n_j (training interactions per item).
        alpha: α ≥ 0.
        rejection_rounds: vectorized redraw rounds before the exact per-user fallback.
    """

    def __init__(
        self,
        positives: UserItems,
        popularity: np.ndarray,
        alpha: float,
        rejection_rounds: int = 16,
    ) -> None:
        super().__init__(positives, rejection_rounds)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        pop = np.asarray(popularity, dtype=np.float64)
        if pop.shape != (positives.n_items,):
            raise ValueError(f"popularity must be [I]=[{positives.n_items}], got {pop.shape}")
        self.alpha = alpha
        # 0 ** 0 = 1: with α = 0 every item, popular or not, weighs 1 (uniform).
        self.item_weights = torch.from_numpy(pop**alpha)
        if not float(self.item_weights.sum()) > 0:
            raise DataError("no item has a positive sampling weight")
        self._cumulative = torch.cumsum(self.item_weights, 0)

    def probabilities(self, user: int) -> np.ndarray:
        """float64 [I]: the exact negative distribution of ``user`` (zero on positives)."""
        w = self.item_weights.numpy().copy()
        w[self.positives.items_of(user)] = 0.0
        return w / w.sum()

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        total = self._cumulative[-1]
        r = torch.rand(n, generator=generator, dtype=torch.float64) * total
        return torch.searchsorted(self._cumulative, r, right=True).clamp_(
            max=self.positives.n_items - 1
        )

    def _draw_from(self, free: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
        w = self.item_weights[torch.from_numpy(free)]
        if not float(w.sum()) > 0:
            raise DataError(
                f"a user's non-positive items all have popularity 0: none can be drawn with "
                f"alpha={self.alpha} (use alpha 0 or drop such users)"
            )
        cum = torch.cumsum(w, 0)
        r = torch.rand(n, generator=generator, dtype=torch.float64) * cum[-1]
        pick = torch.searchsorted(cum, r, right=True).clamp_(max=len(free) - 1)
        return torch.from_numpy(free)[pick]


class ANNNegativeSampler:
    """Negatives mined from the current model's nearest items (module docstring).

    Call :meth:`on_epoch_start` (the trainer does, as an epoch hook) before sampling: at epochs
    1, 1 + R, 1 + 2R, ... it searches a ``faiss.IndexFlatIP`` over the item embeddings with
    every user embedding (exact inner-product search: the training similarity) and keeps, per
    user, the item ids at ranks r_min..r_max (1-based) among the items that are not the user's
    training positives. :meth:`sample` then draws uniformly from that window. A user with fewer
    than r_max non-positive items gets the window slid down to end at their last rank.

    Args:
        positives: the training positives (never returned).
        rank_min, rank_max: the rank window, 1 ≤ rank_min ≤ rank_max.
        rebuild_every: R ≥ 1, epochs between index rebuilds.
    """

    def __init__(
        self, positives: UserItems, rank_min: int, rank_max: int, rebuild_every: int
    ) -> None:
        if not 1 <= rank_min <= rank_max:
            raise ValueError(f"need 1 <= rank_min <= rank_max, got {rank_min}, {rank_max}")
        if rebuild_every < 1:
            raise ValueError(f"rebuild_every must be >= 1, got {rebuild_every}")
        self.positives = positives
        self.rank_min = rank_min
        self.rank_max = rank_max
        self.rebuild_every = rebuild_every
        self._positive_set = PositiveSet(positives)
        self.table: torch.Tensor | None = None  # int64 [U, W], W = rank_max - rank_min + 1
        self.n_valid: torch.Tensor | None = None  # int64 [U], usable entries of each row
        self.built_at = 0  # epoch of the last build (0: never)

    # -- EpochHook ---------------------------------------------------------------------------

    def on_epoch_start(self, epoch: int, embeddings: EmbeddingsFn) -> None:
        """Rebuild the neighbour table at epochs 1, 1 + R, ... (or when none exists)."""
        if self.table is None or (epoch - 1) % self.rebuild_every == 0:
            user, item = embeddings()
            self.build(user, item)
            self.built_at = epoch

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.table is None or self.n_valid is None:
            return {}
        return {
            "table": self.table,
            "n_valid": self.n_valid,
            "built_at": torch.tensor(self.built_at),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            self.table, self.n_valid, self.built_at = None, None, 0
            return
        self.table = state["table"].to(torch.int64)
        self.n_valid = state["n_valid"].to(torch.int64)
        self.built_at = int(state["built_at"])

    # -- mining ------------------------------------------------------------------------------

    def build(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> None:
        """Mine the rank window of every user from embeddings user [U, D], item [I, D]."""
        import faiss  # the faiss-cpu / faiss-gpu extra; imported only when mining is used

        n_users, n_items = self.positives.n_users, self.positives.n_items
        if user_emb.shape[0] != n_users or item_emb.shape[0] != n_items:
            raise ValueError(
                f"embeddings are {user_emb.shape[0]} x {item_emb.shape[0]}, positives "
                f"{n_users} x {n_items}"
            )
        users_np = np.ascontiguousarray(user_emb.detach().float().cpu().numpy())
        items_np = np.ascontiguousarray(item_emb.detach().float().cpu().numpy())
        index = faiss.IndexFlatIP(items_np.shape[1])
        index.add(items_np)
        width = self.rank_max - self.rank_min + 1
        table = torch.zeros(n_users, width, dtype=torch.int64)
        n_valid = torch.zeros(n_users, dtype=torch.int64)
        counts = self.positives.counts()
        # Users sorted by their number of positives, so each chunk searches a similar k.
        order = np.argsort(counts, kind="stable")
        for start in range(0, n_users, ANN_USER_CHUNK):
            chunk = order[start : start + ANN_USER_CHUNK]
            k = int(min(n_items, self.rank_max + counts[chunk].max()))
            _, ids = index.search(users_np[chunk], k)
            self._fill(torch.from_numpy(chunk), torch.from_numpy(ids), table, n_valid)
        empty = (n_valid == 0).nonzero().squeeze(1)
        if len(empty):
            raise DataError(
                f"user index {int(empty[0])} has interacted with all {n_items} items: no item "
                "is left to mine as a negative"
            )
        self.table, self.n_valid = table, n_valid

    def _fill(
        self, users: torch.Tensor, ids: torch.Tensor, table: torch.Tensor, n_valid: torch.Tensor
    ) -> None:
        ids = ids.to(torch.int64)
        if ids.shape[1] < table.shape[1]:  # a catalogue smaller than the window
            pad = torch.full((len(ids), table.shape[1] - ids.shape[1]), -1, dtype=torch.int64)
            ids = torch.cat([ids, pad], dim=1)
        found = ids >= 0
        rows = users.unsqueeze(1).expand_as(ids)
        ok = found & ~self._positive_set.contains(rows, ids.clamp(min=0))
        rank = torch.cumsum(ok.long(), dim=1)  # 1-based rank among non-positives, where ok
        n_ok = rank[:, -1]
        # Where fewer than rank_max ranks exist, the window slides down to end at the last
        # one, keeping its width where it can: [max(1, min(rank_min, n_ok - W + 1)), n_ok].
        width = self.rank_max - self.rank_min + 1
        hi = torch.minimum(n_ok, torch.tensor(self.rank_max))
        lo = torch.minimum(torch.tensor(self.rank_min), hi - width + 1).clamp(min=1)
        keep = ok & (rank >= lo.unsqueeze(1)) & (rank <= hi.unsqueeze(1))
        counts = keep.sum(dim=1)
        # Kept ids of each row, left-aligned: a stable sort puts kept columns first.
        left = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, : table.shape[1]]
        packed = torch.gather(ids, 1, left)
        packed = packed.masked_fill(torch.arange(width).unsqueeze(0) >= counts.unsqueeze(1), 0)
        table[users] = packed[:, :width]
        n_valid[users] = counts

    # -- NegativeSampler ---------------------------------------------------------------------

    def sample(self, users: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """int64 [B, num]: uniform draws from each user's mined rank window."""
        if self.table is None or self.n_valid is None:
            raise RuntimeError("ANNNegativeSampler.sample before on_epoch_start built its table")
        flat = users.repeat_interleave(num)
        valid = self.n_valid[flat]
        slot = (torch.rand(len(flat), generator=generator, dtype=torch.float64) * valid).long()
        slot = torch.minimum(slot, valid - 1)
        return self.table[flat, slot].view(-1, num)
