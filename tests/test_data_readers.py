"""Readers: every format, auto-detection, typing rules and every malformed-input message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_cl.data import ColumnMap, detect_format, from_frame, from_pandas, read_interactions
from recsys_cl.data.frame import to_pandas
from recsys_cl.errors import DataError


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_csv_with_all_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item,timestamp,rating\n1,10,100,4.5\n2,20,200,3\n")
    df = read_interactions(path)
    assert df.columns == ["user", "item", "timestamp", "rating"]
    assert df.dtypes == [pl.Int64, pl.Int64, pl.Int64, pl.Float64]
    assert df.rows() == [(1, 10, 100, 4.5), (2, 20, 200, 3.0)]


def test_csv_string_ids_stay_strings_and_keep_their_spelling(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\nalice,007\nbob,7\n")
    df = read_interactions(path)
    assert df.schema == {"user": pl.String, "item": pl.String}
    # "007" and "7" are different items; reading both as the integer 7 would merge them.
    assert df["item"].to_list() == ["007", "7"]


def test_tsv_and_column_map(tmp_path: Path) -> None:
    path = write(tmp_path, "log.tsv", "uid\tmovie\tscore\twhen\tjunk\n1\t2\t5\t9\tx\n")
    cols = ColumnMap(user="uid", item="movie", rating="score", timestamp="when")
    df = read_interactions(path, columns=cols)
    assert df.rows() == [(1, 2, 9, 5.0)]
    assert df.columns == ["user", "item", "timestamp", "rating"]


def test_csv_custom_separator_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "log.txt", "user;item\n1;2\n\n3;4\n\n")
    df = read_interactions(path, format="csv", sep=";")
    assert df.rows() == [(1, 2), (3, 4)]


def test_csv_iso_dates_become_epoch_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item,timestamp\n1,2,1970-01-02 00:00:00\n")
    assert read_interactions(path)["timestamp"].to_list() == [86_400]


def test_csv_integers_among_dates_are_one_line_error(tmp_path: Path) -> None:
    # Each value reads as one kind or the other, so no value is "neither": name the integer.
    path = write(tmp_path, "log.csv", "user,item,timestamp\n1,2,5\n\n2,3,2024-01-02\n")
    with pytest.raises(DataError, match=r"log.csv: line 2, column 'timestamp': integer '5' in a"):
        read_interactions(path)


def test_parquet_roundtrip(tmp_path: Path) -> None:
    source = pl.DataFrame({"u": ["a", "b"], "i": [1, 2], "r": [1.0, 0.5]})
    path = tmp_path / "log.parquet"
    source.write_parquet(path)
    df = read_interactions(path, columns=ColumnMap(user="u", item="i", rating="r"))
    assert df.rows() == [("a", 1, 1.0), ("b", 2, 0.5)]


def test_parquet_float_ids_from_pandas_become_int(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1.0, 2.0], "item": [3.0, 4.0]}).write_parquet(path)
    assert read_interactions(path).dtypes == [pl.Int64, pl.Int64]


def test_lightgcn_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", "0 1 2 3\n1 2\n2\n\n3  4\t5 \n")
    df = read_interactions(path)
    assert df.rows() == [(0, 1), (0, 2), (0, 3), (1, 2), (3, 4), (3, 5)]


def test_movielens_u_data_and_ratings_dat(tmp_path: Path) -> None:
    u_data = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    dat = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    a, b = read_interactions(u_data), read_interactions(dat)
    assert a.rows() == [(196, 242, 881250949, 3.0), (186, 302, 891717742, 3.0)]
    assert b.rows() == [(1, 1193, 978300760, 5.0), (1, 661, 978302109, 3.0)]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("u.data", "movielens"),
        ("ratings.dat", "movielens"),
        ("train.txt", "lightgcn"),
        ("test.txt", "lightgcn"),
        ("x.CSV", "csv"),
        ("x.tsv", "tsv"),
        ("x.parquet", "parquet"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(Path("/d") / name) == fmt


def test_detect_format_unknown_names_the_file() -> None:
    with pytest.raises(DataError, match=r"notes\.md.*format="):
        detect_format("notes.md")


def test_pandas_input_and_output() -> None:
    pdf = pd.DataFrame({"user": [1, 2], "item": ["x", "y"], "rating": [1, 2]}, index=[5, 9])
    df = from_pandas(pdf, ColumnMap(rating="rating"))
    assert df.rows() == [(1, "x", 1.0), (2, "y", 2.0)]
    back = to_pandas(df)
    assert list(back.columns) == ["user", "item", "rating"]
    assert back["user"].tolist() == [1, 2]


def test_pandas_nan_id_is_located() -> None:
    pdf = pd.DataFrame({"user": [1.0, np.nan], "item": [1, 2]})
    with pytest.raises(DataError, match=r"<pandas DataFrame>: row 1, column 'user': empty id"):
        from_pandas(pdf)


# --- malformed input: each message names the file and the line/row and column ---------------


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("e.csv", "", r"e\.csv: file is empty"),
        ("h.csv", "user,item\n", r"h\.csv: has no interactions"),
        (
            "c.csv",
            "usr,item\n1,2\n",
            r"c\.csv: missing column 'user'; columns found: 'usr', 'item'",
        ),
        ("s.csv", "user;item\n1;2\n", r"s\.csv: missing column 'user'.*wrong separator"),
        ("i.csv", "user,item\n1,2\n3,\n", r"i\.csv: line 3, column 'item': empty id"),
        ("w.csv", "user,item\n1,2\n   ,4\n", r"w\.csv: line 3, column 'user': empty id"),
        (
            "r.csv",
            "user,item,rating\n1,2,5\n1,3,good\n",
            r"r\.csv: line 3, column 'rating': rating 'good' is not a number",
        ),
        ("n.csv", "user,item,rating\n1,2,NaN\n", r"n\.csv: line 2, column 'rating'.*not finite"),
        ("t.csv", "user,item,timestamp\n1,2,soon\n", r"t\.csv: line 2, column 'timestamp'"),
        ("g.csv", "user,item\n1,2\n3,4,5\n", r"g\.csv: cannot read as csv"),
        ("train.txt", "0 1 2\n1 2 x3\n", r"train\.txt: line 2: item id 'x3' is not an integer"),
        ("test.txt", "0 1\nu1 2\n", r"test\.txt: line 2: user id 'u1' is not an integer"),
        ("u.data", "1\t2\t3\t4\n1\tb\t3\t4\n", r"u\.data: line 2, column 'item'.*not an integer"),
        ("u.data", "1\t2\t3\n", r"u\.data: line 1: expected 4 fields"),
        ("u.data", "1\t2\t3\t4\n\n1\t3\tx\t4\n", r"u\.data: line 3, column 'rating'"),
        ("b.txt", b"0 1\n\xff\xfe 2\n", r"b\.txt: line 2: not UTF-8 text"),
    ],
)
def test_malformed_text_messages(
    tmp_path: Path, name: str, content: str | bytes, pattern: str
) -> None:
    fmt = "lightgcn" if name == "b.txt" else "auto"
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=pattern) as info:
        read_interactions(path, format=fmt)
    assert "\n" not in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_interactions(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match=r"dir\.csv: is a folder"):
        read_interactions(tmp_path / "dir.csv")


def test_parquet_bytes_given_as_csv_and_csv_given_as_parquet(tmp_path: Path) -> None:
    pq = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(pq)
    with pytest.raises(DataError, match=r"log\.parquet: looks like a Parquet file, not csv"):
        read_interactions(pq, format="csv")
    csv = write(tmp_path, "log.csv", "user,item\n1,2\n")
    with pytest.raises(DataError, match=r"log\.csv: is not a Parquet file"):
        read_interactions(csv, format="parquet")


def test_truncated_parquet(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pl.DataFrame({"user": list(range(100)), "item": list(range(100))}).write_parquet(good)
    bad = write(tmp_path, "bad.parquet", good.read_bytes()[:40])
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read as parquet"):
        read_interactions(bad)


def test_parquet_non_integral_float_id(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pl.DataFrame({"user": [1.0, 2.5], "item": [1, 2]}).write_parquet(path)
    with pytest.raises(
        DataError, match=r"f\.parquet: row 1, column 'user': id 2.5 is not an integer"
    ):
        read_interactions(path)


def test_frame_unsupported_id_type() -> None:
    df = pl.DataFrame({"user": [[1]], "item": [1]})
    with pytest.raises(DataError, match=r"<DataFrame>: column 'user': ids of type"):
        from_frame(df)


def test_explicit_column_map_drops_unnamed_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item,rating\n1,2,3\n")
    assert read_interactions(path, columns=ColumnMap()).columns == ["user", "item"]


# --- property: random malformed CSV either loads or raises DataError ----------------------------

_INT_CELL = st.integers(-5, 50).map(str)
_ODD_CELL = st.one_of(
    st.sampled_from(["", " ", "NaN", "nan", "inf", "1.5", "abc", '"', '"a,b"', "007", "-0", "\t"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=4),
)
# Mostly integers, so that a good share of the files load and both outcomes are exercised.
_CELL = st.one_of(*([_INT_CELL] * 8), _ODD_CELL)
_HEADER = st.lists(
    st.sampled_from(["user", "item", "rating", "timestamp", "x", "", "user"]),
    min_size=0,
    max_size=5,
)


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    """Mostly well-formed CSV (valid header, rows of the right width) with random defects."""
    if draw(st.booleans()):
        optional = draw(st.lists(st.sampled_from(["rating", "timestamp"]), unique=True))
        header = draw(st.permutations(["user", "item", *optional]))
    else:
        header = draw(_HEADER)
    width = st.just(len(header)) if draw(st.booleans()) else st.integers(0, 6)
    rows = draw(
        st.lists(width.flatmap(lambda n: st.lists(_CELL, min_size=n, max_size=n)), max_size=6)
    )
    sep = draw(st.sampled_from([","] * 6 + [";", "\t"]))
    data = "\n".join([sep.join(header)] + [sep.join(r) for r in rows]).encode()
    if draw(st.integers(0, 3)) == 0:
        data += draw(st.binary(max_size=8))
    return data


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=csv_bytes())
def test_csv_reader_loads_or_raises_data_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        df = read_interactions(path)
    except DataError as exc:
        assert "\n" not in str(exc)
        assert "fuzz.csv" in str(exc)
        return
    assert df.columns[:2] == ["user", "item"]
    assert df.height > 0
    for column in ("user", "item"):
        assert df[column].dtype in (pl.Int64, pl.String)
        assert df[column].null_count() == 0
    if "rating" in df.columns:
        assert df["rating"].dtype == pl.Float64 and df["rating"].is_finite().all()
    if "timestamp" in df.columns:
        assert df["timestamp"].dtype == pl.Int64


def test_a_name_that_says_nothing_is_sniffed_from_the_first_lines(tmp_path: Path) -> None:
    tab = tmp_path / "log.dat"
    tab.write_text("user\titem\trating\n1\t10\t4\n2\t11\t5\n")
    assert detect_format(tab, tab.read_bytes()) == "tsv"
    frame = read_interactions(tab)
    assert frame["item"].to_list() == [10, 11] and frame["rating"].to_list() == [4.0, 5.0]
    comma = tmp_path / "export"
    comma.write_text("user,item\n1,10\n")
    assert read_interactions(comma)["user"].to_list() == [1]
    parquet = tmp_path / "table.bin"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(parquet)
    assert read_interactions(parquet)["item"].to_list() == [2]


@pytest.mark.parametrize(
    "text",
    [
        "user item\n1 10\n",  # spaces: neither tab nor comma
        "user,item\tx\n1,10\t3\n",  # both fit: ambiguous
        "user\titem\n1\t10\t3\n",  # ragged: the rows disagree with the header
        "user\titem\n",  # a header and no row
    ],
)
def test_an_unsniffable_file_says_how_to_set_the_format(tmp_path: Path, text: str) -> None:
    path = tmp_path / "log.dat"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_interactions(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "--set data.format=tsv" in message
    assert "\n" not in message
