"""Lazy reading of CSV/TSV/Parquet logs into the canonical frame, checked without collecting it.

:func:`scan_interactions` is the lazy twin of :func:`~recsys_cl.data.readers.read_interactions`
for the formats polars can scan: it returns a ``LazyFrame`` with the canonical columns and
types (see :mod:`recsys_cl.data.frame`) after one streaming pass that checks every row and
collects only one row of aggregates. The checks and messages are the eager reader's, in the
same order (column by column, first offending row), so a bad file fails with the same
one-line ``DataError`` naming the file, the line (text) or row (Parquet) and the column.

One difference: a text file's timestamps must be integers (epoch seconds). The eager reader
also accepts date strings, but polars infers a date format per column from its values, and a
stream sees the values chunk by chunk, so two chunks could be read with two formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cl.data.frame import (
    ID_COLUMNS,
    RATING,
    TIMESTAMP,
    ColumnMap,
    data_error,
    default_columns,
    shown,
)
from recsys_cl.data.readers import _check_text, _polars_failure, open_log

LAZY_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet")
# 0-based position of a row in the canonical frame (blank lines removed): what the eager
# reader's frame index would be, so rows keep their file order through every later step.
POS = "__pos"
_LINE = "__line"


@dataclass(frozen=True)
class _Check:
    """One eager check: rows where ``bad`` holds fail with ``message(value, place)``; ``bad``
    ``None`` fails as soon as it is reached (an unsupported column type)."""

    bad: pl.Expr | None
    value: pl.Expr
    message: Callable[[Any, str], str]
    canonical_row: bool = False  # name the canonical row rather than the file's line


@dataclass(frozen=True)
class ScannedLog:
    """A checked, canonical lazy log.

    Attributes:
        frame: ``__pos`` (the row's 0-based position in the canonical frame) then the
            canonical columns; nothing of the file is read until it is collected or sunk.
        rows: the number of interactions (rows of ``frame``).
        source: the file, as named in messages.
    """

    frame: pl.LazyFrame
    rows: int
    source: str

    @property
    def columns(self) -> list[str]:
        """The canonical columns present (``user``, ``item`` [, ``timestamp``][, ``rating``])."""
        return [c for c in self.frame.collect_schema().names() if c != POS]


def scan_interactions(
    path: str | Path,
    *,
    format: str = "auto",
    columns: ColumnMap | None = None,
    sep: str | None = None,
    implicit_threshold: float | None = None,
) -> pl.LazyFrame:
    """The canonical log of a CSV/TSV/Parquet file as a checked ``LazyFrame``.

    Arguments are :func:`~recsys_cl.data.readers.read_interactions`'s; ``implicit_threshold``
    also runs :func:`~recsys_cl.data.preprocess.to_implicit`'s checks and filter.

    Raises:
        DataError: what the eager reader raises for the same file (date-string timestamps
            excepted, see the module docstring).
    """
    return scan_log(
        path, format=format, columns=columns, sep=sep, implicit_threshold=implicit_threshold
    ).frame.drop(POS)


def scan_log(
    path: str | Path,
    *,
    format: str = "auto",
    columns: ColumnMap | None = None,
    sep: str | None = None,
    implicit_threshold: float | None = None,
) -> ScannedLog:
    """:func:`scan_interactions` keeping each row's canonical position (``__pos``)."""
    path = Path(path)
    source = str(path)
    head, fmt = open_log(path, format)
    if fmt not in LAZY_FORMATS:
        raise data_error(
            source,
            f"lazy ingestion reads {', '.join(LAZY_FORMATS)}, not {fmt}; read it without data.lazy",
        )
    if sep is not None and fmt == "parquet":
        raise ValueError("sep= does not apply to the parquet format")
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            raise data_error(source, "is not a Parquet file (no PAR1 header); pass format='csv'?")
        raw, place = _scan_parquet(path, source)
    else:
        _check_text(head, source, fmt)
        raw, place = _scan_text(path, source, fmt, sep or ("," if fmt == "csv" else "\t"))
    found = raw.collect_schema()
    names = [n for n in found.names() if n not in (POS, _LINE)]
    columns = columns or default_columns(names)
    missing = [name for name in columns.renames() if name not in names]
    if missing:
        shown_names = ", ".join(repr(c) for c in names)
        hint = ""
        if len(names) == 1 and any(ch in names[0] for ch in ",\t;|"):
            hint = " (a single column: wrong separator? pass sep=)"
        raise data_error(
            source, f"missing column {missing[0]!r}; columns found: {shown_names}{hint}"
        )
    checks: list[_Check] = []
    outputs: list[pl.Expr] = [pl.col(POS)]
    flags: dict[str, pl.Expr] = {}
    for src, dst in columns.renames().items():
        where = f"column {src!r}"
        dtype = found[src]
        if dst in ID_COLUMNS:
            out, more, flag = _id_checks(src, dtype, where)
            if flag is not None:
                flags[dst] = flag
        elif dst == TIMESTAMP:
            out, more = _timestamp_checks(src, dtype, where)
        else:
            out, more = _rating_checks(src, dtype, where)
        checks += more
        outputs.append(out.alias(dst))
    if implicit_threshold is not None:
        checks.append(_implicit_check(outputs, list(columns.renames().values())))
    stats = _aggregate(raw, checks, flags, source, fmt)
    if stats["__rows"] == 0:
        raise data_error(source, "has no interactions")
    _raise_first(raw, checks, stats, source, place)
    # Ids are Int64 when every id of the column is an integer, else their stripped text.
    targets = [POS, *columns.renames().values()]
    frame = raw.select(
        [
            out.cast(pl.Int64) if stats.get(f"__int_{name}") else out
            for out, name in zip(outputs, targets, strict=True)
        ]
    )
    if implicit_threshold is not None:
        frame = frame.filter(pl.col(RATING) >= implicit_threshold)
    return ScannedLog(frame=frame, rows=int(stats["__rows"]), source=source)


def _implicit_check(outputs: list[pl.Expr], canonical: list[str]) -> _Check:
    """to_implicit's check, run after every reading check as eagerly: nulls and non-finite
    ratings were rejected by then, so a negative one remains; it names the canonical row."""
    if RATING not in canonical:
        found = ", ".join(canonical)
        message = f"an implicit threshold needs column {RATING!r}; columns found: {found}"
        return _Check(None, pl.lit(None), lambda v, at: message)
    rating = outputs[1 + canonical.index(RATING)]
    return _Check(
        rating < 0,
        rating,
        lambda v, at: f"{at}, column {RATING!r}: rating {v} is null, NaN or negative",
        canonical_row=True,
    )


def _scan_text(
    path: Path, source: str, fmt: str, sep: str
) -> tuple[pl.LazyFrame, Callable[[dict[str, Any]], str]]:
    if len(sep.encode()) != 1:
        raise ValueError(f"sep must be a single byte, got {sep!r}")
    try:
        # Text throughout, as the eager reader: ids keep their spelling, errors name the line.
        lf = pl.scan_csv(path, separator=sep, infer_schema=False, raise_if_empty=True)
        names = lf.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise data_error(source, "file is empty") from None
    except pl.exceptions.PolarsError as exc:
        raise _polars_failure(source, fmt, exc) from exc
    # A blank line reads as a row of nulls; it is not an interaction (line 1 is the header).
    blank = pl.all_horizontal([pl.col(c).is_null() for c in names])
    lf = lf.with_row_index(_LINE, offset=2).filter(~blank).with_row_index(POS)
    return lf, lambda row: f"line {row[_LINE]}"


def _scan_parquet(path: Path, source: str) -> tuple[pl.LazyFrame, Callable[[dict[str, Any]], str]]:
    try:
        lf = pl.scan_parquet(path)
        lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _polars_failure(source, "parquet", exc) from exc
    return lf.with_row_index(POS), lambda row: f"row {row[POS]}"


def _id_checks(
    src: str, dtype: pl.DataType, where: str
) -> tuple[pl.Expr, list[_Check], pl.Expr | None]:
    """(converted column, checks, "every id is an integer" flag for text ids)."""
    col = pl.col(src)
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        col, dtype = col.cast(pl.String), pl.String()
    empty = _Check(col.is_null(), col, lambda v, at: f"{at}, {where}: empty id")
    if dtype == pl.String:
        s = col.str.strip_chars()
        blank = _Check(s.str.len_bytes() == 0, s, lambda v, at: f"{at}, {where}: empty id")
        as_int = s.cast(pl.Int64, strict=False)
        # "007" or "+5" stay strings: reading them as 7 and 5 could merge two users.
        is_int = as_int.is_not_null() & (as_int.cast(pl.String) == s)
        return s, [empty, blank], is_int.all()
    if dtype.is_integer():
        overflow = _Check(
            col.cast(pl.Int64, strict=False).is_null(),
            col,
            lambda v, at: f"{at}, {where}: id {v} overflows int64",
        )
        return col.cast(pl.Int64, strict=False), [empty, overflow], None
    if dtype.is_float():
        # A float id column is usually an integer column that pandas widened around a NaN.
        fraction = _Check(
            ~col.is_finite() | (col.floor() != col),
            col,
            lambda v, at: f"{at}, {where}: id {v!r} is not an integer",
        )
        return col.cast(pl.Int64, strict=False), [empty, fraction], None
    unsupported = _Check(
        None, col, lambda v, at: f"{where}: ids of type {dtype} are not supported (use int or str)"
    )
    return col, [empty, unsupported], None


def _timestamp_checks(src: str, dtype: pl.DataType, where: str) -> tuple[pl.Expr, list[_Check]]:
    col = pl.col(src)
    empty = _Check(col.is_null(), col, lambda v, at: f"{at}, {where}: empty timestamp")
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return col.dt.epoch("s").cast(pl.Int64), [empty]
    if dtype == pl.String:
        s = col.str.strip_chars()
        as_int = s.cast(pl.Int64, strict=False)
        epoch = _Check(
            as_int.is_null(),
            s,
            lambda v, at: (
                f"{at}, {where}: {shown(v)} is not an integer (lazy ingestion reads epoch "
                "seconds; convert dates first, or read without data.lazy)"
            ),
        )
        return as_int, [empty, epoch]
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False), [empty]
    if dtype.is_float():
        fraction = _Check(
            ~col.is_finite() | (col.floor() != col),
            col,
            lambda v, at: f"{at}, {where}: timestamp {v!r} is not an integer",
        )
        return col.cast(pl.Int64, strict=False), [empty, fraction]
    unsupported = _Check(
        None, col, lambda v, at: f"{where}: timestamps of type {dtype} are not supported"
    )
    return col, [empty, unsupported]


