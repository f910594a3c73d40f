"""Fold-in from a history: each method's rule against an independent oracle (a dense
propagation with the new user's node added, the iALS normal equations, EASE's row), and the
``history`` column end to end through the candidate model, its bundle and `recsys-cl
recommend --requests`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_cl.cli import main
from recsys_cl.config import IALSConfig, LightGCNConfig, MFConfig
from recsys_cl.config.loader import load_config
from recsys_cl.graph import build_graph
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.parts import folder_parts
from recsys_cl.jobs.stages.recommend import candidate_model
from recsys_cl.jobs.stages.train import run_training
from recsys_cl.models import LightGCN
from recsys_cl.retrieval.candidate_model import SKIPPED_COLUMN, CandidateModel
from recsys_cl.retrieval.errors import UnknownUserError
from recsys_cl.retrieval.fold_in import (
    LeastSquaresFoldIn,
    MultiHotFoldIn,
    PropagationFoldIn,
    fold_in_of,
)
from recsys_cl.retrieval.request import CandidateRequestError
from tests.conftest import make_long_tail_log

pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")
pytestmark = pytest.mark.usefixtures("one_thread")


def _random_graph(n_users: int, n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of a random bipartite graph; item n_items - 1 has no edge."""
    rng = np.random.default_rng(seed)
    rows = [
        np.sort(rng.choice(n_items - 1, size=rng.integers(1, min(8, n_items - 1)), replace=False))
        for _ in range(n_users)
    ]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    return indptr, np.concatenate(rows)


def _encoder(n_users: int, n_items: int, layers: int, include_layer0: bool) -> LightGCN:
    return LightGCN(
        n_users, n_items, 8, layers, include_layer0, generator=torch.Generator().manual_seed(0)
    )


@pytest.mark.parametrize(("layers", "include_layer0"), [(1, True), (2, False), (3, True)])
def test_a_known_users_training_history_folds_into_its_propagated_embedding(
    layers: int, include_layer0: bool
) -> None:
    n_users, n_items = 30, 25
    indptr, indices = _random_graph(n_users, n_items, seed=layers)
    encoder = _encoder(n_users, n_items, layers, include_layer0)
    rows = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(indptr)))
    graph = build_graph(rows, torch.from_numpy(indices), n_users, n_items)
    with torch.no_grad():
        want = encoder(graph.adj).user.numpy()
    config = LightGCNConfig(dim=8, layers=layers, include_layer0=include_layer0)
    rule = fold_in_of(config, {"encoder.weight": encoder.weight}, indptr, indices, want)
    assert isinstance(rule, PropagationFoldIn) and rule.n_layers == layers
    histories = [indices[indptr[u] : indptr[u + 1]] for u in range(n_users)]
    got = rule.embed(histories, np.arange(n_users))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _dense_new_user(
    table: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    history: np.ndarray,
    layers: int,
    include_layer0: bool,
) -> np.ndarray:
    """The oracle: the new user's final embedding from a dense propagation of the graph with a
    node for it (layer-0 row zero) and its history's edges added, every other node's degree
    held at its training value (an item without one counts the new edge)."""
    n_users = len(indptr) - 1
    n_items = table.shape[0] - n_users
    n = n_users + 1 + n_items
    dense = np.zeros((n, n))
    user_deg = np.diff(indptr)
    item_deg = np.bincount(indices, minlength=n_items).astype(float)
    for u in range(n_users):
        for i in indices[indptr[u] : indptr[u + 1]]:
            w = 1.0 / np.sqrt(user_deg[u] * item_deg[i])
            dense[u, n_users + 1 + i] = dense[n_users + 1 + i, u] = w
    for i in history:
        w = 1.0 / np.sqrt(len(history) * max(item_deg[i], 1.0))
        dense[n_users, n_users + 1 + i] = dense[n_users + 1 + i, n_users] = w
    x = np.concatenate([table[:n_users], np.zeros((1, table.shape[1])), table[n_users:]])
    outs = [x] if include_layer0 else []
    for _ in range(layers):
        x = dense @ x
        outs.append(x)
    return np.mean(outs, axis=0)[n_users]


