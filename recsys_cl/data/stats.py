"""Dataset profiles: size, sparsity and long-tail statistics, as numbers and as a table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys_cl.data.frame import ITEM, USER
from recsys_cl.data.splits import ColdReport, Split

# Pareto's 80/20 convention: the "head" is the most popular fifth of the items.
HEAD_FRACTION = 0.2


@dataclass(frozen=True)
class Quantiles:
    """Distribution of a per-user or per-item count."""

    min: float
    median: float
    p90: float
    max: float


@dataclass(frozen=True)
class DatasetProfile:
    """Summary of an interaction log or a split.

    Attributes:
        users, items, interactions: U, I and the number of rows.
        density: interactions / (U * I).
        head_share: share of interactions held by the ``head_fraction`` most popular items.
        item_gini, user_gini: Gini coefficients of item popularity and user activity
            (0 = all equal, -> 1 = all on one).
        user_activity, item_popularity: quantiles of rows per user / per item.
        parts: rows per part (``train``/``val``/``test``) for a split, else ``None``.
        cold: the split's cold-start report, else ``None``.
    """

    users: int
    items: int
    interactions: int
    density: float
    head_fraction: float
    head_share: float
    item_gini: float
    user_gini: float
    user_activity: Quantiles
    item_popularity: Quantiles
    parts: dict[str, int] | None = None
    cold: ColdReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the cold report nested as plain dicts)."""
        out = asdict(self)
        out["cold"] = None if self.cold is None else self.cold.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetProfile:
        """The inverse of :meth:`to_dict` (a prepared split's manifest holds one)."""
        fields = dict(data)
        fields["user_activity"] = Quantiles(**data["user_activity"])
        fields["item_popularity"] = Quantiles(**data["item_popularity"])
        fields["cold"] = None if data["cold"] is None else ColdReport.from_dict(data["cold"])
        return cls(**fields)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts x [n].

    ``G = sum_i (2i - n - 1) x_(i) / (n * sum x)`` with ``x_(i)`` sorted ascending, i = 1..n.
    Returns 0 for an empty or all-zero input.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.size
    total = x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def head_share(counts: np.ndarray, fraction: float = HEAD_FRACTION) -> float:
    """Share of the total held by the ``ceil(fraction * n)`` largest counts (at least one)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    if x.size == 0 or x.sum() == 0:
        return 0.0
    k = max(1, math.ceil(fraction * x.size))
    return float(x[:k].sum() / x.sum())


def _quantiles(counts: np.ndarray) -> Quantiles:
    q = np.quantile(counts, [0.0, 0.5, 0.9, 1.0])
    return Quantiles(min=float(q[0]), median=float(q[1]), p90=float(q[2]), max=float(q[3]))


def profile(data: pl.DataFrame | Split, *, head_fraction: float = HEAD_FRACTION) -> DatasetProfile:
    """Profile a canonical frame, or a split (all of its parts together, counted per part).

    For a split, U and I are the training id maps' sizes and the statistics cover the rows
    that remain in train, val and test after cold-start removal.
    """
    if isinstance(data, Split):
        parts = data.parts()
        df = pl.concat([p.select(USER, ITEM) for p in parts.values()])
        n_users, n_items = data.n_users, data.n_items
        part_rows: dict[str, int] | None = {name: p.height for name, p in parts.items()}
        cold: ColdReport | None = data.cold
    else:
        df = data
        n_users, n_items = df[USER].n_unique(), df[ITEM].n_unique()
        part_rows, cold = None, None
    return profile_of_counts(
        df.group_by(USER).len()["len"].to_numpy(),
        df.group_by(ITEM).len()["len"].to_numpy(),
        n_users,
        n_items,
        head_fraction=head_fraction,
        parts=part_rows,
        cold=cold,
    )


def profile_of_counts(
    user_counts: np.ndarray,
    item_counts: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    head_fraction: float = HEAD_FRACTION,
    parts: dict[str, int] | None = None,
    cold: ColdReport | None = None,
) -> DatasetProfile:
    """The profile of a log given its rows per user [<= U] and per item [<= I] (users and items
    with rows only, any order): what :func:`profile` computes, for logs counted out of core."""
    interactions = int(user_counts.sum())
    # Indexed users/items without rows in any part still count as zero-activity ones.
    user_counts = np.concatenate([user_counts, np.zeros(n_users - user_counts.size)])
    item_counts = np.concatenate([item_counts, np.zeros(n_items - item_counts.size)])
    return DatasetProfile(
        users=n_users,
        items=n_items,
        interactions=interactions,
        density=interactions / (n_users * n_items) if n_users and n_items else 0.0,
        head_fraction=head_fraction,
        head_share=head_share(item_counts, head_fraction),
        item_gini=gini(item_counts),
        user_gini=gini(user_counts),
        user_activity=_quantiles(user_counts),
        item_popularity=_quantiles(item_counts),
        parts=parts,
        cold=cold,
    )


def _num(value: float) -> str:
    """Thousands separators for integers, 4 significant digits otherwise."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) >= 1 else f"{value:.4g}"


def _quantile_row(q: Quantiles) -> str:
    return f"min {_num(q.min)} / median {_num(q.median)} / p90 {_num(q.p90)} / max {_num(q.max)}"


def format_profile(p: DatasetProfile, title: str | None = None) -> str:
    """A human-readable two-column table of ``p`` for the CLI."""
    rows: list[tuple[str, str]] = [
        ("users", _num(p.users)),
        ("items", _num(p.items)),
        ("interactions", _num(p.interactions)),
        ("density", f"{p.density:.4%}"),
        (f"head share (top {p.head_fraction:.0%} items)", f"{p.head_share:.1%}"),
        ("item popularity Gini", f"{p.item_gini:.3f}"),
        ("user activity Gini", f"{p.user_gini:.3f}"),
        ("rows per user", _quantile_row(p.user_activity)),
        ("rows per item", _quantile_row(p.item_popularity)),
    ]
    if p.parts is not None:
        rows += [(f"{name} rows", _num(n)) for name, n in p.parts.items()]
    if p.cold is not None:
        for name, counts in (("val", p.cold.val), ("test", p.cold.test)):
            if counts is not None:
                removed = (
                    f"{_num(counts.rows)} rows ({_num(counts.users)} users, "
                    f"{_num(counts.items)} items not in train)"
                )
                if counts.in_train_rows:
                    removed += f", {_num(counts.in_train_rows)} rows already in train"
                rows.append((f"{name} removed", removed))
    width = max(len(label) for label, _ in rows)
    lines = [title] if title else []
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)
