"""The top-level API: every exported name resolves to its subpackage's object, the README's
Python example imports only exported names, and importing the package loads no heavy library."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import recsys_cl

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", recsys_cl.__all__)
def test_exported_names_are_the_subpackages_objects(name: str) -> None:
    if name == "CandidateModel":
        pytest.importorskip("faiss", reason="CandidateModel needs the cpu or gpu extra")
    module = importlib.import_module(recsys_cl._API[name])
    assert getattr(recsys_cl, name) is getattr(module, name)


def test_the_type_checking_imports_match_the_lazy_table() -> None:
    # The TYPE_CHECKING block (for linters and type checkers) names exactly the _API table.
    source = Path(recsys_cl.__file__).read_text()
    block = source.split("if TYPE_CHECKING:", 1)[1].split("__getattr__", 1)[0]
    pairs = set(re.findall(r"from (recsys_cl[\w.]*) import (\w+) as \2", block))
    assert pairs == {(module, name) for name, module in recsys_cl._API.items()}


def test_every_method_and_config_model_is_exported() -> None:
    # A new method is a class and a config model; the export lists are checked here, from
    # the registry (the ModelConfig union) and the class hierarchy, not kept by hand.
    import recsys_cl.config as config
    import recsys_cl.models as models
    from recsys_cl.config.base import Frozen  # the pydantic base, not part of the API
    from recsys_cl.models import methods

    for model in config.model_configs():
        for cls in model.__mro__:
            public = cls.__module__.startswith("recsys_cl.config.") and cls.__name__[0] != "_"
            if public and cls is not Frozen:
                assert cls.__name__ in config.__all__, f"recsys_cl.config exports {cls.__name__}"
    classes = [
        value
        for name, value in vars(methods).items()
        if isinstance(value, type)
        and issubclass(value, models.Recommender)
        and value.__module__ == methods.__name__
        and not name.startswith("_")
    ]
    assert {"SGL", "SimGCL", "XSimGCL", "LightGCNRec", "MFRec"} <= {c.__name__ for c in classes}
    for cls in classes:
        assert cls.__name__ in models.__all__, f"recsys_cl.models exports {cls.__name__}"
        if issubclass(cls, models.ContrastiveMethod) and cls is not models.ContrastiveMethod:
            assert cls.__name__ in recsys_cl.__all__, f"recsys_cl exports {cls.__name__}"


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Traner'"):
        recsys_cl.Traner  # noqa: B018


def test_version_is_the_installed_distribution() -> None:
    assert recsys_cl.__version__ == importlib.metadata.version("recsys-cl")


def test_the_readme_python_example_uses_the_top_level_api() -> None:
    text = README.read_text()
    block = text.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    imported = re.search(r"from recsys_cl import \(([^)]*)\)", block)
    assert imported is not None, "the example imports from recsys_cl"
    names = {n.strip() for n in imported.group(1).replace("\n", " ").split(",") if n.strip()}
    assert names and names <= set(recsys_cl.__all__)
    assert "from recsys_cl." not in block  # nothing from a subpackage


@pytest.mark.integration
def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, recsys_cl; "
        "print(sorted(m for m in ('torch', 'faiss', 'mlflow', 'polars') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_extending_example_builds_a_working_method() -> None:
    # The README's "Extending" example is run as written: its method trains one step.
    import torch

    text = README.read_text()
    block = text.split("\n## Extending: a new contrastive method", 1)[1]
    block = block.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md (Extending)", "exec"), namespace)
    method = namespace["method"]
    from recsys_cl.graph import build_graph
    from recsys_cl.models import Batch

    graph = build_graph(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), 943, 1682)
    batch = Batch(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([5, 6]))
    loss = method.loss(graph.adj, batch, None, torch.Generator().manual_seed(0))
    loss.total.backward()
    assert loss.cl.item() > 0 and method.encoder.weight.grad is not None


def test_the_readme_strategy_recipe_builds_a_working_miner() -> None:
    # The README's "Extending: a new strategy" recipe, run as written: the miner's config
    # validates through its union and builds the selector the trainer would use.
    from pydantic import TypeAdapter

    from recsys_cl.imbalance import DNSSelector

    text = README.read_text()
    block = text.split("\n### Extending: a new strategy", 1)[1]
    block = block.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(
        compile(block, "README.md (Extending: a new strategy)", "exec", dont_inherit=True),
        namespace,
    )
    miner = TypeAdapter(namespace["HardNegativeConfig"]).validate_python(
        {"kind": "top_of_k", "candidates": 5}
    )
    assert type(miner).__name__ == "TopOfKConfig" and miner.negatives_per_row == 5
    selector = miner.selector()
    assert isinstance(selector, DNSSelector) and selector.keep == 1
