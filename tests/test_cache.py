"""The feature cache: hit == fresh, config/version change => miss, damage => recompute, processes."""
from __future__ import annotations

import numpy as np
import pytest

from ser import cache as cache_mod
from ser.cache import ClipConfig, FeatureCache, decode_entry, encode_entry
from ser.corpora import generate_synthetic, load_manifest
from ser.features import available_features, get_config
from ser.featurize import clip_features, extract_corpus, load_features, prepare, resolve_names
from ser.audio import load_audio
from ser.features import extract

ALL = available_features()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = generate_synthetic(tmp_path_factory.mktemp("syn") / "c", speakers=2, per_emotion=1, progress=False)
    return load_manifest("synthetic", root)


def _defaults(names):
    return {n: get_config(n) for n in names}


def test_entry_round_trip_and_damage_detection():
    a = {"k1": np.random.rand(3, 5).astype(np.float32), "k2": np.ones((1, 7), np.float32)}
    data = encode_entry(a)
    back = decode_entry(data)
    assert set(back) == set(a) and all(np.array_equal(back[k], a[k]) for k in a)
    with pytest.raises(ValueError, match="truncated"):
        decode_entry(data[:-4])
    flipped = bytearray(data)
    flipped[-9] ^= 0x10  # one bit inside k2's data
    with pytest.raises(ValueError, match="checksum"):
        decode_entry(bytes(flipped), keys=["k1"])  # caught even when only k1 is asked for
    with pytest.raises(ValueError, match="checksum"):
        decode_entry(bytes(flipped))
    with pytest.raises(ValueError, match="magic"):
        decode_entry(b"garbage" * 10)


@pytest.mark.parametrize("name", ALL)
def test_cache_hit_equals_fresh(tmp_path, corpus, name):
    path = corpus.path[0]
    clip = ClipConfig()
    cache = FeatureCache(tmp_path / "fc")
    cfg = _defaults([name])
    first, computed, reused = clip_features(path, [name], cfg, clip, cache)
    assert (computed, reused) == (1, 0)
    again, computed, reused = clip_features(path, [name], cfg, clip, FeatureCache(tmp_path / "fc"))
    assert (computed, reused) == (0, 1)
    fresh = extract(prepare(load_audio(path), clip), 16000, [name])[name]
    assert np.array_equal(again[(name, 0)], fresh) and np.array_equal(first[(name, 0)], fresh)
    assert again[(name, 0)].dtype == np.float32


def test_config_change_is_a_miss(tmp_path, corpus):
    path, clip, cache = corpus.path[0], ClipConfig(), FeatureCache(tmp_path / "fc")
    clip_features(path, ["mel"], _defaults(["mel"]), clip, cache)
    changed = {"mel": get_config("mel", n_mels=32)}
    out, computed, _ = clip_features(path, ["mel"], changed, clip, cache)
    assert computed == 1 and out[("mel", 0)].shape[0] == 32
    _, computed, _ = clip_features(path, ["mel"], _defaults(["mel"]), ClipConfig(seconds=2.0), cache)
    assert computed == 1  # a different clip length is a different entry too
    # both old and new sections now live side by side
    _, computed, reused = clip_features(path, ["mel"], _defaults(["mel"]), clip, cache)
    assert (computed, reused) == (0, 1)


def test_version_change_is_a_miss(tmp_path, corpus, monkeypatch):
    path, clip, cache = corpus.path[0], ClipConfig(), FeatureCache(tmp_path / "fc")
    clip_features(path, ["rms"], _defaults(["rms"]), clip, cache)
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", cache_mod.CACHE_VERSION + 1)
    _, computed, _ = clip_features(path, ["rms"], _defaults(["rms"]), clip, cache)
    assert computed == 1


def test_corrupted_entry_is_recomputed(tmp_path, corpus):
    path, clip, cache = corpus.path[0], ClipConfig(), FeatureCache(tmp_path / "fc")
    good, _, _ = clip_features(path, ["mfcc"], _defaults(["mfcc"]), clip, cache)
    entry = cache.entry_path(cache.audio_hash(path))
    entry.write_bytes(entry.read_bytes()[:100])  # a torn write from some other tool
    out, computed, _ = clip_features(path, ["mfcc"], _defaults(["mfcc"]), clip, cache)
    assert computed == 1 and np.array_equal(out[("mfcc", 0)], good[("mfcc", 0)])
    assert decode_entry(entry.read_bytes())  # rewritten whole


