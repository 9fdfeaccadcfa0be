"""The synthetic corpus's voice: a source-filter speech synthesizer with emotion profiles.

:func:`synthesize_clip` speaks one of two fixed seven-syllable statements in a given
emotion with a given actor's voice (:func:`speaker_params`): Rosenberg glottal pulses
with jitter, shimmer, creak and tremor, aspiration noise, a cascade of five formant
resonators, consonant noise bursts, then level and a noise floor. What each emotion
does to the voice is the table :data:`PROFILES`; ``ser.corpora.synthetic`` turns
clips into a corpus (names, files, manifest) and documents what the corpus measures.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = synthesize_clip(speaker_params(0, 1), "angry", rng)
    >>> y.dtype.name, 2.0 <= len(y) / 16000 <= 4.0, float(abs(y).max()) < 1
    ('float32', True, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter, sosfilt


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated corpus (same config, same bytes)."""

    speakers: int = 8  # number of actors, 1..99 (odd numbers male, even female)
    per_emotion: int = 4  # clips per emotion per speaker
    seed: int = 0  # master seed; every clip's RNG derives from (seed, actor, emotion, index)
    sample_rate: int = 16000  # Hz, written as PCM_16 WAV
    noise_dbfs: float = -66.0  # RMS of the background noise floor (whole clip), dBFS
    noise_jitter_db: float = 3.0  # +- uniform spread of that floor per clip, dB
    silence_s: tuple[float, float] = (0.4, 0.8)  # leading/trailing silence range, seconds
    peak_dbfs: float = -12.0  # peak level of a neutral clip at speaker loudness 0, dBFS
    peak_range_dbfs: tuple[float, float] = (-30.0, -1.0)  # clamp of the per-clip peak
    strong_gain: float = 1.4  # intensity 02 scales the emotion's distance from neutral


# Per-emotion (mean, sd) of each prosodic / voice-quality parameter, drawn per clip.
# f0: semitones from the speaker's base; range: accent size (semitones); rate:
# syllables/s; level: vocal effort (dB); tilt: 0 pressed (flat) .. 1 soft (steep);
# jitter/shimmer: relative per-period sd; breath: aspiration noise ratio; artic:
# vowel space scale (1 = normal); rise: probability of a rising (question) contour;
# tremor: F0 tremor depth (semitones); creak: alternate-period amplitude drop.
_PARAMS = ("f0", "range", "rate", "level", "tilt", "jitter", "shimmer", "breath", "artic", "tremor", "creak")
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "neutral": dict(f0=(0, 1.5), range=(3, 1), rate=(4.4, .5), level=(0, 2.5), tilt=(.5, .12), jitter=(.008, .003),
                    shimmer=(.04, .015), breath=(.10, .05), artic=(1.0, .06), tremor=(0, 0), creak=(0, 0), rise=(.05, 0)),
    "calm": dict(f0=(-1, 1.5), range=(2, .8), rate=(3.7, .5), level=(-4, 2.5), tilt=(.65, .12), jitter=(.006, .002),
                 shimmer=(.03, .01), breath=(.18, .06), artic=(.9, .06), tremor=(0, 0), creak=(0, 0), rise=(.05, 0)),
    "happy": dict(f0=(4, 1.8), range=(7, 2), rate=(4.9, .6), level=(3, 2.5), tilt=(.35, .12), jitter=(.009, .003),
                  shimmer=(.05, .015), breath=(.10, .05), artic=(1.1, .06), tremor=(0, 0), creak=(0, 0), rise=(.2, 0)),
    "sad": dict(f0=(-2, 1.5), range=(1.5, .7), rate=(3.3, .5), level=(-6, 2.5), tilt=(.8, .1), jitter=(.012, .004),
                shimmer=(.06, .02), breath=(.25, .07), artic=(.82, .06), tremor=(.2, .1), creak=(.05, .05), rise=(.02, 0)),
    "angry": dict(f0=(3, 2), range=(5, 2), rate=(5.3, .6), level=(7, 2.5), tilt=(.15, .1), jitter=(.014, .004),
                  shimmer=(.06, .02), breath=(.05, .03), artic=(1.15, .06), tremor=(0, 0), creak=(.05, .05), rise=(.05, 0)),
    "fearful": dict(f0=(6, 2), range=(4, 1.5), rate=(5.4, .7), level=(0, 2.5), tilt=(.55, .12), jitter=(.025, .007),
                    shimmer=(.08, .02), breath=(.3, .08), artic=(.95, .06), tremor=(.6, .2), creak=(0, 0), rise=(.25, 0)),
    "disgust": dict(f0=(-3, 1.5), range=(3, 1), rate=(3.5, .5), level=(1, 2.5), tilt=(.45, .12), jitter=(.035, .01),
                    shimmer=(.1, .03), breath=(.12, .05), artic=(.95, .06), tremor=(0, 0), creak=(.35, .12), rise=(.05, 0)),
    "surprised": dict(f0=(5, 2), range=(8, 2), rate=(4.7, .6), level=(3, 2.5), tilt=(.4, .12), jitter=(.009, .003),
                      shimmer=(.05, .015), breath=(.12, .05), artic=(1.08, .06), tremor=(0, 0), creak=(0, 0), rise=(.75, 0)),
}
_LIMITS = dict(f0=(-8, 12), range=(0.3, 14), rate=(2.5, 7.5), level=(-14, 14), tilt=(0, 0.95), jitter=(0, 0.08),
               shimmer=(0, 0.25), breath=(0, 0.6), artic=(0.6, 1.35), tremor=(0, 1.5), creak=(0, 0.7))

