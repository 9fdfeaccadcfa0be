"""The feature cache: hit == fresh, config/version change => miss, damage => recompute, processes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser.audio import ClipConfig, load_audio, prepare_clip
from ser.cache import (PACK_MIN, FeatureCache, PackSet, clip_features, decode_entry, encode_entry,
                       extract_corpus, load_features, read_cached, section_keys)
from ser.cache import entry as entry_format
from ser.cache.corpus import CHUNK
from ser.corpora import generate_synthetic, load_manifest
from ser.features import available_features, extract, get_config, resolve_names
from ser.fileio import atomic_write_bytes

ALL = available_features()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = generate_synthetic(tmp_path_factory.mktemp("syn") / "c", speakers=2, per_emotion=1, progress=False)
    return load_manifest("synthetic", root)


def _flip_stored_bit(cache, audio_hash, where, group=""):
    """Flip one bit of a clip's stored entry, loose or packed, in place; ``where`` is a
    byte position within the entry."""
    loose = cache.entry_path(audio_hash, group)
    if loose.exists():
        path, start, size = loose, 0, loose.stat().st_size
    else:
        packs = PackSet(cache.root / "packs")
        view = packs.index[(audio_hash, group)]
        path = next(p for p in packs.members if (audio_hash, group) in packs.members[p])
        start, size = Path(path).read_bytes().find(bytes(view)), len(view)
        del view, packs
    with open(path, "r+b") as f:
        f.seek(start + where % size)
        byte = f.read(1)[0]
        f.seek(start + where % size)
        f.write(bytes([byte ^ 0x40]))


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
    fresh = extract(prepare_clip(load_audio(path), clip), 16000, [name])[name]
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
    monkeypatch.setattr(entry_format, "CACHE_VERSION", entry_format.CACHE_VERSION + 1)
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
def test_corpus_in_two_processes_then_warm(tmp_path):
    # more clips than one worker task (CHUNK), so two processes really share the corpus
    root = generate_synthetic(tmp_path / "c", speakers=2, per_emotion=2, progress=False)
    corpus = load_manifest("synthetic", root)
    assert len(corpus) > CHUNK
    r1 = extract_corpus(corpus, "mel,mfcc,zcr", cache_dir=tmp_path / "fc", jobs=2, progress=False)
    assert (r1.computed, r1.reused) == (3 * len(corpus), 0)
    r2 = extract_corpus(corpus, "mel,mfcc", cache_dir=tmp_path / "fc", jobs=1, progress=False)
    assert (r2.computed, r2.reused) == (0, 2 * len(corpus))
    X = load_features(corpus, ["mel", "zcr"], cache_dir=tmp_path / "fc", progress=False)
    assert X["mel"].shape[:2] == (len(corpus), 64) and X["zcr"].shape[1] == 1
    fresh = extract(prepare_clip(load_audio(corpus.path[3]), ClipConfig()), 16000, ["mel"])["mel"]
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


# --- the warm read: one read, one checksum pass, read-only views ----------------------
def _entry_bytes(seed=0):
    rng = np.random.default_rng(seed)
    return {"a" * 32: rng.random((64, 188), dtype=np.float32), "b" * 32: rng.random((1, 188), dtype=np.float32),
            "c" * 32: rng.random((3, 5), dtype=np.float32)}  # odd size: padded to 8 bytes


def test_entry_layout_padding_and_empty():
    sections = _entry_bytes()
    data = encode_entry(sections)
    assert len(data) % 8 == 0 and data[:4] == entry_format.MAGIC
    back = decode_entry(data)
    assert list(back) == list(sections)
    assert all(np.array_equal(back[k], v) and back[k].dtype == np.float32 for k, v in sections.items())
    assert decode_entry(encode_entry({})) == {}
    with pytest.raises(ValueError, match="trailing"):
        decode_entry(data + bytes(8))
    with pytest.raises(ValueError, match="2-D"):
        encode_entry({"x": np.zeros(3, np.float32)})


@pytest.mark.parametrize("where", ["table key", "table shape", "data start", "data end", "padding"])
def test_every_bit_after_the_header_is_checked(where):
    sections = _entry_bytes()
    data = bytearray(encode_entry(sections))
    table = entry_format.HEAD.size
    data_start = table + 3 * entry_format.SECTION.size
    pos = {"table key": table + 3, "table shape": table + 32, "data start": data_start,
           "data end": len(data) - 5, "padding": len(data) - 1}[where]
    for bit in (0, 7):
        bad = bytearray(data)
        bad[pos] ^= 1 << bit
        with pytest.raises(ValueError):
            decode_entry(bytes(bad))
    # rows and cols swapped: same size, so only the checksum over the table catches it
    bad = bytearray(data)
    entry_format.SECTION.pack_into(bad, table + 2 * entry_format.SECTION.size, b"c" * 32, 5, 3)
    with pytest.raises(ValueError, match="checksum"):
        decode_entry(bytes(bad))


def test_zeroed_page_is_caught():
    data = bytearray(encode_entry(_entry_bytes()))
    data[4096:8192] = bytes(4096)  # a lost page, as a crashed disk or file system leaves
    with pytest.raises(ValueError, match="checksum"):
        decode_entry(bytes(data))


def test_read_returns_read_only_views_that_cannot_touch_the_cache(tmp_path):
    cache = FeatureCache(tmp_path / "fc")
    sections = _entry_bytes()
    cache.write("ab" * 16, sections)
    got = cache.read("ab" * 16)
    arr = got["a" * 32]
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0, 0] = 1.0
    with pytest.raises(ValueError):
        arr.flags.writeable = True  # numpy refuses: the memory is not the caller's
    mine = arr.copy()  # the documented way to change one
    mine[:] = 0
    assert np.array_equal(cache.read("ab" * 16)["a" * 32], sections["a" * 32])
    # a second read is a separate copy of the file, verified again
    assert not np.shares_memory(cache.read("ab" * 16)["a" * 32], arr)
    assert set(cache.read("ab" * 16, keys=["b" * 32])) == {"b" * 32}


def test_damage_on_disk_after_a_good_read_is_caught_on_the_next(tmp_path, caplog):
    cache = FeatureCache(tmp_path / "fc")
    cache.write("cd" * 16, _entry_bytes())
    path = cache.entry_path("cd" * 16)
    before = cache.read("cd" * 16)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))  # in place, as some other tool might
    assert np.array_equal(before["a" * 32], _entry_bytes()["a" * 32])  # earlier arrays unaffected
    with caplog.at_level("WARNING", logger="ser.cache"):
        assert cache.read("cd" * 16) == {}
    assert "checksum mismatch" in caplog.text and not path.exists()  # deleted: recomputed next time


def test_old_format_entry_is_a_quiet_miss_then_replaced(tmp_path, corpus, caplog):
    path, clip, cache = corpus.path[0], ClipConfig(), FeatureCache(tmp_path / "fc")
    h = cache.audio_hash(path)
    entry = cache.entry_path(h)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"SERF" + bytes(60))  # the magic of format 2
    with caplog.at_level("WARNING", logger="ser.cache"):
        out, computed, _ = clip_features(path, ["zcr"], _defaults(["zcr"]), clip, cache)
    assert computed == 1 and "damaged" not in caplog.text
    assert entry.read_bytes()[:4] == entry_format.MAGIC  # rewritten in the current format


def test_warm_cached_read_is_the_loader_path(tmp_path, corpus):
    names = ["mel", "zcr", "tonnetz"]
    cfg, clip = _defaults(names), ClipConfig()
    X = load_features(corpus, names, cfg, clip, cache_dir=tmp_path / "fc", progress=False)
    keys = section_keys(names, cfg, clip)
    cache = FeatureCache(tmp_path / "fc")
    for i, p in enumerate(corpus.path):
        entry = read_cached(cache, str(p), keys, 0)
        assert entry is not None and set(entry) == set(keys.values())
        for n in names:
            assert np.array_equal(entry[keys[(n, 0)]], X[n][i]) and not entry[keys[(n, 0)]].flags.writeable
    # load_features hands out its own arrays: writable, and writing them leaves the cache alone
    again = load_features(corpus, names, cfg, clip, cache_dir=tmp_path / "fc", progress=False)
    assert all(a.flags.writeable and a.dtype == np.float32 for a in again.values())
    again["mel"][:] = 0
    third = load_features(corpus, names, cfg, clip, cache_dir=tmp_path / "fc", progress=False)
    assert np.array_equal(third["mel"], X["mel"])
    # the corpus was packed: no loose entries are left, reads go through the pack
    assert len(corpus) >= PACK_MIN and not list((tmp_path / "fc" / "entries").rglob("*.ser"))
    assert len(list((tmp_path / "fc" / "packs").glob("*.pack"))) == 1
    # a damaged entry on the loader's path is recomputed, not served
    _flip_stored_bit(cache, cache.audio_hash(corpus.path[1]), -100)
    assert read_cached(FeatureCache(tmp_path / "fc"), str(corpus.path[1]), keys, 0) is None
    fixed = load_features(corpus, names, cfg, clip, cache_dir=tmp_path / "fc", progress=False)
    assert all(np.array_equal(fixed[n], X[n]) for n in names)
    # ... and its fixed copy went into a new pack, which supersedes the damaged one
    assert len(list((tmp_path / "fc" / "packs").glob("*.pack"))) == 2
    assert not list((tmp_path / "fc" / "entries").rglob("*.ser"))
    fresh = FeatureCache(tmp_path / "fc")
    assert read_cached(fresh, str(corpus.path[1]), keys, 0) is not None and fresh.damaged_packed == 0


def test_load_features_with_copies_stacks_clean_and_augmented(tmp_path, corpus):
    from ser.augment import AugmentConfig, waveform_augmentation

    small = corpus.iloc[:3]
    chain = waveform_augmentation(AugmentConfig(seed=0, p=1.0)).to_dict()
    X = load_features(small, ["zcr"], cache_dir=tmp_path / "fc", progress=False, augment=chain, copies=2)
    assert X["zcr"].shape == (3, 3, 1, 188)
    for i, p in enumerate(small.path):
        feats, _, _ = clip_features(p, ["zcr"], _defaults(["zcr"]), ClipConfig(), FeatureCache(tmp_path / "fc"),
                                    chain, copies=2)
        assert all(np.array_equal(X["zcr"][i, k], feats[("zcr", k)]) for k in range(3))
    again = load_features(small, ["zcr"], cache_dir=tmp_path / "fc", progress=False, augment=chain, copies=2)
    assert np.array_equal(again["zcr"], X["zcr"])


def test_readers_never_see_a_partial_entry_while_processes_rewrite_it(tmp_path):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    cache = FeatureCache(tmp_path / "fc")
    a, b = _entry_bytes(1), {**_entry_bytes(2), "d" * 32: np.ones((40, 188), np.float32)}
    blobs = [encode_entry(a), encode_entry(b)]
    path = cache.entry_path("ef" * 16)
    cache.write("ef" * 16, a)
    versions = []  # the version (3: a, 4: b) of every read made while rewrites were under way
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        for _ in range(10):  # rounds of rewrites, until the reads have overlapped them
            futures = [pool.submit(atomic_write_bytes, path, blobs[i % 2]) for i in range(200)]
            while not all(f.done() for f in futures):
                got = cache.read("ef" * 16)
                assert got, "a reader saw a damaged or missing entry"
                src = b if len(got) == 4 else a
                assert set(got) == set(src) and all(np.array_equal(got[k], src[k]) for k in src), \
                    "a reader saw a mix of two versions"
                versions.append(len(got))
            for f in futures:
                f.result()
            changes = sum(x != y for x, y in zip(versions, versions[1:]))
            if changes >= 2:
                break
    # the reads really raced the renames: each version replaced the other under the reader
    assert set(versions) == {3, 4} and changes >= 2, f"reads never overlapped the rewrites: {changes} changes"
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("hint", [0, 1, 999, 1000, 1001, 1007, 1008, 5000])
def test_read_file_with_any_size_hint_reads_all(tmp_path, hint):
    path = tmp_path / "f"
    payload = bytes(range(256)) * 3 + bytes(232)  # 1000 bytes
    path.write_bytes(payload)
    assert entry_format.read_file(str(path), hint) == payload
    with pytest.raises(FileNotFoundError):
        entry_format.read_file(str(tmp_path / "missing"), hint)


def test_entries_of_other_sizes_after_a_size_hint(tmp_path):
    cache = FeatureCache(tmp_path / "fc")
    small, big = {"a" * 32: np.ones((1, 4), np.float32)}, _entry_bytes()
    cache.write("01" * 16, small)
    cache.write("02" * 16, big)
    for h, want in [("01" * 16, small), ("02" * 16, big), ("01" * 16, small)]:
        got = cache.read(h)
        assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_decode_accepts_any_buffer_and_hands_out_read_only_views():
    sections = _entry_bytes()
    data = encode_entry(sections)
    for buf in (data, bytearray(data), memoryview(data)):
        got = decode_entry(buf)
        assert all(np.array_equal(got[k], sections[k]) and not got[k].flags.writeable for k in sections)
    # a table differing from the previous entry's (memoised) table is parsed afresh
    other = {"z" * 32: np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert np.array_equal(decode_entry(encode_entry(other))["z" * 32], other["z" * 32])
    assert set(decode_entry(data)) == set(sections)
