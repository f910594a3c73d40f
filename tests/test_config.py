"""Config loading: unknown keys and cross-field rules fail at load, naming the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from recsys_cl.config import RunConfig, apply_overrides, load_config, load_sweep, parse_override
from recsys_cl.errors import ConfigError

# configs/index/ holds FAISS index specs, not run configs (loaded in test_retrieval_index.py);
# configs/imbalance/ holds imbalance: blocks (loaded in test_imbalance_training.py);
# configs/sweeps/ holds strategy sweeps (below); configs/tune/ holds search spaces (test_tune.py).
CONFIG_DIR = Path(__file__).resolve().parents[1].joinpath("configs")
CONFIGS = sorted(
    p
    for p in CONFIG_DIR.glob("*/*.yaml")
    if p.parent.name not in ("index", "imbalance", "sweeps", "tune")
)
SWEEPS = sorted(CONFIG_DIR.glob("sweeps/*.yaml"))
BASE = ["data.dataset=ml-100k"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.model.method == path.stem


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweeps_load(path: Path) -> None:
    runs = load_sweep(path)
    names = [name for name, _ in runs]
    assert len(names) >= 3 and "none" in names
    cfgs = [cfg for _, cfg in runs]
    # Same data and seed for every entry; the strategies differ only in the imbalance block,
    # the models (the sweep's `models:`) in the method.
    assert len({(c.data, c.seed) for c in cfgs}) == 1
    strategies = [c for c in cfgs if c.model == cfgs[0].model]
    assert len({c.imbalance for c in strategies}) == len(strategies)
    assert len({c.model for c in cfgs}) == len(cfgs) - len(strategies) + 1
    assert [c.output_dir.name for c in cfgs] == names


def test_sweep_errors_name_the_file_and_strategy(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("data: {dataset: ml-100k}\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("base: base.yaml\nstrategies:\n  typo: {weights: {propensity_gama: 0.5}}\n")
    with pytest.raises(
        ConfigError,
        match=r"sweep.yaml \(strategy typo\): imbalance.weights.propensity_gama: unknown key",
    ):
        load_sweep(sweep)
    sweep.write_text("base: base.yaml\nstrategies: {}\n")
    with pytest.raises(ConfigError, match="strategies: needs at least one strategy"):
        load_sweep(sweep)
    sweep.write_text("base: base.yaml\nstrategies: {a: missing.yaml}\n")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_sweep(sweep)
    sweep.write_text("base: base.yaml\nstrategies: {a: {}}\n")
    with pytest.raises(ConfigError, match="output_dir in the sweep file or with --out"):
        load_sweep(sweep, ["output_dir=x"])


def test_sweep_overrides_reach_every_strategy_block(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("data: {dataset: ml-100k}\noutput_dir: out/base\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "base: base.yaml\nstrategies:\n  a: {}\n  b: {weights: {propensity_gamma: 0.5}}\n"
    )
    runs = load_sweep(sweep, ["imbalance.loss.focal_gamma=2", "train.epochs=7"])
    assert [cfg.imbalance.loss.focal_gamma for _, cfg in runs] == [2, 2]
    assert [cfg.imbalance.weights.propensity_gamma for _, cfg in runs] == [0.0, 0.5]
    assert {cfg.train.epochs for _, cfg in runs} == {7}
    assert [cfg.output_dir for _, cfg in runs] == [
        Path("out/base/compare/a"),
        Path("out/base/compare/b"),
    ]


def test_paper_defaults() -> None:
    cfg = load_config(None, BASE)
    assert cfg.model.method == "xsimgcl"
    assert (cfg.model.cl_weight, cfg.model.eps, cfg.model.tau) == (0.2, 0.2, 0.15)
    simgcl = load_config(None, [*BASE, "model.method=simgcl"]).model
    assert (simgcl.cl_weight, simgcl.eps, simgcl.tau) == (0.5, 0.1, 0.2)


def test_overrides_are_yaml_scalars_not_code() -> None:
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[10, 20]") == (["a"], [10, 20])
    assert parse_override("a=__import__('os')") == (["a"], "__import__('os')")


def test_overrides_do_not_mutate_input() -> None:
    raw = {"model": {"eps": 0.1}}
    out = apply_overrides(raw, ["model.eps=0.3", "train.epochs=3"])
    assert raw == {"model": {"eps": 0.1}}
    assert out == {"model": {"eps": 0.3}, "train": {"epochs": 3}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.epsilon=1"], "model.epsilon: unknown key"),
        (["trian.epochs=3"], "trian: unknown key"),
        (["model.contrast_layer=3"], "contrast_layer (3) must be ≤ layers (2)"),
        (["model.method=foo"], "does not match any of the expected tags"),
        (["data.split.val_ratio=0"], "train.protocol 'honest' selects the epoch on validation"),
        (["data.split.test_ratio=0.6", "data.split.val_ratio=0.5"], "must be < 1"),
        (["train.select_metric=ndcg@5"], "cut-off 5 is not in eval.ks"),
        (["model.eps=abc"], "model.eps: Input should be a valid number"),
        (["data.path=x.csv"], "set exactly one of data.dataset or data.path"),
        (["data.columns.user=uid"], "data.columns applies to your own files"),
        (["data.format=csv"], "data.format applies to your own files"),
        (["model.eps=0"], "model.eps: Input should be greater than 0"),
        (["model.method=simgcl", "model.layers=0"], "layers=0 with include_layer0=false"),
        (["model.method=sgl", "model.aug=random_walk", "model.layers=0"], "needs layers ≥ 1"),
    ],
)
def test_bad_values_fail_at_load(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [*BASE, *overrides])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_data_section() -> None:
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_config(None, [])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  dataset: ml-100k\nmodel:\n  dimm: 32\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: model.dimm: unknown key"):
        load_config(typo)


def test_config_is_frozen() -> None:
    cfg = load_config(None, BASE)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_column_map_rules() -> None:
    own = ["data.path=log.csv"]
    cfg = load_config(None, own)
    assert cfg.data.columns is None  # read user/item (+ timestamp/rating when present)
    with pytest.raises(ConfigError, match="each column may be mapped once"):
        load_config(None, [*own, "data.columns.user=id", "data.columns.item=id"])
    with pytest.raises(ConfigError, match="does not apply to the header-less lightgcn format"):
        load_config(None, [*own, "data.format=lightgcn", "data.columns.user=u"])


# ---------------------------------------------------------------- the method registry


def test_every_model_config_builds_its_own_method() -> None:
    from recsys_cl.config import (
        ContrastiveConfig,
        MethodConfig,
        classic_method_names,
        method_names,
        model_configs,
        trained_method_names,
    )
    from recsys_cl.models import MF, Contrast, LightGCN, Recommender

    assert trained_method_names() == ("mf", "lightgcn", "sgl", "simgcl", "xsimgcl")
    assert method_names() == trained_method_names() + classic_method_names()
    for config in model_configs():
        if not issubclass(config, MethodConfig):
            continue  # fitted, not built: tests/test_classic.py
        cfg = config(dim=4) if config.__name__ != "MFConfig" else config(dim=4, layers=0)
        method = cfg.build(5, 7)
        assert isinstance(method, Recommender)
        assert type(method).__name__.lower().removesuffix("rec") == cfg.method
        assert isinstance(method.encoder, MF if cfg.method == "mf" else LightGCN)
        assert method.encoder.weight.shape == (12, 4) and method.reg == cfg.reg
        if isinstance(cfg, ContrastiveConfig):
            assert method.contrast == Contrast(cl_weight=cfg.cl_weight, tau=cfg.tau)
        for field in ("eps", "contrast_layer", "drop_ratio", "aug"):
            if field in type(cfg).model_fields:
                assert getattr(method, field) == getattr(cfg, field), field


def test_union_tags_are_read_off_the_schema() -> None:
    from recsys_cl.config import method_names
    from recsys_cl.config.loader import _union_tags

    tags = _union_tags(RunConfig)
    assert set(method_names()) <= tags
    # The imbalance block's unions (loss kind, hard-negative kind) are found too.
    assert {"bpr", "softmax", "ssm", "directau", "ccl", "dns", "mixgcf", "ann"} <= tags
    # A failing union member's error names the key the user wrote, not the tag pydantic adds.
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.dataset=x", "model.method=xsimgcl", "model.eps=-1"])
    assert "model.eps:" in str(err.value) and "xsimgcl" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.dataset=x", "imbalance.negatives.hard.kind=dns",
                           "imbalance.negatives.hard.keep=-1"])
    assert "imbalance.negatives.hard.keep" in str(err.value) and ".dns" not in str(err.value)
