"""Time-domain and rhythm representations: zcr, rms, tempogram, delta_tempogram.

Same conventions as :mod:`ser.features.spectral`: each extractor returns a rows x frames
array; its docstring gives the librosa reference expression and the tested tolerance.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from .configs import DeltaTempogramConfig, RmsConfig, TempogramConfig, ZcrConfig
from .core import TINY32, ZC_THRESHOLD, Shared, delta, frame, hann
from .spectral import check_mel, log_mel

ONSET_TOP_DB = 80.0  # librosa.onset.onset_strength clamps its log-mel at max - 80 dB
ONSET_LAG = 1  # frames between the compared mel frames (onset_strength default)


def zcr(ctx: Shared, cfg: ZcrConfig) -> np.ndarray:
    """Zero-crossing rate, 1 row: crossings / frame_length per frame. librosa pads the clip
    by ``frame_length // 2`` repeated edge samples at each end (mode="edge"), which adds
    no crossings, and counts ``|y| <= 1e-10`` as a positive zero. Counted here with one
    cumulative sum over the clip instead of framing it.

    Reference: ``librosa.feature.zero_crossing_rate(y, frame_length=1024, hop_length=256,
    center=True)``. Tolerance: atol 1e-7 (exact up to float32 output).
    """
    y = ctx.signal(cfg.hop_length)
    negative = y < -ZC_THRESHOLD
    counts = np.zeros(y.size, dtype=np.int32)  # counts[i]: crossings between y[0] .. y[i]
    np.cumsum(negative[1:] != negative[:-1], out=counts[1:])
    # frame t spans padded samples [t*hop, t*hop + frame_length), i.e. clip samples
    # [t*hop - half, t*hop - half + frame_length), clipped to the clip
    first = np.arange(1 + y.size // cfg.hop_length) * cfg.hop_length - cfg.frame_length // 2
    last = np.minimum(first + cfg.frame_length - 1, y.size - 1)
    np.maximum(first, 0, out=first)
    return ((counts[last] - counts[first]) / cfg.frame_length)[None, :]


def rms(ctx: Shared, cfg: RmsConfig) -> np.ndarray:
    """Root-mean-square energy, 1 row, of zero-padded centred frames (no window).

    Reference: ``librosa.feature.rms(y=y, frame_length=1024, hop_length=256, center=True,
    pad_mode="constant")``. Tolerance: rtol 1e-5, atol 1e-7.
    """
    y = ctx.signal(cfg.hop_length)
    half, hop = cfg.frame_length // 2, cfg.hop_length
    n = 1 + y.size // hop
    if cfg.frame_length % hop:
        padded = np.pad(y.astype(np.float64), half)
        frames = frame(padded, cfg.frame_length, hop)
        return np.sqrt(np.einsum("ij,ij->i", frames, frames) / cfg.frame_length)[None, :]
    # Frames are whole runs of hop-sized blocks: sum squares per block (pairwise, exact
    # zeros stay zero), then add frame_length / hop neighbouring blocks per frame.
    per_frame = cfg.frame_length // hop
    padded = np.zeros(-(-(y.size + cfg.frame_length) // hop) * hop)  # >= n + per_frame - 1 blocks
    padded[half : half + y.size] = y
    blocks = np.square(padded).reshape(-1, hop).sum(axis=1)
    sums = blocks[:n].copy()
    for j in range(1, per_frame):
        sums += blocks[j : j + n]
    return np.sqrt(sums / cfg.frame_length)[None, :]


def onset_envelope(ctx: Shared, cfg: TempogramConfig) -> np.ndarray:
    """``librosa.onset.onset_strength(y=y, sr=sr, n_fft, hop_length, n_mels, fmin, fmax)``
    from the shared mel power: mean over bands of the positive log-mel rise (dB clamped at
    max - 80), delayed by ``1 + n_fft // (2 * hop_length)`` frames as librosa does."""

    def compute() -> np.ndarray:
        logmel = log_mel(ctx, cfg)
        clamped = np.maximum(logmel, logmel.max() - ONSET_TOP_DB)
        rise = np.maximum(0.0, clamped[:, ONSET_LAG:] - clamped[:, :-ONSET_LAG]).mean(axis=0)
        n = logmel.shape[1]
        shift = ONSET_LAG + cfg.n_fft // (2 * cfg.hop_length)
        env = np.zeros(n)
        if n > shift:
            env[shift:] = rise[: n - shift]
        return env

    key = ("onset", cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax)
    return ctx.memo(key, compute)


def _tempogram(ctx: Shared, cfg: TempogramConfig) -> np.ndarray:
    def compute() -> np.ndarray:
        env = onset_envelope(ctx, cfg)
        win, n = cfg.win_length, env.size
        half = win // 2
        # np.pad(env, half, mode="linear_ramp", end_values=(0, 0)), without its overhead
        padded = np.empty(n + 2 * half)
        ramp = np.arange(half) / half  # == np.linspace(0, 1, half, endpoint=False)
        padded[:half] = env[0] * ramp
        padded[half : half + n] = env
        padded[half + n :] = env[-1] * ramp[::-1]
        n_fft = scipy.fft.next_fast_len(2 * win - 1, real=True)
        # windowed frames, zero-padded for a linear correlation; float32 like librosa's
        frames = np.zeros((n, n_fft), dtype=np.float32)
        np.multiply(frame(padded, win, 1)[:n], hann(win), out=frames[:, :win], casting="same_kind")
        spec = scipy.fft.rfft(frames, axis=1).view(np.float32)
        np.square(spec, out=spec)
        acf = scipy.fft.irfft(spec[:, 0::2] + spec[:, 1::2], n=n_fft, axis=1)[:, :win]
        peak = np.abs(acf).max(axis=1)  # librosa.util.normalize(norm=np.inf) per frame
        peak[peak < TINY32] = 1.0
        return (acf / peak[:, None]).T

    key = ("tempogram", cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax, cfg.win_length)
    return ctx.memo(key, compute)


def tempogram(ctx: Shared, cfg: TempogramConfig) -> np.ndarray:
    """Autocorrelation tempogram, ``win_length`` rows (64 lags, ~1 s at hop 256), of the
    onset envelope computed from the shared mel power; hann-windowed local autocorrelation
    (linear-ramp padded ends), each frame divided by its maximum |value| (silent frames 0).

    Reference: ``librosa.feature.tempogram(onset_envelope=librosa.onset.onset_strength(
    y=y, sr=sr, n_fft=1024, hop_length=256, n_mels=64), sr=sr, hop_length=256,
    win_length=64)``. Tolerance: atol 1e-4.
    """
    check_mel(cfg, ctx.sr)
    return _tempogram(ctx, cfg)


def delta_tempogram(ctx: Shared, cfg: DeltaTempogramConfig) -> np.ndarray:
    """First-order delta of the shared tempogram along time, ``win_length`` rows (64).

    Reference: ``librosa.feature.delta(<tempogram reference>, width=9, order=1,
    mode="interp")``. Tolerance: atol 1e-4.
    """
    check_mel(cfg, ctx.sr)
    return delta(_tempogram(ctx, cfg), cfg.width)
