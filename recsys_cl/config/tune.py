"""A search space for ``recsys-cl tune`` (``configs/tune/*.yaml``): which run-config keys to
sample, how the trials are judged and pruned, and what is fixed for the whole search.

```yaml
metric: ndcg@20                 # validation metric to maximise (default: train.select_metric)
trials: 30                      # default budget (--trials overrides)
timeout: null                   # seconds after which no new trial starts (--timeout overrides)
sampler: {seed: 2024, startup_trials: 10}              # TPE; seed default: the config's seed
pruner: {kind: median, warmup_epochs: 30, startup_trials: 5}   # or {kind: none}
set: [train.epochs=120, train.patience=0]              # fixed for every trial (and best.yaml)
params:                         # dotted run-config keys
  model.cl_weight: {type: float, low: 1.0e-3, high: 1.0, log: true}
  model.layers: {type: int, low: 1, high: 3}
  model.include_layer0: {type: categorical, choices: [true, false]}
```

Every sampled key is checked against the run config at load: its extreme values (``low`` and
``high``, or each choice) are set one at a time into the search's base config and validated,
so a key the config does not have, or a range it rejects, fails before any trial runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from recsys_cl.errors import ConfigError

from .base import Frozen
from .loader import apply_overrides, parse_override, read_yaml, set_values, validate
from .schema import RunConfig

Scalar = bool | int | float | str

# Keys a search may not sample: the data and its split (every trial must be scored on the same
# validation rows), the protocol and metrics (what "better" means), and where things go.
_FIXED_PREFIXES = ("data.", "eval.", "tracking.", "retrieval.")
_FIXED_KEYS = (
    "seed",
    "output_dir",
    "experiment",
    "train.protocol",
    "train.select_metric",
    "train.device",
)


class ParamSpace(Frozen):
    """One sampled key: ``float`` / ``int`` in [low, high] (``log``: log-uniform; ``step``: a
    grid from low), or ``categorical`` over ``choices``."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: tuple[Scalar, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty choices list")
            extra = [k for k in ("low", "high", "step") if getattr(self, k) is not None]
            if extra or self.log:
                raise ValueError(f"categorical takes only choices, not {(extra or ['log'])[0]}")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs low and high")
        if not self.low < self.high:
            raise ValueError(
                f"low ({self.low:g}) must be < high ({self.high:g}); fix a value with set: instead"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"int {name} must be a whole number, got {value:g}")
        return self

    def extremes(self) -> tuple[Scalar, ...]:
        """The values checked against the run config at load."""
        if self.type == "categorical":
            assert self.choices is not None
            return self.choices
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return (int(self.low), int(self.high))
        return (self.low, self.high)

    def describe(self) -> str:
        """``float [0.001, 1] log``, ``int [1, 4] step 1``, ``categorical [true, false]``."""
        if self.type == "categorical":
            return f"categorical {list(self.choices or ())}"
        low, high = self.extremes()
        tail = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.type} [{low:g}, {high:g}]{tail}"


class SamplerSpace(Frozen):
    """The TPE sampler: ``seed`` (default: the run config's) and the random trials it draws
    before modelling (Optuna's default, 10)."""

    seed: int | None = None
    startup_trials: int = Field(10, ge=0)


class PrunerSpace(Frozen):
    """Median pruning of trials whose validation curve falls below the median of earlier
    trials at the same epoch, or ``none``.

    ``warmup_epochs`` (default 30): no trial is pruned before this epoch. Contrastive training
    curves dip before they improve (issue 13 measured the dip ending by epoch ~13 on a music
    log and ~4 on Gowalla with the shipped λ, and XSimGCL with the paper λ on ML-100K still
    falling at 46); median pruning inside the dip would discard exactly the runs that recover,
    so the default waits past the dips seen with sensible λ and leaves the very long ones to
    the epoch budget. ``startup_trials``: trials that finish unpruned before pruning starts.
    """

    kind: Literal["median", "none"] = "median"
    warmup_epochs: int = Field(30, ge=0)
    startup_trials: int = Field(5, ge=0)


class TuneSpace(Frozen):
    """A search space file (see the module docstring)."""

    model_config = ConfigDict(populate_by_name=True)

    params: dict[str, ParamSpace]
    metric: str | None = None
    trials: int = Field(20, gt=0)
    timeout: float | None = Field(None, gt=0)
    sampler: SamplerSpace = SamplerSpace()
    pruner: PrunerSpace = PrunerSpace()
    overrides: tuple[str, ...] = Field(default=(), alias="set")

    @field_validator("params")
    @classmethod
    def _keys(cls, value: dict[str, ParamSpace]) -> dict[str, ParamSpace]:
        if not value:
            raise ValueError("needs at least one parameter to search")
        for key in value:
            if not key or any(not part.strip() for part in key.split(".")):
                raise ValueError(f"{key!r}: expected a dotted run-config key such as model.tau")
            if key in _FIXED_KEYS or key.startswith(_FIXED_PREFIXES):
                raise ValueError(
                    f"{key}: not searchable (every trial keeps the same data, split, metric, "
                    "protocol and outputs); set it in the run config or with set:"
                )
        return value


def load_space(path: str | os.PathLike[str]) -> TuneSpace:
    """Read and validate a search space file; a mistake is a one-line :class:`ConfigError`."""
    return validate(read_yaml(path), TuneSpace, str(path))


def search_base(
    config_path: str | os.PathLike[str],
    space: TuneSpace,
    space_path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
) -> tuple[dict[str, Any], RunConfig]:
    """The raw mapping every trial starts from (the run config, the space's ``set`` and then
    the command line's ``--set``; the space's metric as ``train.select_metric``) and its
    validated config, after checking every sampled key against it.

    Raises:
        ConfigError: one line naming the space file and the key at fault, or the config's
            own error; the honest protocol is required (test is never looked at).
    """
    sets = [*space.overrides, *overrides]
    fixed = {parse_override(text)[0][0] for text in sets}
    for text in sets:
        key = ".".join(parse_override(text)[0])
        if key in space.params:
            raise ConfigError(
                f"{space_path}: params.{key} is also fixed by set/--set {text!r}; keep one"
            )
    if "output_dir" in fixed:
        raise ConfigError(f"{space_path}: the trials' folders come from --out, not set output_dir")
    raw = apply_overrides(read_yaml(config_path), sets)
    if space.metric is not None:
        raw = set_values(raw, {"train.select_metric": space.metric})
    base = validate(raw, RunConfig, f"{config_path} (with {space_path})")
    if base.train.protocol != "honest":
        raise ConfigError(
            f"{config_path}: tune searches on validation and never looks at test: it needs "
            f"train.protocol honest (got {base.train.protocol!r})"
        )
    for key, param in space.params.items():
        for value in param.extremes():
            try:
                validate(set_values(raw, {key: value}, f"{space_path}: params.{key}"), RunConfig)
            except ConfigError as exc:
                reason = str(exc).removeprefix("config: ")
                if reason.startswith(f"{key}: unknown key"):
                    raise ConfigError(
                        f"{space_path}: params.{key}: not a key of the run config {config_path} "
                        f"(method {base.model.method})"
                    ) from None
                raise ConfigError(
                    f"{space_path}: params.{key}: the run config rejects {value!r} ({reason})"
                ) from None
    return raw, base


def trial_config(
    raw: Mapping[str, Any], values: Mapping[str, Any], output_dir: Path, source: str
) -> RunConfig:
    """The run config of one trial: the search's base with the sampled ``values``."""
    return validate(
        set_values(dict(raw), {**values, "output_dir": str(output_dir)}, source), RunConfig, source
    )
