"""Read interaction logs from files into the canonical frame (see :mod:`recsys_cl.data.frame`).

Formats:

* ``csv`` / ``tsv``: a header line, then one interaction per line.
* ``parquet``.
* ``lightgcn``: ``user item item ...`` per line, whitespace-separated (the LightGCN/NGCF
  ``train.txt``/``test.txt``); a line holding only a user contributes no interaction.
* ``movielens``: GroupLens ``u.data`` (tab-separated) or ``ratings.dat`` (``::``-separated),
  no header, ``user item rating timestamp``.

Errors locate text files by 1-based ``line`` (what an editor shows) and tables by 0-based
``row``. Blank lines are skipped.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import get_args

import numpy as np
import polars as pl

from recsys_cl.config.schema import DataFormat as Format
from recsys_cl.data.frame import (
    ITEM,
    RATING,
    TIMESTAMP,
    USER,
    ColumnMap,
    Locate,
    canonicalize,
    data_error,
    shown,
    table_row,
)

FORMATS: tuple[str, ...] = tuple(f for f in get_args(Format) if f != "auto")

_PARQUET_MAGIC = b"PAR1"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 4096
_MOVIELENS_COLUMNS = [USER, ITEM, RATING, TIMESTAMP]
_BY_NAME = {"u.data": "movielens", "ratings.dat": "movielens"}
_BY_NAME.update({"train.txt": "lightgcn", "test.txt": "lightgcn"})
_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: str | Path, head: bytes | None = None) -> str:
    """The format implied by a file's name (``u.data``, ``train.txt``, ``*.csv``, ...) or, when
    the name says nothing (``log.dat``), by its first bytes ``head``: Parquet's magic number, or
    a header line and a first row that split into the same number (at least two) of fields by
    exactly one of tab and comma."""
    path = Path(path)
    name = path.name.lower()
    if name in _BY_NAME:
        return _BY_NAME[name]
    if path.suffix.lower() in _BY_SUFFIX:
        return _BY_SUFFIX[path.suffix.lower()]
    sniffed = _sniff(head) if head is not None else None
    if sniffed is not None:
        return sniffed
    known = ", ".join(FORMATS)
    raise data_error(
        str(path),
        "cannot tell the format from the file name or its first lines; set data.format "
        f"(command line: --set data.format=tsv; Python: format='tsv'), one of {known}",
    )


def _sniff(head: bytes) -> str | None:
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    lines = [ln for ln in head.decode("utf-8", errors="replace").splitlines() if ln.strip()][:2]
    if len(lines) < 2:
        return None
    fits = [
        fmt
        for fmt, sep in (("tsv", "\t"), ("csv", ","))
        if len({ln.count(sep) for ln in lines}) == 1 and lines[0].count(sep) >= 1
    ]
    return fits[0] if len(fits) == 1 else None


def open_log(path: Path, format: str) -> tuple[bytes, str]:
    """Check that ``path`` is a non-empty file and tell its format (``format`` unless
    ``auto``): (its first bytes, the format). Both the eager reader and the lazy scan start here.

    Raises:
        DataError: a missing, folder or empty path, or a format that cannot be told.
    """
    source = str(path)
    if not path.exists():
        raise data_error(source, "file not found")
    if path.is_dir():
        raise data_error(source, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise data_error(source, "file is empty")
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    return head, detect_format(path, head) if format == "auto" else format


def read_interactions(
    path: str | Path,
    *,
    format: Format = "auto",
    columns: ColumnMap | None = None,
    sep: str | None = None,
) -> pl.DataFrame:
    """Read an interaction log into the canonical frame.

    Args:
        path: the file.
        format: one of :data:`FORMATS`, or ``"auto"`` to decide by file name, else by the
            first lines (see :func:`detect_format`).
        columns: source column names (csv/tsv/parquet only; ``None`` takes the canonical names
            and ``timestamp``/``rating`` when present).
        sep: field separator for csv/tsv (default ``,`` and tab).

    Returns:
        The canonical frame: ``user``, ``item`` [+ ``timestamp`` Int64] [+ ``rating`` Float64].

    Raises:
        DataError: missing, empty or malformed file, with the file, line/row and column.
    """
    path = Path(path)
    source = str(path)
    head, fmt = open_log(path, format)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS} or 'auto'")
    if columns is not None and fmt in ("lightgcn", "movielens"):
        raise ValueError(f"columns= does not apply to the header-less {fmt} format")
    if sep is not None and fmt not in ("csv", "tsv"):
        raise ValueError(f"sep= does not apply to the {fmt} format")
    if fmt != "parquet":
        _check_text(head, source, fmt)
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, source, fmt, columns, sep or ("," if fmt == "csv" else "\t"))
    if fmt == "parquet":
        return _read_parquet(path, source, columns, head)
    if fmt == "lightgcn":
        return _read_lightgcn(path, source)
    return _read_movielens(path, source, head)


def _check_text(head: bytes, source: str, fmt: str) -> None:
    """Fail early, and clearly, when a binary file is given to a text reader."""
    if head.startswith(_PARQUET_MAGIC):
        raise data_error(source, f"looks like a Parquet file, not {fmt}; pass format='parquet'")
    if head.startswith(_GZIP_MAGIC) or head.startswith(_ZIP_MAGIC):
        raise data_error(source, f"is a compressed archive, not {fmt}; extract it first")


def _polars_failure(source: str, fmt: str, exc: Exception) -> Exception:
    # Polars messages run over several lines with generic advice; the first line is the cause.
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return data_error(source, f"cannot read as {fmt}: {first}")


def _line_locator(lines: np.ndarray) -> Locate:
    return lambda i: f"line {int(lines[i])}"


def _drop_blank(df: pl.DataFrame, first_line: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Remove rows that are blank lines; return the 1-based file line of every kept row.

    Polars reads a blank line inside a file as a row of nulls; it is not an interaction.
    """
    df = df.with_row_index("__line", offset=first_line)
    blank = pl.all_horizontal([pl.col(c).is_null() for c in df.columns if c != "__line"])
    df = df.filter(~blank)
    return df.drop("__line"), df["__line"].to_numpy()


