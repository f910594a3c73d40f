"""A strategy sweep (``configs/sweeps/*.yaml``): one base run config, several imbalance
strategies, each trained on the same data with the same seed (``recsys-cl compare``).

```yaml
base: ../ml-100k/xsimgcl.yaml      # relative to this file
output_dir: runs/ml-100k/compare   # each strategy trains in <output_dir>/<name>
set: [train.epochs=100]            # --set overrides applied to the base for every strategy
strategies:                        # name: an imbalance YAML (relative path) or an inline block
  none: ../imbalance/none.yaml
  mild_ipw: {weights: {propensity_gamma: 0.2}}
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .loader import apply_overrides, read_yaml, validate
from .schema import RunConfig

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    base: Path
    output_dir: Path | None = None
    overrides: tuple[str, ...] = Field(default=(), alias="set")
    strategies: dict[str, str | dict[str, Any]]

    @field_validator("strategies")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) < 1:
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
    here = sweep_path.parent
    base_path = here / sweep.base
    base = apply_overrides(read_yaml(base_path), [*sweep.overrides, *overrides])
    root = sweep.output_dir or Path(validate(base, RunConfig, str(base_path)).output_dir) / "compare"
    runs = []
    for name, strategy in sweep.strategies.items():
        if isinstance(strategy, str):
            block = read_yaml(here / strategy)
            source = f"{sweep_path} (strategy {name}: {here / strategy})"
        else:
            block = strategy
            source = f"{sweep_path} (strategy {name})"
        raw = {**base, "imbalance": block, "output_dir": str(root / name)}
        runs.append((name, validate(raw, RunConfig, source)))
    return runs
