"""Registry: specs, lookup order, checksums, sidecars and downloads (via file:// URLs)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from recsys_cl.data import REGISTRY, DatasetSpec, RemoteFile, get_spec, load_benchmark, resolve
from recsys_cl.data.download import sha256_of, sidecar_path
from recsys_cl.errors import ChecksumError, DataError, DownloadError

LOG = b"user,item\n1,2\n3,4\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_for(url: str, sha256: str | None, member: str | None = None) -> DatasetSpec:
    file = RemoteFile(name="log.csv", role="interactions", url=url, sha256=sha256, member=member)
    return DatasetSpec("toy", (file,), "csv", "a toy log", "nobody")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A 'remote' file served through a file:// URL."""
    path = tmp_path / "remote" / "log.csv"
    path.parent.mkdir()
    path.write_bytes(LOG)
    return path


def test_registry_contents() -> None:
    assert sorted(REGISTRY) == ["amazon-book", "gowalla", "ml-100k", "ml-1m", "yelp2018"]
    gowalla = get_spec("gowalla")
    assert gowalla.given_split and gowalla.format == "lightgcn"
    assert [f.url for f in gowalla.files] == [
        "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/train.txt",
        "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/test.txt",
    ]
    assert all(f.sha256 for f in gowalla.files)
    ml = get_spec("ml-100k").files[0]
    assert (ml.member, ml.url) == (
        "ml-100k/u.data",
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    )
    assert get_spec("ml-1m").files[0].member == "ml-1m/ratings.dat"
    # Never invented: unverifiable hashes are left for trust on first use.
    for name in ("yelp2018", "amazon-book", "ml-1m"):
        assert all(f.sha256 is None for f in get_spec(name).files)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(
        DataError, match=r"unknown dataset 'gowala'; known: amazon-book, gowalla, ml-100k"
    ):
        get_spec("gowala")


def test_data_dir_is_used_in_place_and_checksummed(tmp_path: Path, remote: Path) -> None:
    folder = tmp_path / "data" / "toy"
    folder.mkdir(parents=True)
    (folder / "log.csv").write_bytes(LOG)
    spec = spec_for(remote.as_uri(), sha(LOG))
    assert resolve(spec, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache") == folder
    assert not (tmp_path / "cache").exists()  # nothing downloaded
    (folder / "log.csv").write_bytes(LOG + b"5,6\n")
    with pytest.raises(ChecksumError) as info:
        resolve(spec, data_dir=tmp_path / "data")
    message = str(info.value)
    assert "log.csv" in message and sha(LOG) in message and sha(LOG + b"5,6\n") in message


def test_data_dir_from_environment(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data" / "toy").mkdir(parents=True)
    monkeypatch.setenv("RECSYS_CL_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"toy: dataset toy lacks log\.csv"):
        resolve(spec_for(remote.as_uri(), sha(LOG)))


def test_download_verifies_and_caches(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_CL_CACHE", str(tmp_path / "cache"))
    spec = spec_for(remote.as_uri(), sha(LOG))
    folder = resolve(spec)
    assert folder == tmp_path / "cache" / "toy"
    assert (folder / "log.csv").read_bytes() == LOG
    assert not sidecar_path(folder / "log.csv").exists()  # registered hash: no sidecar needed
    remote.unlink()
    assert resolve(spec) == folder  # served from the cache
    raw = load_benchmark(spec)
    assert raw.interactions is not None and raw.interactions.rows() == [(1, 2), (3, 4)]


def test_unregistered_hash_is_recorded_then_enforced(tmp_path: Path, remote: Path) -> None:
    spec = spec_for(remote.as_uri(), None)
    folder = resolve(spec, cache_dir=tmp_path / "cache")
    sidecar = sidecar_path(folder / "log.csv")
    assert sidecar.read_text().split()[0] == sha(LOG)
    (folder / "log.csv").write_bytes(b"user,item\n9,9\n")
    with pytest.raises(ChecksumError, match=r"log\.csv: SHA-256 mismatch: expected " + sha(LOG)):
        resolve(spec, cache_dir=tmp_path / "cache")


def test_bad_download_checksum_keeps_nothing(tmp_path: Path, remote: Path) -> None:
    spec = spec_for(remote.as_uri(), "0" * 64)
    with pytest.raises(ChecksumError, match=r"mismatch after downloading file://.*expected 0{64}"):
        resolve(spec, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "toy").iterdir()) == []


def test_download_failure_names_url_and_manual_path(tmp_path: Path) -> None:
    url = (tmp_path / "missing.csv").as_uri()
    with pytest.raises(DownloadError) as info:
        resolve(spec_for(url, None), cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert (
        url in message
        and "by hand" in message
        and str(tmp_path / "cache" / "toy" / "log.csv") in message
    )
    assert "\n" not in message


def test_download_off(tmp_path: Path, remote: Path) -> None:
    with pytest.raises(DataError, match="not found and download is off"):
        resolve(spec_for(remote.as_uri(), None), cache_dir=tmp_path / "cache", download=False)


def test_zip_member_is_extracted_and_hashed(tmp_path: Path) -> None:
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("toy/log.csv", LOG)
        zf.writestr("toy/README", "hello")
    spec = spec_for(archive.as_uri(), sha(LOG), member="toy/log.csv")
    folder = resolve(spec, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == ["log.csv"]
    assert sha256_of(folder / "log.csv") == sha(LOG)
    wrong = spec_for(archive.as_uri(), None, member="toy/nope.csv")
    with pytest.raises(DownloadError, match=r"could not extract toy/nope\.csv from file://"):
        resolve(wrong, cache_dir=tmp_path / "cache2")
