"""FAISS item indexes: exact search against a torch oracle, ANN recall on clustered data,
spec validation, training-size checks, and save/load with every mismatch and corruption refused."""

from __future__ import annotations

import pytest

# The retrieval stack needs FAISS, an extra (cpu or gpu); without it these tests skip and
# test_optional.py checks the one-line error instead.
faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")

import json
from pathlib import Path

import numpy as np
import torch

from recsys_cl.config import IndexSpec, load_config, validate
from recsys_cl.data import IdMap
from recsys_cl.errors import ConfigError, RecsysError
from recsys_cl.retrieval import (
    IndexBuildError,
    IndexFileError,
    IndexMismatchError,
    IndexSpecError,
    RetrievalError,
    ann_recall,
    build_index,
    embeddings_fingerprint,
    exact_top_k,
    index_paths,
    load_index,
    recall_vs_exact,
    save_index,
)
from recsys_cl.retrieval.index import ItemIndex, Placement, shard_index, to_device


def clustered(
    n: int,
    n_queries: int,
    *,
    dim: int = 16,
    n_clusters: int = 40,
    spread: float = 0.8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries drawn around the same Gaussian cluster centres."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))

    def draw(m: int) -> np.ndarray:
        points = centers[rng.integers(0, n_clusters, m)] + spread * rng.normal(size=(m, dim))
        return points.astype(np.float32)

    return draw(n), draw(n_queries)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(4000, 300)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_flat_search_equals_brute_force_topk(metric: str) -> None:
    rng = np.random.default_rng(1)
    items = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    index = build_index(items, IndexSpec(kind="flat", metric=metric), device="cpu")
    scores, found = index.search(queries, 10)

    i, q = torch.from_numpy(items), torch.from_numpy(queries)
    if metric == "cosine":
        i, q = torch.nn.functional.normalize(i, dim=1), torch.nn.functional.normalize(q, dim=1)
    want_scores, want_items = torch.topk(q @ i.T, 10, dim=1)
    assert np.array_equal(found, want_items.numpy())
    np.testing.assert_allclose(scores, want_scores.numpy(), rtol=1e-5, atol=1e-5)


def test_search_returns_at_most_all_items() -> None:
    items = np.eye(4, dtype=np.float32)
    index = build_index(items, IndexSpec(), device="cpu")
    scores, found = index.search(items[:2], 100)
    assert found.shape == (2, 4) and sorted(found[0].tolist()) == [0, 1, 2, 3]
    assert found[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("spec", "threshold"),
    [
        (IndexSpec(kind="ivf", nlist=32, nprobe=8), 0.95),
        (IndexSpec(kind="hnsw", hnsw_m=16, ef_search=64), 0.95),
        (IndexSpec(kind="ivfpq", nlist=16, nprobe=8, pq_m=8, pq_bits=4), 0.5),
        (IndexSpec(kind="factory", factory="IVF32,SQ8", nprobe=8), 0.95),
        (IndexSpec(kind="ivf", nlist=32, nprobe=8, metric="cosine"), 0.95),
    ],
    ids=["ivf", "hnsw", "ivfpq", "factory-sq8", "ivf-cosine"],
)
def test_ann_recall_against_flat_is_above_threshold(
    data: tuple[np.ndarray, np.ndarray], spec: IndexSpec, threshold: float
) -> None:
    items, queries = data
    index = build_index(items, spec, device="cpu")
    recall = ann_recall(index, items, queries, k=20)
    assert threshold <= recall <= 1.0


def test_more_probes_give_higher_recall(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = data
    index = build_index(items, IndexSpec(kind="ivf", nlist=32, nprobe=1), device="cpu")
    low = ann_recall(index, items, queries, k=20)
    index.set_search_params(nprobe=32)  # every list: exact
    assert low < 0.95 and ann_recall(index, items, queries, k=20) == pytest.approx(1.0)


def test_recall_vs_exact_counts_overlap() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert recall_vs_exact(approx, exact) == pytest.approx((2 / 4 + 1) / 2)
    assert np.array_equal(exact_top_k(np.eye(3), np.array([[0.0, 1.0, 0.5]]), 2), [[1, 2]])


# --------------------------------------------------------------------------- specs


def test_spec_rejects_fields_of_other_kinds() -> None:
    with pytest.raises(
        ConfigError, match="nprobe applies to index kind ivf / ivfpq / factory, not flat"
    ):
        validate({"kind": "flat", "nprobe": 8}, IndexSpec, "spec.yaml")
    with pytest.raises(ConfigError, match="hnsw_m applies to index kind hnsw, not ivf"):
        validate({"kind": "ivf", "hnsw_m": 8}, IndexSpec, "spec.yaml")
    with pytest.raises(ConfigError, match="needs a FAISS factory string"):
        validate({"kind": "factory"}, IndexSpec, "spec.yaml")
    with pytest.raises(ConfigError, match=r"nprobe \(9\) must be ≤ nlist \(8\)"):
        validate({"kind": "ivf", "nlist": 8, "nprobe": 9}, IndexSpec, "spec.yaml")
    with pytest.raises(ConfigError, match="nlsit: unknown key"):
        validate({"kind": "ivf", "nlsit": 8}, IndexSpec, "spec.yaml")


def test_spec_parses_cli_names_and_factory_strings() -> None:
    assert IndexSpec.from_cli("HNSW") == {"kind": "hnsw"}
    assert IndexSpec.from_cli(" IVF64,PQ8 ") == {"kind": "factory", "factory": "IVF64,PQ8"}
    spec = IndexSpec(kind="ivfpq", pq_m=8, pq_bits=6)
    assert spec.factory_string(100_000) == "IVF1265,PQ8x6"  # 4·sqrt(1e5) = 1264.9
    assert spec.resolved_nlist(1000) == 25  # 4·sqrt(1000) = 126 > 1000 // 39
    assert IndexSpec(kind="factory", factory="IVF8,SQ8").name() == "factory-IVF8-SQ8"


def test_unknown_factory_string_is_a_spec_error() -> None:
    items = np.zeros((50, 8), dtype=np.float32)
    with pytest.raises(IndexSpecError, match="could not parse index string IVFx"):
        build_index(items, IndexSpec(kind="factory", factory="IVFx"), device="cpu")


def test_ivf_needs_39_points_per_list(data: tuple[np.ndarray, np.ndarray]) -> None:
    items = data[0][:1000]
    with pytest.raises(
        IndexBuildError, match=r"nlist=64 needs at least 39·nlist = 2,496 .* 1,000; use nlist ≤ 25"
    ):
        build_index(items, IndexSpec(kind="ivf", nlist=64), device="cpu")
    with pytest.raises(IndexBuildError, match="nlist=512 needs at least"):
        build_index(items, IndexSpec(kind="factory", factory="IVF512,Flat"), device="cpu")
    with pytest.raises(IndexBuildError, match="use the flat or hnsw index"):
        build_index(items[:20], IndexSpec(kind="ivf"), device="cpu")
    # The automatic nlist always fits: 1000 // 39 = 25 lists.
    assert build_index(items, IndexSpec(kind="ivf"), device="cpu").meta.nlist == 25


def test_pq_checks_dimension_and_training_size(data: tuple[np.ndarray, np.ndarray]) -> None:
    items = data[0]
    with pytest.raises(
        IndexBuildError, match="pq_m=6 sub-quantizers must divide the dimension D=16"
    ):
        build_index(items, IndexSpec(kind="ivfpq", nlist=4, pq_m=6), device="cpu")
    with pytest.raises(IndexBuildError, match=r"39·2\^8 = 9,984 item vectors .* 4,000"):
        build_index(items, IndexSpec(kind="ivfpq", nlist=4, pq_m=8), device="cpu")


def test_search_parameters_must_apply(data: tuple[np.ndarray, np.ndarray]) -> None:
    items = data[0][:500]
    flat = build_index(items, IndexSpec(), device="cpu")
    with pytest.raises(IndexSpecError, match="nprobe does not apply to a Flat index"):
        flat.set_search_params(nprobe=4)
    with pytest.raises(IndexSpecError, match="ef_search does not apply to a Flat index"):
        flat.set_search_params(ef_search=4)
    ivf = build_index(items, IndexSpec(kind="ivf", nlist=8), device="cpu")
    with pytest.raises(IndexSpecError, match=r"nprobe must be in \[1, nlist=8\], got 9"):
        ivf.set_search_params(nprobe=9)
    with pytest.raises(IndexSpecError, match="nprobe does not apply to a HNSW32 index"):
        build_index(items, IndexSpec(kind="factory", factory="HNSW32", nprobe=2), device="cpu")
    hnsw = build_index(
        items, IndexSpec(kind="factory", factory="HNSW16", ef_search=77), device="cpu"
    )
    assert faiss.downcast_index(hnsw.index).hnsw.efSearch == 77


def test_nan_embeddings_are_refused() -> None:
    items = np.ones((10, 4), dtype=np.float32)
    items[3, 1] = np.nan
    with pytest.raises(RecsysError, match="NaN or inf"):
        build_index(items, IndexSpec(), device="cpu")


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is visible")
def test_gpu_requested_without_one_is_a_clear_error() -> None:
    with pytest.raises(RetrievalError, match="FAISS sees no GPU"):
        build_index(np.eye(4, dtype=np.float32), IndexSpec(), device="gpu")


def test_auto_device_follows_faiss() -> None:
    index = build_index(np.eye(4, dtype=np.float32), IndexSpec(kind="hnsw"), device="auto")
    assert index.device == "cpu"  # HNSW has no FAISS GPU implementation
    flat = build_index(np.eye(4, dtype=np.float32), IndexSpec(), device="auto")
    assert flat.device == ("gpu" if faiss.get_num_gpus() > 0 else "cpu")


# --------------------------------------------------------------------------- save / load


def _ids(n: int) -> IdMap:
    return IdMap.fit([f"item-{i:05d}" for i in range(n)])


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec(kind="ivf", nlist=16, nprobe=4, metric="cosine"),
        IndexSpec(kind="hnsw", hnsw_m=8, ef_search=40),
        IndexSpec(kind="factory", factory="IVF8,SQ8", nprobe=3),
    ],
    ids=["ivf-cosine", "hnsw", "factory"],
)
def test_save_load_round_trip(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], spec: IndexSpec
) -> None:
    items, queries = data[0][:1000], data[1]
    built = build_index(items, spec, item_ids=_ids(1000), device="cpu")
    faiss_path, meta_path = save_index(built, tmp_path / "idx.faiss")
    assert (faiss_path.name, meta_path.name) == ("idx.faiss", "idx.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx.faiss", "idx.json"]  # no temp files

    loaded = load_index(
        tmp_path / "idx", item_emb=items, item_ids=_ids(1000), spec=spec, device="cpu"
    )
    assert loaded.meta.spec == built.meta.spec and loaded.meta.item_ids == _ids(1000)
    assert loaded.meta.fingerprint == embeddings_fingerprint(items)
    assert loaded.describe() == built.describe()
    for a, b in zip(loaded.search(queries, 20), built.search(queries, 20), strict=True):
        assert np.array_equal(a, b)
    # Search parameters are not part of the structure: asking with others still loads.
    if spec.kind == "ivf":
        other = spec.model_copy(update={"nprobe": 16})
        assert load_index(faiss_path, spec=other, device="cpu").spec.nprobe == 4
    assert load_index(meta_path, device="cpu").n_items == 1000
    assert load_index(tmp_path, device="cpu").n_items == 1000  # a folder holding one index


