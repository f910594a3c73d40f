"""The configs that ship with recsys_cl, found by name from any folder.

The repository's top-level ``configs/`` folder is installed as the data-only package
``recsys_cl.configs`` (``package-dir`` in pyproject.toml) and read through
:mod:`importlib.resources`. A shipped config's name is its path under ``configs/`` without
``.yaml``: ``ml-100k/xsimgcl``, ``index/hnsw``, ``sweeps/ml-100k-imbalance``.

:func:`find_config` is how every config file is opened (:func:`~.loader.read_yaml`): a path that
exists is read as it is; otherwise a relative path is read as a shipped name, with or without
``.yaml`` and the ``configs/`` prefix (so the ``configs/...`` paths in the docs, the MLproject
defaults and a sweep's ``../imbalance/none.yaml`` resolve inside the package from any folder).

``recsys-cl configs`` (or ``python -m recsys_cl.config``) prints the shipped names.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import posixpath
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from recsys_cl.errors import ConfigError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

_PACKAGE = "recsys_cl.configs"
_PREFIX = "configs/"
_SUFFIX = ".yaml"
LIST_COMMAND = "recsys-cl configs"


def shipped_root() -> Traversable:
    """The folder of shipped configs: the installed package data, or a checkout's ``configs/``.

    Raises:
        ConfigError: this installation of recsys_cl has no shipped configs.
    """
    if importlib.util.find_spec(_PACKAGE) is not None:
        return resources.files(_PACKAGE)
    # An editable install or a source tree on sys.path: setuptools' editable finder cannot
    # import a package that has no __init__.py and is mapped onto another folder, and a bare
    # source tree has no such package. In both, this package is the checkout's recsys_cl/,
    # beside configs/ (a wheel in site-packages has no pyproject.toml beside it).
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout / "configs"
    raise ConfigError(
        f"the shipped configs ({_PACKAGE}) are missing from this installation of recsys_cl; "
        "reinstall it"
    )


def shipped_config_names() -> list[str]:
    """Every shipped config's name (``ml-100k/xsimgcl``, ``tune/ml-100k-xsimgcl``), sorted."""
    names: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(_SUFFIX):
                names.append(prefix + child.name.removesuffix(_SUFFIX))

    walk(shipped_root(), "")
    return sorted(names)


def shipped_name(path: str | os.PathLike[str]) -> str | None:
    """The shipped name ``path`` would stand for (``configs/ml-100k/xsimgcl.yaml``,
    ``ml-100k/xsimgcl.yaml`` and ``ml-100k/xsimgcl`` all give ``ml-100k/xsimgcl``), or ``None``
    for an absolute path or one that leaves its folder. Whether it is shipped is not checked."""
    p = Path(path)
    if p.anchor:  # absolute, or on another drive
        return None
    # Lexical: a sweep's "../imbalance/none.yaml" beside a shipped sweep's name must land on a
    # name even though no such folders exist here.
    name = posixpath.normpath(p.as_posix()).removeprefix(_PREFIX).removesuffix(_SUFFIX)
    if name in (".", "..") or name.startswith("../") or not name:
        return None
    return name


def shipped_config(name: str) -> Traversable | None:
    """The shipped config called ``name`` (as :func:`shipped_name` gives it), or ``None``."""
    *folders, stem = name.split("/")
    node = shipped_root()
    for part in folders:
        node = node / part
    node = node / f"{stem}{_SUFFIX}"
    return node if node.is_file() else None


def find_config(path: str | os.PathLike[str]) -> Traversable:
    """``path`` if it exists, else the shipped config it names.

    Raises:
        ConfigError: one line, when ``path`` is neither; it says how to list the shipped names
            and suggests close ones.
    """
    p = Path(path)
    if p.exists():
        return p
    name = shipped_name(p)
    if name is None:
        raise ConfigError(f"{p}: config file not found")
    found = shipped_config(name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, shipped_config_names(), n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"{p}: config file not found, and no shipped config is named {name} "
        f"({hint}list them: {LIST_COMMAND})"
    )
