"""Benchmark: the voice-activity check (``ser.vad``) on real speech and on non-speech.

Speech must be found in every utterance of the corpora in ``../shared/data`` (RAVDESS,
EmoDB); nothing may be found in silence, clicks, dither, white/pink/brown noise or mains
hum at several levels. Prints the miss rate per corpus, the speech found in each
non-speech signal, and the cost per 3 s of audio.

Usage:
    python bench/vad.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from ser.audio import load_audio
from ser.vad import VadConfig, detect_speech


def non_speech(seconds: float = 3.0, sr: int = 16000) -> dict[str, np.ndarray]:
    """Signals without speech, levels in dBFS RMS."""
    rng = np.random.default_rng(0)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
    brown = lfilter([1.0], [1.0, -0.995], white)

    def at(x: np.ndarray, db: float) -> np.ndarray:
        return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (db / 20)).astype(np.float32)

    out = {"digital zeros": np.zeros(n, np.float32), "one sample of 0.9": np.r_[np.zeros(n - 1), [0.9]].astype(np.float32),
           "dither (+-1 LSB)": (rng.integers(-1, 2, n) / 32768).astype(np.float32)}
    for db in (-60, -40, -20, -6):
        out[f"white noise {db} dB"], out[f"pink noise {db} dB"] = at(white, db), at(pink, db)
        out[f"brown noise {db} dB"] = at(brown, db)
    for db in (-70, -65, -60, -52, -30):
        out[f"50 Hz hum {db} dB"] = at(sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 6)), db)
    out["60 Hz hum -20 dB"] = at(sum(np.sin(2 * np.pi * 60 * k * t) / k for k in range(1, 6)), -20)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = p.parse_args(argv)
    config = VadConfig()
    print("non-speech (speech found, s; the threshold is", config.min_speech_s, "s):")
    for name, y in non_speech().items():
        a = detect_speech(y)
        print(f"  {name:<22} {a.speech_s:6.3f}  {'SPEECH' if a.is_speech else 'none'}")
    spent = audio_s = 0.0
    corpora = {"ravdess": sorted((args.data / "ravdess").glob("*/*.flac")),
               "emodb": sorted((args.data / "emodb").glob("*.flac"))}
    for corpus, files in corpora.items():
        if not files:
            print(f"{corpus}: no files under {args.data}")
            continue
        missed, shares = [], []
        for f in files:
            y = load_audio(f)
            t0 = time.perf_counter()
            a = detect_speech(y)
            spent += time.perf_counter() - t0
            audio_s += len(y) / 16000
            shares.append(a.speech_s / (len(y) / 16000))
            if not a.is_speech:
                missed.append(f.name)
        print(f"{corpus}: {len(files)} utterances, missed {len(missed)} ({len(missed) / len(files):.1%}) {missed[:5]}; "
              f"speech found: median {np.median(shares):.0%} of a file, least {min(shares):.0%}")
    if audio_s:
        print(f"cost: {spent / audio_s * 3 * 1000:.2f} ms per 3 s of audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