@pytest.fixture
def saved(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> tuple[Path, np.ndarray]:
    items = data[0][:1000]
    index = build_index(
        items, IndexSpec(kind="ivf", nlist=16, nprobe=4), item_ids=_ids(1000), device="cpu"
    )
    return save_index(index, tmp_path / "ivf.faiss")[0], items


def test_load_refuses_mismatches(saved: tuple[Path, np.ndarray]) -> None:
    path, items = saved
    cases = [
        ({"item_emb": items[:, :8]}, "holds D=16 vectors but the item embeddings have D=8"),
        ({"item_emb": items[:999]}, "holds 1,000 items but there are 999 item embeddings"),
        ({"item_emb": items * 1.0001}, "built from other item embeddings"),
        ({"item_ids": IdMap.fit([f"x{i:05d}" for i in range(1000)])}, "item ids differ"),
        ({"metric": "cosine"}, "ranks by ip, not cosine"),
        ({"spec": IndexSpec(kind="ivf", nlist=8)}, r"is IVF16,Flat \(ip\) but IVF8,Flat \(ip\)"),
        (
            {"spec": IndexSpec(kind="ivf", nlist=16, metric="cosine")},
            "ranks by|but IVF16,Flat \\(cosine\\)",
        ),
        ({"spec": IndexSpec(kind="hnsw")}, "but HNSW32"),
    ]
    for kwargs, message in cases:
        with pytest.raises(IndexMismatchError, match=message) as err:
            load_index(path, device="cpu", **kwargs)
        assert "\n" not in str(err.value)


def test_load_refuses_ids_when_saved_without(tmp_path: Path) -> None:
    items = np.eye(8, dtype=np.float32)
    save_index(build_index(items, IndexSpec(), device="cpu"), tmp_path / "flat.faiss")
    with pytest.raises(IndexMismatchError, match="saved without item ids"):
        load_index(tmp_path / "flat.faiss", item_ids=IdMap.fit(np.arange(8)), device="cpu")


def _rewrite_meta(path: Path, **changes: object) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


CORRUPTIONS = {
    "index missing": (lambda f, m: f.unlink(), "index file not found"),
    "metadata missing": (lambda f, m: m.unlink(), "index metadata not found"),
    "metadata not json": (lambda f, m: m.write_text("{oops"), "corrupt index metadata \\(not JSON"),
    "metadata of something else": (
        lambda f, m: m.write_text('{"a": 1}'),
        "not a recsys_cl.item_index file",
    ),
    "metadata newer": (lambda f, m: _rewrite_meta(m, format_version=99), "format_version 99"),
    "metadata key missing": (
        lambda f, m: m.write_text(
            json.dumps({k: v for k, v in json.loads(m.read_text()).items() if k != "dim"})
        ),
        "missing key 'dim'",
    ),
    "metadata bad spec": (
        lambda f, m: _rewrite_meta(m, spec={"kind": "nope"}),
        "corrupt index metadata \\(spec",
    ),
    "metadata bad count": (lambda f, m: _rewrite_meta(m, n_items="many"), "expected an integer"),
    "metadata ids short": (
        lambda f, m: _rewrite_meta(m, item_ids=json.loads(m.read_text())["item_ids"][:10]),
        "10 item ids for 1000 items",
    ),
    "index flipped byte": (lambda f, m: _flip_byte(f), "contents do not match ivf.json"),
    "index truncated": (lambda f, m: f.write_bytes(f.read_bytes()[:100]), "contents do not match"),
    "index replaced": (
        lambda f, m: f.write_bytes(faiss.serialize_index(faiss.IndexFlatIP(16)).tobytes()),
        "contents do not match",
    ),
    "index garbage with matching hash": (
        lambda f, m: (
            f.write_bytes(b"garbage!" * 8),
            _rewrite_meta(m, index_sha256=_sha(f), index_bytes=64),
        ),
        "FAISS cannot read it",
    ),
    "metadata disagrees with index": (
        lambda f, m: _rewrite_meta(m, nlist=8),
        "disagrees with its metadata \\(nlist 16",
    ),
}


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_load_refuses_corrupt_files(saved: tuple[Path, np.ndarray], case: str) -> None:
    path, items = saved
    damage, message = CORRUPTIONS[case]
    damage(path, path.with_suffix(".json"))
    with pytest.raises(IndexFileError, match=message) as err:
        load_index(path, item_emb=items, device="cpu")
    assert "\n" not in str(err.value)


def test_index_paths_resolution(tmp_path: Path) -> None:
    assert index_paths(tmp_path / "a.faiss") == (tmp_path / "a.faiss", tmp_path / "a.json")
    assert index_paths(tmp_path / "a.json") == (tmp_path / "a.faiss", tmp_path / "a.json")
    (tmp_path / "a.faiss").touch()
    (tmp_path / "b.faiss").touch()
    with pytest.raises(IndexFileError, match="found a.faiss, b.faiss"):
        index_paths(tmp_path)


def test_string_and_int_item_ids_survive_json(tmp_path: Path) -> None:
    items = np.eye(3, dtype=np.float32)
    for ids in (IdMap.fit([10, 20, 30]), IdMap.fit(["b", "a", "c"])):
        save_index(
            build_index(items, IndexSpec(), item_ids=ids, device="cpu"), tmp_path / "x.faiss"
        )
        loaded = load_index(tmp_path / "x.faiss", item_ids=ids, device="cpu")
        assert loaded.meta.item_ids is not None and loaded.meta.item_ids.raw.dtype == ids.raw.dtype
        assert loaded.meta.item_ids.raw.to_list() == ids.raw.to_list()


INDEX_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "index").glob("*.yaml"))


