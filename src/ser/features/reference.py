"""The librosa reference definitions of the eleven representations, computed naively:
each one independently from the audio with librosa calls only (no sharing, filter banks
rebuilt on every call). Used by the tests (parity) and ``bench/features.py`` (speed);
not meant for production use.

Example:
    >>> import numpy as np
    >>> y = np.zeros(48000, dtype=np.float32)
    >>> reference("rms", y).shape    # doctest: +SKIP
    (1, 188)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..audio import SAMPLE_RATE
from .core import check_audio, min_samples
from .registry import get_spec, resolve_config


def _mel_kw(c: Any) -> dict:
    return dict(n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)


def _mel(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    spec = librosa.feature.melspectrogram(y=y, sr=sr, **_mel_kw(c))
    return librosa.power_to_db(spec, ref=1.0, amin=c.amin, top_db=c.top_db)


def _linear(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    mag = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length))
    pooled = mag[: c.n_fft // 2].reshape(c.n_rows, -1, mag.shape[-1]).mean(axis=1)
    return librosa.amplitude_to_db(pooled, ref=1.0, amin=c.amin, top_db=c.top_db)


def _mfcc(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.mfcc(y=y, sr=sr, n_mfcc=c.n_mfcc, **_mel_kw(c))


def _chroma(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.chroma_stft(
        y=y, sr=sr, n_fft=c.n_fft, hop_length=c.hop_length, n_chroma=c.n_chroma, tuning=c.tuning
    )


def _contrast(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.spectral_contrast(
        y=y, sr=sr, n_fft=c.n_fft, hop_length=c.hop_length, n_bands=c.n_bands,
        fmin=c.fmin, quantile=c.quantile,
    )


def _zcr(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.zero_crossing_rate(
        y, frame_length=c.frame_length, hop_length=c.hop_length, center=True
    )


def _rms(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.rms(
        y=y, frame_length=c.frame_length, hop_length=c.hop_length, center=True, pad_mode="constant"
    )


def _tempogram(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    onset = librosa.onset.onset_strength(y=y, sr=sr, **_mel_kw(c))
    return librosa.feature.tempogram(
        onset_envelope=onset, sr=sr, hop_length=c.hop_length, win_length=c.win_length
    )


def _tonnetz(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.tonnetz(sr=sr, chroma=_chroma(librosa, y, sr, c))


def _delta_mfcc(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.delta(_mfcc(librosa, y, sr, c), width=c.width, order=1, mode="interp")


def _delta_tempogram(librosa: Any, y: np.ndarray, sr: int, c: Any) -> np.ndarray:
    return librosa.feature.delta(_tempogram(librosa, y, sr, c), width=c.width, order=1, mode="interp")


_REFERENCES: dict[str, Callable[[Any, np.ndarray, int, Any], np.ndarray]] = {
    "mel": _mel,
    "linear": _linear,
    "mfcc": _mfcc,
    "chroma": _chroma,
    "spectral_contrast": _contrast,
    "zcr": _zcr,
    "rms": _rms,
    "tempogram": _tempogram,
    "tonnetz": _tonnetz,
    "delta_mfcc": _delta_mfcc,
    "delta_tempogram": _delta_tempogram,
}


def reference(name: str, y: np.ndarray, sr: int = SAMPLE_RATE, config: Any = None) -> np.ndarray:
    """``name`` computed by its librosa reference definition, from ``y`` alone.

    ``y`` gets the same checks, float32 conversion and minimum-length zero padding as in
    ``extract``, so the two are comparable for any input.

    Args:
        name: a registry name.
        y: mono audio.
        sr: sample rate in Hz.
        config: the feature's config (default if None).

    Returns:
        rows x frames array as librosa returns it (float32 or float64).
    """
    import librosa

    get_spec(name)
    config = resolve_config(name, config)
    y = check_audio(y, sr)
    short = min_samples(config.hop_length) - y.size
    if short > 0:
        y = np.pad(y, (0, short))
    return _REFERENCES[name](librosa, y, int(sr), config)
