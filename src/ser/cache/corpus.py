"""Features for clips and whole corpora, through the cache, in parallel over processes.

The corpus level of the cache: :func:`clip_features` (one file, computing what its
entry lacks), :func:`extract_corpus` (a manifest, in worker processes, with a progress
bar; packs the corpus' entries at the end) and :func:`load_features` (the training data
loader: stacked arrays in manifest order).

Example:
    >>> from ser.cache import extract_corpus, load_features
    >>> report = extract_corpus(manifest, ["mel", "mfcc"], jobs=2)     # doctest: +SKIP
    >>> print(report)                                                  # doctest: +SKIP
    1440 clips x 2 features: computed 2880, reused 0 in 41.2 s
    >>> X = load_features(manifest, ["mel"])["mel"]   # (1440, 64, 188)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..audio import ClipConfig, load_audio, prepare_clip
from ..features import extract, feature_key, get_config, resolve_names
from ..modelmeta import apply_channel
from ..workers import spawn_pool
from . import entry as entry_format
from .entry import file_hash, section_key
from .store import DEFAULT_ROOT, FeatureCache

log = logging.getLogger(__name__)

CHUNK = 16  # clips per task handed to a worker process


def section_keys(names: Sequence[str], configs: Mapping[str, Any], clip: ClipConfig,
                 augment: Mapping[str, Any] | None = None, copies: int = 0,
                 channel: Mapping[str, Any] | None = None) -> dict[tuple[str, int], str]:
    """Section keys per (feature, variant): variant 0 is the clean clip, 1..copies the
    augmented copies (the waveform chain and the copy number are part of the key).
    A ``channel`` (a ``ser.degrade`` condition's ``to_dict()``, applied to every variant)
    is part of every key: a telephone clip is another clip.

    Memoised: hashing eleven configs costs more than reading a warm entry. Compute them
    once per corpus and pass them to :func:`clip_features` and :func:`read_cached`. The
    same mapping comes back for the same arguments: read it, do not change it.
    """
    # CACHE_VERSION read at call time: a changed version must not hit an old memo
    memo = (tuple(names), tuple(configs[n] for n in names), clip,
            json.dumps(augment, sort_keys=True, default=str), copies, entry_format.CACHE_VERSION,
            json.dumps(channel, sort_keys=True))
    if memo not in _KEY_MEMO:
        _KEY_MEMO[memo] = _compute_keys(names, configs, clip, augment, copies, channel)
    return _KEY_MEMO[memo]


_KEY_MEMO: dict[tuple, dict[tuple[str, int], str]] = {}


def _compute_keys(names, configs, clip, augment, copies, channel) -> dict[tuple[str, int], str]:
    keys = {}
    for n in names:
        fk = feature_key(n, configs[n])
        keys[(n, 0)] = section_key(fk, clip, variant_key(None, 0, channel))
        for k in range(1, copies + 1):
            keys[(n, k)] = section_key(fk, clip, variant_key(augment, k, channel))
    return keys


def variant_key(augment: Mapping[str, Any] | None, k: int,
                channel: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The augmentation part of a section key of variant ``k`` (0: the clean clip, None
    without a channel, as keys were before channels existed), for every representation."""
    out: dict[str, Any] = {"chain": dict(augment or {}), "copy": k} if k else {}
    if channel is not None:
        out["channel"] = dict(channel)
    return out or None


def variant_waveform(y: np.ndarray, clip: ClipConfig, augment: Mapping[str, Any] | None, audio_hash: str, k: int,
                     channel: Mapping[str, Any] | None = None) -> np.ndarray:
    """Variant ``k`` of a prepared clip: the clip itself (0) or augmented copy ``k``
    (seeded ``derive_seed(chain seed, audio hash, k)``: the same audio for every
    representation whose chain is the same), then heard through ``channel`` (if any), as
    the runtime hears every clip."""
    if k:
        # lazy: only augmented copies need it (it loads scipy.signal and soxr)
        from ..augment import augment_waveform, derive_seed

        seed = derive_seed(int(augment.get("seed", 0)), audio_hash, k)
        y = augment_waveform(y, clip.sample_rate, augment["chain"], seed)
    return apply_channel(y, clip.sample_rate, channel)


def clip_features(path: str | Path, names: Sequence[str], configs: Mapping[str, Any], clip: ClipConfig,
                  cache: FeatureCache | None, augment: Mapping[str, Any] | None = None,
                  copies: int = 0, keys: Mapping[tuple[str, int], str] | None = None,
                  channel: Mapping[str, Any] | None = None) -> tuple[dict[tuple[str, int], np.ndarray], int, int]:
    """Features of one file (and of its augmented copies), from the cache where present.

    Missing sections are computed and the clip's entry rewritten once.

    Args:
        augment: ``waveform_augmentation(cfg).to_dict()`` when ``copies > 0``.
        copies: number of augmented copies wanted besides the clean clip.
        keys: the section keys, when the caller has computed them once for many clips.
        channel: a ``ser.degrade`` condition's ``to_dict()`` every variant goes through.

    Returns:
        ``({(name, variant): array}, n_computed, n_reused)``; variant 0 is the clean clip.
    """
    if copies and not augment:
        raise ValueError("copies > 0 needs the waveform augmentation chain (augment=...)")
    keys = keys or section_keys(names, configs, clip, augment, copies, channel)
    h = cache.audio_hash(path) if cache is not None else file_hash(path)
    out: dict[tuple[str, int], np.ndarray] = {}
    stored: dict[str, dict[str, np.ndarray]] = {}
    for group in _groups(copies):
        stored[group] = got = cache.read(h, group=group) if cache is not None else {}
        if got:  # the warm path: plain lookups (this loop is most of a warm read's cost)
            for nk, key in keys.items():
                if key in got and (nk[1] == 0) == (group == ""):
                    out[nk] = got[key]
    missing = [nk for nk in keys if nk not in out]
    if missing:
        y = prepare_clip(load_audio(path, sr=clip.sample_rate), clip)
        for k in sorted({v for _, v in missing}):
            todo = [n for n, v in missing if v == k]
            yk = variant_waveform(y, clip, augment, h, k, channel)
            fresh = extract(yk, clip.sample_rate, todo, {n: configs[n] for n in todo})
            out.update({(n, k): fresh[n] for n in todo})
        if cache is not None:
            for group in {_group(v) for _, v in missing}:
                new = {keys[nk]: out[nk] for nk in missing if _group(nk[1]) == group}
                cache.write(h, {**stored[group], **new}, group=group)
    return out, len(missing), len(keys) - len(missing)


def _group(variant: int) -> str:
    """Entry file group of a variant: the clean clip apart from its augmented copies."""
    return "" if variant == 0 else "aug"


def _groups(copies: int) -> list[str]:
    return ["", "aug"] if copies else [""]


@dataclass
class ExtractReport:
    """What ``extract_corpus`` did."""

    clips: int
    features: int
    computed: int  # (clip, feature, variant) sections computed
    reused: int  # sections found in the cache
    seconds: float
    copies: int = 0  # augmented copies per clip besides the clean one

    def __str__(self) -> str:
        extra = f" (+{self.copies} augmented copies each)" if self.copies else ""
        return (f"{self.clips} clips x {self.features} features{extra}: computed {self.computed}, "
                f"reused {self.reused} in {self.seconds:.1f} s")


def read_cached(cache: FeatureCache, path: str, keys: Mapping[tuple[str, int], str],
                copies: int = 0) -> dict[str, np.ndarray] | None:
    """Every wanted section of ``path`` from the cache, or None when any is missing or damaged.

    The warm per-clip path of ``load_features`` and ``extract_corpus``: index lookup of
    the content hash, then one verified read per entry (packed or loose). The arrays are
    read-only views into the pack's mapping or that read's private copy of the entry
    (see ``ser.cache.store``).

    Args:
        keys: from :func:`section_keys`, ``{(name, variant): section key}``.
        copies: augmented copies per clip besides the clean one, as in ``keys``.

    Returns:
        ``{section key: array}``, or None.
    """
    h = cache.audio_hash(path)
    groups = _wanted(keys, copies)
    if len(groups) == 1:  # the clean clip only: one entry file
        group, wanted = groups[0]
        got = cache.read(h, wanted, group)
        return got if len(got) == len(wanted) else None
    entry: dict[str, np.ndarray] = {}
    for group, wanted in groups:
        got = cache.read(h, wanted, group)
        if len(got) < len(wanted):
            return None
        entry.update(got)
    return entry


def _wanted(keys: Mapping[tuple[str, int], str], copies: int) -> list[tuple[str, frozenset[str]]]:
    """``[(entry group, its wanted section keys)]``, memoised per ``keys`` mapping."""
    memo = _WANTED_MEMO.get(id(keys))
    if memo is None or memo[0] is not keys or memo[1] != copies:
        groups = [(g, frozenset(key for nk, key in keys.items() if _group(nk[1]) == g)) for g in _groups(copies)]
        if len(_WANTED_MEMO) > 64:
            _WANTED_MEMO.clear()
        # keeps ``keys`` alive, so its id is not reused by another mapping while memoised
        memo = _WANTED_MEMO[id(keys)] = (keys, copies, groups)
    return memo[2]


_WANTED_MEMO: dict[int, tuple[Mapping, int, list[tuple[str, frozenset[str]]]]] = {}


def _init_worker() -> None:
    # one BLAS/FFT thread per process: the processes are the parallelism
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _work_task(task: tuple):
    return _work(*task)


def _work(paths: list[str], names: list[str], configs: dict, clip: ClipConfig, root: str,
          augment: dict | None, copies: int, channel: dict | None = None):
    cache = FeatureCache(root)
    keys = section_keys(names, configs, clip, augment, copies, channel)
    computed = reused = 0
    for p in paths:
        _, c, r = clip_features(p, names, configs, clip, cache, augment, copies, keys, channel)
        computed, reused = computed + c, reused + r
    return len(paths), computed, reused, cache.new_hashes()


def extract_corpus(manifest: pd.DataFrame, names: str | Iterable[str] = "all",
                   configs: Mapping[str, Any] | None = None, clip: ClipConfig = ClipConfig(),
                   cache_dir: str | Path = DEFAULT_ROOT, jobs: int = 1, progress: bool = True,
                   augment: Mapping[str, Any] | None = None, copies: int = 0, pack: bool = True,
                   channel: Mapping[str, Any] | None = None) -> ExtractReport:
    """Compute and cache the features of every clip in ``manifest``.

    Args:
        manifest: clips (``path`` column).
        names: ``"all"``, a comma list or a list of feature names.
        configs: optional ``{name: config}`` overriding the registry defaults.
        clip: clip preparation (length, trimming).
        cache_dir: the cache root.
        jobs: worker processes (1 = in this process).
        progress: show a progress bar.
        augment, copies: also make ``copies`` augmented copies per clip with the waveform
            chain ``augment`` (``waveform_augmentation(cfg).to_dict()``).
        pack: at the end, move the corpus' loose entry files into one pack file
            (``ser.cache.pack``), which makes warm reads about twice as fast.
        channel: a ``ser.degrade`` condition's ``to_dict()`` that every clip (and copy)
            goes through after ``prepare_clip`` (``--channel telephone``); None: none.

    Returns:
        An ``ExtractReport`` with computed vs reused counts.
    """
    names = resolve_names(names)
    configs = {n: (configs or {}).get(n) or get_config(n) for n in names}
    paths = [str(p) for p in manifest["path"]]
    cache = FeatureCache(cache_dir)
    start = time.perf_counter()
    computed = reused = 0
    keys = section_keys(names, configs, clip, augment, copies, channel)
    # a warm clip costs ~0.1 ms here; only clips that lack something go to the workers,
    # so a fully cached corpus never pays for starting processes
    todo = [p for p in paths if read_cached(cache, p, keys, copies) is None]
    reused += (len(paths) - len(todo)) * len(keys)
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="features", unit="clip",
               disable=not progress)
    paths = todo
    if jobs <= 1 or len(paths) <= CHUNK:
        for p in paths:
            _, c, r = clip_features(p, names, configs, clip, cache, augment, copies, keys, channel)
            computed, reused = computed + c, reused + r
            bar.update(1)
    else:
        chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
        work = [(c, names, configs, clip, str(cache.root), augment, copies, channel) for c in chunks]
        # spawned (no inherited threads or locks) workers that stop with this process
        with spawn_pool(jobs, initializer=_init_worker) as pool:
            for n, c, r, hashes in pool.imap_unordered(_work_task, work):
                computed, reused = computed + c, reused + r
                cache.remember(hashes)
                bar.update(n)
    bar.close()
    cache.flush()
    if pack and (computed or cache.loose_reads):
        _pack(cache, manifest["path"], copies, damaged=cache.damaged_packed > 0)
    report = ExtractReport(len(manifest), len(names), computed, reused, time.perf_counter() - start, copies)
    log.info("%s", report)
    return report