def test_changed_audio_file_is_a_miss(tmp_path, corpus):
    import shutil

    src = tmp_path / "a.wav"
    shutil.copy(corpus.path[0], src)
    clip, cache = ClipConfig(), FeatureCache(tmp_path / "fc")
    a, _, _ = clip_features(src, ["mel"], _defaults(["mel"]), clip, cache)
    shutil.copy(corpus.path[1], src)  # same path, new content
    b, computed, _ = clip_features(src, ["mel"], _defaults(["mel"]), clip, cache)
    assert computed == 1 and not np.array_equal(a[("mel", 0)], b[("mel", 0)])


@pytest.mark.slow
def test_corpus_in_two_processes_then_warm(tmp_path, corpus):
    r1 = extract_corpus(corpus, "all", cache_dir=tmp_path / "fc", jobs=2, progress=False)
    assert (r1.computed, r1.reused) == (len(corpus) * len(ALL), 0)
    r2 = extract_corpus(corpus, "mel,mfcc", cache_dir=tmp_path / "fc", jobs=1, progress=False)
    assert (r2.computed, r2.reused) == (0, 2 * len(corpus))
    X = load_features(corpus, ["mel", "zcr"], cache_dir=tmp_path / "fc", progress=False)
    assert X["mel"].shape[:2] == (len(corpus), 64) and X["zcr"].shape[1] == 1
    fresh = extract(prepare(load_audio(corpus.path[3]), ClipConfig()), 16000, ["mel"])["mel"]
    # computed in a single-threaded worker: equal up to BLAS summation order
    np.testing.assert_allclose(X["mel"][3], fresh, rtol=1e-5, atol=1e-3)
    assert not list((tmp_path / "fc").rglob("*.tmp"))  # no temp files left behind


def test_resolve_names():
    assert resolve_names("all") == ALL
    assert resolve_names("mfcc, mel") == ["mfcc", "mel"]
    with pytest.raises(ValueError, match="known: mel"):
        resolve_names("mel,wavelet")


def test_augmented_copies_are_cached_and_keyed_by_chain(tmp_path, corpus):
    from ser.augment import AugmentConfig, waveform_augmentation

    path, clip, cache = corpus.path[0], ClipConfig(), FeatureCache(tmp_path / "fc")
    chain = waveform_augmentation(AugmentConfig(seed=0, p=1.0)).to_dict()
    out, computed, reused = clip_features(path, ["mel"], _defaults(["mel"]), clip, cache, chain, copies=2)
    assert (computed, reused) == (3, 0)
    assert not np.array_equal(out[("mel", 1)], out[("mel", 0)])  # copies differ from the clean clip
    assert not np.array_equal(out[("mel", 1)], out[("mel", 2)])  # and from each other
    again, computed, reused = clip_features(path, ["mel"], _defaults(["mel"]), clip, cache, chain, copies=2)
    assert (computed, reused) == (0, 3) and np.array_equal(again[("mel", 2)], out[("mel", 2)])
    # a fresh cache reproduces the same copies: deterministic for (chain, clip, copy)
    fresh, _, _ = clip_features(path, ["mel"], _defaults(["mel"]), clip, FeatureCache(tmp_path / "b"), chain, 2)
    assert np.array_equal(fresh[("mel", 2)], out[("mel", 2)])
    other = waveform_augmentation(AugmentConfig(seed=1, p=1.0)).to_dict()
    _, computed, reused = clip_features(path, ["mel"], _defaults(["mel"]), clip, cache, other, copies=2)
    assert (computed, reused) == (2, 1)  # the clean clip is shared, the copies are not
    with pytest.raises(ValueError, match="waveform augmentation chain"):
        clip_features(path, ["mel"], _defaults(["mel"]), clip, cache, None, copies=1)
