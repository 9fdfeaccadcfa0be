"""Spectral representations: mel, linear, mfcc, chroma, spectral_contrast, tonnetz,
delta_mfcc, and the shared intermediates they are built from.

Each extractor takes the per-call :class:`~ser.features.core.Shared` memo and its config
and returns a rows x frames array. Its docstring gives the librosa reference expression
at the default config (``y`` float32, already zero-padded to the minimum length, see
``ser.features.core.min_samples``; ``ser.features.reference`` evaluates it for any config)
and the tolerance to which ``tests/test_features.py`` checks it.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from .configs import (
    ChromaConfig,
    DeltaMfccConfig,
    LinearConfig,
    MelBandsConfig,
    MelConfig,
    MfccConfig,
    SpectralContrastConfig,
    StftConfig,
    TonnetzConfig,
)
from .core import (
    AMIN,
    FeatureError,
    Shared,
    chroma_basis,
    dct_matrix,
    delta,
    frame,
    hann,
    mel_basis,
    normalize_columns,
    power_to_db,
    scratch,
    tonnetz_matrix,
)

_STFT_BLOCK_BYTES = 384 * 1024  # float64 frames per FFT batch (48 frames at n_fft 1024)
MFCC_TOP_DB = 80.0  # librosa.feature.mfcc clamps its log-mel at max - 80 dB (power_to_db default)


# ---------------------------------------------------------------- shared intermediates
def power(ctx: Shared, cfg: StftConfig) -> np.ndarray:
    """``np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length)) ** 2`` (bins x frames,
    float32 like librosa's): hann window, center=True, zero padding. The FFT runs in float64
    (as librosa's does), in batches of frames, into reused work buffers."""

    def compute() -> np.ndarray:
        y = ctx.signal(cfg.hop_length)
        n_fft, half, tag = cfg.n_fft, cfg.n_fft // 2, (cfg.n_fft, cfg.hop_length)
        padded = scratch(("padded",) + tag, (y.size + n_fft,), np.float64)
        padded[:half] = 0.0
        padded[half : half + y.size] = y
        padded[half + y.size :] = 0.0
        frames = frame(padded, n_fft, cfg.hop_length)
        out = scratch(("power",) + tag, (half + 1, frames.shape[0]), np.float32)
        # Blocks of frames small enough for the L2 cache: measured ~2x faster than one
        # transform of all 188 frames (1.5 MB of float64 in, 1.5 MB of complex out).
        block = max(1, _STFT_BLOCK_BYTES // (8 * n_fft))
        windowed = scratch("windowed", (block, n_fft), np.float64)
        for start in range(0, frames.shape[0], block):
            stop = min(start + block, frames.shape[0])
            chunk = windowed[: stop - start]
            np.multiply(frames[start:stop], hann(n_fft), out=chunk)
            # scipy's pocketfft transforms several rows per SIMD vector (~1.7x numpy.fft)
            spec = scipy.fft.rfft(chunk, axis=-1, overwrite_x=True).view(np.float64)
            np.square(spec, out=spec)
            np.add(spec[:, 0::2], spec[:, 1::2], out=out[:, start:stop].T, casting="same_kind")
        return out

    return ctx.memo(("power", cfg.n_fft, cfg.hop_length), compute)


def magnitude(ctx: Shared, cfg: StftConfig) -> np.ndarray:
    """``np.abs(librosa.stft(...))`` (bins x frames, float32)."""

    def compute() -> np.ndarray:
        pw = power(ctx, cfg)
        return np.sqrt(pw, out=scratch(("magnitude", cfg.n_fft, cfg.hop_length), pw.shape, np.float32))

    return ctx.memo(("magnitude", cfg.n_fft, cfg.hop_length), compute)


def _mel_key(cfg: MelBandsConfig) -> tuple:
    return (cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax)


def check_mel(cfg: MelBandsConfig, sr: int) -> None:
    """Sample-rate check of a mel filter bank's upper edge."""
    if cfg.fmax is not None and cfg.fmax > sr / 2:
        raise FeatureError(f"fmax={cfg.fmax} Hz exceeds the Nyquist frequency {sr / 2} Hz of sr={sr}")


def mel_power(ctx: Shared, cfg: MelBandsConfig) -> np.ndarray:
    """``librosa.feature.melspectrogram(y=y, sr=sr, n_fft, hop_length, n_mels, fmin, fmax)``."""

    def compute() -> np.ndarray:
        return mel_basis(ctx.sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ power(ctx, cfg)

    return ctx.memo(("mel",) + _mel_key(cfg), compute)


def log_mel(ctx: Shared, cfg: MelBandsConfig, amin: float = AMIN) -> np.ndarray:
    """``librosa.power_to_db(melspectrogram, ref=1.0, amin=amin, top_db=None)``."""
    return ctx.memo(("logmel", amin) + _mel_key(cfg), lambda: power_to_db(mel_power(ctx, cfg), amin))


def _mfcc(ctx: Shared, cfg: MfccConfig) -> np.ndarray:
    def compute() -> np.ndarray:
        logmel = log_mel(ctx, cfg).astype(np.float64)
        clamped = np.maximum(logmel, logmel.max() - MFCC_TOP_DB)
        return dct_matrix(cfg.n_mels, cfg.n_mfcc) @ clamped

    return ctx.memo(("mfcc", cfg.n_mfcc) + _mel_key(cfg), compute)


def _chroma(ctx: Shared, cfg: ChromaConfig) -> np.ndarray:
    def compute() -> np.ndarray:
        raw = chroma_basis(ctx.sr, cfg.n_fft, cfg.n_chroma, cfg.tuning) @ power(ctx, cfg)
        return normalize_columns(raw, np.inf)

    return ctx.memo(("chroma", cfg.n_fft, cfg.hop_length, cfg.n_chroma, cfg.tuning), compute)


@functools.lru_cache(maxsize=32)
def contrast_bands(sr: int, n_fft: int, n_bands: int, fmin: float, quantile: float) -> tuple:
    """(first bin, stop bin, bins averaged) per band, exactly as
    ``librosa.feature.spectral_contrast`` selects them (one extra bin below every band
    but the first, the top bin dropped from every band but the last)."""
    freq = np.fft.rfftfreq(n_fft, 1.0 / sr)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    if np.any(octa[:-1] >= 0.5 * sr):
        raise FeatureError(
            f"spectral_contrast: band edge {octa[-2]:g} Hz (fmin={fmin} * 2**{n_bands - 1}) is not "
            f"below the Nyquist frequency {sr / 2:g} Hz; lower fmin or n_bands, or raise sr"
        )
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        too_narrow = f"spectral_contrast band {k} ({f_low:g}-{f_high:g} Hz) is too narrow; raise n_fft"
        mask = (freq >= f_low) & (freq <= f_high)
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            raise FeatureError(too_narrow)
        if k > 0:
            mask[idx[0] - 1] = True
        if k == n_bands:
            mask[idx[-1] + 1 :] = True
        sel = np.flatnonzero(mask)
        start, stop = int(sel[0]), int(sel[-1]) + (1 if k == n_bands else 0)
        if stop <= start:
            raise FeatureError(too_narrow)
        # librosa's slice sortedr[:q] silently caps q at the band size
        q = min(max(int(np.rint(quantile * mask.sum())), 1), stop - start)
        bands.append((start, stop, q))
    return tuple(bands)


# ---------------------------------------------------------------- the representations
def mel(ctx: Shared, cfg: MelConfig) -> np.ndarray:
    """Log-mel spectrogram, ``n_mels`` rows (64), dB re 1.0, no top_db clamp by default.

    Reference: ``librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024,
    hop_length=256, n_mels=64, fmin=0.0, fmax=None), ref=1.0, amin=1e-10, top_db=None)``.
    Tolerance: atol 1e-3 dB.
    """
    check_mel(cfg, ctx.sr)
    logmel = log_mel(ctx, cfg, cfg.amin)
    return logmel if cfg.top_db is None else np.maximum(logmel, logmel.max() - cfg.top_db)


def linear(ctx: Shared, cfg: LinearConfig) -> np.ndarray:
    """Log-magnitude linear spectrogram, ``n_rows`` rows (128): the lowest ``n_fft/2`` bins
    (the Nyquist bin is dropped) mean-pooled in groups of ``n_fft/2/n_rows`` (4) adjacent
    bins as magnitudes, then converted to dB.

    Reference: ``librosa.amplitude_to_db(np.abs(librosa.stft(y, n_fft=1024, hop_length=256))
    [:512].reshape(128, 4, -1).mean(axis=1), ref=1.0, amin=1e-5, top_db=None)``.
    Tolerance: atol 1e-3 dB.
    """
    mag = magnitude(ctx, cfg)
    n_bins = cfg.n_fft // 2
    group = n_bins // cfg.n_rows
    pooled = mag[0:n_bins:group].copy()
    for j in range(1, group):  # strided adds: several times faster than reshape + mean
        pooled += mag[j:n_bins:group]
    pooled *= np.float32(1.0 / group)
    return power_to_db(np.square(pooled, out=pooled), cfg.amin**2, cfg.top_db)


def mfcc(ctx: Shared, cfg: MfccConfig) -> np.ndarray:
    """MFCCs, ``n_mfcc`` rows (40), from the shared mel power (log clamped at max - 80 dB).

    Reference: ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40, n_fft=1024, hop_length=256,
    n_mels=64, fmin=0.0, fmax=None)``. Tolerance: atol 2e-3 (+ rtol 1e-5).
    """
    check_mel(cfg, ctx.sr)
    return _mfcc(ctx, cfg)


def delta_mfcc(ctx: Shared, cfg: DeltaMfccConfig) -> np.ndarray:
    """First-order delta of the shared MFCCs, ``n_mfcc`` rows (40).

    Reference: ``librosa.feature.delta(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40,
    n_fft=1024, hop_length=256, n_mels=64), width=9, order=1, mode="interp")``.
    Tolerance: atol 5e-4 (+ rtol 1e-5).
    """
    check_mel(cfg, ctx.sr)
    return delta(_mfcc(ctx, cfg), cfg.width)


def chroma(ctx: Shared, cfg: ChromaConfig) -> np.ndarray:
    """STFT chromagram, ``n_chroma`` rows (12), max-normalised per frame (silent frames 0).
    The tuning is fixed (0.0) instead of librosa's per-clip pitch-tracking estimate, which
    is slow and meaningless for speech whose pitch glides.

    Reference: ``librosa.feature.chroma_stft(y=y, sr=sr, n_fft=1024, hop_length=256,
    n_chroma=12, tuning=0.0)``. Tolerance: atol 1e-5.
    """
    return _chroma(ctx, cfg)


def tonnetz(ctx: Shared, cfg: TonnetzConfig) -> np.ndarray:
    """Tonal centroid features, 6 rows, projected from the shared STFT chromagram
    (librosa's own default would use chroma_cqt, ~40 ms a clip).

    Reference: ``librosa.feature.tonnetz(sr=sr, chroma=librosa.feature.chroma_stft(y=y,
    sr=sr, n_fft=1024, hop_length=256, n_chroma=12, tuning=0.0))``. Tolerance: atol 1e-5.
    """
    return tonnetz_matrix(cfg.n_chroma) @ normalize_columns(_chroma(ctx, cfg), 1)


def spectral_contrast(ctx: Shared, cfg: SpectralContrastConfig) -> np.ndarray:
    """Octave-band spectral contrast in dB, ``n_bands + 1`` rows (7): per band, the mean of
    the top minus the mean of the bottom ``quantile`` of the magnitudes (each side through
    ``power_to_db`` with its top_db=80 clamp, as librosa does). Uses min/max or a sort
    per band.

    Reference: ``librosa.feature.spectral_contrast(y=y, sr=sr, n_fft=1024, hop_length=256,
    n_bands=6, fmin=200.0, quantile=0.02)``. Tolerance: atol 1e-3 dB.
    """
    mag = magnitude(ctx, cfg)
    bands = contrast_bands(ctx.sr, cfg.n_fft, cfg.n_bands, float(cfg.fmin), float(cfg.quantile))
    peak = np.empty((len(bands), mag.shape[1]))
    valley = np.empty_like(peak)
    for k, (start, stop, q) in enumerate(bands):
        band = mag[start:stop]
        if q == 1:
            valley[k] = band.min(axis=0)
            peak[k] = band.max(axis=0)
        else:  # sort each frame's bins (contiguous after the transpose)
            ordered = np.sort(band.T, axis=1)
            valley[k] = ordered[:, :q].mean(axis=1, dtype=np.float64)
            peak[k] = ordered[:, -q:].mean(axis=1, dtype=np.float64)
    return power_to_db(peak, AMIN, 80.0) - power_to_db(valley, AMIN, 80.0)
