"""Hidden states of a pretrained encoder (``ser.encoders``), computed once and cached.

A clip is prepared exactly as for the other representations (``load_audio`` then
``prepare_clip``), turned into Whisper's log-mel of the whole prepared clip (no 30 s
padding) and run through the frozen encoder up to the highest layer wanted, a batch of
clips at a time (every prepared clip has the same length), under ``torch.no_grad()``.
Two kinds of section are cached per layer:

- ``pooled``: the mean, then the standard deviation, of every dimension over frames,
  ``(2 * dims, 1)``: ~3 KB (tiny.en) or 4 KB (base) a layer and clip, so every layer
  is cached (the layer study reads them);
- ``sequence``: the whole hidden state ``(dims, frames)``, ~300 KB for a 3 s clip of
  base, so only the layers asked for (what a head is trained on).

Section keys hash :func:`ser.encoders.encoder_key` (encoder name, code version, the
weights' SHA-256, layer), the kind, the :class:`~ser.audio.ClipConfig` and the channel
(``channel=``, a ``ser.degrade`` condition every prepared clip goes through, as for the
features): other weights, another layer, clip length or channel is another key.
States of waveform-augmented copies are in :mod:`ser.cache.encoded_copies`. The sections live in the
same :class:`~ser.cache.FeatureCache` as the other representations, keyed by the audio's
content hash, in an entry group of their own per encoder weights
(:func:`encoder_group`), so reading mel features never reads (nor checksums) the much
larger encoder states, and two encoders extracting at once never rewrite one entry.

**Extract on a GPU once, train heads anywhere.** The encoder runs on CUDA when present
(``device=None``). The cache is plain files keyed by content, not by path or machine:
extract a corpus where a GPU is, copy the cache folder (``feature_cache/``) to any
machine, and training there finds every state (a warm call loads no encoder at all).

Example:
    >>> from ser.cache import extract_encoder, load_encoder_states
    >>> print(extract_encoder(manifest, "whisper_base", sequences=(5,)))   # doctest: +SKIP
    1440 clips, whisper_base layers 0-6 pooled + 5 sequence: encoded 1440, reused 0 in 150.2 s (9.6 clips/s, cpu)
    >>> X = load_encoder_states(manifest, "whisper_base", 5)   # (1440, 512, 150)   # doctest: +SKIP
    >>> P = load_encoder_states(manifest, "whisper_base", 3, pooled=True)   # (1440, 1024, 1)   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..audio import AudioSource, ClipConfig, load_audio, prepare_clip
from ..encoders import EncoderError, encoder_key, get_config, get_encoder, get_spec
from ..modelmeta import apply_channel
from .corpus import variant_key
from .entry import section_key
from .store import DEFAULT_ROOT, FeatureCache

log = logging.getLogger(__name__)

KINDS = ("pooled", "sequence")
WHISPER_RATE = 16000  # Hz: Whisper's log-mel assumes it


def encoder_group(weights_sha256: str) -> str:
    """The entry group of an encoder's sections: ``"e"`` + 7 hex digits of its weights'
    hash (a pack record holds 8 ASCII characters of group).

    Example:
        >>> encoder_group("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a")
        'e1a5afae'
    """
    return "e" + weights_sha256[:7]


def encoder_section_keys(encoder: str, layers: Iterable[int], kind: str, clip: ClipConfig = ClipConfig(),
                         path: str | Path | None = None, channel: Mapping[str, Any] | None = None) -> dict[int, str]:
    """``{layer: section key}`` of one kind (``"pooled"`` or ``"sequence"``) of ``encoder``
    for clean clips (heard through ``channel``, if given).

    Raises:
        EncoderError: unknown encoder, a layer out of range, weights missing.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {layer: section_key({**encoder_key(get_config(encoder, layer), path), "kind": kind}, clip,
                               variant_key(None, 0, channel)) for layer in layers}