# Male reference formants (Hz) of the vowels; the schwa is the centre of the vowel space.
VOWELS = {"i": (270, 2290, 3010), "e": (530, 1840, 2480), "a": (730, 1090, 2440),
          "o": (570, 840, 2410), "u": (300, 870, 2240)}
_SCHWA = np.array([500.0, 1500.0, 2500.0])
_HIGH_FORMANTS = (3400.0, 4300.0)  # F4, F5 (male reference)
_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 200.0, 260.0])
# Statements: (onset consonant, vowel, stressed) per syllable. Consonants: "p" plosive,
# "f" fricative (sibilant), "h" weak fricative, "" none.
STATEMENTS = {
    1: [("p", "i", 1), ("", "a", 0), ("p", "o", 1), ("p", "i", 0), ("p", "a", 0), ("h", "e", 0), ("p", "o", 1)],
    2: [("p", "o", 1), ("", "a", 0), ("f", "i", 1), ("p", "i", 0), ("p", "a", 0), ("h", "e", 0), ("p", "u", 1)],
}


@dataclass(frozen=True)
class SpeakerParams:
    """One synthetic actor's voice, drawn once from (seed, actor)."""

    actor: int  # 1..99; odd male, even female
    gender: str  # "male" | "female"
    f0_hz: float  # base F0 in Hz
    vtl: float  # formant scale (inverse vocal tract length), 0.85..1.15
    breath: float  # personal extra aspiration noise ratio
    loudness_db: float  # personal level offset, dB
    tilt: float  # personal spectral tilt offset (added to the emotion's 0..1 tilt)
    rate: float  # personal speech rate factor
    range: float  # personal pitch range factor


def speaker_params(seed: int, actor: int) -> SpeakerParams:
    """Draw actor ``actor``'s voice from ``seed`` (independent of the corpus size)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, actor]))
    male = actor % 2 == 1
    return SpeakerParams(
        actor=actor,
        gender="male" if male else "female",
        f0_hz=float(rng.uniform(100, 140) if male else rng.uniform(180, 240)),
        vtl=float(rng.uniform(0.85, 1.02) if male else rng.uniform(0.98, 1.15)),
        breath=float(rng.uniform(0.0, 0.15)),
        loudness_db=float(rng.uniform(-3, 3)),
        tilt=float(rng.normal(0, 0.08)),
        rate=float(rng.uniform(0.9, 1.1)),
        range=float(rng.uniform(0.8, 1.2)),
    )


def _draw(emotion: str, rng: np.random.Generator, gain: float) -> dict[str, float]:
    """Per-clip parameters: the emotion's distribution, its mean pushed by ``gain`` from neutral."""
    prof, neu = PROFILES[emotion], PROFILES["neutral"]
    out = {}
    for k in _PARAMS:
        mean = neu[k][0] + gain * (prof[k][0] - neu[k][0])
        out[k] = float(np.clip(mean + prof[k][1] * rng.standard_normal(), *_LIMITS[k]))
    out["rise"] = float(rng.random() < prof["rise"][0])
    return out


