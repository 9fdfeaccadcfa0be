"""The feature store: entry files and pack files under one root, plus a content-hash index.

Layout under the cache root (``feature_cache/`` by default)::

    entries/ab/abcdef....ser     one file per clip: every feature section computed for it
    entries/ab/abcdef....aug.ser its waveform-augmented copies (training clips only)
    packs/<time>-<pid>-<rnd>.pack  many clips' entries in one file (``ser.cache.pack``)
    index.sqlite                 (path, size, mtime) -> content hash, so warm runs skip hashing

New entries are written as loose files (one per clip, safe for any number of worker
processes); at the end of a run ``extract_corpus`` and ``load_features`` move the loose
entries of their corpus into a pack (:meth:`FeatureCache.pack`), which is mapped once
and read without a per-clip open, copy or close (about half the warm per-clip time).

Entry files are written to a temp file and renamed (``ser.fileio``), so readers never
see half a file; each entry carries its sections' shapes and a 64-bit checksum
(``ser.cache.entry``), so a truncated or damaged entry is detected, logged and
recomputed. One process owns a clip at a time within a run; two runs racing on one
clip can only lose a section (recomputed later), never serve a wrong one.

Warm reads (:meth:`FeatureCache.read`) check the entry's layout and checksum (one
vectorised pass) on every read and return **read-only** ``float32`` views:
``arr.flags.writeable`` is False and numpy refuses to turn it on. A loose entry is taken
with one ``read`` into private memory, so the views are into the reader's own bytes; a
packed entry is viewed in the pack's read-only mapping, and packs are never changed in
place (written once, renamed, deleted whole), so no caller can change the cache's files
or another reader's arrays through them; ``copy()`` what you want to change. (Mapping
each loose 320 KB entry on its own was measured: no faster than copying it.)
"""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..fileio import atomic_write_bytes
from .entry import StaleEntryError, decode_entry, encode_entry, file_hash, read_file
from .pack import PACK_MIN, PackSet, write_pack

log = logging.getLogger(__name__)

DEFAULT_ROOT = "feature_cache"


class FeatureCache:
    """Entry files, pack files and a path -> content-hash index under one root folder.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> cache = FeatureCache(tempfile.mkdtemp())
        >>> cache.write("ab" * 16, {"k" * 32: np.ones((2, 3), np.float32)})
        >>> got = cache.read("ab" * 16)
        >>> got["k" * 32].shape, got["k" * 32].flags.writeable
        ((2, 3), False)
        >>> cache.read("cd" * 16)   # nothing cached for that clip
        {}
    """

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._entries = os.path.join(os.fspath(self.root), "entries", "")  # ends in a separator
        self._size_hint: dict[str, int] = {}  # group -> size of the last entry read
        self._index: dict[str, tuple[int, int, str]] | None = None
        self._pending: dict[str, tuple[int, int, str]] = {}
        self._packs: PackSet | None = None  # mapped on the first read, dropped by invalidate_packs
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

    def load(self) -> None:
        """Load the hash index and map the packs now rather than on the first read
        (a service's warm-up, or a benchmark that times them apart)."""
        self._load_index()
        self._load_packs()

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

    def new_hashes(self) -> dict[str, tuple[int, int, str]]:
        """Hashes learned since the last :meth:`flush`: ``{path: (size, mtime_ns, hash)}``,
        what a worker process hands back for its parent to :meth:`remember`."""
        return dict(self._pending)

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
        # a plain string: the warm read path builds one per clip, Path() costs more
        suffix = f".{group}" if group else ""
        return f"{self._entries}{audio_hash[:2]}{os.sep}{audio_hash}{suffix}.ser"

    def read(self, audio_hash: str, keys: Iterable[str] | None = None, group: str = "") -> dict[str, np.ndarray]:
        """Cached sections of a clip (only ``keys`` when given); ``{}`` when none or when
        the entry is damaged (it is then deleted, so it is recomputed) or stale.

        With ``keys``, a packed copy that holds all of them is used (``ser.cache.pack``),
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
            data = read_file(path, self._size_hint.get(group, 0))
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

    def write(self, audio_hash: str, sections: Mapping[str, np.ndarray], group: str = "") -> None:
        """Replace a clip's entry atomically with ``sections``."""
        atomic_write_bytes(self.entry_path(audio_hash, group), encode_entry(sections))

    # --- packs -----------------------------------------------------------------------
    def _load_packs(self) -> PackSet:
        self._packs = PackSet(self.root / "packs")
        return self._packs

    def invalidate_packs(self) -> None:
        """Forget the mapped packs; the next read maps the pack folder afresh.

        ``read`` notices packs made by other runs when a loose file it looks for has
        gone; call this when other runs may have packed newer copies of clips whose
        older packed copy this cache has mapped already. Arrays already handed out stay
        valid (the old mappings live as long as they do).
        """
        self._packs = None

    def _read_packed(self, packs: PackSet, audio_hash: str, keys: Iterable[str] | None,
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
        ``ser.cache.pack``), when at least ``minimum`` (default ``PACK_MIN``) are loose.

        Returns:
            The new pack, or None when none was written.
        """
        groups = tuple(groups)
        loose = {(h, g): self._entry_file(h, g) for h in audio_hashes for g in groups}
        target = write_pack(self.root / "packs", loose, PACK_MIN if minimum is None else minimum)
        if target is not None:
            self.invalidate_packs()  # remapped on the next read, with the new pack
        return target
