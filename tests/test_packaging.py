"""The shipped configs travel with the package: found by name from any folder, in a source
checkout, an editable install and an installed wheel (built here and installed into a fresh
virtual environment, then run from a folder outside the checkout)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
from setuptools import find_packages

from recsys_cl.config import load_config, load_space, load_sweep, read_yaml
from recsys_cl.config.loader import shipped_config_names
from recsys_cl.errors import ConfigError
from recsys_cl.jobs.commands.train import DEFAULT_MAIN_CONFIG
from recsys_cl.optional import faiss_available

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SWEEP = "sweeps/ml-100k-imbalance"
SPACE = "tune/ml-100k-xsimgcl"


def _dump(obj: Any) -> Any:
    return json.loads(json.dumps(obj.model_dump(mode="json")))


def _sweep_dump(path: str | Path) -> list[Any]:
    return [[name, _dump(cfg)] for name, cfg in load_sweep(path)]


# --- the loader, in this process -------------------------------------------------------------


def test_packages_list_every_subpackage() -> None:
    """pyproject.toml lists the packages by hand (recsys_cl.configs is mapped onto configs/,
    which packages.find cannot express): a subpackage left off would be missing from wheels."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"] == {"recsys_cl.configs": "configs"}
    listed = set(setup["packages"]) - {"recsys_cl.configs"}
    on_disk = set(find_packages(str(REPO), include=["recsys_cl", "recsys_cl.*"]))
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "remove these from [tool.setuptools] packages"


def test_shipped_names_are_the_configs_folder() -> None:
    names = shipped_config_names()
    assert names == sorted(p.relative_to(CONFIGS).with_suffix("").as_posix()
                           for p in CONFIGS.rglob("*.yaml"))
    assert {"ml-100k/xsimgcl", "index/flat", SWEEP, SPACE} <= set(names)


def test_names_and_repository_paths_load_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _dump(load_config(CONFIGS / "ml-100k" / "xsimgcl.yaml"))
    sweep = _sweep_dump(CONFIGS / "sweeps" / "ml-100k-imbalance.yaml")
    space = _dump(load_space(CONFIGS / "tune" / "ml-100k-xsimgcl.yaml"))
    monkeypatch.chdir(tmp_path)
    for form in ("ml-100k/xsimgcl", "ml-100k/xsimgcl.yaml", DEFAULT_MAIN_CONFIG,
                 "./configs/ml-100k/xsimgcl"):
        assert _dump(load_config(form)) == expected, form
    # The sweep's base and strategies are paths relative to the sweep file (../imbalance/...).
    assert _sweep_dump(SWEEP) == sweep
    assert _sweep_dump(f"configs/{SWEEP}.yaml") == sweep
    assert _dump(load_space(SPACE)) == space
    assert read_yaml("index/flat") == read_yaml(CONFIGS / "index" / "flat.yaml")


def test_an_existing_file_wins_over_a_shipped_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "configs" / "ml-100k" / "xsimgcl.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("data: {dataset: ml-100k}\nmodel: {method: mf}\n")
    assert load_config("configs/ml-100k/xsimgcl.yaml").model.method == "mf"
    assert load_config("ml-100k/xsimgcl").model.method == "xsimgcl"


def test_a_name_that_is_neither_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config("ml-100k/xsimgl")
    message = str(exc.value)
    assert message.startswith(
        "ml-100k/xsimgl: config file not found, and no shipped config is named ml-100k/xsimgl "
        "(did you mean ml-100k/xsimgcl"
    )
    assert message.endswith("list them: recsys-cl configs)") and "\n" not in message
    # A path that cannot be a name (absolute, or out of its folder) is simply not found.
    for path in (tmp_path / "missing.yaml", Path("../ml-100k/xsimgcl.yaml")):
        with pytest.raises(ConfigError, match=r"xsimgcl.yaml: config file not found$|"
                                              r"missing.yaml: config file not found$"):
            load_config(path)


# --- a built wheel and an editable install, in fresh virtual environments ---------------------

# Run by the fresh environment's Python from a folder outside the checkout; prints JSON. It
# imports only recsys_cl.config (no torch), so it takes the main job's default as an argument.
_CHECK = """
import importlib.util, json, sys
import recsys_cl
from recsys_cl.config import load_config, load_space, load_sweep, read_yaml
from recsys_cl.config.loader import shipped_config_names
from recsys_cl.config.shipped import shipped_config

def dump(obj):
    return obj.model_dump(mode="json")

print(json.dumps({
    "package": recsys_cl.__file__,
    "package_data": importlib.util.find_spec("recsys_cl.configs") is not None,
    "main_file": str(shipped_config("ml-100k/xsimgcl")),
    "names": shipped_config_names(),
    "main": dump(load_config(sys.argv[3])),
    "by_name": dump(load_config("ml-100k/xsimgcl")),
    "sweep": [[name, dump(cfg)] for name, cfg in load_sweep(sys.argv[1])],
    "space": dump(load_space(sys.argv[2])),
    "index": read_yaml("index/flat"),
}))
"""