@pytest.mark.parametrize(
    ("layers", "include_layer0"), [(1, False), (2, True), (3, False), (4, True)]
)
def test_a_new_users_fold_in_is_the_propagation_with_its_edges_added(
    layers: int, include_layer0: bool
) -> None:
    n_users, n_items = 20, 18
    indptr, indices = _random_graph(n_users, n_items, seed=10 + layers)
    encoder = _encoder(n_users, n_items, layers, include_layer0)
    config = LightGCNConfig(dim=8, layers=layers, include_layer0=include_layer0)
    table = encoder.weight.detach().numpy().astype(np.float64)
    rule = fold_in_of(
        config,
        {"encoder.weight": encoder.weight},
        indptr,
        indices,
        np.zeros((n_items, 8), np.float32),
    )
    assert rule is not None
    # The last history holds the item no training user has.
    histories = [np.array([0, 3, 5]), np.array([2]), np.array([1, 4, n_items - 1])]
    got = rule.embed(histories, np.full(3, -1))
    for history, row in zip(histories, got, strict=True):
        want = _dense_new_user(table, indptr, indices, history, layers, include_layer0)
        np.testing.assert_allclose(row, want, rtol=1e-4, atol=1e-6)


def test_ials_fold_in_solves_the_normal_equations() -> None:
    rng = np.random.default_rng(1)
    item_factors = rng.normal(size=(40, 6)).astype(np.float32)
    rule = LeastSquaresFoldIn(item_factors, regularization=0.5, alpha=4.0)
    histories = [np.array([1, 7, 30]), np.array([5])]
    got = rule.embed(histories, np.array([-1, -1]))
    y = item_factors.astype(np.float64)
    for history, row in zip(histories, got, strict=True):
        # implicit's iALS: confidence c = alpha for an observed pair, 1 elsewhere.
        a = y.T @ y + 0.5 * np.eye(6) + (4.0 - 1.0) * y[history].T @ y[history]
        b = 4.0 * y[history].sum(axis=0)
        np.testing.assert_allclose(row, np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)


def test_ease_fold_in_is_the_history_row() -> None:
    got = MultiHotFoldIn(5).embed([np.array([0, 3]), np.array([4])], np.array([-1, 2]))
    np.testing.assert_array_equal(got, [[1, 0, 0, 1, 0], [0, 0, 0, 0, 1]])


def test_mf_has_no_fold_in_rule() -> None:
    indptr, indices = _random_graph(5, 6, seed=0)
    assert fold_in_of(MFConfig(dim=4), {}, indptr, indices, np.zeros((6, 4), np.float32)) is None
    assert fold_in_of(IALSConfig(factors=4), {}, indptr, indices, np.zeros((6, 4))) is not None


# ------------------------------------------------------------------ end to end on a tiny run


def _train(root: Path, method: str) -> Path:
    log = root / "log.csv"
    make_long_tail_log(n_users=120, n_items=200, seed=7, mean_activity=12).write_csv(log)
    extra = "  dim: 16\n" if method != "ials" else "  factors: 16\n  iterations: 3\n"
    (root / "run.yaml").write_text(
        f"output_dir: {root / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        f"model:\n  method: {method}\n{extra}"
        "train:\n  epochs: 2\n  batch_size: 256\n  eval_every: 1\n  progress: false\n"
    )
    run_training(load_config(root / "run.yaml", []))
    return root / "run"


@pytest.fixture(scope="module")
def xsimgcl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("fold_xsimgcl"), "xsimgcl")


def _history_of(run: Path, user: int) -> tuple[list[int], list[int]]:
    """The user's training items and its validation items, as raw ids."""
    folder = RunFolder(run)
    parts = folder_parts(folder)
    items = folder.split.items
    train = items.to_raw(parts.train.items_of(user)).tolist()
    assert parts.val_truth is not None
    return train, items.to_raw(parts.val_truth.items_of(user)).tolist()


