"""Speaker-disjoint splits and folds on every corpus layout; the leak check itself."""
from __future__ import annotations

import pandas as pd
import pytest

from ser.corpora import load_manifest
from ser.splits import (SplitError, check_speaker_disjoint, speaker_folds, speaker_split,
                        speaker_keys, split_speakers)
from test_corpora import make_cremad, make_emodb, make_nemo, make_ravdess


@pytest.fixture(params=["ravdess", "cremad", "nemo", "emodb"])
def manifest(request, tmp_path):
    makers = {
        "ravdess": lambda r: make_ravdess(r, actors=range(1, 11)),
        "cremad": lambda r: make_cremad(r, actors=range(1001, 1011)),
        "nemo": lambda r: make_nemo(r, speakers=[f"S{i}" for i in range(9)]),
        "emodb": make_emodb,
    }
    return load_manifest(request.param, makers[request.param](tmp_path / request.param))


def _speaker_sets(df):
    return {s: set(df.loc[df.split == s, "speaker"]) for s in ("train", "val", "test")}


def test_split_is_speaker_disjoint_and_complete(manifest):
    df = speaker_split(manifest, val=0.2, test=0.2, seed=1)
    sets = _speaker_sets(df)
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
    assert not (sets["val"] & sets["test"])
    assert all(sets.values()) and len(df) == len(manifest)
    assert set().union(*sets.values()) == set(manifest.speaker)
    # every split holds every emotion: each speaker here speaks all of them
    for s in ("train", "val", "test"):
        assert set(df.loc[df.split == s, "emotion"]) == set(manifest.emotion)


def test_split_is_deterministic_and_seed_dependent(manifest):
    a = speaker_split(manifest, seed=3)
    assert a.split.tolist() == speaker_split(manifest, seed=3).split.tolist()
    if manifest.speaker.nunique() >= 9:
        seeds = {tuple(speaker_split(manifest, seed=s).split) for s in range(5)}
        assert len(seeds) > 1


def test_folds_test_every_speaker_once(manifest):
    k = 3
    folds = speaker_folds(manifest, k=k, seed=0)
    assert len(folds) == k
    tested = [set(f.loc[f.split == "test", "speaker"]) for f in folds]
    assert set().union(*tested) == set(manifest.speaker)
    assert sum(len(t) for t in tested) == manifest.speaker.nunique()
    for f in folds:
        check_speaker_disjoint(f)
        assert set(f.split) == {"train", "val", "test"}


def test_stratification_balances_emotions():
    # speakers 0-5 speak only "angry", 6-11 only "sad": a good split mixes both everywhere
    rows = [{"path": f"{s}_{i}.wav", "corpus": "c", "speaker": str(s),
             "emotion": "angry" if s < 6 else "sad", "duration": 1.0}
            for s in range(12) for i in range(5)]
    df = speaker_split(pd.DataFrame(rows), val=0.17, test=0.17, seed=0)
    for s in ("train", "val", "test"):
        assert set(df.loc[df.split == s, "emotion"]) == {"angry", "sad"}


def test_same_speaker_id_in_two_corpora_is_two_people():
    rows = [{"path": f"{c}{s}{i}.wav", "corpus": c, "speaker": str(s), "emotion": "sad", "duration": 1.0}
            for c in ("a", "b") for s in range(3) for i in range(2)]
    df = speaker_split(pd.DataFrame(rows), val=0.2, test=0.2)
    assert df.assign(k=df.corpus + df.speaker).groupby("k").split.nunique().max() == 1


def test_too_few_speakers():
    rows = [{"path": f"{s}.wav", "corpus": "c", "speaker": str(s), "emotion": "sad", "duration": 1.0}
            for s in range(2)]
    with pytest.raises(SplitError, match="2 speaker"):
        speaker_split(pd.DataFrame(rows), val=0.2, test=0.2)
    with pytest.raises(SplitError, match="k >= 3"):
        speaker_folds(pd.DataFrame(rows), k=2)
    with pytest.raises(SplitError, match="each must be"):
        speaker_split(pd.DataFrame(rows), val=0.6, test=0.6)


def test_leak_check_catches_a_leak(manifest):
    df = speaker_split(manifest, seed=0)
    spk = df.loc[df.split == "test", "speaker"].iloc[0]
    idx = df.index[(df.speaker == spk)][0]
    df.loc[idx, "split"] = "train"
    with pytest.raises(SplitError, match="speaker leak"):
        check_speaker_disjoint(df)
    with pytest.raises(SplitError, match="no 'split' column"):
        check_speaker_disjoint(manifest)


def test_split_speakers_lists(manifest):
    lists = split_speakers(speaker_split(manifest, seed=0))
    assert sorted(sum(lists.values(), [])) == sorted(speaker_keys(manifest).unique())  # corpus-qualified


@pytest.mark.shared_data
def test_real_ravdess_split(shared_data):
    m = load_manifest("ravdess", shared_data / "ravdess")
    df = speaker_split(m, val=0.15, test=0.15, seed=0)
    counts = df.groupby("split").speaker.nunique()
    assert counts.to_dict() == {"test": 4, "train": 16, "val": 4}
    # gender is balanced when the corpus says it: 2 male + 2 female in val and test
    for s in ("val", "test"):
        assert df[df.split == s].drop_duplicates("speaker").gender.value_counts().to_dict() == {
            "male": 2, "female": 2}


@pytest.mark.parametrize("val,test", [(0, 0.2), (0.2, 0), (0.0, 0.0), (-0.1, 0.2)])
def test_a_split_needs_validation_and_test_speakers(manifest, val, test):
    # val=0 or test=0 used to be accepted, then training crashed on the empty part
    with pytest.raises(SplitError, match=r"each must be in \(0, 1\)"):
        speaker_split(manifest, val=val, test=test)


def test_split_speakers_are_corpus_qualified():
    rows = [{"path": f"{c}{s}{i}.wav", "corpus": c, "speaker": str(s), "emotion": "sad", "duration": 1.0}
            for c in ("a", "b") for s in range(4) for i in range(2)]
    folds = speaker_folds(pd.DataFrame(rows), k=4, seed=0)
    for df in folds:
        sp = split_speakers(df)
        assert all("/" in s for part in sp.values() for s in part)
        assert sum(len(v) for v in sp.values()) == 8  # speaker "0" of a and of b are two people