def _copy_source(dest: Path) -> Path:
    """What the build reads, copied so that building writes nothing into the checkout."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("recsys_cl", "configs"):
        shutil.copytree(REPO / folder, dest / folder, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    return dest


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment without pip that borrows this one's installed packages
    (torch, pip, setuptools) through a .pth file, so nothing heavy is reinstalled. Only .pth
    files in the environment's own site-packages are processed, so this environment's
    editable recsys_cl finder does not come along."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder)], folder.parent)
    python = folder / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                folder.parent).stdout.strip()
    paths = sysconfig.get_paths()
    borrowed = dict.fromkeys([paths["purelib"], paths["platlib"]])
    Path(site, "_recsys_cl_test_borrowed.pth").write_text("\n".join(borrowed) + "\n")
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _copy_source(tmp_path_factory.mktemp("wheel-src"))
    out = tmp_path_factory.mktemp("wheelhouse")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", str(src), "-w", str(out)], src)
    (built,) = out.glob("recsys_cl-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python, its environment's folder): the wheel installed into a fresh environment."""
    venv = tmp_path_factory.mktemp("venv-wheel") / "env"
    python = _fresh_venv(venv)
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
         venv.parent)
    return python, venv


@pytest.fixture(scope="module", params=["wheel", "editable"])
def installed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Path]:
    """(kind, the environment's python, the folder recsys_cl must be imported from)."""
    kind: str = request.param
    if kind == "wheel":
        python, home = request.getfixturevalue("wheel_env")
        return kind, python, home
    venv = tmp_path_factory.mktemp("venv-editable") / "env"
    python = _fresh_venv(venv)
    home = _copy_source(tmp_path_factory.mktemp("editable-src"))
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
          "--no-build-isolation", "-e", str(home)], venv.parent)
    return kind, python, home


@pytest.mark.integration
def test_wheel_holds_every_module_and_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "recsys_cl").rglob("*.py")}
    configs = {f"recsys_cl/{p.relative_to(REPO).as_posix()}" for p in CONFIGS.rglob("*.yaml")}
    assert modules - names == set()
    assert configs - names == set()
    assert not any(name.startswith("configs/") for name in names)  # no top-level "configs"


@pytest.mark.integration
def test_shipped_configs_load_outside_the_checkout(
    installed: tuple[str, Path, Path], tmp_path: Path
) -> None:
    kind, python, home = installed
    script = tmp_path / "check.py"
    script.write_text(_CHECK)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = [str(python), str(script), SWEEP, SPACE, DEFAULT_MAIN_CONFIG]
    out = json.loads(_run(argv, elsewhere).stdout)
    assert Path(out["package"]).is_relative_to(home), out["package"]
    main_file = Path(out["main_file"])
    assert main_file.is_relative_to(home), main_file
    if kind == "wheel":
        # Read through importlib.resources from the installed package, not from a checkout.
        assert out["package_data"]
        assert main_file == Path(out["package"]).parent / "configs" / "ml-100k" / "xsimgcl.yaml"
    assert out["names"] == shipped_config_names()
    expected = _dump(load_config(CONFIGS / "ml-100k" / "xsimgcl.yaml"))
    assert out["main"] == expected and out["by_name"] == expected
    assert out["sweep"] == _sweep_dump(CONFIGS / "sweeps" / "ml-100k-imbalance.yaml")
    assert out["space"] == _dump(load_space(CONFIGS / "tune" / "ml-100k-xsimgcl.yaml"))
    assert out["index"] == read_yaml(CONFIGS / "index" / "flat.yaml")
    listed = _run([str(python), "-m", "recsys_cl.config"], elsewhere).stdout.split()
    assert listed == shipped_config_names()


@pytest.mark.integration
@pytest.mark.skipif(not faiss_available(), reason="recsys-cl main needs FAISS (the cpu extra)")
def test_main_job_reads_its_default_config_outside_the_checkout(
    wheel_env: tuple[Path, Path], tmp_path: Path
) -> None:
    """``recsys-cl main`` with no --config, from an empty folder: an unknown key is reported
    against the default config, so the file was found and read (training never starts)."""
    python, _ = wheel_env
    script = python.parent / ("recsys-cl.exe" if os.name == "nt" else "recsys-cl")
    done = subprocess.run(
        [str(script), "main", "--no-track", "--set", "not_a_key=1"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("recsys-cl: error: ") and done.stderr.count("\n") == 1
    error = done.stderr.rstrip()
    assert re.search(r"xsimgcl(\.yaml)?: not_a_key: unknown key$", error), error
