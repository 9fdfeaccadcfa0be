"""ser.vad on quiet audio: quiet speech is speech, quiet noise, hum, dither and clicks are not.

The loud-level battery (silence, noise and hum at -60..-6 dB, a located tone, every corpus
utterance as recorded) lives in tests/test_audio.py; this file covers what the -90 dBFS
floor, the digital-silence-free noise floor and the click test added.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from ser.audio import load_audio
from ser.vad import VadConfig, detect_speech

SR = 16000


def pcm16(x: np.ndarray) -> np.ndarray:
    """``x`` as a 16-bit PCM file gives it back."""
    return (np.round(np.clip(x, -1.0, 32767 / 32768) * 32768) / 32768).astype(np.float32)


def at(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` scaled to ``db`` dBFS RMS."""
    x = np.asarray(x, np.float64)
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (db / 20)).astype(np.float32)


def speech_like(seconds: float = 3.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Syllables of a glottal pulse train (pitch gliding 110-190 Hz) through two formants, with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t)
    pulses = np.diff(np.floor(np.cumsum(f0) / sr), prepend=0.0)  # one impulse per pitch period
    y = pulses + 0.02 * rng.standard_normal(n)  # a little breath
    for freq, bw in ((700, 130), (1200, 150)):
        r = np.exp(-np.pi * bw / sr)
        y = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], y)
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5  # 200 ms syllables, 200 ms pauses
    return (y * syllables).astype(np.float32)


def noises(n: int = 3 * SR) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    white = rng.standard_normal(n)
    return {"white": white, "brown": lfilter([1.0], [1.0, -0.995], white),
            "pink": np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)}


@pytest.mark.parametrize("db", [-40, -50, -60, -70])
@pytest.mark.parametrize("stored", ["float", "16-bit"])
def test_quiet_speech_like_sound_is_speech(db, stored):
    y = at(speech_like(), db)
    y = pcm16(y) if stored == "16-bit" else y
    activity = detect_speech(y)
    assert activity.is_speech and activity.speech_s > 0.5, (db, stored, activity.speech_s)


@pytest.mark.parametrize("sr", [8000, 44100])
def test_quiet_speech_like_sound_at_other_rates(sr):
    assert detect_speech(at(speech_like(sr=sr), -55), sr).speech_s > 0.5


def test_quiet_speech_after_zeros_and_in_faint_noise():
    y = np.r_[np.zeros(SR, np.float32), at(speech_like(), -55) + at(noises()["white"], -85)]
    activity = detect_speech(pcm16(y))
    assert activity.is_speech and not activity.window_has_speech(0, SR - 512)


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("db", [-90, -80, -70, -65, -55, -50])
@pytest.mark.parametrize("stored", ["float", "16-bit"])
def test_quiet_noise_is_not_speech(kind, db, stored):
    y = at(noises()[kind], db)
    y = pcm16(y) if stored == "16-bit" else y
    assert detect_speech(y).speech_s < 0.1


@pytest.mark.parametrize("freq", [50, 60])
@pytest.mark.parametrize("db", [-90, -85, -80, -75, -70])
def test_quantised_quiet_hum_is_not_speech(freq, db):
    """Quantisation turns a quiet hum into a periodic staircase; it never rises, so it stays out."""
    t = np.arange(3 * SR) / SR
    hum = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    assert detect_speech(pcm16(at(hum, db))).speech_s < 0.1


@pytest.mark.parametrize("db", [-80, -70, -60, -40])
def test_zeros_then_steady_noise_or_hum_is_not_speech(db):
    """Digital zeros do not set the noise floor: the noise after them is no rise."""
    t = np.arange(2 * SR) / SR
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 6))
    zeros = np.zeros(SR, np.float32)
    for y in (np.r_[zeros, at(noises(2 * SR)["white"], db)], np.r_[zeros, at(hum, db)]):
        assert detect_speech(y).speech_s < 0.1, db


@pytest.mark.parametrize("background", ["zeros", "dither", "white -70 dB", "white -50 dB 16-bit"])
@pytest.mark.parametrize("decay", [0, 8])
def test_clicks_are_not_speech(background, decay):
    """Ten clicks (or 0.5 ms pops) a second: each frame with one is a rise, but not a voiced one."""
    n = 3 * SR
    rng = np.random.default_rng(1)
    clicks = np.zeros(n)
    shape = 0.5 * np.exp(-np.arange(64) / decay) if decay else np.array([0.5])
    for s in range(0, n - 64, SR // 10):
        clicks[s:s + len(shape)] = shape
    y = {"zeros": clicks, "dither": clicks + rng.integers(-1, 2, n) / 32768,
         "white -70 dB": clicks + at(rng.standard_normal(n), -70),
         "white -50 dB 16-bit": pcm16(clicks + at(rng.standard_normal(n), -50))}[background]
    assert detect_speech(y.astype(np.float32)).speech_s < 0.1


def test_quiet_voiced_background_of_a_loud_recording_is_not_counted():
    """Within a recording at a normal level, voiced sound 50 dB under the speech is background."""
    loud, faint = at(speech_like(1.5), -20), at(speech_like(1.5, seed=1), -70)
    activity = detect_speech(np.r_[loud, faint])
    assert activity.window_has_speech(0, len(loud)) and activity.seconds_between(len(loud), 2 * len(loud)) < 0.05
    # the same faint sound alone is the recording's speech
    assert detect_speech(faint).is_speech


def test_the_old_floor_is_one_setting_away():
    """floor_db=quiet_db=-60 is the -60 dBFS floor of before: quiet speech is refused again."""
    old = VadConfig(floor_db=-60.0, quiet_db=-60.0)
    assert not detect_speech(at(speech_like(), -70), config=old).is_speech
    assert detect_speech(at(speech_like(), -70)).is_speech


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("db", [-20.0, -30.0])
def test_quiet_corpus_speech_is_found(shared_data, db):
    """Every 7th RAVDESS and EmoDB utterance, 20 and 30 dB quieter (the ``quiet`` condition and past it)."""
    from ser.corpora import load_manifest
    from ser.degrade import Gain

    gain = Gain(name="test", db=db)
    paths = [p for c in ("ravdess", "emodb") for p in load_manifest(c, shared_data / c)["path"]][::7]
    assert len(paths) > 250
    missed = [p for p in paths if not detect_speech(gain(load_audio(p), sr=SR)).is_speech]
    assert missed == [], f"{len(missed)} of {len(paths)} missed at {db} dB: {missed[:5]}"
