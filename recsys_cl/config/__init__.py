"""Typed configuration: schemas and YAML loading with ``--set`` overrides."""

from .loader import apply_overrides, load_config, parse_override, read_yaml, to_yaml, validate
from .schema import (
    ColumnsConfig,
    DataConfig,
    EvalConfig,
    LightGCNConfig,
    MFConfig,
    ModelConfig,
    RunConfig,
    SGLConfig,
    SimGCLConfig,
    SplitConfig,
    TrainConfig,
    XSimGCLConfig,
)

__all__ = [
    "ColumnsConfig",
    "DataConfig",
    "EvalConfig",
    "LightGCNConfig",
    "MFConfig",
    "ModelConfig",
    "RunConfig",
    "SGLConfig",
    "SimGCLConfig",
    "SplitConfig",
    "TrainConfig",
    "XSimGCLConfig",
    "apply_overrides",
    "load_config",
    "parse_override",
    "read_yaml",
    "to_yaml",
    "validate",
]
