"""The canonical interaction frame and the conversion of any table into it.

Canonical frame (polars), one row per interaction:

* ``user``, ``item``: raw ids, ``Int64`` when every id of the column is an integer, else
  ``Utf8``; never float, never null.
* ``timestamp`` (optional): ``Int64`` (epoch seconds when converted from a datetime).
* ``rating`` (optional): ``Float64``, finite; a rating, label or weight.

Every check raises :class:`~recsys_cl.errors.DataError` with a one-line message that names the
source (a file path or ``<DataFrame>``), the column and the first offending row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from recsys_cl.errors import DataError, one_line

USER = "user"
ITEM = "item"
TIMESTAMP = "timestamp"
RATING = "rating"
ID_COLUMNS = (USER, ITEM)
OPTIONAL_COLUMNS = (TIMESTAMP, RATING)

# Turns a 0-based position in the frame being checked into "line 7" / "row 6".
Locate = Callable[[int], str]

_MAX_SHOWN = 40  # characters of an offending value quoted in a message


def table_row(i: int) -> str:
    """Locate rows of an in-memory or Parquet table by their 0-based position."""
    return f"row {i}"


def data_error(source: str, message: str) -> DataError:
    """A :class:`DataError` reading ``"<source>: <message>"`` on one line."""
    return DataError(one_line(f"{source}: {message}"))


def shown(value: Any) -> str:
    """``repr`` of an offending value, shortened so messages stay readable."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclass(frozen=True)
class ColumnMap:
    """Source column names for the canonical columns (``timestamp``/``rating`` optional).

    ``ColumnMap(user="userId", item="movieId", rating="rating")`` reads a MovieLens
    ``ratings.csv``. Passing ``columns=None`` to a reader means "canonical names, with
    ``timestamp``/``rating`` taken when present"; an explicit map takes exactly what it names.
    """

    user: str = USER
    item: str = ITEM
    timestamp: str | None = None
    rating: str | None = None

    def __post_init__(self) -> None:
        names = [n for n in (self.user, self.item, self.timestamp, self.rating) if n is not None]
        if len(set(names)) != len(names):
            raise ValueError(f"ColumnMap maps one source column to two roles: {names}")

    def renames(self) -> dict[str, str]:
        """Source name -> canonical name, in canonical column order."""
        pairs = [(self.user, USER), (self.item, ITEM), (self.timestamp, TIMESTAMP)]
        pairs.append((self.rating, RATING))
        return {src: dst for src, dst in pairs if src is not None}


def default_columns(found: list[str]) -> ColumnMap:
    """The map used when a reader gets ``columns=None``: canonical names, optional if present."""
    return ColumnMap(
        timestamp=TIMESTAMP if TIMESTAMP in found else None,
        rating=RATING if RATING in found else None,
    )


def canonicalize(
    df: pl.DataFrame,
    columns: ColumnMap | None,
    source: str,
    locate: Locate = table_row,
    *,
    integer_ids: bool = False,
) -> pl.DataFrame:
    """Select, rename and type-check ``df`` into the canonical frame.

    Args:
        df: any polars frame holding the source columns.
        columns: source names; ``None`` uses :func:`default_columns`.
        source: the file path (or ``<DataFrame>``) quoted in error messages.
        locate: maps a 0-based row of ``df`` to the place shown to the user.
        integer_ids: the format defines ids as integers (MovieLens), so a non-integer id is an
            error rather than a string id.
    """
    columns = columns or default_columns(df.columns)
    missing = [name for name in columns.renames() if name not in df.columns]
    if missing:
        found = ", ".join(repr(c) for c in df.columns)
        hint = ""
        if len(df.columns) == 1 and any(ch in df.columns[0] for ch in ",\t;|"):
            hint = " (a single column: wrong separator? pass sep=)"
        raise data_error(source, f"missing column {missing[0]!r}; columns found: {found}{hint}")
    if df.height == 0:
        raise data_error(source, "has no interactions")
    renames = columns.renames()
    out: dict[str, pl.Series] = {}
    for src, dst in renames.items():
        where = f"column {src!r}"
        if dst in ID_COLUMNS:
            out[dst] = _ids(df[src], source, where, locate, integer_ids)
        elif dst == TIMESTAMP:
            out[dst] = _timestamps(df[src], source, where, locate)
        else:
            out[dst] = _ratings(df[src], source, where, locate)
    return pl.DataFrame([s.alias(name) for name, s in out.items()])


def from_frame(
    df: pl.DataFrame | Any, columns: ColumnMap | None = None, *, source: str = "<DataFrame>"
) -> pl.DataFrame:
    """Canonicalize a polars or pandas DataFrame (rows are located by 0-based position)."""
    if not isinstance(df, pl.DataFrame):
        try:
            df = pl.from_pandas(df, include_index=False)
        except (ValueError, TypeError, pl.exceptions.PolarsError) as exc:
            # pyarrow's ArrowInvalid (mixed-type object columns) derives from ValueError.
            raise data_error(source, f"cannot convert to a table: {exc}") from exc
    return canonicalize(df, columns, source)