@pytest.mark.parametrize("path", INDEX_CONFIGS, ids=lambda p: p.name)
def test_shipped_index_configs_load_and_build(
    path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    spec = load_config(path, model=IndexSpec)
    assert spec.name() == path.stem.replace("_", "-")
    if spec.kind != "ivfpq":  # PQ8 codebooks need 9,984 items; the fixture has 4,000
        assert build_index(data[0], spec, device="cpu").n_items == 4000


# --------------------------------------------------------------------------- large indexes


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray]:
    """6k x 32: enough for 4-bit PQ codebooks (39·16 points) and 32 IVF lists, and quick to
    train (8-bit codebooks on 20k items took a minute per build on a loaded 2-core machine)."""
    return clustered(6_000, 300, dim=32, n_clusters=40, spread=0.5, seed=3)


def _ivfpq(**extra: object) -> IndexSpec:
    return IndexSpec(kind="ivfpq", nlist=32, nprobe=8, pq_m=8, pq_bits=4, **extra)


@pytest.fixture(scope="module")
def refined(big: tuple[np.ndarray, np.ndarray]) -> ItemIndex:
    return build_index(
        big[0], _ivfpq(refine="sq8", k_factor=16), item_ids=_ids(6_000), device="cpu"
    )


def test_refine_lifts_ivfpq_recall(big: tuple[np.ndarray, np.ndarray], refined: ItemIndex) -> None:
    items, queries = big
    plain = ann_recall(build_index(items, _ivfpq(), device="cpu"), items, queries, k=20)
    assert refined.meta.factory == "IVF32,PQ8x4,Refine(SQ8)"
    assert refined.describe() == "IVF32,PQ8x4,Refine(SQ8) ip nprobe=8 k_factor=16 on cpu"
    with_refine = ann_recall(refined, items, queries, k=20)
    assert plain < 0.8 and with_refine >= 0.95 and with_refine > plain + 0.2
    refined.set_search_params(k_factor=1)  # re-ranks only the base's own top 20: same set
    try:
        assert ann_recall(refined, items, queries, k=20) == pytest.approx(plain, abs=1e-9)
    finally:
        refined.set_search_params(k_factor=16)
    flat = build_index(items, _ivfpq(refine="flat", k_factor=16), device="cpu")
    assert type(faiss.downcast_index(flat.index)).__name__ == "IndexRefineFlat"
    assert ann_recall(flat, items, queries, k=20) >= with_refine - 0.01
    # A factory string with a refine stage gets the same default k_factor and takes a new one.
    factory = build_index(
        items, IndexSpec(kind="factory", factory="IVF32,PQ8x4,Refine(SQ8)", nprobe=8), device="cpu"
    )
    assert factory.spec.k_factor == 16
    factory.set_search_params(k_factor=32)
    assert faiss.downcast_index(factory.index).k_factor == 32


