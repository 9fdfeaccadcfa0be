"""Pack files: many clips' cache entries in one immutable file, read through one mapping.

Why: a warm read of a clip from its own entry file pays an ``open``, a ``read`` that
copies the 321 KB entry out of the page cache, a ``close`` and then a checksum pass over
the copy. A pack is mapped once per ``FeatureCache``; a clip's entry is then checksummed
and viewed where it lies in the page cache: no per-clip open, copy or close, about half
the warm per-clip time (figures in ``docs/results/features.md``).

Layout of ``packs/<time>-<pid>-<random>.pack``::

    entries   each the complete bytes of an entry (``ser.cache.entry`` format: its own
              header, section table and checksum), each starting at a multiple of 8
    index     per entry: audio hash (32 ASCII), group (8 ASCII), offset, size (u64 each)
    trailer   magic ``SERK`` + version, entry count, index offset, index checksum

Rules that keep the cache's guarantees:

* A pack is written once, through ``ser.fileio.atomic_writer`` (temp file, rename), and
  never changed in place; readers map whole files, so they never see a partial pack.
* Entries are content-addressed (audio hash; section keys carry the feature config,
  the clip preparation and ``CACHE_VERSION``), so a packed section is right for its key
  however old the pack is; a newer copy of a clip (a loose entry file, or a newer pack)
  only adds sections.
* Every read checks the entry's layout and checksum, as for entry files; a damaged
  packed entry is logged and skipped (then recomputed, written loose, packed again).
  The index has its own checksum: a pack whose trailer or index is damaged is logged,
  deleted and ignored, so a flipped bit cannot point one clip at another's features.
* Only loose entry files are packed, and each is removed after the rename only if it
  is still the file that was packed; a pack none of whose entries is the newest copy
  any more is deleted. Racing runs can lose an entry (recomputed), never serve a wrong one.
* The views are read-only (numpy refuses to make them writable). A mapping lives as long
  as any array made from it; a pack deleted meanwhile stays readable to it (POSIX).

This module knows the pack folder and the loose files it is handed, not the store:
``FeatureCache.pack`` says which files to pack and drops its own mapped packs after.
"""
from __future__ import annotations

import logging
import mmap
import os
import secrets
import struct
import time
from pathlib import Path
from typing import Mapping

from ..fileio import atomic_writer
from .entry import READ_FLAGS, checksum, decode_entry, read_file

log = logging.getLogger(__name__)

PACK_MIN = 16  # fewer loose entries than this are left as they are: not worth a file
_PACK_MAGIC = b"SERK"
_PACK_VERSION = 1
TRAILER = struct.Struct("<4sIQQQ")  # magic, version, entry count, index offset, index checksum
RECORD = struct.Struct("<32s8sQQ")  # audio hash, group, offset, size (56 bytes, 7 words)

Key = tuple[str, str]  # (audio hash, group)


