"""A strategy sweep (``configs/sweeps/*.yaml``): one base run config, several imbalance
strategies, each trained on the same data with the same seed (``recsys-cl compare``).

```yaml
base: ../ml-100k/xsimgcl.yaml      # relative to this file
output_dir: runs/ml-100k/compare   # each strategy trains in <output_dir>/<name>
set: [train.epochs=100]            # --set overrides applied to the base for every strategy
strategies:                        # name: an imbalance YAML (relative path) or an inline block
  none: ../imbalance/none.yaml
  mild_ipw: {weights: {propensity_gamma: 0.2}}
models:                            # optional: other methods on the same split, side by side
  ease: {method: ease, lambda: 500}
  ials: {method: ials, factors: 64, regularization: 0.1, alpha: 10}
```

A ``models`` entry replaces the base's ``model`` block and trains without an imbalance
strategy; the sweep's ``model.*`` and ``imbalance.*`` overrides, which are written for the base
method, do not apply to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from recsys_cl.errors import ConfigError

from .base import Frozen
from .loader import apply_overrides, parse_override, read_yaml, validate
from .schema import RunConfig

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SweepConfig(Frozen):
    model_config = ConfigDict(populate_by_name=True)

    base: Path
    output_dir: Path | None = None
    overrides: tuple[str, ...] = Field(default=(), alias="set")
    strategies: dict[str, str | dict[str, Any]]
    models: dict[str, dict[str, Any]] = {}

    @field_validator("strategies", "models")
    @classmethod
    def _names(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if len(value) < 1 and info.field_name == "strategies":
            raise ValueError("needs at least one strategy")
        bad = [name for name in value if not _NAME.match(name)]
        if bad:
            raise ValueError(f"strategy name {bad[0]!r}: use letters, digits, '_', '-', '.'")
        return value


def load_sweep(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> list[tuple[str, RunConfig]]:
    """Each strategy's full run config, in the sweep's order: the base config with the
    sweep's and then ``overrides``' ``--set`` values, the strategy's ``imbalance`` block and
    ``output_dir = <sweep output_dir>/<name>``.

    Raises:
        ConfigError: one line naming the sweep file (and the strategy) at fault.
    """
    sweep_path = Path(path)
    sweep = validate(read_yaml(sweep_path), SweepConfig, str(sweep_path))
    sets = [*sweep.overrides, *overrides]
    if any(parse_override(text)[0][0] == "output_dir" for text in sets):
        raise ConfigError(
            f"{sweep_path}: set output_dir in the sweep file or with --out, not --set"
        )
    here = sweep_path.parent
    base_path = here / sweep.base
    base = read_yaml(base_path)
    runs = []
    for name, strategy in sweep.strategies.items():
        if isinstance(strategy, str):
            block = read_yaml(here / strategy)
            source = f"{sweep_path} (strategy {name}: {here / strategy})"
        else:
            block = strategy
            source = f"{sweep_path} (strategy {name})"
        # The overrides go on top of the strategy's block, so --set imbalance.x applies too.
        raw = apply_overrides({**base, "imbalance": block}, sets)
        runs.append((name, validate(raw, RunConfig, source)))
    own = [text for text in sets if parse_override(text)[0][0] not in ("model", "imbalance")]
    for name, model in sweep.models.items():
        if name in sweep.strategies:
            raise ConfigError(f"{sweep_path}: {name!r} is both a strategy and a model")
        raw = apply_overrides({**base, "model": model, "imbalance": {}}, own)
        runs.append((name, validate(raw, RunConfig, f"{sweep_path} (model {name})")))
    root = sweep.output_dir or runs[0][1].output_dir / "compare"
    return [(name, cfg.model_copy(update={"output_dir": root / name})) for name, cfg in runs]
