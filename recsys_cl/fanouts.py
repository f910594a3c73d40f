"""The per-hop fanout rule of sampled-subgraph training, free of torch.

It lives outside :mod:`recsys_cl.graph` (whose package loads torch) so that the config schema
can check ``train.sampled.fanouts`` at load without importing torch, and the sampler applies
the same rule with the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence

ALL_NEIGHBOURS = -1
"""The fanout that keeps every neighbour of a node."""


def check_fanouts(fanouts: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Validate per-hop fanouts against the encoder's layer count; return them as a tuple.

    Raises:
        ValueError: one line naming the problem: a length other than ``n_layers``, a fanout
            that is 0, below -1 or not an integer.
    """
    values = tuple(fanouts)
    if len(values) != n_layers:
        raise ValueError(
            f"fanouts {list(values)} has {len(values)} entries but the encoder has {n_layers} "
            f"layers: give one fanout per layer"
        )
    for hop, k in enumerate(values, start=1):
        if isinstance(k, bool) or not isinstance(k, int):
            # ValueError, not TypeError: pydantic turns only ValueError into a config error.
            msg = f"fanout of hop {hop} must be an integer, got {k!r}"
            raise ValueError(msg)  # noqa: TRY004
        if k == 0 or k < ALL_NEIGHBOURS:
            raise ValueError(
                f"fanout of hop {hop} must be >= 1 or -1 (every neighbour), got {k}"
            )
    return values
