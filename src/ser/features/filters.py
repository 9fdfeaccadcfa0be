"""Filter banks in plain numpy: librosa's mel and chroma filters without importing librosa.

The serving path must not import librosa (it pulls in pooch, tqdm and numba compilation,
about 2 s in a fresh process); these functions compute the same matrices as
``librosa.filters.mel`` (Slaney or HTK mel scale, Slaney area normalisation) and
``librosa.filters.chroma``. ``tests/test_features.py`` checks them against librosa.

Example:
    >>> mel_filters(16000, 400, 80).shape
    (80, 201)
    >>> chroma_filters(16000, 512).shape
    (12, 257)
"""
from __future__ import annotations

import numpy as np

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freqs, htk: bool = False) -> np.ndarray:
    """Hz -> mels (Slaney's scale by default, HTK's with ``htk=True``)."""
    f = np.asanyarray(freqs, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels, htk: bool = False) -> np.ndarray:
    """Mels -> Hz, the inverse of :func:`hz_to_mel`."""
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    log_part = m >= _MIN_LOG_MEL
    return np.where(log_part, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filters(sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                htk: bool = False) -> np.ndarray:
    """Triangular mel filters, Slaney-normalised (equal area), float32 ``(n_mels, 1 + n_fft // 2)``.

    Same as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk)``.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    # librosa fills a float32 matrix, then scales it in float32: do the same for equal bits
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights


def chroma_filters(sr: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0, ctroct: float = 5.0,
                   octwidth: float = 2.0) -> np.ndarray:
    """Chroma filters (Gaussian bumps per pitch class, octave-weighted), float32 ``(n_chroma, 1 + n_fft // 2)``.

    Same as ``librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)``
    (L2-normalised columns, starting at C).
    """
    freqs = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(freqs / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1.0]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidth, (n_chroma, 1))) ** 2)
    norm = np.sqrt(np.sum(np.abs(wts) ** 2, axis=0, keepdims=True))
    norm[norm < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / norm
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)  # start at C, not A
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)
