"""A disk cache of features, keyed by audio content, feature config and code version.

Layout under the cache root (``feature_cache/`` by default)::

    entries/ab/abcdef....ser     one file per clip: every feature section computed for it
    entries/ab/abcdef....aug.ser its waveform-augmented copies (training clips only)
    packs/<time>-<pid>-<rnd>.pack  many clips' entries in one file (``ser.cache_pack``)
    index.sqlite                 (path, size, mtime) -> content hash, so warm runs skip hashing

New entries are written as loose files (one per clip, safe for any number of worker
processes); at the end of a run ``extract_corpus`` and ``load_features`` move the loose
entries of their corpus into a pack, which is mapped once and read without a per-clip
open, copy or close (about half the warm per-clip time).

A section's key is a hash of ``feature_key(name, config)`` (name, version and the whole
``asdict(config)``), the clip preparation (``ClipConfig``) and the augmentation chain
if any, plus ``CACHE_VERSION``: change any of them and the old section is simply not
found. Entry files are written to a temp file and renamed, so readers never see half a
file; each entry carries its sections' shapes and a 64-bit checksum of everything after
its fixed header, so a truncated or damaged entry is detected, logged and recomputed.
One process owns a clip at a time within a run; two runs racing on one clip can only
lose a section (recomputed later), never serve a wrong one.

Warm reads (``FeatureCache.read``) check the entry's layout and checksum (one
vectorised pass) on every read and return **read-only** ``float32`` views:
``arr.flags.writeable`` is False and numpy refuses to turn it on. A loose entry is taken
with one ``read`` into private memory, so the views are into the reader's own bytes; a
packed entry is viewed in the pack's read-only mapping, and packs are never changed in
place (written once, renamed, deleted whole), so no caller can change the cache's files
or another reader's arrays through them; ``copy()`` what you want to change. (Mapping
each loose 320 KB entry on its own was measured: no faster than copying it.)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import struct
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .audio import ClipConfig
from .fileio import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when the entry format or the clip pipeline changes
DEFAULT_ROOT = "feature_cache"
_FORMAT = 3  # entry layout version, the magic's last byte
_MAGIC = b"SER" + bytes([_FORMAT])
_HEAD = struct.Struct("<4sIQ")  # magic, number of sections, checksum of the rest of the file
_SECTION = struct.Struct("<32sII")  # key (hex), rows, cols
_MIX = 0x9E3779B97F4A7C15
_O_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class StaleEntryError(ValueError):
    """An entry written by an older version of the cache: a miss, not damage."""


def section_key(feature: Mapping[str, Any], clip: ClipConfig, augment: Mapping[str, Any] | None = None) -> str:
    """The 32-hex-digit key of one feature section (feature key + clip + augmentation)."""
    blob = json.dumps({"feature": dict(feature), "clip": asdict(clip), "augment": augment,
                       "cache": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _checksum(buf, offset: int = _HEAD.size) -> int:
    """64-bit fingerprint of ``buf[offset:]`` (a multiple of 8 bytes): the wrapping sum
    of its 64-bit words, mixed with its length.

    One vectorised pass over the bytes (about 5 µs for a 320 KB entry), on every warm
    read. Catches truncation, zeroed or torn pages and every single flipped bit (a flip
    changes the sum by a power of two); like any sum, not a permutation of whole words.
    Not a defence against deliberate tampering.
    """
    words = np.frombuffer(buf, np.uint64, offset=offset)
    s = int(np.add.reduce(words, dtype=np.uint64)) if words.size else 0
    return (s ^ (words.nbytes * _MIX)) & 0xFFFFFFFFFFFFFFFF


def encode_entry(sections: Mapping[str, np.ndarray]) -> bytes:
    """Serialize ``{key: 2-D float32 array}`` into one entry file's bytes.

    Layout: header (magic, section count, checksum), the section table (key, rows, cols
    per section), the sections' float32 data back to back, zero padding to a multiple
    of 8 bytes. The checksum covers everything after the header, table included.
    """
    table, blobs = [], []
    for key, arr in sections.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"section {key}: expected a 2-D array, got shape {arr.shape}")
        table.append(_SECTION.pack(key.encode(), arr.shape[0], arr.shape[1]))
        blobs.append(arr.tobytes())
    size = sum(len(b) for b in blobs)
    body = b"".join(table + blobs + [bytes(-size % 8)])
    return _HEAD.pack(_MAGIC, len(sections), _checksum(body, 0)) + body


# Parsed section tables, keyed by their bytes: every clip of a corpus has the same one.
_Layout = tuple[int, tuple[tuple[int, int, int, tuple[tuple[str, slice], ...]], ...]]
_LAYOUTS: dict[bytes, _Layout] = {}
_LAST_LAYOUT: list[tuple[bytes, _Layout]] = [(b"\0", (0, ()))]  # (table, layout) of the last entry read


def _layout(table: bytes) -> _Layout:
    """``(file size, blocks)`` of a section table. A block is a run of sections with the
    same number of columns, stored back to back: ``(data offset, rows, cols, ((key,
    row slice), ...))``, so that one array per block and a slice per section make the views."""
    got = _LAYOUTS.get(table)
    if got is None:
        pos, blocks = _HEAD.size + len(table), []
        for i in range(len(table) // _SECTION.size):
            raw_key, rows, cols = _SECTION.unpack_from(table, i * _SECTION.size)
            key = raw_key.rstrip(b"\0").decode("ascii", "replace")
            if not blocks or blocks[-1][2] != cols:
                blocks.append([pos, 0, cols, []])
            block = blocks[-1]
            block[3].append((key, slice(block[1], block[1] + rows)))
            block[1] += rows
            pos += rows * cols * 4
        got = (pos + -pos % 8, tuple((p, r, c, tuple(m)) for p, r, c, m in blocks))
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        _LAYOUTS[table] = got
    return got


def decode_entry(data: bytes, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Parse an entry; raise ``ValueError`` on any damage (``StaleEntryError`` for an
    entry of an older format).

    Args:
        data: the entry's bytes.
        keys: return only these sections; ``None`` for all. The layout and the
            checksum of the whole entry are always checked.

    Returns:
        ``{key: 2-D float32 array}``: read-only views into ``data``, no copies.
    """
    if isinstance(data, memoryview) and data.readonly and data.ndim == 1 and data.itemsize == 1:
        pass  # a pack's mapping: viewed in place
    elif not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    size = len(data)
    if size < _HEAD.size:
        raise ValueError("truncated header")
    magic, n, checksum = _HEAD.unpack_from(data, 0)
    if magic != _MAGIC:
        if magic[:3] == _MAGIC[:3]:
            raise StaleEntryError(f"entry format {magic[3]}, this version reads {_FORMAT}")
        raise ValueError("bad magic")
    start = _HEAD.size + n * _SECTION.size
    if start > size:
        raise ValueError("truncated section table")
    last = _LAST_LAYOUT[0]  # the same table as the previous entry read: compare, don't copy or hash
    if len(last[0]) == start - _HEAD.size and data[_HEAD.size:start] == last[0]:
        end, blocks = last[1]
    else:
        table = bytes(data[_HEAD.size:start])
        end, blocks = _layout(table)
        _LAST_LAYOUT[0] = (table, (end, blocks))
    if end != size:
        raise ValueError("truncated data" if end > size else "trailing bytes")
    if _checksum(data) != checksum:
        raise ValueError("checksum mismatch")
    wanted = None if keys is None else keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
    writable = isinstance(data, bytearray)  # views of bytes or a read-only mapping are read-only already
    out = {}
    for pos, rows, cols, members in blocks:
        block = np.ndarray((rows, cols), np.float32, data, pos)
        if writable:
            block.flags.writeable = False
        for key, rows_of in members:
            if wanted is None or key in wanted:
                out[key] = block[rows_of]
    return out


