"""The ``model:`` blocks of the classic baselines (EASE, iALS) and the ``baselines:`` block of
the train and main jobs (which baselines are fitted beside every run, on what grid, within
what time).

A classic block is fitted, not trained: :meth:`ClassicConfig.fit` returns score tables
(:class:`~recsys_cl.models.classic.FittedTables`) that every stage after training reads like a
graph method's embeddings. The library is imported when a block is fitted, not when a config is
read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, ConfigDict, Field, model_validator

from .base import Frozen

if TYPE_CHECKING:
    from recsys_cl.data.user_items import UserItems
    from recsys_cl.models.classic import FittedTables

GIB = 2**30


class _Aliased(Frozen):
    """Keys with aliases (EASE's ``lambda``) read by either name and written by the alias."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ClassicConfig(_Aliased):
    """Base of the classic ``model:`` blocks: a method fitted once on the training pairs."""

    method: str

    def fit(
        self, train: UserItems, *, seed: int, device: str, threads: int, progress: bool
    ) -> FittedTables:
        """The fitted model's score tables over ``train``'s users and items."""
        raise NotImplementedError(f"{type(self).__name__} does not say how it is fitted")

    def describe(self) -> str:
        """The hyper-parameters, ``key=value`` joined by ``, `` (tables and logs)."""
        values = self.model_dump(exclude={"method"}, by_alias=True)
        return ", ".join(f"{k}={v}" for k, v in values.items() if k not in _NOT_HYPER)


# Fields that limit where a block runs rather than what it fits.
_NOT_HYPER = ("max_memory_gib", "device")


class EASEConfig(ClassicConfig):
    """EASE (Steck, WWW 2019): the closed-form item-item model, one dense I x I inverse.

    ``lambda`` is the L2 weight (the paper's best values were in the hundreds on ML-20M,
    Netflix and MSD; 500 on ML-100K here, chosen on validation, benchmarks/RESULTS.md).
    ``max_memory_gib`` bounds the memory the fit may take (two I x I float32 matrices and the
    U x I user table, :func:`~recsys_cl.models.classic.ease_memory_bytes`): a catalogue
    that needs more is refused before anything is computed.
    """

    method: Literal["ease"] = "ease"
    lam: float = Field(
        500.0,
        gt=0.0,
        validation_alias=AliasChoices("lambda", "lam"),
        serialization_alias="lambda",
    )
    max_memory_gib: float = Field(8.0, gt=0.0)

    def fit(
        self, train: UserItems, *, seed: int, device: str, threads: int, progress: bool
    ) -> FittedTables:
        from recsys_cl.models.classic import fit_ease

        self.check_size(train.n_users, train.n_items)
        return fit_ease(train, self.lam, device)

    def check_size(self, n_users: int, n_items: int, key: str = "model.max_memory_gib") -> None:
        """Raise :class:`~recsys_cl.errors.ConfigError` (one line naming ``key``, the setting
        that holds the limit) when fitting on ``n_users`` x ``n_items`` would need more than
        ``max_memory_gib``."""
        from recsys_cl.errors import ConfigError
        from recsys_cl.models.classic import ease_memory_bytes

        need = ease_memory_bytes(n_users, n_items)
        if need > self.max_memory_gib * GIB:
            raise ConfigError(
                f"{key}: EASE on {n_items:,} items x {n_users:,} users needs "
                f"{need / GIB:.1f} GiB (two {n_items:,}^2 float32 matrices and the user "
                f"table), over the limit of {self.max_memory_gib:g} GiB; raise it with --set "
                f"{key}={math.ceil(need / GIB)} if the machine has the memory, "
                "or use ials"
            )


class IALSConfig(ClassicConfig):
    """iALS (Hu, Koren and Volinsky, ICDM 2008) on the ``implicit`` library.

    Defaults: 64 factors (the graph methods' width), implicit's regularization 0.01, alpha 1
    and 15 iterations. ``device`` ``auto`` fits on implicit's CUDA build when it is installed
    and sees a GPU, else on the CPU.
    """

    method: Literal["ials"] = "ials"
    factors: int = Field(64, gt=0)
    regularization: float = Field(0.01, ge=0.0)
    alpha: float = Field(1.0, gt=0.0)
    iterations: int = Field(15, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def fit(
        self, train: UserItems, *, seed: int, device: str, threads: int, progress: bool
    ) -> FittedTables:
        from recsys_cl.errors import ConfigError
        from recsys_cl.models.classic import fit_ials, implicit_has_cuda

        cuda = implicit_has_cuda()
        if self.device == "cuda" and not cuda:
            raise ConfigError(
                "model.device: cuda needs implicit's CUDA build and a GPU; "
                "use model.device=cpu (or auto)"
            )
        return fit_ials(
            train,
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            seed=seed,
            use_gpu=self.device != "cpu" and cuda,
            threads=threads,
            progress=progress,
        )


class IALSGrid(_Aliased):
    """The iALS values the baseline step tries, searched in the order of the fields (alpha,
    then regularization, then factors; again while a pass moves the best), each list's first
    value the starting point. The ranges are wide because the best values differ by orders of
    magnitude between logs (ML-100K: alpha 1, regularization 10; Gowalla: alpha 40,
    regularization 0.01, benchmarks/RESULTS.md). Rendle et al. (RecSys 2022) find the
    regularization the key that matters most once iALS has enough factors."""

    alpha: tuple[float, ...] = Field((10.0, 1.0, 40.0, 0.3, 100.0), min_length=1)
    regularization: tuple[float, ...] = Field(
        (0.1, 0.01, 1.0, 10.0, 100.0, 0.001), min_length=1
    )
    factors: tuple[int, ...] = Field((64, 128, 256, 512), min_length=1)


BaselineName = Literal["ease", "ials", "most-popular"]


class BaselinesConfig(_Aliased):
    """The classic baselines the train and main jobs fit beside the model (``baselines:``).

    Each is fitted on the run's training part, its hyper-parameters chosen on the selection
    part (validation under the honest protocol) from the grids below, one coordinate at a time
    (each value of a key with the others at their best so far, keys in the order given), and
    the chosen one is scored on test once. ``budget_seconds`` bounds the whole step: no fit
    starts whose predicted time (the last fit's) would pass it; the values tried are reported.
    EASE is skipped, with the reason printed, when its memory (``ease_max_memory_gib``) would
    be exceeded.
    """

    enabled: bool = True
    which: tuple[BaselineName, ...] = ("ease", "ials", "most-popular")
    budget_seconds: float = Field(300.0, gt=0.0)
    # Steck (2019) reports the best lambda in the hundreds to thousands; the first value is
    # tried first.
    ease_lambdas: tuple[float, ...] = (500.0, 100.0, 200.0, 1000.0, 2000.0, 50.0)
    ease_max_memory_gib: float = Field(4.0, gt=0.0)
    ials_grid: IALSGrid = Field(default_factory=lambda: IALSGrid())
    ials_iterations: int = Field(15, gt=0)

    @model_validator(mode="after")
    def _grids(self) -> BaselinesConfig:
        if not self.ease_lambdas or any(not lam > 0 for lam in self.ease_lambdas):
            raise ValueError("ease_lambdas must be a non-empty list of positive numbers")
        if len(set(self.which)) != len(self.which):
            raise ValueError(f"which names a baseline twice: {list(self.which)}")
        return self


__all__ = ["GIB", "BaselinesConfig", "ClassicConfig", "EASEConfig", "IALSConfig", "IALSGrid"]
