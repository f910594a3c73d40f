"""Warm start (``train.warm_start`` / ``recsys-cl train --warm-start``): id maps matched by raw
id, known rows copied bit for bit, new rows drawn as usual, removed ones counted; the CLI end
to end, resume, and the one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_cl.cli import main
from recsys_cl.config import RunConfig, load_config
from recsys_cl.data.idmap import IdMap, align
from recsys_cl.errors import ConfigError, DataError
from recsys_cl.jobs.folder import RunFolder
from recsys_cl.jobs.stages.train import assemble, prepare
from tests.conftest import make_long_tail_log, user_error

pytestmark = pytest.mark.usefixtures("one_thread")

# The old log lacks user 0 and item 1; the grown log lacks user 79 and item 0, so both id maps
# shift: the same raw id has another index in each.
NEW_USER, DROPPED_USER, NEW_ITEM, DROPPED_ITEM = 0, 79, 1, 0


def _config(folder: Path, log: Path, name: str, *, dim: int = 8, epochs: int = 2) -> Path:
    cfg = folder / f"{name}.yaml"
    cfg.write_text(
        f"output_dir: {folder / name}\n"
        f"data:\n  path: {log}\n  split: {{kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        f"model: {{method: xsimgcl, dim: {dim}}}\n"
        f"train: {{epochs: {epochs}, batch_size: 256, eval_every: 1, progress: false}}\n"
    )
    return cfg


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(folder, old log, grown log) and a finished run ``folder/old`` on the old log."""
    folder = tmp_path_factory.mktemp("warm")
    log = make_long_tail_log(n_users=80, n_items=120, seed=3, mean_activity=15)
    old_log, new_log = folder / "old.csv", folder / "new.csv"
    u, i = pl.col("user"), pl.col("item")
    log.filter((u != NEW_USER) & (i != NEW_ITEM)).write_csv(old_log)
    log.filter((u != DROPPED_USER) & (i != DROPPED_ITEM)).write_csv(new_log)
    assert (
        main(["train", "-c", str(_config(folder, old_log, "old")), "--no-track", "--no-baselines"])
        == 0
    )
    return folder, old_log, new_log



# ------------------------------------------------------------------------------ id maps


def test_align_matches_raw_ids_whatever_the_order() -> None:
    old = IdMap.fit([40, 10, 30, 20])
    new = IdMap.fit([50, 20, 5, 40, 10])  # 30 removed, 5 and 50 new
    a = align(old, new)
    assert (a.copied, a.new, a.dropped) == (3, 2, 1)
    assert old.to_raw(a.old_index).tolist() == new.to_raw(a.new_index).tolist() == [10, 20, 40]
    # 10 is index 0 in the old map and 1 in the new one (5 sorts first).
    assert a.old_index.tolist() == [0, 1, 3] and a.new_index.tolist() == [1, 2, 3]

    s = align(IdMap.fit(["b", "a"]), IdMap.fit(["c", "b"]))
    assert (s.copied, s.new, s.dropped) == (1, 1, 1)
    assert s.old_index.tolist() == [1] and s.new_index.tolist() == [0]

    with pytest.raises(DataError, match="cannot be matched"):
        align(IdMap.fit([1, 2]), IdMap.fit(["1", "2"]), source="users")


# ---------------------------------------------------------------------- copying rows


def test_known_rows_are_copied_by_raw_id_and_new_rows_drawn_as_usual(
    logs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    folder, _, new_log = logs
    old = RunFolder(folder / "old")
    cfg: RunConfig = load_config(
        str(_config(tmp_path, new_log, "new")), [f"train.warm_start={old.root}"]
    )
    prep = prepare(cfg)
    assert prep.warm is not None
    split, old_split = prep.split, old.split
    warm_user, warm_item = prep.built.method.encoder.split(prep.built.method.encoder.weight)
    old_table = torch.load(old.model_file, weights_only=True)["encoder.weight"]
    old_user, old_item = old_table[: old_split.n_users], old_table[old_split.n_users :]
    # The same config without the warm start: the table a cold run starts from.
    cold = assemble(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"warm_start": None})}),
        split,
        prep.device,
        "cold",
    ).method.encoder
    cold_user, cold_item = cold.split(cold.weight)

    for side, new_ids, old_ids, warm, before, fresh in (
        ("users", split.users, old_split.users, warm_user, old_user, cold_user),
        ("items", split.items, old_split.items, warm_item, old_item, cold_item),
    ):
        new_raw, old_raw = new_ids.raw.to_list(), old_ids.raw.to_list()
        assert new_raw != old_raw  # the grown log's indices are not the old ones
        counts = getattr(prep.warm, side)
        known = sorted(set(new_raw) & set(old_raw))
        assert counts.copied == len(known) > 0
        assert counts.new == len(set(new_raw) - set(old_raw)) > 0
        assert counts.dropped == len(set(old_raw) - set(new_raw)) > 0
        for raw in known:
            assert torch.equal(warm[new_raw.index(raw)], before[old_raw.index(raw)]), (
                f"{side} {raw}"
            )
        for raw in set(new_raw) - set(old_raw):
            assert torch.equal(warm[new_raw.index(raw)], fresh[new_raw.index(raw)])
    assert NEW_USER in split.users.raw.to_list() and NEW_USER not in old_split.users.raw
    assert DROPPED_ITEM in old_split.items.raw.to_list()
    assert json.loads(RunFolder(cfg.output_dir).warm_start_file.read_text())["users"] == {
        "copied": prep.warm.users.copied,
        "new": prep.warm.users.new,
        "dropped": prep.warm.users.dropped,
    }


