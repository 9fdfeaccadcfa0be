"""Tests of ser.augment: every (representation, strategy) pair of the policy and every
waveform strategy, forced to fire (p=1): shape, dtype, finiteness, bounded change,
determinism for a seed, the policy's coverage, registry errors and to_dict round trips."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ser.augment import (
    FEATURE_POLICY,
    WAVEFORM_CHAIN,
    AugmentConfig,
    AugmentError,
    Chain,
    augment_waveform,
    augmentation_for,
    available_augmentations,
    derive_seed,
    from_dict,
    get_augmentation,
    waveform_augmentation,
)

SR = 16000
FRAMES = 188  # 3 s at hop 256
ROWS = {"mel": 64, "linear": 128, "mfcc": 40, "chroma": 12, "spectral_contrast": 7, "zcr": 1,
        "rms": 1, "tempogram": 64, "tonnetz": 6, "delta_mfcc": 40, "delta_tempogram": 64}
ELEVEN = list(ROWS)
PAIRS = [(rep, name) for rep, names in FEATURE_POLICY.items() for name in names]
WAVEFORM = available_augmentations("waveform")


def feature_input(rep: str, seed: int = 0) -> np.ndarray:
    """A random array shaped and ranged like the representation (rows on different scales)."""
    rng = np.random.default_rng(seed)
    shape = (ROWS[rep], FRAMES)
    if rep in ("zcr", "rms"):
        return (0.1 + 0.05 * np.abs(rng.standard_normal(shape))).astype(np.float32)
    if rep == "chroma":
        return rng.random(shape).astype(np.float32)
    if rep == "tonnetz":
        return rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    offsets = np.linspace(-60.0, 10.0, shape[0])[:, None]  # per-row levels, like dB or MFCCs
    return (offsets + 5.0 * rng.standard_normal(shape)).astype(np.float32)


def strategy(rep: str, name: str):
    """The strategy as the policy builds it for ``rep``, forced to fire."""
    chain = augmentation_for(rep, AugmentConfig(p=1.0)).chain
    return next(s for s in chain if s.name == name)


def speech_like(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope and a little noise, peak ~0.5."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 150.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    y = 0.15 * env * voice + 0.005 * np.random.default_rng(seed).standard_normal(len(t))
    return y.astype(np.float32)


def band_power(y: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


# --- feature strategies, per (representation, strategy) pair ---------------------------

def check_bounded(s, x: np.ndarray, out: np.ndarray) -> None:
    diff = out != x
    cols, rows = diff.any(axis=0), diff.any(axis=1)
    if s.name in ("time_mask", "segment_dropout"):
        n = s.n_masks if s.name == "time_mask" else s.n_segments
        assert cols.sum() <= n * s.max_width
        assert not diff[:, ~cols].any()
        if s.fill == "row_mean" and cols.any():
            np.testing.assert_allclose(out[:, cols], np.broadcast_to(x.mean(axis=1, keepdims=True),
                                                                     out[:, cols].shape), rtol=1e-6)
        if s.fill == "min" and cols.any():
            assert np.all(out[:, cols] == x.min())
    elif s.name == "freq_mask":
        assert rows.sum() <= s.n_masks * s.max_width < x.shape[0]
        np.testing.assert_allclose(out[rows], np.broadcast_to(x[rows].mean(axis=1, keepdims=True),
                                                              out[rows].shape), rtol=1e-6)
    elif s.name == "harmonic_mask":
        assert 0 < rows.sum() <= s.max_units * s.unit_rows
        units = rows.reshape(-1, s.unit_rows)
        assert (units.all(axis=1) | ~units.any(axis=1)).all(), "a mask must cover whole units"
        assert np.all(out[rows] == 0.0)
    elif s.name == "time_roll":
        limit = int(s.max_fraction * x.shape[1])
        assert any(np.array_equal(np.roll(x, k, axis=1), out) for k in range(-limit, limit + 1))
    elif s.name == "jitter":
        assert np.all(np.abs(out - x) <= 6 * s.sigma * x.std(axis=1, keepdims=True) + 1e-6)
        assert out.min() >= 0.0  # zcr and rms stay non-negative
    elif s.name == "scaling":
        ratio = out / x
        assert np.ptp(ratio) < 1e-5 and s.min_factor - 1e-6 <= ratio.mean() <= s.max_factor + 1e-6
    elif s.name == "time_warp":
        np.testing.assert_array_equal(out[:, [0, -1]], x[:, [0, -1]])
        assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6
    else:  # pragma: no cover - a new strategy needs a bound here
        pytest.fail(f"no bounded-change check for {s.name}")


@pytest.mark.parametrize("rep,name", PAIRS, ids=[f"{r}-{n}" for r, n in PAIRS])
def test_feature_strategy_shape_finite_bounded(rep, name):
    s = strategy(rep, name)
    x = feature_input(rep)
    before = x.copy()
    for seed in range(5):
        out = s(x, np.random.default_rng(seed))
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
        check_bounded(s, x, out)
    np.testing.assert_array_equal(x, before)  # never modified in place


@pytest.mark.parametrize("rep,name", PAIRS, ids=[f"{r}-{n}" for r, n in PAIRS])
def test_feature_strategy_seeded(rep, name):
    s, x = strategy(rep, name), feature_input(rep)
    a, b = s(x, np.random.default_rng(7)), s(x, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    outs = [s(x, np.random.default_rng(seed)) for seed in range(8)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:]), "seeds make no difference"


@pytest.mark.parametrize("rep", ELEVEN)
def test_feature_chain_on_batch(rep):
    aug = augmentation_for(rep, AugmentConfig(p=1.0))
    batch = np.stack([feature_input(rep, seed) for seed in range(4)])
    out = aug(batch, 3)
    assert out.shape == batch.shape and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, aug(batch, 3))
    assert not np.array_equal(out, batch)


def test_probability_zero_and_disabled_are_identity():
    x = feature_input("mel")
    np.testing.assert_array_equal(augmentation_for("mel", AugmentConfig(p=0.0))(x), x)
    np.testing.assert_array_equal(augmentation_for("mel", AugmentConfig(enabled=False))(x), x)
    y = speech_like(1.0)
    assert len(waveform_augmentation(AugmentConfig(enabled=False))) == 0
    np.testing.assert_array_equal(augment_waveform(y, SR, waveform_augmentation(AugmentConfig(p=0.0)), 1), y)


def test_own_generator_is_a_reproducible_stream():
    x = feature_input("mfcc")
    a, b = augmentation_for("mfcc", AugmentConfig(seed=4)), augmentation_for("mfcc", AugmentConfig(seed=4))
    first = [a(x) for _ in range(3)]
    for f in first:
        np.testing.assert_array_equal(f, b(x))
    a.reset()
    np.testing.assert_array_equal(a(x), first[0])


# --- waveform strategies -----------------------------------------------------------------

@pytest.mark.parametrize("name", WAVEFORM)
def test_waveform_strategy_shape_finite_seeded(name):
    s = get_augmentation(name, p=1.0)
    y = speech_like()
    before = y.copy()
    out = s(y, np.random.default_rng(0))
    assert out.shape == y.shape and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, s(y, np.random.default_rng(0)))
    outs = [s(y, np.random.default_rng(seed)) for seed in range(1, 4)]
    assert any(not np.array_equal(out, o) for o in outs)
    np.testing.assert_array_equal(y, before)


def test_time_shift_at_most_half_the_clip():
    s = get_augmentation("time_shift", p=1.0)
    y = np.linspace(0.1, 0.9, 8000, dtype=np.float32)  # distinct, non-zero samples
    shifts = []
    for seed in range(20):
        out = s(y, np.random.default_rng(seed))
        k = int(np.argmax(out != 0)) if out[0] == 0 else -int(np.flatnonzero(y == out[0])[0])
        ref = np.zeros_like(y)
        if k >= 0:
            ref[k:] = y[: len(y) - k]
        else:
            ref[:k] = y[-k:]
        np.testing.assert_array_equal(out, ref)
        shifts.append(k)
    assert max(abs(k) for k in shifts) <= len(y) // 2 and len(set(shifts)) > 10


@pytest.mark.parametrize("method", ["phase_vocoder", "resample"])
def test_pitch_shift_within_range(method):
    s = get_augmentation("pitch_shift", p=1.0, method=method)
    y = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(SR) / SR)).astype(np.float32)
    for seed in range(3):
        out = s(y, np.random.default_rng(seed))
        spec = np.abs(np.fft.rfft(out[2000:-2000] * np.hanning(SR - 4000)))
        peak = np.fft.rfftfreq(SR - 4000, 1 / SR)[np.argmax(spec)]
        assert 440 * 2 ** (-2 / 12) * 0.99 <= peak <= 440 * 2 ** (3 / 12) * 1.01


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_snr_as_drawn(color):
    s = get_augmentation("colored_noise", p=1.0, colors=(color,))
    y = speech_like()
    power = np.mean(y.astype(np.float64) ** 2)
    for seed in range(5):
        noise = s(y, np.random.default_rng(seed)).astype(np.float64) - y
        snr = 10 * np.log10(power / np.mean(noise**2))
        assert s.min_snr_db - 1.0 <= snr <= s.max_snr_db + 1.0
    # a fixed SNR is met within 1 dB
    fixed = get_augmentation("colored_noise", p=1.0, colors=(color,), min_snr_db=12.0, max_snr_db=12.0)
    noise = fixed(y, np.random.default_rng(0)).astype(np.float64) - y
    assert abs(10 * np.log10(power / np.mean(noise**2)) - 12.0) < 1.0


def test_noise_colours_tilt_towards_low_frequencies():
    share = {}
    z = np.zeros(SR, dtype=np.float32)
    z[::100] = 0.1  # any non-silent signal sets the level
    for color in ("white", "pink", "brown"):
        s = get_augmentation("colored_noise", p=1.0, colors=(color,))
        noise = s(z, np.random.default_rng(0)) - z
        share[color] = band_power(noise, 20, 1000) / band_power(noise, 20, 8000)
    assert share["white"] < 0.2 < share["pink"] < share["brown"]


def test_silence_gets_no_noise():
    y = np.zeros(SR, dtype=np.float32)
    np.testing.assert_array_equal(get_augmentation("colored_noise", p=1.0)(y, np.random.default_rng(0)), y)


def test_filters_attenuate_beyond_cutoff():
    y = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.1
    low = get_augmentation("lowpass", p=1.0, min_cutoff_hz=4000.0, max_cutoff_hz=4000.0)(y, np.random.default_rng(0))
    assert band_power(low, 6000, 8000) < 0.01 * band_power(y, 6000, 8000)  # > 20 dB down
    assert band_power(low, 100, 2000) > 0.8 * band_power(y, 100, 2000)  # < 1 dB change
    high = get_augmentation("highpass", p=1.0, min_cutoff_hz=800.0, max_cutoff_hz=800.0)(y, np.random.default_rng(0))
    assert band_power(high, 20, 300) < 0.01 * band_power(y, 20, 300)
    assert band_power(high, 2000, 7000) > 0.8 * band_power(y, 2000, 7000)
    for name, (lo, hi) in {"lowpass": (7900, 8000), "highpass": (0, 90)}.items():
        out = get_augmentation(name, p=1.0)(y, np.random.default_rng(1))  # default range
        assert band_power(out, lo, hi) < 0.5 * band_power(y, lo, hi)


@pytest.mark.parametrize("peak", [0.05, 0.5, 0.95])
def test_gain_within_range_and_never_clips(peak):
    y = speech_like()
    y *= peak / np.abs(y).max()
    s = get_augmentation("gain", p=1.0)
    for seed in range(10):
        out = s(y, np.random.default_rng(seed))
        assert np.abs(out).max() <= 1.0
        gain_db = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2)))
        assert s.min_db - 0.01 <= gain_db <= s.max_db + 0.01
    hard = get_augmentation("gain", p=1.0, clip="hard", min_db=12.0, max_db=12.0)(y, np.random.default_rng(0))
    assert np.abs(hard).max() <= 1.0


def test_augment_waveform_deterministic_for_chain_and_seed():
    aug = waveform_augmentation(AugmentConfig(p=1.0))
    y = speech_like()
    a = augment_waveform(y, SR, aug, 11)
    np.testing.assert_array_equal(a, augment_waveform(y, SR, aug.chain, 11))
    np.testing.assert_array_equal(a, augment_waveform(y, SR, json.loads(json.dumps(aug.chain.to_dict())), 11))
    assert not np.array_equal(a, augment_waveform(y, SR, aug, 12))
    assert a.shape == y.shape and a.dtype == np.float32 and np.isfinite(a).all()
    with pytest.raises(AugmentError, match="waveform chain"):
        augment_waveform(y, SR, augmentation_for("mel").chain, 0)
    with pytest.raises(AugmentError, match="1-D"):
        augment_waveform(np.zeros((2, 100), np.float32), SR, aug, 0)


# --- policy, registry, serialisation -------------------------------------------------------

def test_policy_covers_the_eleven_representations():
    assert list(FEATURE_POLICY) == ELEVEN
    for rep in ELEVEN:
        assert len(augmentation_for(rep)) > 0
        assert set(FEATURE_POLICY[rep]) <= set(available_augmentations("feature"))
    # every waveform strategy is in the default chain, except the opt-in recording conditions
    assert tuple(WAVEFORM_CHAIN) == tuple(w for w in WAVEFORM if w != "condition")


def test_policy_matches_feature_registry():
    features = pytest.importorskip("ser.features")
    assert set(features.available_features()) == set(FEATURE_POLICY)


@pytest.mark.parametrize("rep", ["zcr", "rms"])
def test_curves_never_get_frequency_masks(rep):
    names = [s.name for s in augmentation_for(rep, AugmentConfig(p=1.0)).chain]
    assert "freq_mask" not in names and "harmonic_mask" not in names
    assert "freq_mask" not in FEATURE_POLICY[rep]


def test_unknown_names_list_the_known_ones():
    with pytest.raises(AugmentError, match="known augmentations: .*gain.*time_mask"):
        get_augmentation("spec_warp")
    with pytest.raises(AugmentError, match="known representations: mel, linear"):
        augmentation_for("mfcc_2")
    with pytest.raises(AugmentError, match="known augmentations"):
        AugmentConfig(overrides={"timemask": {"max_width": 3}})
    with pytest.raises(AugmentError, match="parameters are .*max_width"):
        get_augmentation("time_mask", width=3)
    with pytest.raises(AugmentError, match="feature strategies"):
        augmentation_for("mel", AugmentConfig(policy={"mel": ("gain",)}))
    with pytest.raises(AugmentError, match="mixes waveform and feature"):
        Chain((get_augmentation("gain"), get_augmentation("time_mask")))


@pytest.mark.parametrize("name", available_augmentations())
def test_every_strategy_is_a_frozen_validated_dataclass(name):
    s = get_augmentation(name)
    assert dataclasses.is_dataclass(s) and 0.0 <= s.p <= 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.p = 1.0
    with pytest.raises(AugmentError, match="p must be"):
        get_augmentation(name, p=1.5)
    assert from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("rep", ELEVEN)
def test_feature_chain_round_trip(rep):
    cfg = AugmentConfig(p=1.0, overrides={"time_mask": {"max_width": 30}})
    aug = augmentation_for(rep, cfg)
    rebuilt = Chain.from_dict(json.loads(json.dumps(aug.chain.to_dict())))
    assert rebuilt == aug.chain and rebuilt.key() == aug.chain.key()
    x = feature_input(rep)
    np.testing.assert_array_equal(rebuilt(x, np.random.default_rng(5)), aug(x, 5))


def test_config_and_params_reach_the_strategies():
    cfg = AugmentConfig(p=0.25, overrides={"freq_mask": {"max_width": 3}})
    steps = {s.name: s for s in augmentation_for("linear", cfg).chain}
    assert steps["freq_mask"].max_width == 3 and all(s.p == 0.25 for s in steps.values())
    tonnetz = {s.name: s for s in augmentation_for("tonnetz").chain}
    assert tonnetz["harmonic_mask"].unit_rows == 2
    d = waveform_augmentation(cfg).to_dict()
    assert d["kind"] == "waveform" and d["seed"] == 0 and len(d["chain"]["steps"]) == len(WAVEFORM_CHAIN)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    assert waveform_augmentation().chain.key() == waveform_augmentation().chain.key()
    assert waveform_augmentation().chain.key() != waveform_augmentation(cfg).chain.key()


def test_bad_parameters_fail_clearly():
    for name, kw in [("gain", {"min_db": 3.0, "max_db": -3.0}), ("lowpass", {"min_cutoff_hz": -1.0}),
                     ("colored_noise", {"colors": ("purple",)}), ("time_mask", {"fill": "median"}),
                     ("pitch_shift", {"method": "magic"}), ("scaling", {"min_factor": 0.0})]:
        with pytest.raises(AugmentError, match=name):
            get_augmentation(name, **kw)
    with pytest.raises(AugmentError, match="rows, frames"):
        get_augmentation("time_mask")(np.zeros(10, np.float32), np.random.default_rng(0))


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "a.wav", 1) == derive_seed(0, "a.wav", 1)
    assert len({derive_seed(0, "a.wav", k) for k in range(100)}) == 100
    assert 0 <= derive_seed("x") < 2**63