def _resonators(formants: np.ndarray, bandwidths: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of unity-DC-gain two-pole resonators as second-order sections."""
    r = np.exp(-np.pi * bandwidths / sr)
    c = -2.0 * r * np.cos(2.0 * np.pi * formants / sr)
    sos = np.zeros((len(formants), 6))
    sos[:, 0] = 1.0 + c + r * r
    sos[:, 3], sos[:, 4], sos[:, 5] = 1.0, c, r * r
    return sos


def _raised_cos_env(n: int, attack: int, decay: int) -> np.ndarray:
    env = np.ones(n)
    a, d = min(attack, n // 2), min(decay, n // 2)
    if a:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    if d:
        env[n - d:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, d + 1) / d)
    return env


def synthesize_clip(speaker: SpeakerParams, emotion: str, rng: np.random.Generator, sr: int = 16000,
                    *, statement: int = 1, intensity: int = 1, config: SynthConfig | None = None) -> np.ndarray:
    """One utterance: float32 mono at ``sr``, 2-4 s, silence at both ends, peak < 1.

    Args:
        speaker: the actor's voice (``speaker_params``).
        emotion: one of the eight emotion names (``PROFILES``).
        rng: the clip's generator; the result depends only on it and the arguments.
        sr: sample rate in Hz.
        statement: 1 or 2, which syllable sequence is spoken.
        intensity: 1 normal, 2 strong.
        config: levels and noise floor (``SynthConfig()`` when None).
    """
    if emotion not in PROFILES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {list(PROFILES)}")
    if statement not in STATEMENTS:
        raise ValueError(f"statement must be 1 or 2, got {statement!r}")
    cfg = config or SynthConfig()
    p = _draw(emotion, rng, cfg.strong_gain if intensity == 2 else 1.0)
    sylls = STATEMENTS[statement]
    ns = len(sylls)

    # --- timing: consonant onset + vowel per syllable, final lengthening -------------
    rate = p["rate"] * speaker.rate
    dur = (1.0 / rate) * rng.uniform(0.8, 1.2, ns) * np.array([1.2 if s else 0.85 for _, _, s in sylls])
    dur[-1] *= 1.3
    dur *= np.clip(dur.sum(), 1.2, 2.4) / dur.sum()  # speech 1.2-2.4 s, clip 2-4 s
    cons = np.array([{"p": 0.07, "f": 0.11, "h": 0.06, "": 0.0}[c] for c, _, _ in sylls]) * (4.4 / rate)
    cons = np.minimum(cons, 0.45 * dur)
    lead, trail = rng.uniform(*cfg.silence_s, 2)
    n0 = int(round(lead * sr))
    bounds = n0 + np.round(np.concatenate([[0.0], np.cumsum(dur)]) * sr).astype(int)
    starts, v_off = bounds[:-1], bounds[1:]
    v_on = starts + np.round(cons * sr).astype(int)
    n_speech = int(bounds[-1] - n0)
    n_total = int(bounds[-1]) + int(round(trail * sr))

    # --- F0 contour (semitones) over the speech part ---------------------------------
    t = np.arange(n_speech) / sr
    u = t / max(t[-1], 1e-9)
    rng_st = p["range"] * speaker.range
    st = p["f0"] + (0.1 if p["rise"] else 0.4) * rng_st * (0.5 - u) + 0.3 * rng.standard_normal()
    centres = ((v_on + v_off) / 2 - n0) / sr
    widths = (v_off - v_on) / sr / 2.0
    heights = rng_st * rng.uniform(0.5, 1.0, ns) * np.array([1.0 if s else 0.25 for _, _, s in sylls])
    if p["rise"]:
        heights[-1] = 0.0
        st = st + 1.3 * rng_st * np.clip((u - 0.7) / 0.3, 0, 1) ** 2
    st = st + (heights[:, None] * np.exp(-0.5 * ((t[None, :] - centres[:, None]) / widths[:, None]) ** 2)).sum(0)
    st = st + p["tremor"] * np.sin(2 * np.pi * rng.uniform(5, 7) * t + rng.uniform(0, 2 * np.pi))
    f0 = speaker.f0_hz * 2.0 ** (st / 12.0)

    # --- glottal source: Rosenberg pulses, per-period jitter, shimmer, creak -----------
    phase = np.cumsum(f0) / sr
    period = np.floor(phase).astype(int)
    n_per = period[-1] + 2
    f0 = f0 * (1.0 + p["jitter"] * rng.standard_normal(n_per))[period]
    phase = np.cumsum(f0) / sr
    period = np.floor(phase).astype(int)
    frac = phase - period
    oq = np.clip(0.4 + 0.4 * (p["tilt"] + speaker.tilt), 0.35, 0.85)  # open quotient
    tp, tn = 0.65 * oq, 0.35 * oq
    flow = np.where(frac < tp, 0.5 - 0.5 * np.cos(np.pi * frac / tp),
                    np.where(frac < tp + tn, np.cos(0.5 * np.pi * (frac - tp) / tn), 0.0))
    amp_per = 1.0 + p["shimmer"] * rng.standard_normal(period[-1] + 2)
    amp_per[1::2] *= 1.0 - p["creak"]
    src = np.diff(flow, prepend=0.0) * f0 / 100.0 * amp_per[period]
    a = 0.25 + 0.65 * np.clip(p["tilt"] + speaker.tilt, 0, 0.95)  # extra one-pole low-pass
    src = lfilter([1.0 - a], [1.0, -a], src)
    src /= np.sqrt(np.mean(src**2)) + 1e-12
    breath = p["breath"] + speaker.breath
    asp = rng.standard_normal(n_speech)
    asp = lfilter([1.0, -0.9], [1.0], asp) * (0.4 + 0.6 * (frac < oq))
    src = src + breath * 2.0 * asp / (np.sqrt(np.mean(asp**2)) + 1e-12)

    # --- syllables: vowels through formant filters, consonant noise between ------------
    y = np.zeros(n_total + int(0.05 * sr))
    effort = p["level"] / 7.0
    nyq_safe = 0.45 * sr
    for k, (c, v, stressed) in enumerate(sylls):
        a0, a1 = v_on[k], v_off[k]
        if a1 - a0 < 16:
            continue
        fm = _SCHWA + p["artic"] * (np.array(VOWELS[v]) - _SCHWA)
        fm = np.concatenate([fm * np.array([1.0 + 0.06 * effort, 1.0, 1.0]), _HIGH_FORMANTS]) * speaker.vtl
        fm = np.minimum(fm * rng.uniform(0.97, 1.03, 5), nyq_safe)
        bw = _BANDWIDTHS * (1.0 + 0.8 * breath)
        seg = src[a0 - n0:a1 - n0] * _raised_cos_env(a1 - a0, int(0.02 * sr), int(0.035 * sr))
        gain = 10 ** ((3.0 * stressed - 4.0 * k / ns + rng.normal(0, 1)) / 20)
        out = sosfilt(_resonators(fm, bw, sr), np.concatenate([seg, np.zeros(int(0.03 * sr))]))
        y[a0:a0 + len(out)] += gain * out
        nc = v_on[k] - starts[k]
        if c and nc > 8:
            noise = rng.standard_normal(nc)
            if c == "p":  # closure then a short broadband burst
                burst = min(nc, int(0.018 * sr))
                noise[:nc - burst] = 0.0
                noise[nc - burst:] *= np.exp(-np.arange(burst) / (0.005 * sr))
                lvl = 0.5
            else:  # sibilant / weak fricative: high-passed noise
                noise = lfilter([1.0, -0.97], [1.0], noise) * _raised_cos_env(nc, nc // 3, nc // 4)
                lvl = 0.35 if c == "f" else 0.12
            y[starts[k]:starts[k] + nc] += lvl * gain * noise * (1.0 + 0.5 * effort)
    y = y[:n_total]

    # --- level: per-clip peak from vocal effort and speaker, then the noise floor -------
    peak_db = np.clip(cfg.peak_dbfs + p["level"] + speaker.loudness_db + rng.normal(0, 1.0), *cfg.peak_range_dbfs)
    y *= 10 ** (peak_db / 20) / (np.max(np.abs(y)) + 1e-12)
    floor = 10 ** ((cfg.noise_dbfs + rng.uniform(-cfg.noise_jitter_db, cfg.noise_jitter_db)) / 20)
    y += floor * lfilter([1.0], [1.0, -0.5], rng.standard_normal(n_total)) * np.sqrt(0.75)
    return np.clip(y, -0.99, 0.99).astype(np.float32)


__all__ = ["PROFILES", "STATEMENTS", "VOWELS", "SpeakerParams", "SynthConfig", "speaker_params", "synthesize_clip"]
