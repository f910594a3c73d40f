"""YAML loading with dotted ``--set`` overrides; errors name the file and the key's dotted path."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from recsys_cl.errors import ConfigError

from .schema import RunConfig
from .shipped import find_config, shipped_config_names

__all__ = [
    "apply_overrides",
    "load_config",
    "parse_override",
    "read_yaml",
    "set_values",
    "shipped_config_names",
    "to_yaml",
    "validate",
]

M = TypeVar("M", bound=BaseModel)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML scalar (never evaluated as code)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc.problem})") from None
    parts = [p.strip() for p in key.split(".")]
    if any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: empty key segment")
    return parts, value


def _put(tree: dict[str, Any], parts: Sequence[str], value: Any, source: str) -> None:
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"{source}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``dotted.key=value`` override set (inputs untouched)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        _put(out, parts, value, f"--set {text!r}")
    return out


def set_values(
    raw: dict[str, Any], values: Mapping[str, Any], source: str = "config"
) -> dict[str, Any]:
    """Return a copy of ``raw`` with each dotted key set to its already typed value (a tuner's
    sampled floats never go through YAML, where ``1e-05`` would read as a string)."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        _put(out, key.split("."), value, source)
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in the YAML file ``path``, or in the shipped config it names when no such
    file exists (``ml-100k/xsimgcl``; :func:`~.shipped.find_config`)."""
    p = Path(path)
    try:
        text = find_config(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _describe(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    first = err.errors()[0]
    # Discriminated unions insert the tag ("xsimgcl") into loc; it is not a key the user wrote.
    tags = _union_tags(model)
    loc = [str(x) for x in first["loc"] if not (isinstance(x, str) and x in tags)]
    path = ".".join(loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key is missing"
    else:
        msg = first["msg"].removeprefix("Value error, ")
    more = len(err.errors()) - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}: {msg}{tail}"


def _union_tags(model: type[BaseModel]) -> frozenset[str]:
    """The tags of every discriminated union reachable from ``model`` (``model.method``: "mf",
    "sgl", ...; the imbalance block's ``kind``s), read off the schema so a method added to a
    union needs no entry here."""
    tags: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(annotation: Any, discriminator: str | None) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if discriminator is not None:
                tags.update(map(str, get_args(annotation.model_fields[discriminator].annotation)))
            if annotation not in seen:
                seen.add(annotation)
                for info in annotation.model_fields.values():
                    found = info.discriminator if isinstance(info.discriminator, str) else None
                    walk(info.annotation, found)
            return
        if get_origin(annotation) is Annotated:
            for meta in annotation.__metadata__:
                if isinstance(getattr(meta, "discriminator", None), str):
                    discriminator = meta.discriminator
        for arg in get_args(annotation):
            walk(arg, discriminator)

    walk(model, None)
    return frozenset(tags)


def validate(raw: dict[str, Any], model: type[M] = RunConfig, source: str = "config") -> M:  # type: ignore[assignment]
    """Validate a raw mapping into ``model``; a failure is a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source, model)) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    model: type[M] = RunConfig,  # type: ignore[assignment]
) -> M:
    """Load ``path`` (optional), apply ``--set`` overrides, validate into ``model``.

    ``path`` is a YAML file or, when no such file exists, a shipped config's name
    (``ml-100k/xsimgcl``; the names: :func:`shipped_config_names`).
    """
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    source = str(path) if path is not None else "--set"
    return validate(raw, model, source)


def to_yaml(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (what a run records next to its outputs)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
