"""Real benchmark files from ``../shared/datasets`` (skipped when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_cl.data import load_benchmark, prepare, profile, resolve
from recsys_cl.errors import ChecksumError


def test_gowalla_given_split_counts(shared_datasets: Path) -> None:
    raw = load_benchmark("gowalla", data_dir=shared_datasets, download=False)
    assert raw.folder == shared_datasets / "gowalla"
    split = prepare(raw, split="given")
    assert (split.n_users, split.n_items) == (29_858, 40_981)
    assert (split.train.height, split.test.height) == (810_128, 217_242)
    assert split.cold.test.rows == 0 and split.cold.test.in_train_rows == 0
    # LightGCN ids are already 0..n-1: the id maps are the identity.
    assert split.users.raw.to_list() == list(range(29_858))
    assert split.items.raw[-1] == 40_980


def test_ml_100k_counts(shared_datasets: Path) -> None:
    raw = load_benchmark("ml-100k", data_dir=shared_datasets, download=False)
    assert raw.interactions is not None
    p = profile(raw.interactions)
    assert (p.users, p.items, p.interactions) == (943, 1_682, 100_000)
    assert raw.interactions["rating"].value_counts().sort("rating")["count"].to_list() == [
        6_110,
        11_370,
        27_145,
        34_174,
        21_201,
    ]


def test_shared_copies_pass_and_a_tampered_copy_fails(
    shared_datasets: Path, tmp_path: Path
) -> None:
    assert (
        resolve("gowalla", data_dir=shared_datasets, download=False) == shared_datasets / "gowalla"
    )
    assert (
        resolve("ml-100k", data_dir=shared_datasets, download=False) == shared_datasets / "ml-100k"
    )
    copy = tmp_path / "ml-100k"
    copy.mkdir()
    data = (shared_datasets / "ml-100k" / "u.data").read_bytes()
    (copy / "u.data").write_bytes(data.replace(b"196\t242\t3", b"196\t242\t5", 1))
    with pytest.raises(ChecksumError) as info:
        resolve("ml-100k", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "u.data" in message
    assert "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490" in message