def test_refine_keeps_seen_item_filtering_exact(
    big: tuple[np.ndarray, np.ndarray], refined: ItemIndex
) -> None:
    from recsys_cl.data.user_items import UserItems
    from recsys_cl.retrieval import top_k_candidates

    items, queries = big
    rng = np.random.default_rng(0)
    # Each user has seen its exact top 10 (so filtering matters) and 20 random items.
    top = exact_top_k(items, queries, 10)
    users = np.concatenate(
        [np.repeat(np.arange(len(queries)), 10), np.repeat(np.arange(len(queries)), 20)]
    )
    seen_items = np.concatenate([top.ravel(), rng.integers(0, len(items), 20 * len(queries))])
    seen = UserItems.from_pairs(users, seen_items, len(queries), len(items))
    cands = top_k_candidates(refined, queries, k=20, exclude=seen)
    assert cands.items.shape == (len(queries), 20) and (cands.items >= 0).all()
    hit = np.zeros((len(queries), len(items)), dtype=bool)
    hit[users, seen_items] = True
    assert not hit[np.arange(len(queries))[:, None], cands.items].any()
    # Against exact search with the same exclusions: refine keeps nearly all of it.
    exact = build_index(items, IndexSpec(), device="cpu")
    want = top_k_candidates(exact, queries, k=20, exclude=seen).items
    assert recall_vs_exact(cands.items, want) >= 0.95