def _rating_checks(src: str, dtype: pl.DataType, where: str) -> tuple[pl.Expr, list[_Check]]:
    col = pl.col(src)
    empty = _Check(col.is_null(), col, lambda v, at: f"{at}, {where}: empty rating")
    if dtype == pl.String:
        values = col.str.strip_chars().cast(pl.Float64, strict=False)
        number = _Check(
            values.is_null(),
            col,
            lambda v, at: f"{at}, {where}: rating {shown(v)} is not a number",
        )
        checks = [empty, number]
    elif dtype.is_numeric() or dtype == pl.Boolean:
        values = col.cast(pl.Float64)
        checks = [empty]
    else:
        unsupported = _Check(
            None, col, lambda v, at: f"{where}: ratings of type {dtype} are not supported"
        )
        return col, [empty, unsupported]
    finite = _Check(
        ~values.is_finite(), values, lambda v, at: f"{at}, {where}: rating {v} is not finite"
    )
    return values, [*checks, finite]


def _aggregate(
    raw: pl.LazyFrame,
    checks: list[_Check],
    flags: dict[str, pl.Expr],
    source: str,
    fmt: str,
) -> dict[str, Any]:
    """One streaming pass: the row count, each check's first failing position, the id flags."""
    aggs = [pl.len().alias("__rows")]
    aggs += [
        pl.col(POS).filter(c.bad).min().alias(f"__check{i}")
        for i, c in enumerate(checks)
        if c.bad is not None
    ]
    aggs += [flag.alias(f"__int_{name}") for name, flag in flags.items()]
    try:
        return raw.select(aggs).collect(engine="streaming").row(0, named=True)
    except pl.exceptions.PolarsError as exc:
        raise _polars_failure(source, fmt, exc) from exc


def _raise_first(
    raw: pl.LazyFrame,
    checks: list[_Check],
    stats: dict[str, Any],
    source: str,
    place: Callable[[dict[str, Any]], str],
) -> None:
    """Raise the first failing check in the eager reader's order (column, then check)."""
    for i, check in enumerate(checks):
        if check.bad is None:
            raise data_error(source, check.message(None, ""))
        pos = stats[f"__check{i}"]
        if pos is None:
            continue
        # Only the offending row is read back, to quote its value and its line.
        row = (
            raw.filter(pl.col(POS) == pos)
            .select(pl.all(), check.value.alias("__value"))
            .head(1)
            .collect()
            .row(0, named=True)
        )
        at = f"row {row[POS]}" if check.canonical_row else place(row)
        raise data_error(source, check.message(row["__value"], at))


__all__ = ["LAZY_FORMATS", "POS", "ScannedLog", "scan_interactions", "scan_log"]
