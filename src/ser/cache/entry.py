"""The cache entry format: one clip's feature sections in one self-checking blob.

Layout of an entry (a loose ``entries/ab/<hash>.ser`` file, or one record of a pack)::

    header    magic ``SER`` + format byte, number of sections, 64-bit checksum
    table     per section: key (32 hex digits), rows, cols
    data      the sections' float32 data back to back, zero padded to a multiple of 8

The checksum covers everything after the header (table included), so truncation,
zeroed or torn pages and every single flipped bit are caught on every read. A section's
key (:func:`section_key`) hashes the feature config, the clip preparation, the
augmentation chain and :data:`CACHE_VERSION`: change any of them and the old section is
simply not found.

This module knows nothing of files beyond reading one whole (:func:`read_file`); the
store (``ser.cache.store``) and the pack files (``ser.cache.pack``) build on it.

Example:
    >>> import numpy as np
    >>> data = encode_entry({"k" * 32: np.ones((2, 3), np.float32)})
    >>> len(data) % 8, data[:4] == MAGIC
    (0, True)
    >>> decode_entry(data)["k" * 32].shape
    (2, 3)
    >>> decode_entry(data[:-8])
    Traceback (most recent call last):
    ...
    ValueError: truncated data
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..audio import ClipConfig

CACHE_VERSION = 3  # bump when the entry format or the clip pipeline changes
_FORMAT = 3  # entry layout version, the magic's last byte
MAGIC = b"SER" + bytes([_FORMAT])  # the first 4 bytes of every current entry
HEAD = struct.Struct("<4sIQ")  # magic, number of sections, checksum of the rest of the entry
SECTION = struct.Struct("<32sII")  # one row of the section table: key (hex), rows, cols
_MIX = 0x9E3779B97F4A7C15
# flags for reading cache files: binary on Windows, not inherited by child processes
READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class StaleEntryError(ValueError):
    """An entry written by an older version of the cache: a miss, not damage."""


def section_key(feature: Mapping[str, Any], clip: ClipConfig, augment: Mapping[str, Any] | None = None) -> str:
    """The 32-hex-digit key of one feature section (feature key + clip + augmentation).

    Example:
        >>> k = section_key({"name": "mel", "version": 1}, ClipConfig())
        >>> len(k), k == section_key({"name": "mel", "version": 1}, ClipConfig(seconds=2.0))
        (32, False)
    """
    blob = json.dumps({"feature": dict(feature), "clip": asdict(clip), "augment": augment,
                       "cache": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def checksum(buf, offset: int = HEAD.size) -> int:
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
    """Serialize ``{key: 2-D float32 array}`` into one entry's bytes (layout above)."""
    table, blobs = [], []
    for key, arr in sections.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"section {key}: expected a 2-D array, got shape {arr.shape}")
        table.append(SECTION.pack(key.encode(), arr.shape[0], arr.shape[1]))
        blobs.append(arr.tobytes())
    size = sum(len(b) for b in blobs)
    body = b"".join(table + blobs + [bytes(-size % 8)])
    return HEAD.pack(MAGIC, len(sections), checksum(body, 0)) + body


# Parsed section tables, keyed by their bytes: every clip of a corpus has the same one.
_Layout = tuple[int, tuple[tuple[int, int, int, tuple[tuple[str, slice], ...]], ...]]
_LAYOUTS: dict[bytes, _Layout] = {}
_LAST_LAYOUT: list[tuple[bytes, _Layout]] = [(b"\0", (0, ()))]  # (table, layout) of the last entry read


def _layout(table: bytes) -> _Layout:
    """``(entry size, blocks)`` of a section table. A block is a run of sections with the
    same number of columns, stored back to back: ``(data offset, rows, cols, ((key,
    row slice), ...))``, so that one array per block and a slice per section make the views."""
    got = _LAYOUTS.get(table)
    if got is None:
        pos, blocks = HEAD.size + len(table), []
        for i in range(len(table) // SECTION.size):
            raw_key, rows, cols = SECTION.unpack_from(table, i * SECTION.size)
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
        data: the entry's bytes (``bytes``, ``bytearray``, or a read-only byte
            ``memoryview`` such as a pack's mapping, viewed in place).
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
    if size < HEAD.size:
        raise ValueError("truncated header")
    magic, n, expected = HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        if magic[:3] == MAGIC[:3]:
            raise StaleEntryError(f"entry format {magic[3]}, this version reads {_FORMAT}")
        raise ValueError("bad magic")
    start = HEAD.size + n * SECTION.size
    if start > size:
        raise ValueError("truncated section table")
    last = _LAST_LAYOUT[0]  # the same table as the previous entry read: compare, don't copy or hash
    if len(last[0]) == start - HEAD.size and data[HEAD.size:start] == last[0]:
        end, blocks = last[1]
    else:
        table = bytes(data[HEAD.size:start])
        end, blocks = _layout(table)
        _LAST_LAYOUT[0] = (table, (end, blocks))
    if end != size:
        raise ValueError("truncated data" if end > size else "trailing bytes")
    if checksum(data) != expected:
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


def read_file(path: str, size_hint: int = 0) -> bytes:
    """The whole file (``FileNotFoundError`` when absent). With ``size_hint`` (the size
    of similar files), one ``read`` of a little more than that and no ``fstat``: a
    shorter read of a regular file means its end was reached."""
    fd = os.open(path, READ_FLAGS)
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
