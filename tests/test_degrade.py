"""Tests of ser.degrade and the "condition" augmentation strategy, on synthetic signals:
every preset's shape, dtype, finiteness and determinism; the telephone band and the
codecs; measured SNRs; gain, clipping and reverb; errors; to_dict round trips."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from ser.augment import AugmentError, Chain, from_dict as augment_from_dict, get_augmentation
from ser.degrade import (
    PRESETS,
    Condition,
    DegradeError,
    Noise,
    Opus,
    Reverb,
    available_conditions,
    degrade,
    from_dict,
    get_condition,
    parse_conditions,
)
from ser.degrade.channel import PHONE_RATE, band_pass, to_rate
from ser.errors import SerError

SR = 16000
PRESET_NAMES = available_conditions()
CONTRACT = ["clean", "telephone", "telephone_alaw", "gsm", "opus", "snr20", "snr10", "snr5", "pink10",
            "babble10", "reverb", "quiet", "loud", "clipping"]


def voice(seconds: float = 1.0, sr: int = SR, f0: float = 180.0, seed: int = 0) -> np.ndarray:
    """A voiced-speech stand-in: harmonics of f0 with a syllable-rate envelope plus a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 16) if f0 * k < sr / 2)
    y = 0.15 * y * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))
    y += 0.003 * np.random.default_rng(seed).standard_normal(len(t))
    return y.astype(np.float32)


def pool(n: int = 6) -> list[np.ndarray]:
    """Babble clips: 'talkers' of different pitch and length (16 kHz)."""
    return [voice(0.4 + 0.15 * i, f0=110.0 + 23.0 * i, seed=i + 10) for i in range(n)]


def snr_db(clean: np.ndarray, out: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return float(10 * np.log10(np.mean(clean**2) / np.mean((out.astype(np.float64) - clean) ** 2)))


def tone_level_db(y: np.ndarray, freq: float, sr: int = SR) -> float:
    """Amplitude in dB of the component at ``freq`` (an exact FFT bin for whole-second clips)."""
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) * 2 / len(y)
    return float(20 * np.log10(spectrum[int(round(freq * len(y) / sr))] + 1e-12))


def phone_band(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """The telephone band without a codec: the reference the coded outputs are compared to."""
    return to_rate(band_pass(to_rate(y.astype(np.float64), sr, PHONE_RATE), PHONE_RATE, 300, 3400, 4),
                   PHONE_RATE, sr)[: len(y)]


# --- every preset ----------------------------------------------------------------------------

def test_presets_are_the_contract_and_codecs_are_installed():
    assert PRESET_NAMES == CONTRACT
    assert {"ULAW", "ALAW", "GSM610"} <= set(sf.available_subtypes("WAV"))
    assert "OPUS" in sf.available_subtypes("OGG")
    assert issubclass(DegradeError, SerError) and issubclass(DegradeError, ValueError)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_shape_dtype_finite_deterministic(name):
    cond = get_condition(name)
    assert isinstance(cond, Condition) and cond.name == name
    y = voice(1.0)
    before = y.copy()
    out = cond(y, SR, seed=3, babble=pool())
    assert out.shape == y.shape and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, cond(y, SR, seed=3, babble=pool()))
    np.testing.assert_array_equal(out, degrade(y, SR, name, seed=3, babble=pool()))
    np.testing.assert_array_equal(y, before)  # the input is never modified
    if name != "clean":
        assert not np.array_equal(out, y)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_to_dict_rebuilds_it_through_json(name):
    cond = get_condition(name)
    d = json.loads(json.dumps(cond.to_dict()))
    assert d["name"] == name and d["kind"] == cond.kind
    assert from_dict(d) == cond and get_condition(d) == cond
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.name = "other"


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_other_sample_rates_keep_length_and_rate(sr):
    y = voice(0.5, sr=sr)
    for name in ["telephone", "gsm", "opus", "snr10", "babble10", "reverb", "clipping"]:
        out = degrade(y, sr, name, seed=1, babble=pool())
        assert out.shape == y.shape and out.dtype == np.float32 and np.isfinite(out).all(), name


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_silence_stays_near_silent(name):
    y = np.zeros(8000, np.float32)
    out = degrade(y, SR, name, babble=pool())
    assert out.shape == y.shape and np.isfinite(out).all()
    # lossy codecs leave a floor (A-law has no exact zero: its smallest step decodes to
    # +-8/32768; GSM and Opus a few LSBs); everything else keeps digital silence
    assert np.abs(out).max() <= (1e-3 if name in ("telephone_alaw", "gsm", "opus") else 0.0)