def from_pandas(df: Any, columns: ColumnMap | None = None) -> pl.DataFrame:
    """Canonicalize a pandas DataFrame; the pandas index is ignored."""
    return from_frame(df, columns, source="<pandas DataFrame>")


def to_pandas(df: pl.DataFrame) -> Any:
    """The frame as a pandas DataFrame (ids keep their ``int64``/``object`` dtype)."""
    return df.to_pandas()


def _first(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def _ids(s: pl.Series, source: str, where: str, locate: Locate, integer_only: bool) -> pl.Series:
    if isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        s = s.cast(pl.String)
    if s.null_count():
        raise data_error(source, f"{locate(_first(s.is_null()))}, {where}: empty id")
    dtype = s.dtype
    if dtype == pl.String:
        s = s.str.strip_chars()
        empty = s.str.len_bytes() == 0
        if empty.any():
            raise data_error(source, f"{locate(_first(empty))}, {where}: empty id")
        as_int = s.cast(pl.Int64, strict=False)
        # Ids like "007" or "+5" are strings: reading them as 7 and 5 could merge two users.
        is_int = as_int.is_not_null() & (as_int.cast(pl.String) == s)
        if is_int.all():
            return as_int
        if integer_only:
            bad = _first(~is_int)
            raise data_error(
                source, f"{locate(bad)}, {where}: id {shown(s[bad])} is not an integer"
            )
        return s
    if dtype.is_integer():
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count():
            bad = _first(as_int.is_null())
            raise data_error(source, f"{locate(bad)}, {where}: id {s[bad]} overflows int64")
        return as_int
    if dtype.is_float():
        # A float id column is usually an integer column that pandas widened around a NaN.
        bad_mask = ~s.is_finite() | (s.floor() != s)
        if bad_mask.any():
            bad = _first(bad_mask)
            raise data_error(source, f"{locate(bad)}, {where}: id {s[bad]!r} is not an integer")
        return s.cast(pl.Int64)
    raise data_error(source, f"{where}: ids of type {dtype} are not supported (use int or str)")


def _timestamps(s: pl.Series, source: str, where: str, locate: Locate) -> pl.Series:
    if s.null_count():
        raise data_error(source, f"{locate(_first(s.is_null()))}, {where}: empty timestamp")
    dtype = s.dtype
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return s.dt.epoch("s").cast(pl.Int64)
    if dtype == pl.String:
        s = s.str.strip_chars()
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count() == 0:
            return as_int
        try:
            as_time = s.str.to_datetime(strict=False)
        except pl.exceptions.PolarsError:  # no date format fits any value
            as_time = pl.Series([None] * s.len(), dtype=pl.Datetime)
        if as_time.null_count() == 0:
            return as_time.dt.epoch("s").cast(pl.Int64)
        neither = as_int.is_null() & as_time.is_null()
        if neither.any():
            bad = _first(neither)
            raise data_error(
                source, f"{locate(bad)}, {where}: {shown(s[bad])} is neither an integer nor a date"
            )
        # Every value is one or the other: integers and dates are mixed in one column.
        bad = _first(as_time.is_null())
        raise data_error(
            source, f"{locate(bad)}, {where}: integer {shown(s[bad])} in a column of dates"
        )
    if dtype.is_integer():
        return s.cast(pl.Int64)
    if dtype.is_float():
        bad_mask = ~s.is_finite() | (s.floor() != s)
        if bad_mask.any():
            bad = _first(bad_mask)
            raise data_error(
                source, f"{locate(bad)}, {where}: timestamp {s[bad]!r} is not an integer"
            )
        return s.cast(pl.Int64)
    raise data_error(source, f"{where}: timestamps of type {dtype} are not supported")


def _ratings(s: pl.Series, source: str, where: str, locate: Locate) -> pl.Series:
    if s.null_count():
        raise data_error(source, f"{locate(_first(s.is_null()))}, {where}: empty rating")
    dtype = s.dtype
    if dtype == pl.String:
        values = s.str.strip_chars().cast(pl.Float64, strict=False)
        if values.null_count():
            bad = _first(values.is_null())
            raise data_error(
                source, f"{locate(bad)}, {where}: rating {shown(s[bad])} is not a number"
            )
    elif dtype.is_numeric() or dtype == pl.Boolean:
        values = s.cast(pl.Float64)
    else:
        raise data_error(source, f"{where}: ratings of type {dtype} are not supported")
    not_finite = ~values.is_finite()
    if not_finite.any():
        bad = _first(not_finite)
        raise data_error(source, f"{locate(bad)}, {where}: rating {values[bad]} is not finite")
    return values