def test_refine_and_k_factor_are_validated_in_one_line() -> None:
    cases = [
        (
            {"kind": "ivfpq", "refine": "sq3"},
            "refine: Input should be 'none', 'flat', 'fp16', 'sq8', 'sq6' or 'sq4'",
        ),
        (
            {"kind": "ivfpq", "refine": "sq8", "k_factor": 0},
            "k_factor: Input should be greater than or equal to 1",
        ),
        (
            {"kind": "ivfpq", "refine": "sq8", "k_factor": 5000},
            "k_factor: Input should be less than or equal to 1024",
        ),
        ({"kind": "ivfpq", "k_factor": 8}, "k_factor applies to an index with a refine stage"),
        ({"kind": "ivf", "refine": "sq8"}, "refine applies to index kind ivfpq, not ivf"),
        (
            {"kind": "flat", "k_factor": 8},
            "k_factor applies to index kind ivfpq / factory, not flat",
        ),
        (
            {"kind": "ivfpq", "refine": "sq8", "k_factor": "many"},
            "k_factor: Input should be a valid integer",
        ),
    ]
    for raw, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            validate(raw, IndexSpec, "spec.yaml")
        assert "\n" not in str(err.value)
    # "none" is the default of every kind, so stating it is harmless.
    assert validate({"kind": "flat", "refine": "none"}, IndexSpec, "x").refine == "none"
    spec = validate({"kind": "ivfpq", "refine": "sq4"}, IndexSpec, "x")
    assert (
        spec.factory_string(100_000).endswith(",Refine(SQ4)")
        and spec.resolve(100_000).k_factor == 16
    )
    assert spec.name() == "ivfpq-sq4" and spec.structure()["refine"] == "sq4"