def test_empty_input_gives_empty_output():
    for name in ["telephone", "snr10", "reverb"]:
        assert degrade(np.zeros(0, np.float32), SR, name).shape == (0,)


# --- channel ----------------------------------------------------------------------------------

def test_telephone_band_removes_out_of_band_energy():
    t = np.arange(SR) / SR
    y = (0.2 * np.sin(2 * np.pi * 100 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t)
         + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    for name in ["telephone", "telephone_alaw", "gsm"]:
        out = degrade(y, SR, name)
        assert abs(tone_level_db(out, 1000) - tone_level_db(y, 1000)) < 1.0, name
        assert tone_level_db(out, 100) < tone_level_db(y, 100) - 20, name
        assert tone_level_db(out, 6000) < tone_level_db(y, 6000) - 20, name


def test_mu_law_and_a_law_differ_and_both_round_trip():
    y = voice(1.0)
    ref = phone_band(y)
    mu, a = degrade(y, SR, "telephone"), degrade(y, SR, "telephone_alaw")
    assert not np.array_equal(mu, a)
    assert snr_db(ref, mu) > 25 and snr_db(ref, a) > 25  # 8-bit G.711: ~38 dB on loud speech


@pytest.mark.parametrize("name", ["gsm", "opus"])
def test_lossy_codecs_change_the_signal_but_keep_it(name):
    y = voice(1.0)
    out = degrade(y, SR, name)
    ref = phone_band(y) if name == "gsm" else y
    assert np.abs(out - ref).max() > 1e-3
    assert np.corrcoef(out, ref)[0, 1] > 0.9


def test_missing_codec_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sf, "available_subtypes", lambda fmt=None: {})
    with pytest.raises(DegradeError, match="no WAV/GSM610 codec"):
        degrade(voice(0.2), SR, "gsm")


# --- noise ------------------------------------------------------------------------------------

@pytest.mark.parametrize("color", ["white", "pink", "babble"])
@pytest.mark.parametrize("target", [20.0, 5.0, -3.0])
def test_noise_snr_is_measured_exactly(color, target):
    y = voice(1.0)
    out = Noise(color=color, snr_db=target)(y, SR, seed=2, babble=pool())
    assert abs(snr_db(y, out) - target) < 0.05


def test_noise_seeds_decide_the_noise():
    y = voice(0.5)
    for name in ["snr10", "pink10", "babble10"]:
        a, b = (degrade(y, SR, name, seed=s, babble=pool()) for s in (0, 1))
        assert not np.array_equal(a, b), name


def test_pink_noise_has_more_low_than_high_energy():
    y = voice(1.0)
    noise = degrade(y, SR, "pink10").astype(np.float64) - y
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    assert spectrum[100:1000].mean() > 10 * spectrum[5000:6000].mean()  # 100-1000 Hz vs 5-6 kHz


def test_babble_needs_a_pool():
    cond = get_condition("babble10")
    assert cond.needs_babble and not get_condition("snr10").needs_babble
    with pytest.raises(DegradeError, match="babble"):
        cond(voice(0.2), SR)
    with pytest.raises(DegradeError, match="no audible clip"):
        cond(voice(0.2), SR, babble=[np.zeros(100, np.float32)])


def test_babble_uses_the_pool():
    y = voice(0.5)
    a = degrade(y, SR, "babble10", babble=pool())
    b = degrade(y, SR, "babble10", babble=pool()[::-1])
    assert not np.array_equal(a, b)


# --- room and level ---------------------------------------------------------------------------