@dataclass
class EncoderReport:
    """What :func:`extract_encoder` did."""

    clips: int
    encoder: str
    layers: list[int]  # layers whose pooled statistics are cached
    sequences: list[int]  # layers whose full sequences are cached
    computed: int  # clips run through the encoder
    reused: int  # clips that had every wanted section already
    seconds: float  # wall time of the whole call
    device: str = ""  # where the encoder ran; "" when nothing was encoded
    encode_seconds: float = 0.0  # time spent loading, preparing and encoding clips

    @property
    def clips_per_s(self) -> float:
        """Encoded clips per second of ``encode_seconds`` (0 when none)."""
        return self.computed / self.encode_seconds if self.computed and self.encode_seconds else 0.0

    def __str__(self) -> str:
        seq = f" + {_span(self.sequences)} sequence" if self.sequences else ""
        rate = f" ({self.clips_per_s:.1f} clips/s, {self.device})" if self.computed else ""
        return (f"{self.clips} clips, {self.encoder} layers {_span(self.layers) or 'no'} pooled{seq}: "
                f"encoded {self.computed}, reused {self.reused} in {self.seconds:.1f} s{rate}")


def _span(layers: list[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``"0-3"``, ``[2, 5]`` -> ``"2,5"``, ``[]`` -> ``""``."""
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


def resolve_device(device: str | None) -> str:
    """``device``, or CUDA when available and CPU otherwise for None."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device is None else str(device)


def load_encoder(encoder: str, path: str | Path | None, device: str) -> Any:
    """The frozen encoder on ``device`` (weights checked by SHA-256 as ``get_encoder`` does)."""
    return get_encoder(encoder, path).to(device)


def check_clip(clip: ClipConfig) -> None:
    """Refuse a clip config the Whisper encoders cannot take (they hear 16 kHz only)."""
    if clip.sample_rate != WHISPER_RATE:
        raise EncoderError(f"Whisper encoders take {WHISPER_RATE} Hz audio; this clip config has "
                           f"sample_rate={clip.sample_rate}")


def _prepare(source: AudioSource | np.ndarray, clip: ClipConfig, channel: Mapping[str, Any] | None = None) -> np.ndarray:
    """A clip's prepared waveform: decoded (a path or bytes) or as given (an array), then
    ``prepare_clip`` and the channel, as every representation's clip is."""
    y = np.asarray(source, np.float32) if isinstance(source, np.ndarray) else load_audio(source, sr=clip.sample_rate)
    return apply_channel(prepare_clip(y, clip), clip.sample_rate, channel)


def encode_batch(model: Any, clips: np.ndarray, layers: Sequence[int], sequences: Sequence[int] = (),
                 device: str = "cpu") -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Run prepared clips through an encoder: pooled statistics and full sequences.

    Args:
        model: a :class:`ser.encoders.WhisperEncoder` (already on ``device``).
        clips: ``(batch, samples)`` float32 prepared 16 kHz clips of one length.
        layers: hidden-state indices whose pooled statistics are wanted.
        sequences: indices whose full sequences are wanted.
        device: where the log-mel and the encoder run.

    Returns:
        ``({layer: (batch, 2 * dims) mean then std over frames}, {layer: (batch, dims,
        frames)})`` float32 numpy arrays. The encoder runs up to the highest layer wanted.
    """
    import torch

    from ..encoders import log_mel_torch

    top = max([*layers, *sequences])
    with torch.no_grad():
        audio = torch.from_numpy(np.ascontiguousarray(clips, np.float32)).to(device)
        states = model(log_mel_torch(audio, model.dims.n_mels), max_layer=top)
        pooled = {}
        for layer in layers:
            x = states[layer]  # (batch, frames, dims)
            mean, std = x.mean(dim=1), x.std(dim=1, unbiased=False)  # numpy's std (ddof 0)
            pooled[layer] = torch.cat([mean, std], dim=1).float().cpu().numpy()
        seqs = {layer: states[layer].transpose(1, 2).float().cpu().numpy() for layer in sequences}
    return pooled, seqs


def clip_states(source: AudioSource | np.ndarray, encoder: str, layer: int, clip: ClipConfig = ClipConfig(), *,
                path: str | Path | None = None, pooled: bool = False, device: str | None = None,
                model: Any = None, channel: Mapping[str, Any] | None = None) -> np.ndarray:
    """One clip's hidden states of ``layer``, computed now (no cache): ``(dims, frames)``,
    or ``(2 * dims, 1)`` with ``pooled``. What the cache holds for that clip.

    Args:
        source: an audio file (path or bytes) or its decoded mono 16 kHz waveform; either
            is prepared with ``prepare_clip(y, clip)``.
        model: an encoder already loaded (else ``get_encoder(encoder, path)``).
        channel: a ``ser.degrade`` condition's ``to_dict()`` applied after ``prepare_clip``.
    """
    check_clip(clip)
    get_config(encoder, layer)  # unknown name or layer out of range: a clear error first
    device = resolve_device(device)
    model = model.to(device) if model is not None else load_encoder(encoder, path, device)
    p, s = encode_batch(model, _prepare(source, clip, channel)[None], [layer] if pooled else [],
                        [] if pooled else [layer], device)
    return p[layer][0][:, None] if pooled else s[layer][0]


def _prepared_batches(paths: list[str], clip: ClipConfig, batch_size: int, jobs: int,
                      channel: Mapping[str, Any] | None) -> Iterator[np.ndarray]:
    """Prepared clips, ``batch_size`` at a time; with ``jobs > 1`` threads decode the next
    batch while the encoder runs on this one."""
    starts = range(0, len(paths), batch_size)
    if jobs <= 1:
        for i in starts:
            yield np.stack([_prepare(p, clip, channel) for p in paths[i:i + batch_size]])
        return
    with ThreadPoolExecutor(jobs) as pool:
        ahead = None
        for i in starts:
            current = ahead or [pool.submit(_prepare, p, clip, channel) for p in paths[i:i + batch_size]]
            nxt = paths[i + batch_size:i + 2 * batch_size]
            ahead = [pool.submit(_prepare, p, clip, channel) for p in nxt] if nxt else None
            yield np.stack([f.result() for f in current])


def _encode_missing(cache: FeatureCache, group: str, paths: list[str], hashes: list[str], encoder: str,
                    path: str | Path | None, keys: dict[str, dict[int, str]], clip: ClipConfig, device: str | None,
                    batch_size: int, jobs: int, progress: bool,
                    channel: Mapping[str, Any] | None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Encode these clips, merge their new sections into their entries; yield
    ``(position in paths, {section key: array})`` per clip as it is written."""
    device = resolve_device(device)
    model = load_encoder(encoder, path, device)
    layers, sequences = sorted(keys["pooled"]), sorted(keys["sequence"])
    bar = tqdm(total=len(paths), desc=f"{encoder} states", unit="clip", disable=not progress)
    done = 0
    try:
        for batch in _prepared_batches(paths, clip, batch_size, jobs, channel):  # one ClipConfig: one length
            pooled, seqs = encode_batch(model, batch, layers, sequences, device)
            for j in range(len(batch)):
                new = {keys["pooled"][l]: pooled[l][j][:, None] for l in layers}
                new.update({keys["sequence"][l]: seqs[l][j] for l in sequences})
                h = hashes[done + j]
                # read the entry just before writing: sections cached meanwhile are kept
                cache.write(h, {**cache.read(h, group=group), **new}, group=group)
                yield done + j, new
            done += len(batch)
            bar.update(len(batch))
    finally:
        bar.close()


def _layers(encoder: str, layers: str | Iterable[int]) -> list[int]:
    n = get_spec(encoder).dims.n_layer
    if isinstance(layers, str):
        if layers != "all":
            raise EncoderError(f"layers must be 'all' or a list of layer numbers, got {layers!r}")
        return list(range(n + 1))
    return sorted({get_config(encoder, int(l)).layer for l in layers})


def extract_encoder(manifest: pd.DataFrame, encoder: str, layers: str | Iterable[int] = "all",
                    clip: ClipConfig = ClipConfig(), cache_dir: str | Path = DEFAULT_ROOT, *,
                    sequences: Iterable[int] = (), path: str | Path | None = None, device: str | None = None,
                    batch_size: int = 16, jobs: int = 1, progress: bool = True, pack: bool = True,
                    channel: Mapping[str, Any] | None = None) -> EncoderReport:
    """Cache pooled statistics of ``layers`` and full sequences of ``sequences`` for every clip.

    One encoder pass per clip that lacks any of them, computing only the sections some
    clip lacks and running the encoder no higher than they need; a clip with everything
    cached is not even decoded, and when no clip lacks anything the encoder is not loaded.
    At the end the corpus' loose entries go into one pack, as ``extract_corpus`` does.

    Args:
        manifest: clips (``path`` column).
        encoder: a registry name (``ser.encoders.available_encoders()``).
        layers: ``"all"`` (0 ... n_layer) or layer numbers for pooled statistics.
        clip: clip preparation (part of every key).
        cache_dir: the cache root.
        sequences: layers whose full ``(dims, frames)`` sequences are cached too.
        path: weights by path instead of the pinned packages (``--encoder-path``).
        device: ``"cuda"``, ``"cpu"``...; None: CUDA when available.
        batch_size: clips per encoder call. jobs: threads preparing clips ahead.
        progress: tqdm bar over clips. pack: pack the loose entries at the end.
        channel: a ``ser.degrade`` condition's ``to_dict()`` every prepared clip goes through.

    Raises:
        EncoderError: unknown encoder, a layer out of range, weights missing or not
            matching their hash, a clip config not at 16 kHz.
    """
    start = time.perf_counter()
    check_clip(clip)
    layers, sequences = _layers(encoder, layers), _layers(encoder, sequences)
    if not layers and not sequences:
        raise EncoderError("nothing to extract: give layers or sequences")
    keys = {"pooled": encoder_section_keys(encoder, layers, "pooled", clip, path, channel),
            "sequence": encoder_section_keys(encoder, sequences, "sequence", clip, path, channel)}
    first = (layers or sequences)[0]
    group = encoder_group(encoder_key(get_config(encoder, first), path)["weights_sha256"])
    wanted = frozenset(k for kind in keys.values() for k in kind.values())
    cache = FeatureCache(cache_dir)
    paths = [str(p) for p in manifest["path"]]
    hashes = [cache.audio_hash(p) for p in paths]
    todo, lacking = [], set()
    for i, h in enumerate(hashes):
        got = cache.read(h, wanted, group)
        if len(got) < len(wanted):
            todo.append(i)
            lacking |= wanted - got.keys()
    device_used, encode_seconds = "", 0.0
    if todo:
        t0 = time.perf_counter()
        device_used = resolve_device(device)
        # only the sections some clip lacks, so the encoder runs no higher than they need
        # (a sequence added after the layer study runs up to its layer, not the top one)
        need = {kind: {l: k for l, k in ks.items() if k in lacking} for kind, ks in keys.items()}
        for _ in _encode_missing(cache, group, [paths[i] for i in todo], [hashes[i] for i in todo], encoder, path,
                                 need, clip, device_used, batch_size, jobs, progress, channel):
            pass
        encode_seconds = time.perf_counter() - t0
    cache.flush()
    if pack and (todo or cache.loose_reads):
        pack_entries(cache, hashes, group)
    report = EncoderReport(len(paths), encoder, layers, sequences, len(todo), len(paths) - len(todo),
                           time.perf_counter() - start, device_used, encode_seconds)
    log.info("%s", report)
    return report


class StateStack:
    """States of many clips gathered into one float32 array, ``lead`` + the first state's
    shape, allocated on the first :meth:`put`; a state of another shape (a clip of another
    length) is an EncoderError naming ``what`` and the file."""

    def __init__(self, lead: tuple[int, ...], what: str) -> None:
        self.lead, self.what, self.array = lead, what, None

    def put(self, index: Any, state: np.ndarray, path: str) -> None:
        if self.array is None:
            self.array = np.empty(self.lead + state.shape, np.float32)
        elif self.array.shape[len(self.lead):] != state.shape:
            raise EncoderError(f"{self.what} of {path} has shape {state.shape}, earlier clips "
                               f"{self.array.shape[len(self.lead):]}: mixed clip lengths in one read")
        self.array[index] = state


def pack_entries(cache: FeatureCache, hashes: Iterable[str], group: str) -> None:
    """Move these clips' loose entries of ``group`` into a pack (as ``extract_corpus`` does
    at the end of a run); packing only speeds reads up, so a failure is only logged."""
    try:
        cache.pack(hashes, (group,))
    except OSError as e:
        log.warning("could not pack the cache entries under %s (%s)", cache.root, e)
    cache.flush()


def load_encoder_states(manifest: pd.DataFrame, encoder: str, layer: int, clip: ClipConfig = ClipConfig(),
                        cache_dir: str | Path = DEFAULT_ROOT, *, path: str | Path | None = None,
                        pooled: bool = False, device: str | None = None, batch_size: int = 16, jobs: int = 1,
                        progress: bool = True, channel: Mapping[str, Any] | None = None) -> np.ndarray:
    """Hidden states of ``layer`` for every clip, in manifest order, computing what the
    cache lacks first.

    Missing clips are encoded up to ``layer``; the pooled statistics of layers
    0 ... ``layer`` are cached on the way (they cost nothing more), and the sequence of
    ``layer`` unless ``pooled``. ``channel``: as for :func:`extract_encoder`.

    Returns:
        float32 ``(clips, dims, frames)``; with ``pooled``, ``(clips, 2 * dims, 1)``: the
        mean of each dimension over frames, then its standard deviation.

    Raises:
        EncoderError: as :func:`extract_encoder`; an empty manifest.
    """
    check_clip(clip)
    config = get_config(encoder, layer)
    if len(manifest) == 0:
        raise EncoderError("the manifest has no clips: nothing to encode")
    kind = "pooled" if pooled else "sequence"
    key = encoder_section_keys(encoder, [layer], kind, clip, path, channel)[layer]
    group = encoder_group(encoder_key(config, path)["weights_sha256"])
    cache = FeatureCache(cache_dir)
    paths = [str(p) for p in manifest["path"]]
    hashes = [cache.audio_hash(p) for p in paths]
    out = StateStack((len(paths),), f"{encoder} layer {layer}")
    missing = []
    for i, h in enumerate(hashes):
        got = cache.read(h, (key,), group)
        if key in got:
            out.put(i, got[key], paths[i])
        else:
            missing.append(i)
    if missing:
        t0 = time.perf_counter()
        keys = {"pooled": encoder_section_keys(encoder, range(layer + 1), "pooled", clip, path, channel),
                "sequence": {} if pooled else {layer: key}}
        for j, new in _encode_missing(cache, group, [paths[i] for i in missing], [hashes[i] for i in missing],
                                      encoder, path, keys, clip, device, batch_size, jobs, progress, channel):
            out.put(missing[j], new[key], paths[missing[j]])
        dt = time.perf_counter() - t0
        log.info("%s layer %d: encoded %d clips in %.1f s (%.1f clips/s), %d cached", encoder, layer, len(missing),
                 dt, len(missing) / dt, len(paths) - len(missing))
    cache.flush()
    if cache.loose_reads or missing:
        pack_entries(cache, hashes, group)
    return out.array