def test_k_factor_needs_a_refine_stage_at_build(big: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(
        IndexSpecError, match=r"k_factor does not apply to a IVF16,Flat index \(it has no refine"
    ):
        build_index(
            big[0][:2000], IndexSpec(kind="factory", factory="IVF16,Flat", k_factor=4), device="cpu"
        )
    ivf = build_index(big[0][:2000], IndexSpec(kind="ivf", nlist=16), device="cpu")
    with pytest.raises(IndexSpecError, match="k_factor does not apply"):
        ivf.set_search_params(k_factor=4)


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_refine_save_load_round_trip(
    tmp_path: Path, big: tuple[np.ndarray, np.ndarray], refined: ItemIndex, mmap: bool
) -> None:
    items, queries = big
    save_index(refined, tmp_path / "r.faiss")
    loaded = load_index(
        tmp_path / "r",
        item_emb=items,
        item_ids=_ids(6_000),
        spec=_ivfpq(refine="sq8"),
        device="cpu",
        mmap=mmap,
    )
    assert loaded.meta.spec == refined.meta.spec and loaded.spec.k_factor == 16
    assert (loaded.mmap_path is not None) == mmap
    assert loaded.describe() == refined.describe() + (" mmap" if mmap else "")
    for a, b in zip(loaded.search(queries, 20), refined.search(queries, 20), strict=True):
        assert np.array_equal(a, b)
    loaded.set_search_params(k_factor=4, nprobe=4)  # search parameters still change
    refined.set_search_params(k_factor=4, nprobe=4)
    try:
        assert np.array_equal(loaded.search(queries, 20)[1], refined.search(queries, 20)[1])
    finally:
        refined.set_search_params(k_factor=16, nprobe=8)
    # The refine stage is structure: an index without it (or with another) is refused.
    with pytest.raises(
        IndexMismatchError, match=r"is IVF32,PQ8x4,Refine\(SQ8\) .* but IVF32,PQ8x4 "
    ):
        load_index(tmp_path / "r", spec=_ivfpq(), device="cpu")
    with pytest.raises(IndexMismatchError, match=r"but IVF32,PQ8x4,Refine\(SQ4\)"):
        load_index(tmp_path / "r", spec=_ivfpq(refine="sq4"), device="cpu")


@pytest.mark.parametrize(
    "spec",
    [IndexSpec(), IndexSpec(kind="ivf", nlist=16, nprobe=4), IndexSpec(kind="hnsw", hnsw_m=8)],
    ids=["flat", "ivf", "hnsw"],
)
def test_mmap_load_gives_the_same_results(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], spec: IndexSpec
) -> None:
    from recsys_cl.retrieval.store import mapped_bytes

    items, queries = data
    built = build_index(items, spec, device="cpu")
    path = save_index(built, tmp_path / "m.faiss")[0]
    loaded = load_index(path, device="cpu", mmap=True)
    assert np.array_equal(loaded.search(queries, 10)[1], built.search(queries, 10)[1])
    mapped = mapped_bytes(path)
    assert mapped is None or mapped > 0  # the file is mapped, not copied (Linux can tell)


