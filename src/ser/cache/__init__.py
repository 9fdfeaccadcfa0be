"""A disk cache of features, keyed by audio content, feature config and code version.

Layers, each importing only those before it:

- ``ser.cache.entry``: the entry format (one clip's sections in one self-checking
  blob), section keys, content hashes.
- ``ser.cache.pack``: pack files (many entries in one immutable, mapped file).
- ``ser.cache.store``: :class:`FeatureCache`, the entries, packs and hash index under
  one root folder.
- ``ser.cache.corpus``: features of clips and whole corpora through the store, in
  worker processes (:func:`extract_corpus`, :func:`load_features`).

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from ser.cache import FeatureCache
    >>> cache = FeatureCache(tempfile.mkdtemp())
    >>> cache.write("ab" * 16, {"k" * 32: np.zeros((1, 4), np.float32)})
    >>> sorted(cache.read("ab" * 16))
    ['kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk']
    >>> X = load_features(manifest, ["mel"])["mel"]   # (clips, 64, 188)   # doctest: +SKIP
"""
from __future__ import annotations

from .corpus import ExtractReport, clip_features, extract_corpus, load_features, read_cached, section_keys
from .entry import CACHE_VERSION, StaleEntryError, decode_entry, encode_entry, file_hash, section_key
from .pack import PACK_MIN, PackSet
from .store import DEFAULT_ROOT, FeatureCache

__all__ = [
    "CACHE_VERSION", "DEFAULT_ROOT", "PACK_MIN", "ExtractReport", "FeatureCache", "PackSet",
    "StaleEntryError", "clip_features", "decode_entry", "encode_entry", "extract_corpus",
    "file_hash", "load_features", "read_cached", "section_key", "section_keys",
]
