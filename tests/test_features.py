"""Tests of ser.features: registry, shapes, librosa parity, sharing, edge cases."""
from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from ser.features import (
    MAX_ROWS,
    REGISTRY,
    FeatureError,
    available_features,
    extract,
    feature_key,
    get_config,
    output_rows,
    output_shape,
)
from ser.features.reference import reference

SR = 16000
N_SAMPLES = 3 * SR
FRAMES = 188  # 1 + 48000 // 256
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAVDESS = DATA / "ravdess"
FEATURES = available_features()
DESIGN_ORDER = [
    "mel", "linear", "mfcc", "chroma", "spectral_contrast", "zcr", "rms",
    "tempogram", "tonnetz", "delta_mfcc", "delta_tempogram",
]


def speech_like(seed: int = 0, n: int = N_SAMPLES, sr: int = SR) -> np.ndarray:
    """3 s: gliding harmonic tone with vibrato, three formant resonances, a syllable-rate
    envelope, breath noise, and silence at both ends."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 140.0 * (1 + 0.08 * np.sin(2 * np.pi * 5.0 * t)) + 30.0 * t
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 30))
    for fc in (700.0, 1200.0, 2600.0):
        b, a = scipy.signal.iirpeak(fc, 8, fs=sr)
        y = y + 2 * scipy.signal.lfilter(b, a, y)
    voiced = np.clip(np.minimum(t - 0.3, t[-1] - 0.3 - t) * 8, 0, 1)
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t) ** 2
    y = 0.5 * y * voiced * syllables / np.abs(y).max()
    y = y + 0.003 * rng.standard_normal(n) * (voiced > 0)
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speech_like()


@pytest.fixture(scope="module")
def all_features(clip: np.ndarray) -> dict[str, np.ndarray]:
    return extract(clip)


@pytest.fixture(scope="module")
def ravdess_clip() -> np.ndarray:
    files = sorted((RAVDESS / "Actor_01").glob("*.flac")) if RAVDESS.is_dir() else []
    if not files:
        pytest.skip(f"real corpus not available at {RAVDESS}")
    from ser.audio import load_audio, prepare_clip

    return prepare_clip(load_audio(files[0]))


def assert_parity(name: str, got: np.ndarray, want: np.ndarray) -> None:
    spec = REGISTRY[name]
    assert got.shape == want.shape, name
    np.testing.assert_allclose(got, want, rtol=spec.rtol, atol=spec.atol, err_msg=name)


# ------------------------------------------------------------------ registry
def test_available_features_in_design_order():
    assert FEATURES == DESIGN_ORDER


@pytest.mark.parametrize("name", FEATURES)
def test_shape_dtype_finite(name, all_features):
    arr = all_features[name]
    assert arr.shape == (output_rows(name), FRAMES) == output_shape(name, N_SAMPLES)
    assert arr.dtype == np.float32
    assert arr.flags.c_contiguous
    assert np.isfinite(arr).all()
    assert arr.shape[0] <= MAX_ROWS


@pytest.mark.parametrize("name", FEATURES)
def test_parity_synthetic(name, clip, all_features):
    assert_parity(name, all_features[name], reference(name, clip))


@pytest.mark.shared_data
@pytest.mark.parametrize("name", FEATURES)
def test_parity_ravdess(name, ravdess_clip):
    got = extract(ravdess_clip, names=[name])[name]
    assert got.shape == (output_rows(name), FRAMES)
    assert_parity(name, got, reference(name, ravdess_clip))


@pytest.mark.parametrize("name", FEATURES)
def test_docstring_states_reference_and_tested_tolerance(name):
    spec = REGISTRY[name]
    doc = " ".join(spec.fn.__doc__.split())
    assert "Reference: ``librosa." in doc
    atol = re.search(r"Tolerance: .*?atol ([0-9.e+-]+[0-9])", doc)
    assert atol and float(atol.group(1)) == spec.atol
    rtol = re.search(r"rtol ([0-9.e+-]+[0-9])", doc)
    assert float(rtol.group(1)) == spec.rtol if rtol else spec.rtol == 0.0


@pytest.mark.parametrize("name", FEATURES)
def test_feature_key_tracks_config(name):
    cfg = get_config(name)
    key = feature_key(name, cfg)
    assert key == {"name": name, "version": REGISTRY[name].version, **dataclasses.asdict(cfg)}
    assert feature_key(name) == key
    changed = feature_key(name, get_config(name, hop_length=128))
    assert changed != key and changed["hop_length"] == 128


def test_subset_equals_all(clip, all_features):
    subset = ["tonnetz", "delta_tempogram", "zcr", "mfcc"]
    part = extract(clip, names=subset)
    assert list(part) == subset
    for name in subset:
        np.testing.assert_array_equal(part[name], all_features[name])
    assert list(extract(clip, names="rms")) == ["rms"]


def test_results_survive_later_calls(clip):
    first = extract(clip)
    saved = {k: v.copy() for k, v in first.items()}
    extract(speech_like(seed=1))
    for name in FEATURES:
        np.testing.assert_array_equal(first[name], saved[name])


def test_threads_agree_with_sequential(clip, all_features):
    clips = [clip, speech_like(seed=2)] * 3
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(extract, clips))
    for got in results[::2]:
        for name in FEATURES:
            np.testing.assert_array_equal(got[name], all_features[name])


# ------------------------------------------------------------------ configs
def test_unknown_name_lists_known_ones(clip):
    with pytest.raises(FeatureError) as err:
        extract(clip, names=["mel", "melody"])
    assert isinstance(err.value, ValueError)
    for name in FEATURES:
        assert name in str(err.value)
    with pytest.raises(FeatureError, match="spectral_contrast"):
        get_config("nope")
    with pytest.raises(FeatureError, match="known features"):
        extract(clip, names=["mel"], configs={"mell": get_config("mel")})


def test_bad_configs():
    with pytest.raises(FeatureError, match="n_mels"):
        get_config("mel", n_mels=0)
    with pytest.raises(FeatureError, match="at most 128"):
        get_config("mel", n_mels=256)
    with pytest.raises(FeatureError, match="unknown config field"):
        get_config("mel", n_mel=32)
    with pytest.raises(FeatureError, match="odd"):
        get_config("delta_mfcc", width=8)
    with pytest.raises(FeatureError, match="n_mfcc"):
        get_config("mfcc", n_mfcc=80)
    with pytest.raises(FeatureError, match="even"):
        get_config("linear", n_fft=1023)
    with pytest.raises(FeatureError, match="must be a MelConfig"):
        extract(np.zeros(100, np.float32), names=["mel"], configs={"mel": get_config("mfcc")})


def test_differing_hops_and_ffts_in_one_call(clip):
    configs = {
        "mfcc": get_config("mfcc", hop_length=512),
        "mel": get_config("mel", n_fft=512, n_mels=40),
        "delta_tempogram": get_config("delta_tempogram", hop_length=512, win_length=32),
    }
    out = extract(clip, names=["mfcc", "mel", "zcr", "delta_tempogram"], configs=configs)
    assert out["mfcc"].shape == (40, 1 + N_SAMPLES // 512)
    assert out["mel"].shape == (40, FRAMES)
    assert out["zcr"].shape == (1, FRAMES)
    assert out["delta_tempogram"].shape == (32, 1 + N_SAMPLES // 512)
    for name, cfg in configs.items():
        assert_parity(name, out[name], reference(name, clip, config=cfg))


def test_other_sample_rate(clip):
    y = scipy.signal.resample_poly(clip, 441, 320).astype(np.float32)  # 16 kHz -> 22.05 kHz
    out = extract(y, sr=22050, names=["mel", "spectral_contrast", "chroma"])
    for name, arr in out.items():
        assert arr.shape == (output_rows(name), 1 + y.size // 256)
        assert_parity(name, arr, reference(name, y, sr=22050))
    with pytest.raises(FeatureError, match="Nyquist"):
        extract(clip[:8000], sr=8000, names=["spectral_contrast"])
    with pytest.raises(FeatureError, match="fmax"):
        extract(clip, names=["mel"], configs={"mel": get_config("mel", fmax=9000.0)})


# ------------------------------------------------------------------ edge cases
def _edge_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(N_SAMPLES) / SR
    tone = np.sin(2 * np.pi * 220 * t)
    return {
        "silence": np.zeros(N_SAMPLES, np.float32),
        "short": (0.1 * rng.standard_normal(100)).astype(np.float32),
        "clipped": np.clip(3 * tone, -1, 1).astype(np.float32),
        "dc_offset": (0.5 + 0.05 * tone).astype(np.float32),
        "constant_dc": np.full(N_SAMPLES, 0.25, np.float32),
    }


EDGE = _edge_cases()


@pytest.mark.parametrize("case", list(EDGE))
def test_edge_cases_defined_and_match_reference(case):
    y = EDGE[case]
    out = extract(y)
    frames = 9 if case == "short" else FRAMES  # short clips are zero-padded to 9 frames
    for name in FEATURES:
        arr = out[name]
        assert arr.shape == (output_rows(name), frames), name
        assert arr.dtype == np.float32 and np.isfinite(arr).all(), name
        assert_parity(name, arr, reference(name, y))


def test_silence_values():
    out = extract(EDGE["silence"])
    np.testing.assert_allclose(out["mel"], -100.0, atol=1e-4)  # 10 * log10(amin)
    for name in ("chroma", "tonnetz", "zcr", "rms", "tempogram", "spectral_contrast"):
        assert np.all(out[name] == 0.0), name
    assert np.abs(out["delta_mfcc"]).max() < 1e-4  # a constant log-mel, up to round-off


def test_short_clip_needs_enough_frames_for_wide_delta():
    with pytest.raises(FeatureError, match="width 11"):
        wide = {"delta_mfcc": get_config("delta_mfcc", width=11)}
        extract(EDGE["short"], names=["delta_mfcc"], configs=wide)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN"),
        (np.array([0.0, np.inf], np.float64), "NaN/inf"),
        (np.zeros((2, 1000), np.float32), "1-D"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(1000, np.int16), "floating point"),
    ],
)
def test_bad_audio(bad, match):
    with pytest.raises(FeatureError, match=match):
        extract(bad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_absurdly_loud_audio_is_an_error_not_inf():
    with pytest.raises(FeatureError, match=r"peaks at 3e\+30"):
        extract(np.full(4096, 3e30, np.float32), names=["mel"])
    loud = extract((32768 * EDGE["clipped"]).astype(np.float32))  # int16 scale still works
    assert all(np.isfinite(v).all() for v in loud.values())


@pytest.mark.parametrize("sr", [0, -16000, 16000.0, True])
def test_bad_sample_rate(sr):
    with pytest.raises(FeatureError, match="sr"):
        extract(np.zeros(1000, np.float32), sr=sr)


def test_float64_input_is_converted(clip):
    a = extract(clip, names=["mfcc", "zcr"])
    b = extract(clip.astype(np.float64), names=["mfcc", "zcr"])
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax,htk", [
    (16000, 400, 80, 0.0, None, False), (16000, 512, 64, 0.0, 8000.0, False),
    (16000, 1024, 128, 20.0, 7600.0, False), (22050, 2048, 40, 0.0, None, False), (16000, 512, 64, 0.0, None, True)])
def test_numpy_mel_filters_equal_librosa(sr, n_fft, n_mels, fmin, fmax, htk):
    import librosa

    from ser.features.filters import mel_filters

    want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk)
    got = mel_filters(sr, n_fft, n_mels, fmin, fmax, htk)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("sr,n_fft,n_chroma,tuning", [(16000, 512, 12, 0.0), (16000, 1024, 12, 0.1),
                                                       (16000, 2048, 24, -0.2), (22050, 4096, 12, 0.0)])
def test_numpy_chroma_filters_equal_librosa(sr, n_fft, n_chroma, tuning):
    import librosa

    from ser.features.filters import chroma_filters

    want = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)
    np.testing.assert_allclose(chroma_filters(sr, n_fft, n_chroma, tuning), want, rtol=0, atol=1e-7)