def test_mmap_refuses_a_gpu_and_damaged_files(saved: tuple[Path, np.ndarray]) -> None:
    path, items = saved
    with pytest.raises(RetrievalError, match="mmap keeps the index on the CPU, but device gpu"):
        load_index(path, device="gpu", mmap=True)
    assert load_index(path, device="auto", mmap=True).device == "cpu"
    _flip_byte(path)
    with pytest.raises(IndexFileError, match="contents do not match"):
        load_index(path, device="cpu", mmap=True)


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec(),
        IndexSpec(kind="ivf", nlist=64, nprobe=8),
        _ivfpq(),
        _ivfpq(refine="sq8", k_factor=8),
    ],
    ids=["flat", "ivf", "ivfpq", "ivfpq-refine"],
)
def test_cpu_shards_search_like_the_whole_index(
    big: tuple[np.ndarray, np.ndarray], spec: IndexSpec
) -> None:
    """The CPU path of sharding: the layout the multi-GPU cloner builds, on CPU sub-indexes."""
    items, queries = big
    whole = build_index(items, spec, device="cpu")
    sharded = ItemIndex(
        Placement(shard_index(whole.index, 3), n_shards=3, cpu=whole.index), whole.meta
    )
    assert sharded.describe().endswith("on cpu x3")
    a, b = whole.search(queries, 20), sharded.search(queries, 20)
    # The same items up to float rounding (shards score in other blocks) and tie order (4-bit
    # PQ codes give many items the same score).
    assert recall_vs_exact(b[1], a[1]) >= 0.99
    np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-4)
    if spec.kind != "flat":  # search parameters reach every shard
        sharded.set_search_params(nprobe=2)
        whole.set_search_params(nprobe=2)
        assert recall_vs_exact(sharded.search(queries, 20)[1], whole.search(queries, 20)[1]) >= 0.99
    assert sharded.serialize() == whole.serialize()  # saves the unsharded CPU index


def test_shard_index_refuses_what_faiss_cannot_shard(data: tuple[np.ndarray, np.ndarray]) -> None:
    hnsw = build_index(data[0][:500], IndexSpec(kind="hnsw", hnsw_m=8), device="cpu")
    with pytest.raises(IndexSpecError, match="cannot shard a IndexHNSWFlat"):
        shard_index(hnsw.index, 2)


def test_to_device_without_a_gpu_keeps_the_cpu_index(data: tuple[np.ndarray, np.ndarray]) -> None:
    cpu = faiss.IndexFlatIP(16)
    placed = to_device(cpu, False)
    assert (
        placed.index is cpu
        and placed.device == "cpu"
        and placed.n_shards == 1
        and placed.note is None
    )


@pytest.mark.skipif(
    faiss.get_num_gpus() < 2, reason="GPU sharding needs at least 2 GPUs visible to FAISS"
)
def test_several_gpus_shard_the_index(big: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = big
    for spec in (IndexSpec(kind="ivf", nlist=64, nprobe=8), _ivfpq(refine="sq8", k_factor=8)):
        cpu = build_index(items, spec, device="cpu")
        gpu = build_index(items, spec, device="gpu")
        assert gpu.on_gpu and gpu.n_shards == faiss.get_num_gpus()
        assert recall_vs_exact(gpu.search(queries, 20)[1], cpu.search(queries, 20)[1]) >= 0.98
        assert len(gpu.serialize()) > 0  # shards merge back into one CPU index


@pytest.mark.skipif(faiss.get_num_gpus() < 1, reason="needs a GPU visible to FAISS")
def test_refine_on_a_gpu_keeps_its_codes_on_the_cpu(
    big: tuple[np.ndarray, np.ndarray], refined: ItemIndex
) -> None:
    items, queries = big
    gpu = build_index(items, _ivfpq(refine="sq8", k_factor=16), device="gpu")
    assert gpu.on_gpu and "refine codes on the CPU" in (gpu.device_note or "")
    assert recall_vs_exact(gpu.search(queries, 20)[1], refined.search(queries, 20)[1]) >= 0.98
    assert gpu.search(queries, 200)[1].shape == (len(queries), 200)  # 200·16 > 2048: on the CPU
    assert gpu.serialize() == refined.serialize()
