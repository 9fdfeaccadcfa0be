"""The synthetic corpus: determinism, layout, audio sanity, manifest, learnability."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.corpora.synthetic import (
    EMOTION_CODES,
    SynthConfig,
    generate_synthetic,
    iter_clips,
    parse_name,
    prepare_synthetic,
    speaker_params,
    synthesize_clip,
)

SPEAKERS, PER_EMOTION = 2, 2  # 32 clips: fast, yet both genders and both statements


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synth"), SPEAKERS, PER_EMOTION, seed=0, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


def test_same_seed_same_bytes_different_seed_different_bytes(corpus, tmp_path):
    again = generate_synthetic(tmp_path / "again", SPEAKERS, PER_EMOTION, seed=0, progress=False)
    other = generate_synthetic(tmp_path / "other", SPEAKERS, PER_EMOTION, seed=1, progress=False)
    a, b, c = _files(corpus), _files(again), _files(other)
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a)


def test_clips_do_not_depend_on_corpus_size(corpus, tmp_path):
    small = generate_synthetic(tmp_path / "one", 1, 1, seed=0, progress=False)
    files = _files(small)
    assert len(files) == 8
    full = _files(corpus)
    assert all(full[k] == v for k, v in files.items())


def test_idempotent_and_atomic(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav")}
    generate_synthetic(corpus, SPEAKERS, PER_EMOTION, seed=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav")} == before
    assert not [p for p in corpus.rglob("*") if p.name.startswith(".")]  # no temp files left
    readme = (corpus / "README.txt").read_text()
    assert "generated" in readme and "seed=0" in readme


def test_layout_and_naming(corpus):
    paths = sorted(corpus.rglob("*.wav"))
    assert len(paths) == SPEAKERS * 8 * PER_EMOTION
    assert {p.parent.name for p in paths} == {f"Actor_{a:02d}" for a in range(1, SPEAKERS + 1)}
    rows = [parse_name(p) for p in paths]
    assert all(r is not None for r in rows)
    for p, r in zip(paths, rows):
        assert p.parent.name == f"Actor_{r['speaker']}"
        assert r["gender"] == ("male" if int(r["speaker"]) % 2 else "female")
    assert {r["intensity"] for r in rows if r["emotion"] == "neutral"} == {"01"}
    assert {r["intensity"] for r in rows if r["emotion"] == "angry"} == {"01", "02"}
    for emo in EMOTION_CODES.values():  # statement balanced within every emotion
        st = [r["statement"] for r in rows if r["emotion"] == emo]
        assert st.count("01") == st.count("02")


def test_audio_sanity(corpus):
    for p in sorted(corpus.rglob("*.wav")):
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        y, _ = sf.read(str(p), dtype="float32")
        assert 2.0 <= len(y) / 16000 <= 4.0
        assert np.isfinite(y).all()
        assert 0.01 < np.abs(y).max() < 1.0
        frames = y[: len(y) // 1600 * 1600].reshape(-1, 1600).astype(np.float64)
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
        assert level.max() - level[0] > 20, p.name  # leading silence
        assert level.max() - level[-1] > 20, p.name  # trailing silence


def test_synthesize_clip_directly():
    spk = speaker_params(0, 2)
    assert spk.gender == "female" and 180 <= spk.f0_hz <= 240 and 0.85 <= spk.vtl <= 1.15
    y = synthesize_clip(spk, "angry", np.random.default_rng(0), 16000, statement=2, intensity=2)
    assert y.dtype == np.float32 and y.ndim == 1 and 2.0 <= len(y) / 16000 <= 4.0
    with pytest.raises(ValueError, match="unknown emotion"):
        synthesize_clip(spk, "bored", np.random.default_rng(0), 16000)


def test_prepare_synthetic(corpus):
    m = prepare_synthetic(corpus)
    assert len(m) == SPEAKERS * 8 * PER_EMOTION
    assert set(m["corpus"]) == {"synthetic"}
    assert set(m["emotion"]) == set(EMOTION_CODES.values())
    assert sorted(m["speaker"].unique()) == ["01", "02"]
    assert {"intensity", "statement", "gender"} <= set(m.columns)
    assert (m["duration"].between(2.0, 4.0)).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(speakers=0), "speakers"),
        (dict(speakers=100), "speakers"),
        (dict(per_emotion=0), "per_emotion"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_synthetic(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_prepare_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        prepare_synthetic(tmp_path / "nowhere")


def test_config_defaults():
    cfg = SynthConfig()
    assert (cfg.speakers, cfg.per_emotion, cfg.seed, cfg.sample_rate) == (8, 4, 0, 16000)


@pytest.mark.slow
def test_emotion_learnable_from_mfcc_speaker_disjoint():
    """Pooled-MFCC logistic regression, speaker-disjoint: well above chance, below perfect."""
    librosa = pytest.importorskip("librosa")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, groups = [], [], []
    for spec, audio in iter_clips(speakers=8, per_emotion=6, seed=0):
        mfcc = librosa.feature.mfcc(y=audio, sr=16000, n_mfcc=20)
        X.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
        y.append(spec["code"])
        groups.append(spec["actor"])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    acc = cross_val_score(clf, np.array(X), np.array(y), groups=groups, cv=GroupKFold(n_splits=4)).mean()
    assert 0.30 < acc < 0.95, acc
