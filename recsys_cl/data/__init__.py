"""Interaction-log ingestion: readers, preprocessing, id maps, splits, profiles, benchmarks.

Typical use::

    raw = load_benchmark("ml-100k")
    split = prepare(raw, split="leave_one_out", val_ratio=1.0, implicit_threshold=4.0,
                    user_k=3)
    print(format_profile(profile(split)))
    save_split(split, "outputs/ml-100k")
"""

from recsys_cl.data.frame import ColumnMap, from_frame, from_pandas, to_pandas
from recsys_cl.data.idmap import IdMap
from recsys_cl.data.lazy import prepare_lazy
from recsys_cl.data.prepare import load_split, prepare, save_split
from recsys_cl.data.preprocess import deduplicate, k_core, to_implicit
from recsys_cl.data.readers import FORMATS, detect_format, read_interactions
from recsys_cl.data.registry import (
    REGISTRY,
    DatasetSpec,
    RawDataset,
    RemoteFile,
    dataset_names,
    get_spec,
    load_benchmark,
    resolve,
)
from recsys_cl.data.scan import scan_interactions
from recsys_cl.data.splits import (
    ColdCounts,
    ColdReport,
    Split,
    split_given,
    split_leave_one_out,
    split_ratio,
    split_temporal,
)
from recsys_cl.data.stats import (
    DatasetProfile,
    Quantiles,
    format_profile,
    gini,
    profile,
)
from recsys_cl.data.user_items import UserItems

__all__ = [
    "FORMATS",
    "REGISTRY",
    "ColdCounts",
    "ColdReport",
    "ColumnMap",
    "DatasetProfile",
    "DatasetSpec",
    "IdMap",
    "Quantiles",
    "RawDataset",
    "RemoteFile",
    "Split",
    "UserItems",
    "dataset_names",
    "deduplicate",
    "detect_format",
    "format_profile",
    "from_frame",
    "from_pandas",
    "get_spec",
    "gini",
    "k_core",
    "load_benchmark",
    "load_split",
    "prepare",
    "prepare_lazy",
    "profile",
    "read_interactions",
    "resolve",
    "save_split",
    "scan_interactions",
    "split_given",
    "split_leave_one_out",
    "split_ratio",
    "split_temporal",
    "to_implicit",
    "to_pandas",
]
