"""Encoder states of waveform-augmented copies of training clips, computed once and cached.

The encoder counterpart of the feature cache's augmented copies (``load_features(...,
augment=chain, copies=K)``): copy ``k`` of a clip is
:func:`ser.cache.corpus.variant_waveform` of its prepared waveform (the chain, seeded
``derive_seed(chain seed, audio hash, k)``, then the channel if any), exactly the audio
the features of copy ``k`` are computed from when the chains are the same. A head trained
on an encoder layer sees its clean states or one of its copies' states each epoch, as a
ResNet sees a clean or augmented feature map.

Only the sequence of the one layer a head reads is cached per copy (the encoder runs up
to that layer, a batch of copies at a time). Section keys are the clean sequence key's
parts plus ``{"chain": ..., "copy": k}`` (and the channel), as ``ser.cache.corpus`` keys
copies; they live in an entry group of their own per encoder weights
(:func:`copies_group`), so a clean read never reads (nor checksums) the copies.

Example:
    >>> from ser.augment import AugmentConfig, waveform_augmentation
    >>> chain = waveform_augmentation(AugmentConfig(conditions=("telephone", "gsm")), chain=False).to_dict()
    >>> X = load_encoder_copies(train, "whisper_base", 5, augment=chain, copies=4)  # (n, 4, 512, 150)  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..audio import ClipConfig, load_audio, prepare_clip
from ..encoders import EncoderError, encoder_key, get_config
from .corpus import variant_key, variant_waveform
from .encoded import StateStack, check_clip, encode_batch, load_encoder, pack_entries, resolve_device
from .entry import section_key
from .store import DEFAULT_ROOT, FeatureCache

log = logging.getLogger(__name__)


def copies_group(weights_sha256: str) -> str:
    """The entry group of an encoder's augmented-copy states: ``"a"`` + 7 hex digits of its
    weights' hash (8 ASCII characters, beside the clean states' ``"e..."`` group).

    Example:
        >>> copies_group("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a")
        'a1a5afae'
    """
    return "a" + weights_sha256[:7]


def copy_section_keys(encoder: str, layer: int, clip: ClipConfig, augment: Mapping[str, Any], copies: int,
                      path: str | Path | None = None, channel: Mapping[str, Any] | None = None) -> dict[int, str]:
    """``{k: section key}`` of the ``layer`` sequence of copies 1..``copies``.

    Raises:
        EncoderError: unknown encoder, a layer out of range, weights missing.
    """
    base = {**encoder_key(get_config(encoder, layer), path), "kind": "sequence"}
    return {k: section_key(base, clip, variant_key(augment, k, channel)) for k in range(1, copies + 1)}


def _copy_batches(paths: list[str], hashes: list[str], todo: dict[int, list[int]], clip: ClipConfig,
                  augment: Mapping[str, Any], channel: Mapping[str, Any] | None,
                  batch_size: int) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
    """``([(clip index, copy), ...], (batch, samples) waveforms)``: each clip decoded and
    prepared once, then its missing copies made."""
    pending: list[tuple[tuple[int, int], np.ndarray]] = []
    for i, ks in todo.items():
        y = prepare_clip(load_audio(paths[i], sr=clip.sample_rate), clip)
        pending += [((i, k), variant_waveform(y, clip, augment, hashes[i], k, channel)) for k in ks]
        while len(pending) >= batch_size:
            batch, pending = pending[:batch_size], pending[batch_size:]
            yield [ik for ik, _ in batch], np.stack([w for _, w in batch])
    if pending:
        yield [ik for ik, _ in pending], np.stack([w for _, w in pending])


def load_encoder_copies(manifest: pd.DataFrame, encoder: str, layer: int, clip: ClipConfig = ClipConfig(),
                        cache_dir: str | Path = DEFAULT_ROOT, *, augment: Mapping[str, Any], copies: int,
                        channel: Mapping[str, Any] | None = None, path: str | Path | None = None,
                        device: str | None = None, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """States of ``layer`` for ``copies`` augmented copies of every clip, in manifest order,
    encoding (and caching) what the cache lacks first.

    Args:
        manifest: the clips (``path`` column), usually the training split.
        encoder, layer: the encoder (registry name) and the hidden state a head reads.
        clip: clip preparation (part of every key).
        cache_dir: the cache root.
        augment: the waveform chain, ``waveform_augmentation(cfg).to_dict()``.
        copies: K, copies 1..K per clip (copy 0 is the clean clip: ``load_encoder_states``).
        channel: a ``ser.degrade`` condition's ``to_dict()`` every copy goes through last.
        path, device, batch_size, progress: as for :func:`ser.cache.load_encoder_states`.

    Returns:
        float32 ``(clips, copies, dims, frames)``.

    Raises:
        EncoderError: as :func:`ser.cache.load_encoder_states`; an empty manifest, copies < 1.
    """
    check_clip(clip)
    if copies < 1 or not augment:
        raise EncoderError(f"copies must be >= 1 with a waveform chain (augment=...), got copies={copies!r}")
    if len(manifest) == 0:
        raise EncoderError("the manifest has no clips: nothing to encode")
    keys = copy_section_keys(encoder, layer, clip, augment, copies, path, channel)
    group = copies_group(encoder_key(get_config(encoder, layer), path)["weights_sha256"])
    cache = FeatureCache(cache_dir)
    paths = [str(p) for p in manifest["path"]]
    hashes = [cache.audio_hash(p) for p in paths]
    out = StateStack((len(paths), copies), f"{encoder} layer {layer}")

    todo: dict[int, list[int]] = {}
    wanted = frozenset(keys.values())
    for i, h in enumerate(hashes):
        got = cache.read(h, wanted, group)
        for k, key in keys.items():
            if key in got:
                out.put((i, k - 1), got[key], paths[i])
            else:
                todo.setdefault(i, []).append(k)
    n_missing = sum(map(len, todo.values()))
    if n_missing:
        t0 = time.perf_counter()
        device = resolve_device(device)
        model = load_encoder(encoder, path, device)
        bar = tqdm(total=n_missing, desc=f"{encoder} copies", unit="copy", disable=not progress)
        try:
            for items, batch in _copy_batches(paths, hashes, todo, clip, augment, channel, batch_size):
                _, seqs = encode_batch(model, batch, [], [layer], device)  # runs up to ``layer`` only
                new: dict[int, dict[str, np.ndarray]] = {}
                for j, (i, k) in enumerate(items):
                    out.put((i, k - 1), seqs[layer][j], paths[i])
                    new.setdefault(i, {})[keys[k]] = seqs[layer][j]
                for i, sections in new.items():
                    # read the entry just before writing: sections cached meanwhile are kept
                    cache.write(hashes[i], {**cache.read(hashes[i], group=group), **sections}, group=group)
                bar.update(len(items))
        finally:
            bar.close()
        dt = time.perf_counter() - t0
        log.info("%s layer %d: encoded %d augmented copies of %d clips in %.1f s", encoder, layer, n_missing,
                 len(todo), dt)
    cache.flush()
    if cache.loose_reads or n_missing:
        pack_entries(cache, hashes, group)
    return out.array