def test_a_new_user_with_a_history_is_folded_in_and_never_shown_it(xsimgcl_run: Path) -> None:
    model = candidate_model(RunFolder(xsimgcl_run), cold_start="error")
    history, _ = _history_of(xsimgcl_run, 3)
    new_user = 10**9
    frame = pd.DataFrame({"user_id": [new_user, 3], "history": [history + [-5, 10**8], None]})
    answer = model.predict(frame, k=10)
    new = answer[answer["user_id"] == new_user]
    assert len(new) == 10 and not set(new["item_id"]) & set(history)
    assert new[SKIPPED_COLUMN].tolist() == [2] * 10
    # Not the popular fallback: the folded-in list is the model's own ranking.
    top = model.items.to_raw(model.pop_items).tolist()
    assert new["item_id"].tolist() != [i for i in top if i not in history][:10]


def test_a_known_users_own_history_gives_its_stored_list(xsimgcl_run: Path) -> None:
    model = candidate_model(RunFolder(xsimgcl_run), exclude="train")
    history, _ = _history_of(xsimgcl_run, 5)
    plain = model.predict(pd.DataFrame({"user_id": [5]}), k=15)
    given = model.predict(pd.DataFrame({"user_id": [5], "history": [history]}), k=15)
    assert given["item_id"].tolist() == plain["item_id"].tolist()
    np.testing.assert_allclose(given["score"], plain["score"], rtol=1e-5, atol=1e-7)


def test_a_known_users_history_replaces_its_seen_items(xsimgcl_run: Path) -> None:
    model = candidate_model(RunFolder(xsimgcl_run))  # masks train + validation
    train, val = _history_of(xsimgcl_run, 5)
    assert val
    # Given only its training items, the validation items may come back; never the history.
    answer = model.predict(pd.DataFrame({"user_id": [5], "history": [train]}), k=200)
    returned = set(answer["item_id"])
    assert not returned & set(train) and set(val) <= returned


def test_an_empty_or_unknown_history_falls_back_to_the_cold_start_policy(
    xsimgcl_run: Path,
) -> None:
    popular = candidate_model(RunFolder(xsimgcl_run), cold_start="popular")
    frame = pd.DataFrame({"user_id": [10**9, 10**9 + 1], "history": [[], [10**8]]})
    answer = popular.predict(frame, k=5)
    top = popular.items.to_raw(popular.pop_items[:5]).tolist()
    for user in (10**9, 10**9 + 1):
        assert answer[answer["user_id"] == user]["item_id"].tolist() == top
    assert answer[SKIPPED_COLUMN].tolist() == [0] * 5 + [1] * 5
    refusing = candidate_model(RunFolder(xsimgcl_run), cold_start="error")
    with pytest.raises(UnknownUserError, match="2 of 2 requested users are unknown"):
        refusing.predict(frame, k=5)


