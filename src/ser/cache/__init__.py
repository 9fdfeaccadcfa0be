"""A disk cache of features, keyed by audio content, feature config and code version.

Layers, each importing only those before it:

- ``ser.cache.entry``: the entry format (one clip's sections in one self-checking
  blob), section keys, content hashes.
- ``ser.cache.pack``: pack files (many entries in one immutable, mapped file).
- ``ser.cache.store``: :class:`FeatureCache`, the entries, packs and hash index under
  one root folder.
- ``ser.cache.corpus``: features of clips and whole corpora through the store, in
  worker processes (:func:`extract_corpus`, :func:`load_features`).
- ``ser.cache.encoded``: hidden states of a pretrained encoder (``ser.encoders``), pooled
  per layer or whole sequences, through the store (:func:`extract_encoder`,
  :func:`load_encoder_states`); on a GPU when present, so a corpus can be extracted
  there once and the cache folder copied to wherever heads are trained.

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
from .encoded import (EncoderReport, clip_states, encode_batch, encoder_group, encoder_section_keys,
                      extract_encoder, load_encoder_states)
from .entry import CACHE_VERSION, StaleEntryError, decode_entry, encode_entry, file_hash, section_key
from .pack import PACK_MIN, PackSet
from .store import DEFAULT_ROOT, FeatureCache

__all__ = [
    "CACHE_VERSION", "DEFAULT_ROOT", "PACK_MIN", "EncoderReport", "ExtractReport", "FeatureCache", "PackSet",
    "StaleEntryError", "clip_features", "clip_states", "decode_entry", "encode_batch", "encode_entry",
    "encoder_group", "encoder_section_keys", "extract_corpus", "extract_encoder", "file_hash",
    "load_encoder_states", "load_features", "read_cached", "section_key", "section_keys",
]
