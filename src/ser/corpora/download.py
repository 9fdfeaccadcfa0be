"""Resumable, verified, atomic downloads of corpus archives and files (stdlib urllib + tqdm).

A download streams into ``<dest>.part`` (resumed with an HTTP ``Range`` request across
retries and runs) and becomes ``<dest>`` only when complete and verified; archives are
extracted into a temporary folder first, and ``download_and_extract`` writes its
``.<archive>.complete`` marker only after extraction succeeded.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from tqdm.auto import tqdm

from ..errors import SerError
from ..fileio import write_json_atomic

log = logging.getLogger(__name__)

USER_AGENT = "ser-downloader/0.1 (+https://github.com/; python urllib)"
RETRY_BACKOFF_S = 1.0  # seconds to wait before retry k is k * RETRY_BACKOFF_S (tests set 0)


class DownloadError(SerError, RuntimeError):
    """A download or extraction failed; the message names the URL/file, the problem and the fix."""


class _ShortRead(OSError):  # the connection closed before Content-Length bytes arrived
    pass


def _checksum_mismatch(path: Path, md5: str | None, sha256: str | None) -> tuple[str, str, str] | None:
    """``(algo, expected, got)`` for the first checksum that does not match, else None."""
    for algo, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            h = hashlib.new(algo)
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            if h.hexdigest() != expected.strip().lower():
                return algo, expected, h.hexdigest()
    return None


def _safe_relpath(name: str) -> bool:
    """True when ``name`` is relative and cannot climb out of its folder."""
    norm = name.replace("\\", "/")
    return not (norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in PurePosixPath(norm).parts)


def _fetch_once(url: str, part: Path, *, timeout: float, chunk_size: int, progress: bool) -> None:
    """One HTTP attempt, appending to ``part`` (resuming with Range when it has bytes)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
        if offset and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            m = re.match(r"bytes\s+(\d+)-", content_range)
            if not m or int(m.group(1)) != offset:
                part.unlink()  # the server resumed at another offset: start again cleanly
                raise _ShortRead(f"server answered Content-Range {content_range!r} for Range bytes={offset}-")
            mode = "ab"
            log.info("resuming %s at byte %d", url, offset)
        else:
            if offset:
                log.info("server ignored the Range request for %s; restarting from byte 0", url)
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total, written = (offset + remaining if remaining is not None else None), 0
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         desc=part.name[:-5], disable=not progress, leave=False) as bar:
            while chunk := resp.read(chunk_size):
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if remaining is not None and written < remaining:
            raise _ShortRead(f"connection closed after {written} of {remaining} bytes")


