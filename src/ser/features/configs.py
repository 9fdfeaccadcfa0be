"""Frozen configuration dataclasses of the eleven representations.

Defaults are sized for 3 s clips at 16 kHz: ``n_fft=1024`` (64 ms window), ``hop_length=256``
(16 ms) -> 188 frames, every representation at most 128 rows tall. Representations whose
configs agree on the STFT parameters (and on the mel or chroma parameters) share that
computation inside one ``extract`` call; differing parameters are simply computed separately.

Validation happens on construction and raises ``FeatureError``; sample-rate dependent
checks (e.g. ``fmax`` <= Nyquist) happen in ``extract``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from .core import MAX_ROWS, FeatureError


def _positive_int(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise FeatureError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")


def _check_rows(cfg: object, rows: int) -> None:
    if rows > MAX_ROWS:
        raise FeatureError(
            f"{type(cfg).__name__} gives {rows} rows; at most {MAX_ROWS} are allowed "
            "(a taller input makes ResNet18 training unaffordable on CPU)"
        )


@dataclass(frozen=True)
class StftConfig:
    """STFT parameters common to the spectral representations (hann window, center=True,
    zero padding, as ``librosa.stft`` defaults)."""

    n_fft: int = 1024  # FFT size = window length in samples (64 ms at 16 kHz); even
    hop_length: int = 256  # samples between frame centres (16 ms at 16 kHz): 3 s -> 188 frames

    def __post_init__(self) -> None:
        _positive_int(self, *(f.name for f in fields(self) if f.type in ("int", int)))
        if self.n_fft % 2 or self.n_fft < 16:
            raise FeatureError(f"n_fft must be an even int >= 16, got {self.n_fft}")


@dataclass(frozen=True)
class MelBandsConfig(StftConfig):
    """STFT plus a Slaney-normalised Slaney-scale mel filter bank (``librosa.filters.mel``)."""

    n_mels: int = 64  # mel bands (rows of `mel`; input of mfcc and the onset envelope)
    fmin: float = 0.0  # lowest mel band edge in Hz
    fmax: Optional[float] = None  # highest mel band edge in Hz; None = sr / 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fmin < 0 or (self.fmax is not None and self.fmax <= self.fmin):
            raise FeatureError(f"need 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax}")


@dataclass(frozen=True)
class MelConfig(MelBandsConfig):
    """Log-mel spectrogram."""

    amin: float = 1e-10  # power floor before log10 (librosa.power_to_db default)
    top_db: Optional[float] = None  # clamp to max - top_db dB; None = no clamp (keeps absolute level)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rows(self, self.n_mels)
        if self.amin <= 0 or (self.top_db is not None and self.top_db < 0):
            raise FeatureError(f"need amin > 0 and top_db >= 0 or None, got {self.amin}, {self.top_db}")


@dataclass(frozen=True)
class LinearConfig(StftConfig):
    """Log-magnitude linear-frequency spectrogram, bins mean-pooled to ``n_rows``."""

    n_rows: int = 128  # output rows; the n_fft/2 lowest bins are pooled in equal groups
    amin: float = 1e-5  # magnitude floor before log10 (librosa.amplitude_to_db default)
    top_db: Optional[float] = None  # clamp to max - top_db dB; None = no clamp

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rows(self, self.n_rows)
        if (self.n_fft // 2) % self.n_rows:
            raise FeatureError(f"n_rows={self.n_rows} must divide n_fft/2={self.n_fft // 2}")
        if self.amin <= 0 or (self.top_db is not None and self.top_db < 0):
            raise FeatureError(f"need amin > 0 and top_db >= 0 or None, got {self.amin}, {self.top_db}")


@dataclass(frozen=True)
class MfccConfig(MelBandsConfig):
    """MFCCs from the log-mel spectrogram (librosa defaults: top_db=80 clamp, DCT-II ortho)."""

    n_mfcc: int = 40  # cepstral coefficients kept (rows), including c0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_mfcc > self.n_mels:
            raise FeatureError(f"n_mfcc={self.n_mfcc} cannot exceed n_mels={self.n_mels}")


@dataclass(frozen=True)
class DeltaMfccConfig(MfccConfig):
    """First-order delta of the MFCCs."""

    width: int = 9  # frames in the Savitzky-Golay window (odd, >= 3); librosa.feature.delta width

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_width(self)


@dataclass(frozen=True)
class ChromaConfig(StftConfig):
    """STFT chromagram (``librosa.feature.chroma_stft``) with a fixed tuning."""

    n_chroma: int = 12  # chroma bins per octave (rows)
    tuning: float = 0.0  # tuning offset in fractions of a bin; fixed (no per-clip estimate)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rows(self, self.n_chroma)


@dataclass(frozen=True)
class TonnetzConfig(ChromaConfig):
    """Tonal centroids (6 rows) projected from the STFT chromagram."""


@dataclass(frozen=True)
class SpectralContrastConfig(StftConfig):
    """Octave-band spectral contrast (``librosa.feature.spectral_contrast``)."""

    n_bands: int = 6  # octave bands above fmin (rows = n_bands + 1, the first is [0, fmin])
    fmin: float = 200.0  # upper edge of the lowest band in Hz
    quantile: float = 0.02  # fraction of a band's bins averaged for its peak and valley

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rows(self, self.n_bands + 1)
        if self.fmin <= 0 or not 0.0 < self.quantile < 1.0:
            raise FeatureError(f"need fmin > 0 and 0 < quantile < 1, got {self.fmin}, {self.quantile}")


@dataclass(frozen=True)
class FrameConfig:
    """Plain time-domain framing (center=True) for zcr and rms."""

    frame_length: int = 1024  # samples per frame (64 ms at 16 kHz), same span as the STFT
    hop_length: int = 256  # samples between frame centres: 3 s -> 188 frames

    def __post_init__(self) -> None:
        _positive_int(self, "frame_length", "hop_length")
        if self.frame_length % 2:
            raise FeatureError(f"frame_length must be even, got {self.frame_length}")


@dataclass(frozen=True)
class ZcrConfig(FrameConfig):
    """Zero-crossing rate (edge-padded frames, |y| <= 1e-10 counts as zero)."""


@dataclass(frozen=True)
class RmsConfig(FrameConfig):
    """Root-mean-square energy (zero-padded frames)."""


@dataclass(frozen=True)
class TempogramConfig(MelBandsConfig):
    """Autocorrelation tempogram of the mel onset-strength envelope."""

    win_length: int = 64  # onset frames per autocorrelation window = rows (lags 0..63, ~1 s)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int(self, "win_length")
        _check_rows(self, self.win_length)


@dataclass(frozen=True)
class DeltaTempogramConfig(TempogramConfig):
    """First-order delta of the tempogram along time."""

    width: int = 9  # frames in the Savitzky-Golay window (odd, >= 3); librosa.feature.delta width

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_width(self)


def _check_width(cfg: object) -> None:
    width = getattr(cfg, "width")
    if isinstance(width, bool) or not isinstance(width, int) or width < 3 or width % 2 != 1:
        raise FeatureError(f"{type(cfg).__name__}.width must be an odd int >= 3, got {width!r}")
