r"""Hard negatives chosen inside the batch's own forward pass (the methods' ``NegativeSelector``).

The trainer draws M candidates per row (uniformly, or popularity-aware: any negative sampler,
so they are never the user's positives); the method hands the selector the propagation it just
computed, so candidates are judged by the current model without an extra pass. Choices are made
under ``torch.no_grad``; the returned embeddings carry gradients.

- :class:`DNSSelector` — dynamic negative sampling (Zhang et al., SIGIR 2013): keep the
  candidate(s) the current model scores highest, :math:`j^* = \arg\max_{j \in C} \langle e_u,
  e_j \rangle`.
- :class:`MixGCFSelector` — MixGCF (Huang et al., KDD 2021): synthesize a negative from the
  candidates' per-layer embeddings. *Positive mixing*, per layer l and row b with
  :math:`\alpha^{(l)} \sim U(0, 1)`: :math:`e'^{(l)}_j = \alpha^{(l)} e^{(l)}_{i^+} +
  (1 - \alpha^{(l)}) e^{(l)}_j` for every candidate j; *hop mixing*: per layer, keep the mixed
  candidate the user scores highest, :math:`j_l = \arg\max_j \langle e_u, e'^{(l)}_j \rangle`
  (e_u the pooled user embedding), and pool the chosen layers like the encoder does (mean):
  :math:`e^-_u = \mathrm{mean}_l\, e'^{(l)}_{j_l}`. As in the reference code, α is shared by a
  row's candidates and drawn per layer; the layers are those whose mean is the final
  embedding (``Propagation.layers``).

Shapes: B rows, M candidates, K kept, D dims, I items, U users, N = U + I, L' mixed layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recsys_cl.models.base import Batch, SelectedNegatives
from recsys_cl.models.encoders import Propagation
from recsys_cl.rng import rand


def _candidates(batch: Batch) -> Tensor:
    return batch.neg_items if batch.neg_items.dim() == 2 else batch.neg_items.unsqueeze(1)


@torch.no_grad()
def dns_select(user: Tensor, item: Tensor, candidates: Tensor, keep: int) -> Tensor:
    """The ``keep`` highest-scoring candidates of each row, best first.

    Args:
        user: float [B, D], the rows' user embeddings.
        item: float [I, D], item embeddings.
        candidates: long [B, M].
        keep: K ≤ M.

    Returns:
        long [B, K] item ids (detached: the choice carries no gradient).
    """
    if not 1 <= keep <= candidates.shape[1]:
        raise ValueError(f"keep must be in 1..{candidates.shape[1]}, got {keep}")
    scores = (user.unsqueeze(1) * item[candidates]).sum(dim=-1)  # [B, M]
    top = torch.topk(scores, keep, dim=1).indices
    return torch.gather(candidates, 1, top)


class DNSSelector:
    """DNS (module docstring): score the M candidates with the batch's own embeddings, keep the
    top K (K = 1 in the paper). Args: keep: K ≥ 1."""

    def __init__(self, keep: int = 1) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep

    def __call__(
        self, prop: Propagation, batch: Batch, generator: torch.Generator | None
    ) -> SelectedNegatives:
        with torch.no_grad():
            chosen = dns_select(prop.user[batch.users], prop.item, _candidates(batch), self.keep)
        if self.keep == 1:
            chosen = chosen.squeeze(1)
        (item,), (ego,) = prop.rows_and_ego(None, chosen)
        return SelectedNegatives(item=item, ego=ego)


class MixGCFSelector:
    """MixGCF (module docstring): one synthetic negative per row from its M candidates.

    The ego L2 of the synthetic negative is the same mixture of the layer-0 embeddings,
    :math:`\\mathrm{mean}_l (\\alpha^{(l)} e^{(0)}_{i^+} + (1 - \\alpha^{(l)}) e^{(0)}_{j_l})`
    (the reference code penalises hop 0 of the synthetic negative).
    """

    def __call__(
        self, prop: Propagation, batch: Batch, generator: torch.Generator | None
    ) -> SelectedNegatives:
        if not prop.layers:
            raise ValueError("MixGCF needs the per-layer embeddings (Propagation.layers)")
        cand = _candidates(batch)  # [B, M]
        n_users = prop.user.shape[0]
        item_layers = [layer[n_users:] for layer in prop.layers]  # L' x [I, D]
        pos = torch.stack([e[batch.pos_items] for e in item_layers], dim=1)  # [B, L', D]
        cands = torch.stack([e[cand] for e in item_layers], dim=2)  # [B, M, L', D]
        b, n_layers = cand.shape[0], len(item_layers)
        alpha = rand((b, 1, n_layers, 1), cands.device, generator, dtype=cands.dtype)
        mixed = alpha * pos.unsqueeze(1) + (1.0 - alpha) * cands  # [B, M, L', D]
        with torch.no_grad():
            user = prop.user[batch.users]  # [B, D]
            scores = (user[:, None, None, :] * mixed).sum(dim=-1)  # [B, M, L']
            pick = scores.argmax(dim=1)  # [B, L']
        rows = torch.arange(b, device=cand.device).unsqueeze(1)
        layer_ids = torch.arange(n_layers, device=cand.device).unsqueeze(0)
        chosen = mixed[rows, pick, layer_ids]  # [B, L', D]
        a = alpha[:, 0]  # [B, L', 1]
        chosen_items = torch.gather(cand, 1, pick)  # [B, L']
        ego = a * prop.ego_item[batch.pos_items].unsqueeze(1) + (1.0 - a) * prop.ego_item[
            chosen_items
        ]
        return SelectedNegatives(item=chosen.mean(dim=1), ego=ego.mean(dim=1))
