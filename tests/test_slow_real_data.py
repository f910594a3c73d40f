"""End-to-end quality on real data (slow: run with `python -m pytest -m slow`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys_cl.cli import main
from recsys_cl.data import load_split
from recsys_cl.metrics import evaluate, most_popular_scores

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lightgcn", "xsimgcl"])
def test_ml100k_beats_most_popular_by_a_wide_margin(
    method: str, shared_datasets: Path, tmp_path: Path
) -> None:
    run = tmp_path / method
    argv = ["train", "-c", str(REPO / "configs" / "ml-100k" / f"{method}.yaml"),
            "--data-dir", str(shared_datasets), "--set", f"output_dir={run}",
            "--set", "train.progress=false"]
    assert main(argv) == 0
    summary = json.loads((run / "metrics.json").read_text())
    split = load_split(run / "data")
    train, val = split.user_items("train"), split.user_items("val")
    popular = evaluate(*most_popular_scores(train), split.user_items("test"), [train, val],
                       ks=(20,)).metrics["recall@20"]
    # Measured (benchmarks/RESULTS.md): most-popular 0.166, LightGCN 0.339, XSimGCL 0.352.
    assert summary["test"]["recall@20"] > 1.5 * popular
