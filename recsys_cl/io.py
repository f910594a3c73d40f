"""Atomic file output: a reader never sees a half-written file or folder.

Every artifact recsys_cl writes goes to a temporary sibling first and is renamed into place
only once complete, so an interrupted run leaves either the previous output or nothing.

The temporary file (folder) is created as a plain ``open()`` (``mkdir``) creates one: mode
0o666 (0o777) less the user's umask, applied by the kernel, so outputs are as readable as any
other file the user writes. ``tempfile.mkstemp`` (``mkdtemp``) would make them 0o600 (0o700).

A disk (or quota) that fills while an output is written ends the writer with a one-line
:class:`OSError` (``ENOSPC``) naming the file, what was written of it and the space left; the
previous version of the file stays in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cl.errors import DataError, first_line

# Names tried before giving up on a free temporary name (each a fresh 64-bit random suffix).
_TEMP_ATTEMPTS = 100
# Errors that mean "no room": a full file system, an exhausted quota.
_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)
# How some writers report them without an errno: polars ("... (os error 28)"), FAISS (the
# strerror text). torch's C++ file writer says neither ("unexpected pos ..."), see _disk_full.
_FULL_TEXTS = tuple(os.strerror(code) for code in sorted(_FULL_ERRNOS)) + tuple(
    f"(os error {code})" for code in sorted(_FULL_ERRNOS)
)
# Free space below which a write that failed with no errno is taken for a full disk: the
# writer stops at the first block it cannot place, so a full disk shows (nearly) nothing free.
_NEARLY_FULL_BYTES = 1 << 20


def _new_temp(final: Path, *, folder: bool) -> Path:
    """Create an unused ``.<name>.<random>.tmp`` next to ``final``, mode 0o666 (0o777 for a
    folder) less the umask, as ``open`` and ``mkdir`` create them."""
    for _ in range(_TEMP_ATTEMPTS):
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(8)}.tmp")
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(final.parent))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _bytes_in(path: Path) -> int:
    """Bytes of ``path`` (a file, or every file under a folder); 0 if it is gone."""
    try:
        if not path.is_dir():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _disk_full(exc: BaseException, folder: Path) -> int | None:
    """The errno (ENOSPC or EDQUOT) when ``exc`` (or what it wraps) means the disk is full,
    else None. Writers that drop the errno (torch's and FAISS's C++ writers raise a bare
    RuntimeError) are judged by the space left beside the output."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return seen.errno
        if any(text in str(seen) for text in _FULL_TEXTS):
            return errno.ENOSPC
        seen = seen.__cause__ or seen.__context__
    no_errno = isinstance(exc, RuntimeError) or (isinstance(exc, OSError) and exc.errno is None)
    free = _free_bytes(folder)
    if no_errno and free is not None and free < _NEARLY_FULL_BYTES:
        return errno.ENOSPC
    return None


def _full_error(code: int, final: Path, tmp: Path) -> OSError:
    """One line for the CLI (``<file>: <what happened>``): what was written of ``final``
    before the disk filled, what is left, and whether a previous version was kept."""
    written, free = _bytes_in(tmp), _free_bytes(final.parent)
    left = f", {_size(free)} free there" if free is not None else ""
    if final.exists():
        kept = f"; the previous version ({_size(_bytes_in(final))}) is kept"
    else:
        kept = "; nothing was written in its place"
    return OSError(
        code,
        f"{os.strerror(code)} after writing {_size(written)} of it{left}{kept}; free some "
        "space and run the command again",
        str(final),
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    The caller writes the file itself (e.g. ``df.write_parquet(tmp)``). On an exception the
    temporary file is removed and ``path`` is left untouched.

    Raises:
        OSError: ``ENOSPC``/``EDQUOT`` with a one-line message naming ``path`` when the disk
            filled while it was written (whatever the writer raised).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(final, folder=False)
    try:
        yield tmp
        os.replace(tmp, final)
    except Exception as exc:
        code = _disk_full(exc, final.parent)
        if code is None:
            raise
        raise _full_error(code, final, tmp) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; swap it in for ``path`` on success.

    An existing folder at ``path`` is replaced only after the new one is complete.

    Raises:
        OSError: ``ENOSPC``/``EDQUOT`` naming ``path``, as :func:`atomic_path`.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(final, folder=True)
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
    except Exception as exc:
        code = _disk_full(exc, final.parent)
        if code is None:
            raise
        raise _full_error(code, final, tmp) from exc
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
