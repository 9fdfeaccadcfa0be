"""Benchmark: the voice-activity check (``ser.vad``) on real speech and on non-speech.

Speech must be found in every utterance of the corpora in ``../shared/data`` (RAVDESS,
EmoDB) as recorded, 20 dB quieter (``ser.degrade``'s ``quiet`` condition) and 30 dB
quieter, kept as float or stored as 16-bit PCM; nothing may be found in silence, clicks,
dither, white/pink/brown noise or mains hum from -90 dBFS to full scale, also after
digital zeros and stored as 16-bit PCM. Prints the speech found in each non-speech
signal, the miss rate per corpus and gain, and the cost per 3 s of audio.

Usage:
    python bench/vad.py [--data ../shared/data] [--vad floor_db=-60,quiet_db=-60]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from ser.audio import load_audio
from ser.corpora import load_manifest
from ser.degrade import Gain, get_condition
from ser.vad import VadConfig, detect_speech

GAINS = {"0 dB": None, "-20 dB (quiet)": get_condition("quiet"), "-30 dB": Gain(name="quiet30", db=-30.0)}


def pcm16(x: np.ndarray) -> np.ndarray:
    """``x`` as a 16-bit PCM file would give it back."""
    return (np.round(np.clip(x, -1.0, 32767 / 32768) * 32768) / 32768).astype(np.float32)


def non_speech(seconds: float = 3.0, sr: int = 16000) -> dict[str, np.ndarray]:
    """Signals without speech, levels in dBFS RMS."""
    rng = np.random.default_rng(0)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
    brown = lfilter([1.0], [1.0, -0.995], white)
    hum = {f: sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 6)) for f in (50, 60)}

    def at(x: np.ndarray, db: float) -> np.ndarray:
        return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (db / 20)).astype(np.float32)

    dither = (rng.integers(-1, 2, n) / 32768).astype(np.float32)
    clicks, pops = np.zeros(n), np.zeros(n)  # 10 a second: single samples, and 0.5 ms decays
    clicks[::1600] = 0.5
    for s in range(0, n - 64, 1600):
        pops[s:s + 64] = 0.5 * np.exp(-np.arange(64) / 8.0)
    out = {"digital zeros": np.zeros(n, np.float32), "one sample of 0.9": np.r_[np.zeros(n - 1), [0.9]].astype(np.float32),
           "dither (+-1 LSB)": dither, "dither (+-2 LSB)": (rng.integers(-2, 3, n) / 32768).astype(np.float32),
           "clicks 10/s": clicks.astype(np.float32), "clicks 10/s + dither": (clicks + dither).astype(np.float32),
           "clicks 10/s + white -60 dB": (clicks + at(white, -60)).astype(np.float32),
           "pops 10/s": pops.astype(np.float32), "pops 10/s + white -70 dB": (pops + at(white, -70)).astype(np.float32),
           "pops 10/s + white -50 dB, 16-bit": pcm16(pops + at(white, -50))}
    for db in (-90, -80, -70, -60, -50, -40, -20, -6, 0):
        for name, x in (("white", white), ("pink", pink), ("brown", brown)):
            out[f"{name} noise {db} dB"] = at(x, db)
            if db <= -60:
                out[f"{name} noise {db} dB, 16-bit"] = pcm16(at(x, db))
    out["white noise +6 dB, clipped"] = np.clip(at(white, 6), -1, 1).astype(np.float32)
    for db in (-90, -80, -70, -65, -60, -52, -40, -30, -20, -6):
        for f in (50, 60):
            out[f"{f} Hz hum {db} dB"] = at(hum[f], db)
            if db <= -60:
                out[f"{f} Hz hum {db} dB, 16-bit"] = pcm16(at(hum[f], db))
    zeros = np.zeros(n // 3, np.float32)  # a second of digital silence, then the signal
    out["zeros, then dither"] = np.r_[zeros, dither[len(zeros):]]
    for db in (-80, -70, -60, -40):
        out[f"zeros, then white {db} dB"] = np.r_[zeros, at(white, db)[len(zeros):]]
        out[f"zeros, then 50 Hz hum {db} dB"] = np.r_[zeros, at(hum[50], db)[len(zeros):]]
    bursts = np.where((np.arange(n) // 4000) % 2 == 1, 10 ** (13 / 20), 1.0)  # 250 ms on, 13 dB up
    for db in (-88, -80, -70):  # -70/-57: above -60 dB a 13 dB burst is a rise (before and after)
        out[f"white noise bursts {db}/{db + 13} dB, 16-bit"] = pcm16(at(white, db) * bursts)
        out[f"brown noise bursts {db}/{db + 13} dB, 16-bit"] = pcm16(at(brown, db) * bursts)
    return out


def parse_vad(text: str) -> VadConfig:
    """``key=value,...`` over the :class:`VadConfig` defaults."""
    known = {f.name for f in fields(VadConfig)}
    pairs = dict(kv.split("=", 1) for kv in text.split(",") if kv)
    unknown = sorted(set(pairs) - known)
    if unknown:
        raise SystemExit(f"unknown VadConfig fields {unknown}; known: {sorted(known)}")
    return VadConfig(**{k: float(v) for k, v in pairs.items()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--vad", default="", help="VadConfig overrides, key=value,...")
    args = p.parse_args(argv)
    config = parse_vad(args.vad)
    print(config)
    print("non-speech (speech found, s; the threshold is", config.min_speech_s, "s):")
    false = 0
    for name, y in non_speech().items():
        a = detect_speech(y, config=config)
        false += a.is_speech
        print(f"  {name:<40} {a.speech_s:6.3f}  {'SPEECH' if a.is_speech else 'none'}")
    print(f"non-speech called speech: {false} of {len(non_speech())}")
    spent = {g: [0.0, 0.0] for g in GAINS}
    for corpus in ("ravdess", "emodb"):
        if not (args.data / corpus).is_dir():
            print(f"{corpus}: no folder under {args.data}")
            continue
        clips = [load_audio(f) for f in load_manifest(corpus, args.data / corpus)["path"]]
        for gain, cond in GAINS.items():
            missed, missed16, shares = [], [], []
            for i, y in enumerate(clips):
                y = y if cond is None else cond(y, sr=16000)
                t0 = time.perf_counter()
                a = detect_speech(y, config=config)
                spent[gain][0] += time.perf_counter() - t0
                spent[gain][1] += len(y) / 16000
                shares.append(a.speech_s / (len(y) / 16000))
                missed += [i] if not a.is_speech else []
                missed16 += [i] if not detect_speech(pcm16(y), config=config).is_speech else []
            print(f"{corpus} at {gain}: {len(clips)} utterances, missed {len(missed)} ({len(missed) / len(clips):.1%}), "
                  f"as 16-bit {len(missed16)} ({len(missed16) / len(clips):.1%}); "
                  f"speech found: median {np.median(shares):.0%} of a file, least {min(shares):.0%}")
    for gain, (s, audio_s) in spent.items():
        if audio_s:
            print(f"cost at {gain}: {s / audio_s * 3 * 1000:.2f} ms per 3 s of audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