def _read_file(path: str, size_hint: int = 0) -> bytes:
    """The whole file (``FileNotFoundError`` when absent). With ``size_hint`` (the size
    of similar files), one ``read`` of a little more than that and no ``fstat``: a
    shorter read of a regular file means its end was reached."""
    fd = os.open(path, _O_RDONLY)
    try:
        if size_hint:
            data = os.read(fd, size_hint + 8)
            if len(data) <= size_hint:
                return data
        else:
            data = b""
        size = os.fstat(fd).st_size
        while len(data) < size and (more := os.read(fd, size - len(data))):
            data += more
        while more := os.read(fd, 1 << 20):  # grown since the fstat: take all of it
            data += more
        return data
    finally:
        os.close(fd)


def file_hash(path: str | Path) -> str:
    """Content hash of a file (blake2b-128 of its bytes)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """Entry files plus a path -> content-hash index under one root folder.

    Example:
        >>> cache = FeatureCache("feature_cache")          # doctest: +SKIP
        >>> h = cache.audio_hash("clip.wav")                # doctest: +SKIP
        >>> cache.read(h)                                   # doctest: +SKIP
    """

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._entries = os.path.join(os.fspath(self.root), "entries", "")  # ends in a separator
        self._size_hint: dict[str, int] = {}  # group -> size of the last entry read
        self._index: dict[str, tuple[int, int, str]] | None = None
        self._pending: dict[str, tuple[int, int, str]] = {}
        self._packs: Any = None  # ser.cache_pack.PackSet, loaded on the first read
        self.loose_reads = 0  # reads served from loose entry files (candidates for packing)
        self.damaged_packed = 0  # damaged packed entries met (their fixed copies get packed at once)

    # --- content hashes ------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=30)
        db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                   "mtime_ns INTEGER, hash TEXT)")
        return db

    def _load_index(self) -> dict[str, tuple[int, int, str]]:
        if self._index is None:
            try:
                with self._db() as db:
                    rows = db.execute("SELECT path, size, mtime_ns, hash FROM files").fetchall()
                self._index = {p: (s, m, h) for p, s, m, h in rows}
            except sqlite3.DatabaseError as e:
                log.warning("cache index unreadable (%s); rebuilding it", e)
                (self.root / "index.sqlite").unlink(missing_ok=True)
                self._index = {}
        return self._index

    def audio_hash(self, path: str | Path) -> str:
        """Content hash of an audio file, from the index when size and mtime still match."""
        p = os.path.abspath(os.fspath(path))  # not resolve(): a warm read is ~0.05 ms, realpath is slow
        st = os.stat(p)
        known = (self._index if self._index is not None else self._load_index()).get(p)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return known[2]
        h = file_hash(p)
        self._index[p] = self._pending[p] = (st.st_size, st.st_mtime_ns, h)
        return h

    def remember(self, entries: Mapping[str, tuple[int, int, str]]) -> None:
        """Add hashes computed elsewhere (worker processes) to the index."""
        self._load_index().update(entries)
        self._pending.update(entries)

    def flush(self) -> None:
        """Persist newly learned hashes to the index."""
        if not self._pending:
            return
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                           [(p, s, m, h) for p, (s, m, h) in self._pending.items()])
        self._pending.clear()

    # --- entries ---------------------------------------------------------------------
    def entry_path(self, audio_hash: str, group: str = "") -> Path:
        """The entry file of a clip; ``group`` separates e.g. augmented copies (``"aug"``)
        so that reading the clean features never reads the copies."""
        return Path(self._entry_file(audio_hash, group))

    def _entry_file(self, audio_hash: str, group: str = "") -> str:
        suffix = f".{group}" if group else ""
        return f"{self._entries}{audio_hash[:2]}{os.sep}{audio_hash}{suffix}.ser"

    def read(self, audio_hash: str, keys: Iterable[str] | None = None, group: str = "") -> dict[str, np.ndarray]:
        """Cached sections of a clip (only ``keys`` when given); ``{}`` when none or when
        the entry is damaged (it is then deleted, so it is recomputed) or stale.

        With ``keys``, a packed copy that holds all of them is used (``ser.cache_pack``),
        else the clip's loose entry file. The arrays are read-only views, verified against
        the entry's checksum, into this call's private copy of a loose entry or into the
        pack's read-only mapping (see the module notes); ``copy()`` to modify.
        """
        if keys is not None and not isinstance(keys, (set, frozenset, dict)):
            keys = set(keys)
        packs = self._packs if self._packs is not None else self._load_packs()
        packed = self._read_packed(packs, audio_hash, keys, group) if packs.index else None
        if packed is not None and keys is not None and len(packed) == len(keys):  # type: ignore[arg-type]
            return packed  # the warm path of a packed corpus
        path = self._entry_file(audio_hash, group)
        try:
            data = _read_file(path, self._size_hint.get(group, 0))
        except FileNotFoundError:
            if packed is None and packs.changed():  # packed by another run since we looked
                packed = self._read_packed(self._load_packs(), audio_hash, keys, group)
            return packed or {}
        self._size_hint[group] = len(data)
        self.loose_reads += 1
        try:
            return decode_entry(data, keys)
        except StaleEntryError as e:  # replaced by the next write of this clip
            log.debug("stale cache entry %s (%s); recomputing", path, e)
        except ValueError as e:
            log.warning("damaged cache entry %s (%s); recomputing", path, e)
            Path(path).unlink(missing_ok=True)
        return packed or {}

    def _load_packs(self) -> Any:
        from .cache_pack import PackSet

        self._packs = PackSet(self.root / "packs")
        return self._packs

    def _read_packed(self, packs: Any, audio_hash: str, keys: Iterable[str] | None,
                     group: str) -> dict[str, np.ndarray] | None:
        """A clip's sections from its packed copy; None when it has none or it is damaged."""
        view = packs.index.get((audio_hash, group))
        if view is None:
            return None
        try:
            return decode_entry(view, keys)
        except ValueError as e:  # stale or damaged: this process goes on without that copy
            if not isinstance(e, StaleEntryError):
                self.damaged_packed += 1
                log.warning("damaged entry %s%s in cache pack (%s); recomputing", audio_hash, group, e)
            packs.drop((audio_hash, group))
            return None

    def pack(self, audio_hashes: Iterable[str], groups: Iterable[str] = ("",), minimum: int | None = None) -> Path | None:
        """Move these clips' loose entry files into one new pack file (see
        ``ser.cache_pack``), when at least ``minimum`` (default ``PACK_MIN``) are loose."""
        from .cache_pack import PACK_MIN, write_pack

        groups = tuple(groups)
        return write_pack(self, [(h, g) for h in audio_hashes for g in groups],
                          PACK_MIN if minimum is None else minimum)

    def write(self, audio_hash: str, sections: Mapping[str, np.ndarray], group: str = "") -> None:
        """Replace a clip's entry atomically with ``sections``."""
        atomic_write_bytes(self.entry_path(audio_hash, group), encode_entry(sections))