# ----------------------------------------------------------------------- end to end


def test_cli_warm_start_trains_records_and_resumes(
    logs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, new_log = logs
    source = tmp_path / "source"  # a copy, moved away before the resume
    shutil.copytree(folder / "old", source)
    cfg = _config(tmp_path, new_log, "new", epochs=2)
    argv = ["train", "-c", str(cfg), "--no-track", "--no-baselines", "--warm-start", str(source)]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    run = tmp_path / "new"
    summary = json.loads((run / "metrics.json").read_text())
    warm = summary["warm_start"]
    assert warm["source"] == str(source)
    line = next(x for x in out.splitlines() if x.startswith("warm start from"))
    assert f"users {warm['users']['copied']} copied, {warm['users']['new']} new, " in line
    assert f"items {warm['items']['copied']} copied" in line
    assert warm["users"]["new"] >= 1 and warm["items"]["dropped"] >= 1
    assert len(summary["history"]) == 2
    assert RunFolder(run).config.train.warm_start == source

    # A resume continues from the checkpoint (the warm rows are in it): the old folder is
    # no longer read, and the counts come from the run folder.
    shutil.move(source, tmp_path / "gone")
    assert main([*argv, "--resume", "--set", "train.epochs=3"]) == 0
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["warm_start"]["users"] == warm["users"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == summary["history"]

    # Resuming without the warm start is another run's checkpoint.
    err = user_error(capsys, [*argv[:-2], "--resume", "--set", "train.epochs=4"])
    assert "checkpoint is from a different run (train.warm_start" in err


def test_config_key_warm_starts_like_the_flag_and_is_tracked(
    logs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, new_log = logs
    cfg = _config(tmp_path, new_log, "new", epochs=1)
    cfg.write_text(
        cfg.read_text().replace(
            "progress: false}", f"progress: false, warm_start: {folder / 'old'}}}"
        )
    )
    assert load_config(str(cfg)).train.warm_start == folder / "old"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert main(["train", "-c", str(cfg), "--no-baselines", "--tracking-uri", uri]) == 0
    warm = json.loads((tmp_path / "new" / "metrics.json").read_text())["warm_start"]
    assert warm["source"] == str(folder / "old") and warm["items"]["copied"] > 0
    # Printed again in the final summary, beside the selection.
    assert capsys.readouterr().out.count("warm start from") == 2
    cold = json.loads((folder / "old" / "metrics.json").read_text())
    assert cold["warm_start"] is None

    from mlflow.tracking import MlflowClient

    run_id = json.loads((tmp_path / "new" / "tracking.json").read_text())["run_id"]
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params["train.warm_start"] == str(folder / "old")
    assert params["warm_start.users_copied"] == str(warm["users"]["copied"])
    assert params["warm_start.items_dropped"] == str(warm["items"]["dropped"])


# --------------------------------------------------------------------------- errors


def test_classic_methods_refuse_a_warm_start(
    logs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, new_log = logs
    cfg = _config(tmp_path, new_log, "new")
    for method in ("ease", "ials"):
        with pytest.raises(ConfigError, match=f"train.warm_start: model.method '{method}'"):
            load_config(str(cfg), [f"model={{method: {method}}}", "train.warm_start=x"])
    err = user_error(
        capsys,
        [
            "train",
            "-c",
            str(cfg),
            "--set",
            "model={method: ease}",
            "--warm-start",
            str(folder / "old"),
            "--no-track",
        ],
    )
    assert "model.method 'ease' is fitted" in err


def test_bad_warm_start_sources_fail_in_one_line_before_writing(
    logs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, new_log = logs
    cfg = _config(tmp_path, new_log, "new")
    base = ["train", "-c", str(cfg), "--no-track", "--no-baselines"]

    err = user_error(capsys, [*base, "--warm-start", str(tmp_path / "nowhere")])
    assert "nowhere: run folder not found" in err

    unfinished = tmp_path / "unfinished"
    shutil.copytree(folder / "old", unfinished)
    (unfinished / "metrics.json").unlink()
    assert "the run has not finished" in user_error(
        capsys, [*base, "--warm-start", str(unfinished)]
    )

    for override, key in (
        ("model.dim=16", "model.dim is 8 there and 16 here"),
        ("model.layers=3", "model.layers is 2 there and 3 here"),
        ("model={method: simgcl, dim: 8}", "model.method is 'xsimgcl' there and 'simgcl' here"),
    ):
        err = user_error(capsys, [*base, "--set", override, "--warm-start", str(folder / "old")])
        assert key in err
    assert not (tmp_path / "new").exists()  # nothing was written for the refused runs