def test_history_errors_are_one_line(xsimgcl_run: Path) -> None:
    model = candidate_model(RunFolder(xsimgcl_run), cold_start="popular", max_list=3)
    item = int(model.items.raw[0])
    for frame, message in (
        (pd.DataFrame({"item_id": [item], "history": [[item]]}), "request row 0: history is a"),
        (pd.DataFrame({"user_id": [1], "history": ["3"]}), "request row 0: history must be a"),
        (pd.DataFrame({"user_id": [1], "history": [[1.5]]}), "request row 0: history[0] 1.5"),
        (
            pd.DataFrame({"user_id": [1], "history": [[1, 2, 3, 4]]}),
            "request row 0: history holds 4",
        ),
    ):
        with pytest.raises((CandidateRequestError, ValueError)) as caught:
            model.predict(frame)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_bundle_keeps_the_rule_and_an_older_bundle_has_none(
    xsimgcl_run: Path, tmp_path: Path
) -> None:
    model = candidate_model(RunFolder(xsimgcl_run), cold_start="popular")
    bundle = model.save(tmp_path / "bundle")
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["format_version"] == 4
    assert info["fold_in"] == {"kind": "propagation", "layers": 2, "include_layer0": False}
    loaded = CandidateModel.load(bundle)
    history, _ = _history_of(xsimgcl_run, 2)
    frame = pd.DataFrame({"user_id": [10**9], "history": [history]})
    pd.testing.assert_frame_equal(loaded.predict(frame, k=7), model.predict(frame, k=7))
    # A version 3 bundle (before fold-in) loads without a rule: a new user with a history
    # gets the popular items, the history left out.
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    for name in ("fold_in_items.parquet", "fold_in_users.parquet"):
        (old / name).unlink()
    info.pop("fold_in")
    (old / "bundle.json").write_text(json.dumps({**info, "format_version": 3}))
    legacy = CandidateModel.load(old)
    assert legacy.fold_in is None
    answer = legacy.predict(frame, k=7)
    top = [i for i in legacy.items.to_raw(legacy.pop_items).tolist() if i not in history][:7]
    assert answer["item_id"].tolist() == top


def test_mf_masks_a_history_and_gives_a_new_user_the_popular_items(tmp_path: Path) -> None:
    run = _train(tmp_path, "mf")
    model = candidate_model(RunFolder(run), cold_start="popular")
    assert model.fold_in is None and model.info.fold_in is None
    train, _ = _history_of(run, 4)
    plain = model.predict(pd.DataFrame({"user_id": [4]}), k=300)
    given = model.predict(pd.DataFrame({"user_id": [4], "history": [train[:2]]}), k=300)
    # The stored row ranks; only the mask changed, to the two given items.
    assert not set(given["item_id"]) & set(train[:2])
    assert len(given) > len(plain)
    shared = [i for i in given["item_id"] if i in set(plain["item_id"])]
    assert shared == plain["item_id"].tolist()


def test_ials_runs_fold_in_by_least_squares(tmp_path: Path) -> None:
    run = _train(tmp_path, "ials")
    model = candidate_model(RunFolder(run), cold_start="error")
    assert isinstance(model.fold_in, LeastSquaresFoldIn)
    history, _ = _history_of(run, 1)
    answer = model.predict(pd.DataFrame({"user_id": [10**9], "history": [history]}), k=5)
    assert len(answer) == 5 and not set(answer["item_id"]) & set(history)


def test_recommend_answers_a_request_file(
    xsimgcl_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history, _ = _history_of(xsimgcl_run, 3)
    requests = tmp_path / "requests.parquet"
    frame = pd.DataFrame(
        {"user_id": [10**9, 3, 10**9 + 1], "history": [history, None, [10**8]], "k": [4, 3, 2]}
    )
    frame.to_parquet(requests)
    out = tmp_path / "out.parquet"
    argv = ["recommend", str(xsimgcl_run), "--requests", str(requests), "--no-track"]
    assert main([*argv, "--out", str(out), "--cold-start", "popular", "--no-progress"]) == 0
    got = pd.read_parquet(out)
    want = candidate_model(RunFolder(xsimgcl_run), cold_start="popular").predict(frame, k=20)
    assert got["item_id"].tolist() == want["item_id"].tolist()
    assert got[SKIPPED_COLUMN].tolist() == want[SKIPPED_COLUMN].tolist()
    assert "1 unknown users given the most popular items" in capsys.readouterr().out
    # Under --cold-start error the user without a usable history is refused, nothing written.
    bad = tmp_path / "bad.parquet"
    assert main([*argv, "--out", str(bad)]) == 2
    assert "1 of 3 requested users are unknown" in capsys.readouterr().err
    assert not bad.exists()
    frame.assign(history=[history, None, [1.5]]).to_parquet(requests)
    assert main([*argv, "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{requests}: request row 2: history[0] 1.5 is not an integer id" in err