def download_file(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
                  timeout: float = 60, retries: int = 3, chunk_size: int = 1 << 20,
                  progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` resumably, verify it, and move it into place atomically.

    Args:
        url: the HTTP(S) URL to fetch.
        dest: final file path; the data streams into ``<dest>.part`` first.
        md5, sha256: expected hex digests, or None to skip that check.
        timeout: socket timeout per attempt, in seconds.
        retries: extra attempts (each resuming) after a dropped connection or 5xx error.
        chunk_size: bytes read per chunk.
        progress: show a tqdm bar (total from Content-Length).

    Returns:
        The path of the complete, verified file.

    Raises:
        DownloadError: HTTP client error; all attempts failed (``.part`` kept for a later
            resume); checksum mismatch (``.part`` deleted).
    """
    dest = Path(dest)
    if dest.exists():
        bad = _checksum_mismatch(dest, md5, sha256)
        if bad is None:
            log.info("%s already present; not downloading", dest)
            return dest
        log.warning("%s exists but its %s is %s, expected %s; downloading again", dest, bad[0], bad[2], bad[1])
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, last_err = dest.with_name(dest.name + ".part"), None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(attempt * RETRY_BACKOFF_S)
            log.warning("retrying %s (attempt %d of %d) after: %s", url, attempt + 1, retries + 1, last_err)
        try:
            _fetch_once(url, part, timeout=timeout, chunk_size=chunk_size, progress=progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # HTTPError included
            last_err, code = e, getattr(e, "code", None)
            if code == 416 and part.exists():  # our offset is past the end: start over
                part.unlink()
            elif isinstance(code, int) and 400 <= code < 500 and code not in (408, 429):
                raise DownloadError(f"download of {url} failed: HTTP {code} {getattr(e, 'reason', '')}; "
                                    f"check that the URL is right and publicly reachable") from e
    else:
        raise DownloadError(
            f"download of {url} failed after {retries + 1} attempt(s): {last_err}; "
            f"{'the partial file ' + str(part) + ' is kept, ' if part.exists() else ''}"
            f"check the network and run again to resume") from last_err
    bad = _checksum_mismatch(part, md5, sha256)
    if bad is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(f"checksum mismatch for {url}: {bad[0]} expected {bad[1]} got {bad[2]}; "
                            f"the download was corrupted, run again")
    os.replace(part, dest)
    log.info("downloaded %s -> %s", url, dest)
    return dest


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst`` with os.replace, merging into existing folders."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)


def extract_archive(archive: str | os.PathLike, target_dir: str | os.PathLike) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``target_dir`` safely.

    Unpacks into ``target_dir/.extract-tmp-XXXX`` first, then moves the top-level entries into
    ``target_dir`` with ``os.replace``. Absolute or ``..`` members (path traversal) are refused.

    Args:
        archive: path of the archive file.
        target_dir: folder to extract into (created when missing).

    Returns:
        ``target_dir`` as a Path.

    Raises:
        DownloadError: unknown or corrupt archive, or an unsafe member.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for stale in target_dir.glob(".extract-tmp-*"):
        log.info("removing leftover %s from an interrupted extraction", stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-tmp-", dir=target_dir))
    try:
        if zipfile.is_zipfile(archive):
            af, kwargs = zipfile.ZipFile(archive), {}
            bad = [n for n in af.namelist() if not _safe_relpath(n)]
        elif tarfile.is_tarfile(archive):
            af = tarfile.open(archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            bad = [m.name for m in af.getmembers() if not _safe_relpath(m.name) or m.isdev()
                   or ((m.issym() or m.islnk()) and not _safe_relpath(m.linkname))]
        else:
            raise DownloadError(f"cannot extract {archive}: not a zip or tar archive; delete it, download again")
        with af:
            if bad:
                raise DownloadError(f"refusing to extract {archive}: unsafe member(s) {bad[:5]} (absolute "
                                    f"path, '..', escaping link or device); the archive is not trustworthy")
            af.extractall(tmp, **kwargs)
        for entry in sorted(tmp.iterdir()):
            _merge_move(entry, target_dir / entry.name)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise DownloadError(f"cannot extract {archive}: {e}; it is corrupt, delete it, download again") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted %s into %s", archive, target_dir)
    return target_dir


def download_and_extract(url: str, target_dir: str | os.PathLike, *, archive_name: str,
                         md5: str | None = None, sha256: str | None = None, progress: bool = True) -> Path:
    """Download an archive into ``target_dir``, extract it there, and mark it complete.

    Args:
        url: archive URL.
        target_dir: folder that receives the extracted content.
        archive_name: file name for the downloaded archive (also names the marker
            ``target_dir/.<archive_name>.complete``).
        md5, sha256: expected hex digests of the archive, or None.
        progress: show a tqdm bar while downloading.

    Returns:
        ``target_dir`` as a Path. When the marker exists nothing is fetched.
    """
    target_dir = Path(target_dir)
    marker = target_dir / f".{archive_name}.complete"
    if marker.exists():
        log.info("%s already downloaded and extracted in %s (marker %s)", archive_name, target_dir, marker.name)
        return target_dir
    archive = download_file(url, target_dir / archive_name, md5=md5, sha256=sha256, progress=progress)
    extract_archive(archive, target_dir)
    write_json_atomic(marker, {"url": url, "archive": archive_name, "completed": time.strftime("%Y-%m-%dT%H:%M:%S")})
    archive.unlink(missing_ok=True)
    return target_dir


def download_files(items: Iterable[tuple[str, str]], target_dir: str | os.PathLike, *,
                   progress: bool = True) -> Path:
    """Download individually served files (e.g. CREMA-D) into ``target_dir``.

    Args:
        items: ``(url, relative_path)`` pairs; existing files are skipped.
        target_dir: root folder; each file goes to ``target_dir / relative_path``.
        progress: show one tqdm bar over the files.

    Returns:
        ``target_dir`` as a Path.
    """
    target_dir, items = Path(target_dir), list(items)
    fetched = skipped = 0
    for url, rel in tqdm(items, unit="file", desc="files", disable=not progress):
        if not _safe_relpath(str(rel)):
            raise DownloadError(f"refusing to download {url} to {rel!r}: the relative path is absolute "
                                f"or contains '..'; give a path inside {target_dir}")
        dest = target_dir / rel
        if dest.exists():
            skipped += 1
        else:
            download_file(url, dest, progress=False)
            fetched += 1
    log.info("%s: %d file(s) downloaded, %d already present", target_dir, fetched, skipped)
    return target_dir


def zenodo_file(record_id: str | int, filename: str, *, api_base: str = "https://zenodo.org/api/records",
                timeout: float = 60) -> tuple[str, str | None]:
    """Look up a file of a Zenodo record.

    Args:
        record_id: the Zenodo record id (e.g. ``1188976`` for RAVDESS).
        filename: the file's ``key`` in the record.
        api_base: records API base URL (tests point it at a local server).
        timeout: socket timeout in seconds.

    Returns:
        ``(download_url, md5_hex_or_None)``.

    Raises:
        DownloadError: the record cannot be fetched/parsed or does not list ``filename``.
    """
    url = f"{api_base.rstrip('/')}/{record_id}"
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            record = json.load(resp)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        raise DownloadError(f"cannot read Zenodo record {url}: {e}; check the record id and the network") from e
    files = record.get("files") or []
    keys = [f.get("key") or f.get("filename") for f in files]
    for entry, key in zip(files, keys):
        if key == filename:
            links = entry.get("links") or {}
            if not (link := links.get("self") or links.get("download")):
                raise DownloadError(f"Zenodo record {url} lists {filename!r} without a download link")
            algo, _, digest = (entry.get("checksum") or "").partition(":")
            return link, (digest if algo.lower() == "md5" and digest else None)
    raise DownloadError(f"Zenodo record {url} has no file {filename!r}; it lists {keys}; fix the file name")
