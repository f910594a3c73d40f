"""Checksums and downloads of dataset files.

A downloaded file is written under a temporary name, verified, then renamed into place, so a
file at its final path is always complete. Files whose SHA-256 is not registered are trusted
on first download: their hash is recorded in a ``<file>.sha256`` sidecar and later uses are
checked against it.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from recsys_cl.errors import ChecksumError, DownloadError, one_line
from recsys_cl.io import atomic_path
from recsys_cl.progress import progress

_CHUNK = 1 << 20  # bytes read per step while hashing or downloading
_TIMEOUT_S = 60  # seconds without data before a download is abandoned
SIDECAR_SUFFIX = ".sha256"


def sidecar_path(path: Path) -> Path:
    """Where the trusted-on-first-use hash of ``path`` is recorded."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so an edited or replaced file is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks; remembered in memory per (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


def expected_sha256(path: Path, registered: str | None) -> str | None:
    """The registered hash, else the one recorded in the sidecar, else ``None``."""
    if registered is not None:
        return registered
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    fields = sidecar.read_text().split()  # "<hex>  <name>", the sha256sum layout
    return fields[0] if fields else None


def verify(path: Path, registered: str | None, *, fix: str) -> bool:
    """Check ``path`` against its registered or recorded hash.

    Args:
        fix: what the user should do on a mismatch (part of the message).

    Returns:
        ``True`` when a hash was checked, ``False`` when there was none to check against.

    Raises:
        ChecksumError: the hashes differ; the message names the file and both hashes.
    """
    expected = expected_sha256(path, registered)
    if expected is None:
        return False
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ChecksumError(f"{path}: SHA-256 mismatch: expected {expected}, got {actual}; {fix}")
    return True


def record_sha256(path: Path) -> str:
    """Write the hash of ``path`` into its sidecar (trust on first use); return it."""
    digest = sha256_of(path)
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n")
    return digest


def _fetch(url: str, dest: Path, label: str) -> None:
    """Stream ``url`` into ``dest``, reporting progress (:func:`recsys_cl.progress.progress`)."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with progress(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            leave=False,
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def download_file(url: str, dest: Path, *, sha256: str | None, member: str | None = None) -> None:
    """Download ``url`` (or ``member`` of the zip archive at ``url``) to ``dest``, verified.

    With ``sha256=None`` the hash of the new file is recorded in its sidecar.

    Raises:
        DownloadError: the download or extraction failed (names the URL and where to put
            the file by hand).
        ChecksumError: the downloaded file does not match ``sha256``; nothing is kept.
    """
    what = f"extract {member} from it" if member else "save it"
    by_hand = f"download {url} by hand, {what} and place it at {dest}"
    with atomic_path(dest) as tmp:
        try:
            if member is None:
                _fetch(url, tmp, dest.name)
            else:
                with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download.") as folder:
                    archive = Path(folder) / "archive.zip"
                    _fetch(url, archive, Path(url).name)
                    with (
                        zipfile.ZipFile(archive) as zf,
                        zf.open(member) as src,
                        open(tmp, "wb") as out,
                    ):
                        shutil.copyfileobj(src, out, _CHUNK)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # URLError/HTTPError/timeouts are OSErrors; ValueError covers a malformed URL.
            raise DownloadError(one_line(f"could not download {url}: {exc}; {by_hand}")) from exc
        except (zipfile.BadZipFile, KeyError) as exc:
            message = f"could not extract {member} from {url}: {exc}; {by_hand}"
            raise DownloadError(one_line(message)) from exc
        if sha256 is not None:
            actual = sha256_of(tmp)
            if actual != sha256:
                raise ChecksumError(
                    f"{dest}: SHA-256 mismatch after downloading {url}: expected {sha256}, "
                    f"got {actual}; the remote file changed or the download was corrupted"
                )
    if sha256 is None:
        record_sha256(dest)