def _read_delimited(
    path: Path, source: str, fmt: str, columns: ColumnMap | None, sep: str
) -> pl.DataFrame:
    if len(sep.encode()) != 1:
        raise ValueError(f"sep must be a single byte, got {sep!r}")
    try:
        # Everything is read as text so ids keep their exact spelling and errors name the row.
        df = pl.read_csv(path, separator=sep, infer_schema=False, raise_if_empty=True)
    except pl.exceptions.NoDataError:
        raise data_error(source, "file is empty") from None
    except pl.exceptions.PolarsError as exc:
        raise _polars_failure(source, fmt, exc) from exc
    df, lines = _drop_blank(df, first_line=2)  # line 1 is the header
    return canonicalize(df, columns, source, _line_locator(lines))


def _read_parquet(path: Path, source: str, columns: ColumnMap | None, head: bytes) -> pl.DataFrame:
    if not head.startswith(_PARQUET_MAGIC):
        raise data_error(source, "is not a Parquet file (no PAR1 header); pass format='csv'?")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _polars_failure(source, "parquet", exc) from exc
    return canonicalize(df, columns, source, table_row)


def _decode(path: Path, source: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise data_error(source, f"line {line}: not UTF-8 text") from None


def _read_lightgcn(path: Path, source: str) -> pl.DataFrame:
    # Python splits lines (one per user: tens of thousands) so line numbers are exact;
    # polars splits tokens and parses integers (hundreds of thousands), vectorized.
    lines = pl.DataFrame({"text": _decode(path, source).split("\n")})
    tokens = lines.with_row_index("line", offset=1).select(
        "line", tok=pl.col("text").str.extract_all(r"\S+")
    )
    tokens = tokens.filter(pl.col("tok").list.len() > 0)
    if tokens.height == 0:
        raise data_error(source, "has no interactions")
    users = tokens.select("line", raw=pl.col("tok").list.first())
    _check_integers(users, source, "user id")
    items = tokens.select("line", user=pl.col("tok").list.first(), raw=pl.col("tok").list.slice(1))
    items = items.explode("raw").drop_nulls("raw")
    _check_integers(items, source, "item id")
    if items.height == 0:
        raise data_error(source, "has users but no interactions")
    return items.select(
        pl.col("user").cast(pl.Int64).alias(USER), pl.col("raw").cast(pl.Int64).alias(ITEM)
    )


def _check_integers(df: pl.DataFrame, source: str, what: str) -> None:
    """``df`` has ``line`` and ``raw`` (token) columns; every token must be an integer."""
    bad = df.filter(pl.col("raw").cast(pl.Int64, strict=False).is_null())
    if bad.height:
        line, token = bad["line"][0], bad["raw"][0]
        raise data_error(source, f"line {line}: {what} {shown(token)} is not an integer")


def _read_movielens(path: Path, source: str, head: bytes) -> pl.DataFrame:
    first_line = head.split(b"\n", 1)[0]
    data: Path | io.BytesIO = path
    if b"::" in first_line:
        # ratings.dat separates by "::"; polars takes one-byte separators, and no field holds a tab.
        data = io.BytesIO(path.read_bytes().replace(b"::", b"\t"))
    try:
        df = pl.read_csv(
            data,
            separator="\t",
            has_header=False,
            infer_schema=False,
            quote_char=None,
        )
    except pl.exceptions.PolarsError as exc:
        raise _polars_failure(source, "movielens", exc) from exc
    if df.width != len(_MOVIELENS_COLUMNS):
        raise data_error(
            source, f"line 1: expected 4 fields (user, item, rating, timestamp), found {df.width}"
        )
    df, lines = _drop_blank(
        df.rename(dict(zip(df.columns, _MOVIELENS_COLUMNS, strict=True))), first_line=1
    )
    columns = ColumnMap(timestamp=TIMESTAMP, rating=RATING)
    return canonicalize(df, columns, source, _line_locator(lines), integer_ids=True)