def test_reverb_adds_a_tail_and_keeps_rms():
    y = np.concatenate([voice(0.5), np.zeros(SR // 2, np.float32)])
    out = degrade(y, SR, "reverb", seed=0)
    tail = slice(SR // 2 + 800, SR // 2 + 4000)  # 50-250 ms after the signal stops
    assert np.abs(y[tail]).max() == 0.0 and np.sqrt(np.mean(out[tail] ** 2)) > 1e-3
    rms = lambda x: np.sqrt(np.mean(x.astype(np.float64) ** 2))  # noqa: E731
    assert abs(rms(out) / rms(y) - 1) < 1e-4
    longer = Reverb(rt60_s=1.5)(y, SR, seed=0)
    assert rms(longer[tail]) > rms(out[tail])  # a longer RT60 leaves more energy behind
    assert not np.array_equal(out, degrade(y, SR, "reverb", seed=1))


def test_gain_is_exact_and_loud_clips():
    y = voice(0.5)
    expected = (y.astype(np.float64) * 10 ** (-20 / 20)).astype(np.float32)
    np.testing.assert_array_equal(degrade(y, SR, "quiet"), expected)
    loud = degrade(y, SR, "loud")
    assert loud.min() == -1.0 and loud.max() == 1.0
    inside = np.abs(y) * 10 < 1
    np.testing.assert_allclose(loud[inside], y[inside] * 10, rtol=1e-6)


def test_clipping_flattens_peaks_and_keeps_level():
    y = voice(0.5)
    out = degrade(y, SR, "clipping")
    rms = lambda x: np.sqrt(np.mean(x.astype(np.float64) ** 2))  # noqa: E731
    assert abs(rms(out) / rms(y) - 1) < 1e-4
    assert np.abs(out).max() <= np.abs(y).max()
    assert np.mean(np.abs(out) >= np.abs(out).max() * 0.999) > 0.2  # many samples at the limit


# --- lookup, errors, hand-built conditions -----------------------------------------------------

def test_parse_conditions():
    assert [c.name for c in parse_conditions(" telephone ,snr10,telephone")] == ["telephone", "snr10"]
    assert [c.name for c in parse_conditions("all")] == PRESET_NAMES
    assert parse_conditions(["gsm"]) == (PRESETS["gsm"],)
    with pytest.raises(DegradeError, match="known conditions: clean, telephone"):
        parse_conditions("telephone,snr15")
    with pytest.raises(DegradeError, match="no condition"):
        parse_conditions(" , ")
    with pytest.raises(DegradeError, match="known conditions"):
        get_condition("phone")


def test_bad_input_and_parameters_fail_clearly():
    with pytest.raises(DegradeError, match="sample rate"):
        degrade(voice(0.2), 4000, "snr10")
    with pytest.raises(DegradeError, match="NaN"):
        degrade(np.array([0.1, np.nan], np.float32), SR, "snr10")
    with pytest.raises(DegradeError, match="mono"):
        degrade(np.zeros((2, 100), np.float32), SR, "snr10")
    with pytest.raises(DegradeError, match="color"):
        Noise(color="brown")
    with pytest.raises(DegradeError, match="rate must be one of"):
        Opus(rate=44100)
    with pytest.raises(DegradeError, match="known kinds"):
        from_dict({"name": "x", "kind": "vinyl"})
    with pytest.raises(DegradeError, match="parameters are"):
        from_dict({"name": "x", "kind": "noise", "snr": 3})


def test_hand_built_condition_gets_a_label_and_round_trips():
    cond = Reverb(rt60_s=1.2)
    assert cond.name == "reverb(rt60_s=1.2)"
    assert from_dict(json.loads(json.dumps(cond.to_dict()))) == cond
    assert Noise(name="street", color="pink", snr_db=3.0).to_dict()["name"] == "street"


# --- the augmentation strategy ------------------------------------------------------------------

def test_condition_strategy_round_trips_and_keys_are_stable():
    aug = get_augmentation("condition", conditions=("telephone", "gsm"), p=1.0)
    assert aug.conditions == ("telephone", "gsm") and aug.kind == "waveform"
    d = json.loads(json.dumps(aug.to_dict()))
    assert d == {"name": "condition", "p": 1.0, "conditions": ["telephone", "gsm"]}
    assert augment_from_dict(d) == aug
    chain = Chain((aug,))
    assert Chain.from_dict(json.loads(json.dumps(chain.to_dict()))).key() == chain.key()
    assert get_augmentation("condition", conditions="telephone, gsm") == aug
    assert "babble10" not in get_augmentation("condition").conditions


def test_condition_strategy_applies_one_of_its_conditions():
    aug = get_augmentation("condition", conditions=("quiet", "loud"), p=1.0)
    y = voice(0.5)
    quiet, loud = degrade(y, SR, "quiet"), degrade(y, SR, "loud")
    seen = set()
    for seed in range(12):
        out = aug(y, np.random.default_rng(seed))
        match = [n for n, ref in (("quiet", quiet), ("loud", loud)) if np.array_equal(out, ref)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {"quiet", "loud"}
    noisy = get_augmentation("condition", conditions=("snr10",), p=1.0)
    np.testing.assert_array_equal(noisy(y, np.random.default_rng(5)), noisy(y, np.random.default_rng(5)))
    assert not np.array_equal(noisy(y, np.random.default_rng(5)), noisy(y, np.random.default_rng(6)))


def test_condition_strategy_refuses_babble_and_unknown_names():
    with pytest.raises(AugmentError, match="held out for evaluation"):
        get_augmentation("condition", conditions=("telephone", "babble10"))
    with pytest.raises(AugmentError, match="known conditions: clean"):
        get_augmentation("condition", conditions=("telefone",))
    with pytest.raises(AugmentError, match="non-empty"):
        get_augmentation("condition", conditions=())
