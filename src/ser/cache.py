"""A disk cache of features, keyed by audio content, feature config and code version.

Layout under the cache root (``feature_cache/`` by default)::

    entries/ab/abcdef....ser     one file per clip: every feature section computed for it
    entries/ab/abcdef....aug.ser its waveform-augmented copies (training clips only)
    index.sqlite                 (path, size, mtime) -> content hash, so warm runs skip hashing

A section's key is a hash of ``feature_key(name, config)`` (name, version and the whole
``asdict(config)``), the clip preparation (``ClipConfig``) and the augmentation chain
if any, plus ``CACHE_VERSION``: change any of them and the old section is simply not
found. Entry files are written to a temp file and renamed, so readers never see half a
file; each entry carries its sections' shapes and a 64-bit checksum of their data, so a
truncated or damaged entry is detected, logged and recomputed. One process owns a clip at a time within a
run; two runs racing on one clip can only lose a section (recomputed later), never
serve a wrong one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the entry format or the clip pipeline changes
DEFAULT_ROOT = "feature_cache"
_MAGIC = b"SERF"
_HEAD = struct.Struct("<4sIQ")  # magic, number of sections, checksum of all section data
_SECTION = struct.Struct("<32sII")  # key (hex), rows, cols


@dataclass(frozen=True)
class ClipConfig:
    """How a file becomes the clip features are computed on."""

    sample_rate: int = 16000  # Hz, the package's one rate
    seconds: float = 3.0  # clip length after trimming: padded or cut to this
    trim_top_db: float | None = 30.0  # silence threshold below peak; None keeps silence
    crop: str = "start"  # where a long clip is cut: "start" or "center"


def section_key(feature: Mapping[str, Any], clip: ClipConfig, augment: Mapping[str, Any] | None = None) -> str:
    """The 32-hex-digit key of one feature section (feature key + clip + augmentation)."""
    blob = json.dumps({"feature": dict(feature), "clip": asdict(clip), "augment": augment,
                       "cache": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _checksum(a: np.ndarray) -> int:
    """Cheap 64-bit fingerprint (wrapping sum and xor of the words): catches truncation,
    zeroed pages and flipped bits at a fraction of a CRC's cost on every warm read."""
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.nbytes % 8:
        flat = np.concatenate([flat.view(np.uint8), np.zeros(8 - flat.nbytes % 8, np.uint8)])
    words = flat.view(np.uint64)
    if not words.size:
        return 0
    s = int(np.add.reduce(words, dtype=np.uint64))
    x = int(np.bitwise_xor.reduce(words))
    return (s ^ (x * 0x9E3779B97F4A7C15) ^ a.nbytes) & 0xFFFFFFFFFFFFFFFF


def encode_entry(sections: Mapping[str, np.ndarray]) -> bytes:
    """Serialize ``{key: 2-D float32 array}`` into one entry file's bytes."""
    table, blobs = [], []
    for key, arr in sections.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"section {key}: expected a 2-D array, got shape {arr.shape}")
        table.append(_SECTION.pack(key.encode(), arr.shape[0], arr.shape[1]))
        blobs.append(arr.tobytes())
    data = b"".join(blobs)
    return b"".join([_HEAD.pack(_MAGIC, len(sections), _checksum(np.frombuffer(data, np.uint8)))] + table) + data


def decode_entry(data: bytes, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Parse an entry file; raise ``ValueError`` on any damage.

    Args:
        data: the file's bytes.
        keys: return only these sections; ``None`` for all. The layout and the
            checksum of the whole data region are always checked.
    """
    if len(data) < _HEAD.size:
        raise ValueError("truncated header")
    magic, n, checksum = _HEAD.unpack_from(data, 0)
    if magic != _MAGIC:
        raise ValueError("bad magic")
    start = _HEAD.size + n * _SECTION.size
    if start > len(data):
        raise ValueError("truncated section table")
    metas = [_SECTION.unpack_from(data, _HEAD.size + i * _SECTION.size) for i in range(n)]
    end = start + sum(rows * cols * 4 for _, rows, cols in metas)
    if end != len(data):
        raise ValueError("truncated data" if end > len(data) else "trailing bytes")
    if _checksum(np.frombuffer(data, np.uint8, count=end - start, offset=start)) != checksum:
        raise ValueError("checksum mismatch")
    wanted = None if keys is None else set(keys)
    out, pos = {}, start
    for raw_key, rows, cols in metas:
        key = raw_key.rstrip(b"\0").decode()
        if wanted is None or key in wanted:
            out[key] = np.frombuffer(data, np.float32, count=rows * cols, offset=pos).reshape(rows, cols)
        pos += rows * cols * 4
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        self._entries = os.path.join(os.fspath(self.root), "entries")
        self._index: dict[str, tuple[int, int, str]] | None = None
        self._pending: dict[str, tuple[int, int, str]] = {}

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
        p = os.path.abspath(os.fspath(path))  # not resolve(): a warm read is ~0.1 ms, realpath is slow
        st = os.stat(p)
        known = self._load_index().get(p)
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
        return os.path.join(self._entries, audio_hash[:2], f"{audio_hash}{suffix}.ser")

    def read(self, audio_hash: str, keys: Iterable[str] | None = None, group: str = "") -> dict[str, np.ndarray]:
        """Cached sections of a clip (only ``keys`` when given); ``{}`` when none or when
        the entry is damaged (it is then deleted, so it is recomputed)."""
        path = self._entry_file(audio_hash, group)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return {}
        try:
            return decode_entry(data, keys)
        except ValueError as e:
            log.warning("damaged cache entry %s (%s); recomputing", path, e)
            Path(path).unlink(missing_ok=True)
            return {}

    def write(self, audio_hash: str, sections: Mapping[str, np.ndarray], group: str = "") -> None:
        """Replace a clip's entry atomically with ``sections``."""
        atomic_write_bytes(self.entry_path(audio_hash, group), encode_entry(sections))
