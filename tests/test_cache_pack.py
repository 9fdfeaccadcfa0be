"""Pack files of the feature cache: same sections as loose entries, damage caught, no stale copies."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from ser.cache import PACK_MIN, FeatureCache, PackSet, encode_entry
from ser.cache.pack import RECORD, TRAILER


def _sections(seed: int, n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"{k:032x}": rng.standard_normal((2 + k, 9)).astype(np.float32) for k in range(n)}


def _hash(i: int) -> str:
    return f"{i:02x}" * 16


def _filled(tmp_path, clips: int = 4, group: str = "") -> tuple[FeatureCache, dict[str, dict]]:
    cache = FeatureCache(tmp_path / "fc")
    stored = {_hash(i): _sections(i) for i in range(clips)}
    for h, sections in stored.items():
        cache.write(h, sections, group=group)
    return cache, stored


def _packs(cache: FeatureCache) -> list[str]:
    return sorted((cache.root / "packs").glob("*.pack"))


def _same(got: dict, want: dict) -> bool:
    return set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_packed_reads_equal_the_loose_ones_and_are_read_only(tmp_path):
    cache, stored = _filled(tmp_path)
    assert cache.pack(stored, minimum=1) is not None
    assert not list((cache.root / "entries").rglob("*.ser")) and len(_packs(cache)) == 1  # moved, not copied
    fresh = FeatureCache(tmp_path / "fc")
    for h, want in stored.items():
        got = fresh.read(h, set(want))
        assert _same(got, want) and fresh.loose_reads == 0
        arr = next(iter(got.values()))
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr.flags.writeable = True
        assert _same(fresh.read(h), want)  # keys=None (the compute path) finds it too
        assert fresh.read(h, ["0" * 32 + "x"]) == {}  # a key it lacks is a miss
    assert fresh.read(_hash(99), set(stored[_hash(0)])) == {}


def test_fewer_loose_entries_than_the_minimum_stay_loose(tmp_path):
    cache, stored = _filled(tmp_path, clips=3)
    assert PACK_MIN > 3 and cache.pack(stored) is None
    assert len(list((cache.root / "entries").rglob("*.ser"))) == 3 and not _packs(cache)


@pytest.mark.parametrize("where", ["header", "table", "data", "last"])
def test_a_flipped_bit_in_a_packed_entry_is_caught(tmp_path, caplog, where):
    cache, stored = _filled(tmp_path, clips=2)
    pack = cache.pack(stored, minimum=1)
    size = len(encode_entry(stored[_hash(1)]))
    first = len(encode_entry(stored[_hash(0)]))  # clip 1's entry follows clip 0's (8-aligned)
    pos = first + -first % 8 + {"header": 9, "table": 20, "data": size // 2, "last": size - 1}[where]
    raw = bytearray(pack.read_bytes())
    raw[pos] ^= 0x08
    pack.write_bytes(bytes(raw))
    fresh = FeatureCache(tmp_path / "fc")
    with caplog.at_level(logging.WARNING, logger="ser.cache"):
        assert fresh.read(_hash(1), set(stored[_hash(1)])) == {}
    assert "damaged entry" in caplog.text and fresh.damaged_packed == 1
    assert _same(fresh.read(_hash(0), set(stored[_hash(0)])), stored[_hash(0)])  # the rest of the pack is fine
    # the recomputed copy, written loose, is served, and once packed supersedes the damaged one
    fresh.write(_hash(1), stored[_hash(1)])
    assert _same(fresh.read(_hash(1), set(stored[_hash(1)])), stored[_hash(1)])
    fresh.pack([_hash(1)], minimum=1)
    again = FeatureCache(tmp_path / "fc")
    assert _same(again.read(_hash(1), set(stored[_hash(1)])), stored[_hash(1)]) and again.damaged_packed == 0


@pytest.mark.parametrize("damage", ["index bit", "trailer bit", "truncated", "empty"])
def test_a_damaged_pack_index_or_a_torn_pack_is_ignored_and_deleted(tmp_path, caplog, damage):
    cache, stored = _filled(tmp_path, clips=3)
    pack = cache.pack(stored, minimum=1)
    raw = bytearray(pack.read_bytes())
    index_at = len(raw) - TRAILER.size - 3 * RECORD.size
    if damage == "index bit":
        raw[index_at + 3] ^= 0x01  # one digit of an audio hash: would point a clip at another's entry
    elif damage == "trailer bit":
        raw[-9] ^= 0x80
    elif damage == "truncated":
        raw = raw[:len(raw) // 2]
    else:
        raw = bytearray()
    pack.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="ser.cache.pack"):
        fresh = FeatureCache(tmp_path / "fc")
        assert all(fresh.read(h, set(s)) == {} for h, s in stored.items())
    assert "damaged cache pack" in caplog.text and not pack.exists()


def test_only_loose_entries_are_packed_and_dead_packs_go(tmp_path):
    cache, stored = _filled(tmp_path, clips=4)
    first = cache.pack(stored, minimum=1)
    assert cache.pack(stored, minimum=1) is None  # nothing loose: no second copy
    # a clip rewritten with one more section: the new copy is loose, then packed anew
    more = {**stored[_hash(0)], "f" * 32: np.zeros((1, 4), np.float32)}
    cache.write(_hash(0), more)
    assert _same(FeatureCache(tmp_path / "fc").read(_hash(0), set(more)), more)  # pack lacks it: the file
    second = cache.pack(stored, minimum=1)
    assert _packs(cache) == sorted([first, second])  # the first still holds clips 1-3
    fresh = FeatureCache(tmp_path / "fc")
    assert _same(fresh.read(_hash(0), set(more)), more)
    # every clip of the first pack rewritten and packed: the first pack has nothing live left
    for i in (1, 2, 3):
        cache.write(_hash(i), stored[_hash(i)])
    third = cache.pack(stored, minimum=1)
    assert _packs(cache) == sorted([second, third])
    fresh = FeatureCache(tmp_path / "fc")
    assert all(_same(fresh.read(h, set(s)), s) for h, s in stored.items() if h != _hash(0))


def test_a_pack_made_by_another_run_after_opening_is_found(tmp_path):
    cache, stored = _filled(tmp_path, clips=2)
    reader = FeatureCache(tmp_path / "fc")
    assert reader.read(_hash(0), set(stored[_hash(0)]))  # loaded (no packs yet), read loose
    FeatureCache(tmp_path / "fc").pack(stored, minimum=1)  # another run packs them away
    assert _same(reader.read(_hash(1), set(stored[_hash(1)])), stored[_hash(1)])


def test_groups_are_packed_apart(tmp_path):
    cache, stored = _filled(tmp_path, clips=2)
    aug = {h: _sections(10 + i) for i, h in enumerate(stored)}
    for h, s in aug.items():
        cache.write(h, s, group="aug")
    cache.pack(stored, groups=("", "aug"), minimum=1)
    fresh = FeatureCache(tmp_path / "fc")
    for h in stored:
        assert _same(fresh.read(h, set(stored[h])), stored[h])
        assert _same(fresh.read(h, set(aug[h]), group="aug"), aug[h])
    assert sorted(PackSet(cache.root / "packs").index) == sorted((h, g) for h in stored for g in ("", "aug"))


def test_packing_leaves_no_temp_files_and_keeps_rewritten_loose_files(tmp_path, monkeypatch):
    cache, stored = _filled(tmp_path, clips=2)
    real_stat = os.stat
    calls = {"n": 0}

    def stat_then_rewrite(path, *a, **kw):  # another process rewrites clip 0 while it is packed
        st = real_stat(path, *a, **kw)
        if str(path).endswith(f"{_hash(0)}.ser"):
            calls["n"] += 1
            if calls["n"] == 2:  # the check before removing the loose copy
                cache.write(_hash(0), {**stored[_hash(0)], "e" * 32: np.ones((1, 2), np.float32)})
                st = real_stat(path, *a, **kw)
        return st

    monkeypatch.setattr("ser.cache.pack.os.stat", stat_then_rewrite)
    cache.pack(stored, minimum=1)
    monkeypatch.undo()
    assert (cache.entry_path(_hash(0))).exists() and not cache.entry_path(_hash(1)).exists()
    assert not list(cache.root.rglob("*.tmp"))
    got = FeatureCache(tmp_path / "fc").read(_hash(0))
    assert "e" * 32 in got  # the newer loose copy was kept and wins for keys=None


def test_invalidate_packs_maps_packs_made_since_and_pack_invalidates_its_own(tmp_path):
    cache, stored = _filled(tmp_path, clips=2)
    cache.pack(stored, minimum=1)
    h, old = _hash(0), stored[_hash(0)]
    more = {**old, "f" * 32: np.full((1, 4), 7, np.float32)}
    reader = FeatureCache(tmp_path / "fc")
    before = reader.read(h, set(old))  # maps the first pack
    assert _same(before, old)
    # the writer maps the first pack too, then rewrites clip 0 with one more section and packs it
    assert _same(cache.read(h, set(old)), old)
    cache.write(h, more)
    second = cache.pack([h], minimum=1)
    assert second is not None and not cache.entry_path(h).exists()
    assert _same(cache.read(h, set(more)), more)  # pack() dropped the writer's own mapping
    # the reader's mapping predates the second pack: it only knows the older copy of clip 0
    assert set(reader.read(h, set(more))) == set(old)
    reader.invalidate_packs()
    assert _same(reader.read(h, set(more)), more)
    assert _same(reader.read(_hash(1), set(stored[_hash(1)])), stored[_hash(1)])  # still in the first pack
    assert _same(before, old)  # arrays handed out earlier stay valid


def test_a_pack_with_no_good_entry_is_not_written(tmp_path):
    cache = FeatureCache(tmp_path / "fc")
    for i in range(3):
        path = cache.entry_path(_hash(i))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an entry" * 8)  # damaged: never packed
    assert cache.pack([_hash(i) for i in range(3)], minimum=1) is None
    assert not _packs(cache) and not list(cache.root.rglob("*.tmp"))
    assert len(list((cache.root / "entries").rglob("*.ser"))) == 3  # left for read() to deal with
