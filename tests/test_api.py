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
