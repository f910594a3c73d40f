"""Shared fixtures: a synthetic long-tail interaction log and the offline real datasets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys_cl.data.user_items import UserItems

REPO_ROOT = Path(__file__).resolve().parents[1]

# No usage telemetry from MLflow in tests (the library's own runs set it in the CLI).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session", autouse=True)
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every tracked command in the tests records into one temporary SQLite store (never
    ``./mlruns.db`` in the checkout); tests that inspect runs read it back from here."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlruns.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous

LogFactory = Callable[..., pl.DataFrame]


def user_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one-line stderr of ``recsys-cl ARGV``, asserted to exit 2 (a user error)."""
    from recsys_cl.cli import main

    capsys.readouterr()  # what earlier commands of the test printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys-cl: error: ") and err.count("\n") == 1, err
    return err


def write_run_config(
    folder: Path, log: Path, *, dim: int = 16, patience: int = 20, **train: object
) -> Path:
    """``folder/run.yaml``: a small XSimGCL run of ``log`` into ``folder/run`` (ratio split with
    validation); ``train`` overrides the train block (4 epochs of batch 256 by default)."""
    settings = {"epochs": 4, "batch_size": 256, "eval_every": 1, "patience": patience,
                "progress": False, **train}
    lines = "\n".join(
        f"  {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()
    )
    cfg = folder / "run.yaml"
    cfg.write_text(
        f"output_dir: {folder / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        f"model:\n  method: xsimgcl\n  dim: {dim}\n"
        f"train:\n{lines}\n"
    )
    return cfg


def make_long_tail_log(
    n_users: int = 120,
    n_items: int = 200,
    *,
    seed: int = 0,
    zipf: float = 1.1,
    mean_activity: float = 12.0,
    min_activity: int = 3,
    timestamps: bool = True,
    ratings: bool = True,
    string_ids: bool = False,
) -> pl.DataFrame:
    """A canonical log with unique (user, item) pairs and long tails on both sides.

    Item ``i`` is drawn with probability proportional to ``1 / (i + 1) ** zipf`` (item 0 the
    most popular); user activity is ``min_activity`` plus a geometric draw around
    ``mean_activity``, capped at ``n_items``. Timestamps are distinct; ratings are 1..5.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf
    popularity /= popularity.sum()
    extra = rng.geometric(1.0 / max(mean_activity - min_activity, 1.0), size=n_users) - 1
    activity = np.minimum(min_activity + extra, n_items)
    users = np.repeat(np.arange(n_users), activity)
    items = np.concatenate(
        [rng.choice(n_items, size=k, replace=False, p=popularity) for k in activity]
    )
    columns: dict[str, object] = {"user": users, "item": items}
    if string_ids:
        columns = {"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items]}
    if timestamps:
        columns["timestamp"] = 1_000_000 + rng.permutation(users.size).astype(np.int64) * 7
    if ratings:
        columns["rating"] = rng.integers(1, 6, size=users.size).astype(np.float64)
    return pl.DataFrame(columns)


def make_planted_split(
    users_per: int = 40,
    items_per: int = 30,
    train_per: int = 12,
    test_per: int = 4,
    *,
    seed: int = 0,
) -> tuple[UserItems, UserItems]:
    """(train, test) of a planted two-community log: user ``u`` belongs to community
    ``u // users_per`` and item ``i`` to ``i // items_per`` (two of each).

    Each user holds ``train_per`` random items of their community in train and ``test_per``
    others in test, none of the other community's, so the right answer is known: rank your own
    community's unseen items first. The defaults are the trainer tests' log (80 users, 60 items,
    each user holding 40% of their community in train).
    """
    rng = np.random.default_rng(seed)
    users, train_items, test_users, test_items = [], [], [], []
    for u in range(2 * users_per):
        community = u // users_per
        picks = community * items_per + rng.choice(items_per, train_per + test_per, replace=False)
        users += [u] * train_per
        train_items += picks[:train_per].tolist()
        test_users += [u] * test_per
        test_items += picks[train_per:].tolist()
    n_u, n_i = 2 * users_per, 2 * items_per

    def table(rows: list[int], cols: list[int]) -> UserItems:
        return UserItems.from_pairs(
            np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), n_u, n_i
        )

    return table(users, train_items), table(test_users, test_items)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module's tiny tensors on one intra-op thread, restoring the count after.

    On a shared 2-core machine the hand-offs between OpenMP worker threads cost milliseconds
    per sparse product (measured: 30 SGL steps took 0.1 s on one thread and 2-6 s on two),
    which tiny tensors never win back. Use with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def long_tail_log() -> LogFactory:
    """Factory of synthetic long-tail logs; see :func:`make_long_tail_log` for the knobs."""
    return make_long_tail_log


@pytest.fixture
def planted_split() -> Callable[..., tuple[UserItems, UserItems]]:
    """Factory of planted two-community splits; see :func:`make_planted_split` for the knobs."""
    return make_planted_split


@pytest.fixture
def shared_datasets() -> Path:
    """The offline copies of the benchmark datasets (``../shared/datasets`` from the repo)."""
    path = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
    if not path.is_dir():
        pytest.skip(f"real datasets not available: {path} does not exist")
    return path
