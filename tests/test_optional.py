"""Without FAISS (an extra), the features that need it say so in one line; training does not."""

from __future__ import annotations

import importlib.util

import pytest

from recsys_cl.cli import main
from recsys_cl.config import load_config
from recsys_cl.data.user_items import UserItems
from recsys_cl.jobs.build import build_imbalance
from recsys_cl.optional import MissingDependencyError


@pytest.fixture
def no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):  # noqa: ANN202
        return None if name == "faiss" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("command", ["index", "recommend"])
def test_retrieval_commands_name_the_extra(
    no_faiss: None, command: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"recsys-cl {command} needs FAISS: pip install 'recsys-cl[cpu]'" in err


def test_ann_negatives_fail_at_start_up_without_faiss(no_faiss: None) -> None:
    import numpy as np

    cfg = load_config(None, ["data.dataset=ml-100k", "imbalance.negatives.hard.kind=ann"])
    train = UserItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 3)
    with pytest.raises(MissingDependencyError, match="imbalance.negatives.hard: ann needs FAISS"):
        build_imbalance(cfg.imbalance, train)
    # Other strategies build without FAISS.
    plain = load_config(None, ["data.dataset=ml-100k", "imbalance.negatives.hard.kind=dns"])
    build_imbalance(plain.imbalance, train)