class PackSet:
    """The packs under one folder, mapped, with ``(hash, group) -> entry`` of the newest copy.

    Example:
        >>> import tempfile
        >>> PackSet(Path(tempfile.mkdtemp()) / "packs").index   # no folder yet: no packs
        {}
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index: dict[Key, memoryview] = {}
        self.members: dict[str, set[Key]] = {}  # pack file -> the keys it is the newest copy of
        where: dict[Key, str] = {}
        self.stamp = self._stamp()
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".pack"))  # oldest first
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(folder, name)
            live = self.members[path] = set()
            for key in self._open(path):
                if key in where:  # a newer pack has this clip again: the older copy is dead
                    self.members[where[key]].discard(key)
                where[key] = path
                live.add(key)

    def _stamp(self) -> int | None:
        try:
            return os.stat(self.folder).st_mtime_ns
        except FileNotFoundError:
            return None

    def changed(self) -> bool:
        """Whether packs were added or removed since this set was loaded."""
        return self._stamp() != self.stamp

    def _open(self, path: str) -> list[Key]:
        """Map one pack and index its entries; a damaged pack is logged and deleted."""
        try:
            fd = os.open(path, READ_FLAGS)
        except FileNotFoundError:  # removed by another run meanwhile
            return []
        try:
            size = os.fstat(fd).st_size
            if size < TRAILER.size:
                raise ValueError("truncated pack")
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except ValueError as e:
            return self._damaged(path, e)
        finally:
            os.close(fd)
        view = memoryview(mm)
        try:
            magic, version, count, at, expected = TRAILER.unpack_from(view, size - TRAILER.size)
            if magic != _PACK_MAGIC or version != _PACK_VERSION:
                raise ValueError("bad magic or version")
            if at % 8 or at + count * RECORD.size + TRAILER.size != size:
                raise ValueError("index does not fit the file")
            table = view[at:at + count * RECORD.size]
            if checksum(table, 0) != expected:
                raise ValueError("index checksum mismatch")
            keys = []
            for raw_hash, raw_group, offset, n in RECORD.iter_unpack(table):
                if offset % 8 or offset + n > at:
                    raise ValueError("entry outside the pack")
                key = (raw_hash.decode("ascii"), raw_group.rstrip(b"\0").decode("ascii"))
                self.index[key] = view[offset:offset + n]
                keys.append(key)
            return keys
        except (ValueError, UnicodeDecodeError) as e:
            return self._damaged(path, e)

    def _damaged(self, path: str, error: Exception) -> list[Key]:
        log.warning("damaged cache pack %s (%s); ignoring and deleting it", path, error)
        Path(path).unlink(missing_ok=True)
        return []

    def drop(self, key: Key) -> None:
        """Forget a damaged packed entry (this process then reads or recomputes it)."""
        self.index.pop(key, None)


class _NothingPacked(Exception):
    """Raised inside the pack writer when no entry went in: the temp file is dropped."""


def write_pack(folder: Path, loose: Mapping[Key, str], minimum: int = PACK_MIN) -> Path | None:
    """Move the loose entry files among ``loose`` into one new pack under ``folder``.

    Args:
        folder: the cache's pack folder (created when needed).
        loose: ``{(audio hash, group): path of its loose entry file}``; keys without a
            file are skipped, as are damaged files (the store's ``read`` deals with those).
        minimum: write nothing when fewer entry files than this exist.

    Returns:
        The new pack's path, or None when none was written.
    """
    found = []
    for (h, group), path in loose.items():
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        found.append((h, group, path, st))
    if len(found) < max(1, minimum):
        return None
    target = Path(folder) / f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.pack"
    records, packed = [], []
    try:
        with atomic_writer(target) as f:
            pos = 0
            for h, group, path, st in found:
                try:
                    data = read_file(path)
                    decode_entry(data)  # only good entries go in
                except (FileNotFoundError, ValueError):
                    continue
                f.write(data + bytes(-len(data) % 8))
                records.append(RECORD.pack(h.encode("ascii"), group.encode("ascii"), pos, len(data)))
                packed.append((path, st))
                pos += len(data) + -len(data) % 8
            if not records:
                raise _NothingPacked  # atomic_writer removes the temp file, no pack appears
            table = b"".join(records)
            f.write(table + TRAILER.pack(_PACK_MAGIC, _PACK_VERSION, len(records), pos, checksum(table, 0)))
    except _NothingPacked:
        return None
    for path, st in packed:  # the loose copy goes only if nobody rewrote it meanwhile
        try:
            now = os.stat(path)
            if (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns):
                os.unlink(path)
        except FileNotFoundError:
            pass
    packs = PackSet(target.parent)
    for old, live in packs.members.items():
        if not live and old != str(target):
            Path(old).unlink(missing_ok=True)  # every entry has a newer copy elsewhere
    log.info("packed %d cache entries into %s", len(records), target)
    return target
