"""Atomic file output: a reader never sees a half-written file or folder.

Every artifact recsys_cl writes goes to a temporary sibling first and is renamed into place
only once complete, so an interrupted run leaves either the previous output or nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cl.errors import DataError, first_line


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    The caller writes the file itself (e.g. ``df.write_parquet(tmp)``). On an exception the
    temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; swap it in for ``path`` on success.

    An existing folder at ``path`` is replaced only after the new one is complete.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_table(
    path: str | os.PathLike[str],
    columns: list[str],
    *,
    missing: str = "not found",
    exact: bool = True,
) -> pl.DataFrame:
    """Read the Parquet file ``path`` and check its columns, or raise a one-line DataError
    naming the file.

    Args:
        columns: the columns it must have: exactly these, in this order, when ``exact``; at
            least these otherwise.
        missing: what the message says when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {missing}")
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: unreadable Parquet ({first_line(exc)})") from None
    if (frame.columns != columns) if exact else not set(columns) <= set(frame.columns):
        found = ", ".join(frame.columns) or "none"
        raise DataError(f"{path}: needs columns {', '.join(columns)}; found {found}")
    return frame
