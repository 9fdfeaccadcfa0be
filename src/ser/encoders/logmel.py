"""Whisper's log-mel spectrogram in numpy only (no torch: the torch-free runtime imports it).

Computed exactly as ``whisper.audio.log_mel_spectrogram`` (openai-whisper) does, minus the
30 s padding:

1. STFT with ``n_fft = 400`` (25 ms), ``hop = 160`` (10 ms) at 16 kHz, a periodic Hann
   window, centred frames with *reflect* padding of ``n_fft // 2`` on both sides
   (``torch.stft(..., center=True)``'s default);
2. power spectrum (magnitude squared); the last frame is dropped, so a clip of ``n``
   samples gives ``n // 160`` frames (3 s -> 300);
3. ``mel_filters(n_mels) @ power`` with the Slaney-style mel filter bank that
   ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels)`` builds (80 for Whisper up to
   large-v2, 128 for large-v3);
4. ``log10(max(x, 1e-10))``, then floored at 8 below the clip's maximum (a dynamic range
   of 80 dB), then ``(x + 4) / 4``.

Step 4 depends on the clip's maximum, so the features of a clip are not the concatenation
of the features of its halves. The torch twin is :func:`ser.encoders.whisper.log_mel_torch`
(same steps, runs on a GPU); the two agree to 4e-5 (float32 both; tested).
"""
from __future__ import annotations

import functools

import numpy as np

from ..features import filters

SAMPLE_RATE = 16000  # Hz; Whisper was trained on 16 kHz audio only
N_FFT = 400  # STFT window and FFT size (25 ms)
HOP_LENGTH = 160  # STFT hop (10 ms): 100 mel frames per second, 50 encoder frames
MIN_SAMPLES = N_FFT // 2 + 1  # reflect padding by n_fft // 2 needs more samples than that


@functools.lru_cache(maxsize=4)
def _mel_filters_cached(n_mels: int, sr: int, n_fft: int) -> np.ndarray:
    out = filters.mel_filters(sr, n_fft, n_mels)
    out.setflags(write=False)  # shared between callers through the cache
    return out


def mel_filters(n_mels: int = 80, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """The mel filter bank ``(n_mels, 1 + n_fft // 2)`` float32, read-only, built once.

    Equals ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)`` (Slaney mel scale and
    area normalisation, 0 Hz to Nyquist), built by :mod:`ser.features.filters` (numpy), so
    the torch-free runtime does not need librosa.

    Example:
        >>> mel_filters(80).shape
        (80, 201)
    """
    if int(n_mels) <= 0:
        raise ValueError(f"n_mels must be positive, got {n_mels}")
    return _mel_filters_cached(int(n_mels), int(sr), int(n_fft))


@functools.lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """The periodic Hann window (torch.hann_window's default), float32, built once."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    window.setflags(write=False)
    return window


def n_mel_frames(n_samples: int) -> int:
    """Frames of :func:`log_mel_spectrogram` for a clip of ``n_samples`` samples.

    Example:
        >>> n_mel_frames(48000)
        300
    """
    return int(n_samples) // HOP_LENGTH


def check_waveform(y: np.ndarray) -> np.ndarray:
    """``y`` as a 1-D float array, or ValueError naming what is wrong and the fix."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio as a 1-D array, got shape {y.shape}; mix down first")
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"expected floating-point audio in [-1, 1], got dtype {y.dtype}")
    if y.size < MIN_SAMPLES:
        raise ValueError(
            f"audio too short for Whisper's log-mel: {y.size} samples, need at least "
            f"{MIN_SAMPLES} ({MIN_SAMPLES / SAMPLE_RATE * 1000:.1f} ms at 16 kHz); pad the clip"
        )
    if not np.isfinite(y).all():
        raise ValueError("audio contains NaN or infinite samples")
    return y


def log_mel_spectrogram(y: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel spectrogram of a 16 kHz mono clip, without the 30 s padding.

    Args:
        y: mono audio at 16 kHz, 1-D floating point in [-1, 1], at least 201 samples.
        n_mels: 80 (Whisper tiny ... large-v2) or 128 (large-v3).

    Returns:
        float32 array ``(n_mels, len(y) // 160)``, values roughly in [-1.5, 1.5].

    Raises:
        ValueError: not 1-D, not floating point, too short, or not finite.

    Example:
        >>> log_mel_spectrogram(np.zeros(48000, dtype=np.float32)).shape
        (80, 300)
    """
    # float32 throughout, as Whisper (torch) computes it; float64 was no more faithful to
    # the torch reference and twice as slow
    y = check_waveform(y).astype(np.float32, copy=False)
    pad = N_FFT // 2
    padded = np.pad(y, (pad, pad), mode="reflect")  # torch.stft(center=True)'s padding
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    frames = frames[:-1]  # Whisper drops the last STFT frame
    spec = np.fft.rfft(frames * _hann(), axis=-1)
    power = spec.real**2 + spec.imag**2  # (frames, 201)
    mel = mel_filters(n_mels) @ power.T  # (n_mels, frames)
    log_spec = np.log10(np.maximum(mel, np.float32(1e-10)))
    if log_spec.size:
        log_spec = np.maximum(log_spec, log_spec.max() - np.float32(8.0))
    return ((log_spec + np.float32(4.0)) / np.float32(4.0)).astype(np.float32, copy=False)