def load_features(manifest: pd.DataFrame, names: str | Iterable[str], configs: Mapping[str, Any] | None = None,
                  clip: ClipConfig = ClipConfig(), cache_dir: str | Path = DEFAULT_ROOT, jobs: int = 1,
                  progress: bool = True, augment: Mapping[str, Any] | None = None,
                  copies: int = 0, channel: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Stacked features of every clip, computing what the cache lacks first (``augment``,
    ``copies`` and ``channel`` as for :func:`extract_corpus`).

    Returns:
        ``{name: float32 array (clips, rows, frames)}`` in manifest order; with
        ``copies > 0`` the arrays are ``(clips, 1 + copies, rows, frames)``, index 0
        along the second axis being the clean clip.
    """
    names = resolve_names(names)
    configs = {n: (configs or {}).get(n) or get_config(n) for n in names}
    cache = FeatureCache(cache_dir)
    keys = section_keys(names, configs, clip, augment, copies, channel)
    paths = [str(p) for p in manifest["path"]]
    if not paths:
        return {n: np.stack([]) for n in names}  # numpy's own error for nothing to stack
    out: dict[str, np.ndarray] = {}

    def put(i: int, entry: Mapping[str, np.ndarray]) -> None:
        # copy the clip into the stacked arrays at once and drop its entry: memory holds
        # the stacks and one entry, never every clip's entry besides the stacks
        for n in names:
            first = entry[keys[(n, 0)]]
            shape = (copies + 1,) + first.shape if copies else first.shape
            if n not in out:
                out[n] = np.empty((len(paths),) + shape, np.float32)
            elif out[n].shape[1:] != shape:
                raise ValueError(f"{n} of {paths[i]} has shape {shape}, earlier clips "
                                 f"{out[n].shape[1:]}: mixed clip lengths or configs in one cache read")
            if copies:
                for k in range(copies + 1):
                    out[n][i, k] = entry[keys[(n, k)]]
            else:
                out[n][i] = first

    # one read per clip: what is cached is kept, only the rest is extracted and read again
    missing = []
    for i, p in enumerate(paths):
        entry = read_cached(cache, p, keys, copies)
        if entry is None:
            missing.append(i)
        else:
            put(i, entry)
    if missing:
        extract_corpus(manifest.iloc[missing], names, configs, clip, cache_dir, jobs, progress, augment, copies,
                       pack=False, channel=channel)
        cache = FeatureCache(cache_dir)  # the index now holds the workers' hashes
    else:
        log.info("%d clips x %d features: all cached", len(paths), len(names))
    for i in missing:
        p = paths[i]
        entry = read_cached(cache, p, keys, copies)
        if entry is None:  # lost in a race with another run: compute now
            feats, _, _ = clip_features(p, names, configs, clip, cache, augment, copies, channel=channel)
            entry = {keys[nk]: a for nk, a in feats.items()}
        put(i, entry)
    cache.flush()
    if cache.loose_reads:
        _pack(cache, paths, copies, damaged=cache.damaged_packed > 0)
    return out


def _pack(cache: FeatureCache, paths: Iterable[str], copies: int, damaged: bool = False) -> None:
    """Move the loose entries of these clips into a pack (``ser.cache.pack``); after a
    damaged packed entry, even a single one, so that its fixed copy supersedes it."""
    try:
        cache.pack([cache.audio_hash(p) for p in paths], _groups(copies), minimum=1 if damaged else None)
    except OSError as e:  # the features are cached either way; packing only speeds reads up
        log.warning("could not pack the cache entries under %s (%s)", cache.root, e)
    cache.flush()
