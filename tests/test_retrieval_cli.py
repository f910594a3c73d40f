"""`recsys-cl index` and `recsys-cl recommend` on a small trained run: saved indexes, the
candidates file, metrics equal to `recsys-cl evaluate`, unknown users, and one-line errors."""

from __future__ import annotations

import pytest

# The retrieval stack needs FAISS, an extra (cpu or gpu); without it these tests skip and
# test_optional.py checks the one-line error instead.
faiss = pytest.importorskip("faiss", reason="needs FAISS: the cpu or gpu extra")

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from recsys_cl.cli import main
from recsys_cl.data import load_split
from recsys_cl.jobs.folder import RunFolder
from tests.conftest import make_long_tail_log, user_error


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-epoch XSimGCL run on a synthetic long-tail log (a few seconds)."""
    root = tmp_path_factory.mktemp("retrieval_run")
    log = root / "log.csv"
    make_long_tail_log(n_users=150, n_items=300, seed=5, mean_activity=15).write_csv(log)
    cfg = root / "run.yaml"
    cfg.write_text(
        f"output_dir: {root / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model:\n  method: xsimgcl\n  dim: 16\n"
        "train:\n  epochs: 3\n  batch_size: 256\n  eval_every: 1\n  progress: false\n"
    )
    assert main(["train", "-c", str(cfg)]) == 0
    return root / "run"



def test_help_explains_index_and_recommend(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["index", "--help"], ["recommend", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "--spec",
        "--nprobe",
        "--ef-search",
        "factory",
        "--cold-start",
        "--users-file",
        "Parquet",
    ):
        assert text in out


def test_index_builds_saves_and_checks_recall(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["index", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "built Flat (ip)" in out and "ANN recall@20 vs exact: 1.0000" in out
    meta = json.loads((run_dir / "index" / "flat.json").read_text())
    split = load_split(run_dir / "data")
    assert meta["n_items"] == split.n_items and meta["item_ids"] == split.items.raw.to_list()

    repo = Path(__file__).resolve().parents[1]
    assert main(["index", str(run_dir), "-c", str(repo / "configs/index/hnsw.yaml"),
                 "--set", "ef_search=64", "--out", str(run_dir / "idx")]) == 0
    out = capsys.readouterr().out
    recall = float(re.search(r"ANN recall@20 vs exact: ([0-9.]+)", out).group(1))
    assert "HNSW32 ip efSearch=64" in out and recall >= 0.9
    assert (run_dir / "idx" / "hnsw.faiss").is_file()

    assert main(["index", str(run_dir), "--spec", "ivf", "--nlist", "4", "--nprobe", "2",
                 "--metric", "cosine", "--out", str(run_dir / "idx" / "small.faiss")]) == 0
    assert "IVF4,Flat cosine nprobe=2" in capsys.readouterr().out


def test_index_user_errors(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(run_dir / "bad")
    assert "nprobe applies to index kind" in user_error(
        capsys, ["index", str(run_dir), "--nprobe", "3", "--out", out]
    )
    assert "could not parse index string IVFx" in user_error(
        capsys, ["index", str(run_dir), "--spec", "IVFx", "--out", out]
    )
    assert "IVF with nlist=64 needs at least" in user_error(
        capsys, ["index", str(run_dir), "--spec", "ivf", "--nlist", "64", "--out", out]
    )
    assert "run folder not found" in user_error(capsys, ["index", str(run_dir / "nope")])
    assert not (run_dir / "bad").exists()


def test_recommend_metrics_equal_evaluate(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(run_dir), "--out", str(run_dir / "flat-only")]) == 0
    capsys.readouterr()
    out_file = run_dir / "cands.parquet"
    assert main(["recommend", str(run_dir), "--index", str(run_dir / "flat-only"),
                 "--out", str(out_file), "--no-progress", "--compare-exact"]) == 0
    out = capsys.readouterr().out
    got = re.search(r"recall@20 ([0-9.]+)  ndcg@20 ([0-9.]+)", out)
    assert "(candidates +0.00%)" in out

    assert main(["evaluate", str(run_dir), "--ks", "20"]) == 0
    table = capsys.readouterr().out
    recall_row = next(line for line in table.splitlines() if line.startswith("recall"))
    ndcg_row = next(line for line in table.splitlines() if line.startswith("ndcg"))
    assert recall_row.split()[1] == got.group(1) and ndcg_row.split()[1] == got.group(2)

    # The file: every user, ranks 1..n, no train or validation item, raw ids.
    run = RunFolder(run_dir)
    split = run.split
    user_emb, item_emb = run.embeddings()
    frame = pl.read_parquet(out_file)
    assert frame.columns == ["user_id", "rank", "item_id", "score"]
    assert frame["user_id"].n_unique() == split.n_users
    assert (frame.group_by("user_id").agg(pl.col("rank").max())["rank"] <= 20).all()
    users = split.users.to_index(frame["user_id"]).to_numpy()
    items = split.items.to_index(frame["item_id"]).to_numpy()
    for part in ("train", "val"):
        assert not split.user_items(part).contains(users, items).any()
    np.testing.assert_allclose(
        frame["score"].to_numpy(), np.einsum("bd,bd->b", user_emb[users], item_emb[items]),
        rtol=1e-5, atol=1e-6,
    )


def test_recommend_unknown_users_and_popular_fallback(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = load_split(run_dir / "data")
    known = [str(v) for v in split.users.raw.to_list()[:2]]
    users = ",".join([*known, "987654"])
    err = user_error(capsys, ["recommend", str(run_dir), "--users", users])
    assert (
        "1 of 3 requested users are unknown" in err
        and "987654" in err
        and "--cold-start popular" in err
    )

    out_file = run_dir / "some.parquet"
    assert main(["recommend", str(run_dir), "--users", users, "--cold-start", "popular",
                 "-k", "5", "--out", str(out_file), "--no-progress"]) == 0
    assert "1 unknown users given the most popular items" in capsys.readouterr().out
    frame = pl.read_parquet(out_file)
    assert frame["user_id"].unique(maintain_order=True).to_list() == [*map(int, known), 987654]
    popular = frame.filter(pl.col("user_id") == 987654)
    counts = split.train.group_by("item").len().sort(["len", "item"], descending=[True, False])
    expected = split.items.to_raw(counts["item"].head(5).to_numpy()).tolist()
    assert popular["item_id"].to_list() == expected
    assert popular["score"].to_list() == counts["len"].head(5).cast(pl.Float64).to_list()

    users_file = run_dir / "users.txt"
    users_file.write_text(f"# two users\n{known[0]}\n\n{known[1]}\n")
    assert main(["recommend", str(run_dir), "--users-file", str(users_file), "-k", "1000",
                 "--out", str(out_file), "--no-progress"]) == 0
    assert "2 users with fewer than 1000 candidates" in capsys.readouterr().out
    assert pl.read_parquet(out_file)["rank"].max() <= split.n_items


def test_recommend_refuses_an_index_of_other_embeddings(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    items = pl.read_parquet(run_dir / "item_embeddings.parquet")
    retrained = np.stack(items["embedding"].to_numpy()) * 2
    pl.DataFrame({"item_id": items["item_id"], "embedding": retrained}).write_parquet(
        copy / "item_embeddings.parquet"
    )
    assert main(["index", str(run_dir), "--out", str(tmp_path / "orig.faiss")]) == 0
    err = user_error(capsys, ["recommend", str(copy), "--index", str(tmp_path / "orig.faiss")])
    assert "built from other item embeddings" in err
    (tmp_path / "orig.faiss").write_bytes(b"\0" * 10)
    assert "contents do not match" in user_error(
        capsys, ["recommend", str(run_dir), "--index", str(tmp_path / "orig.faiss")]
    )


def test_recommend_on_a_labelled_run_scores_what_evaluate_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A labelled run (imbalance.weights.label_threshold) is scored on its positive test rows
    # only; the candidates' metrics must match `recsys-cl evaluate` there too.
    log = tmp_path / "log.csv"
    make_long_tail_log(n_users=120, n_items=200, seed=9, mean_activity=15).write_csv(log)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path / 'run'}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model:\n  method: lightgcn\n  dim: 16\n"
        "train:\n  epochs: 2\n  batch_size: 256\n  progress: false\n"
        "imbalance:\n  weights:\n    label_threshold: 4\n"
    )
    assert main(["train", "-c", str(cfg)]) == 0
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["recommend", str(run), "--no-progress", "--compare-exact"]) == 0
    got = re.search(r"recall@20 ([0-9.]+)  ndcg@20 ([0-9.]+)", capsys.readouterr().out)
    assert main(["evaluate", str(run), "--ks", "20"]) == 0
    table = capsys.readouterr().out
    recall_row = next(line for line in table.splitlines() if line.startswith("recall"))
    assert recall_row.split()[1] == got.group(1)


def test_k_factor_reaches_a_refine_index_and_is_refused_elsewhere(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "refined.faiss"
    assert main(["index", str(run_dir), "--spec", "ivfpq", "--set", "pq_m=4", "--set",
                 "pq_bits=2", "--set", "nlist=4", "--set", "refine=sq8", "--k-factor", "3",
                 "--out", str(index)]) == 0
    assert "k_factor=3" in capsys.readouterr().out
    assert main(["recommend", str(run_dir), "--index", str(index), "--k-factor", "5",
                 "--out", str(tmp_path / "c.parquet"), "--no-progress"]) == 0
    assert "k_factor=5" in capsys.readouterr().out
    err = user_error(capsys, ["recommend", str(run_dir), "--k-factor", "5", "--no-progress",
                               "--out", str(tmp_path / "d.parquet")])
    assert "k_factor does not apply to a Flat index" in err
