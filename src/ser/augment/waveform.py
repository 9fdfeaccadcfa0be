"""Waveform strategies: applied to mono float32 audio before feature extraction.

They are too slow to run per batch on the 2-core development CPU for eleven
representations, so the feature cache stores K augmented copies per training clip,
made once with :func:`augment_waveform` (deterministic for ``(chain, seed)``) and keyed
by the chain's ``to_dict()``.

Measured per 3 s clip at 16 kHz (2 cores, numpy/scipy/librosa 0.11, warm, p=1):
``time_shift`` 0.05 ms, ``pitch_shift`` 8-15 ms (phase vocoder; 0.8 ms with
``method="resample"``), ``colored_noise`` 1.1 ms, ``lowpass``/``highpass`` 1.3 ms,
``gain`` 0.04 ms; the whole chain ~13 ms with every step firing, ~4 ms at the default
probabilities.

Example:
    >>> import numpy as np
    >>> from ser.augment import get_augmentation, Chain, augment_waveform
    >>> chain = Chain((get_augmentation("gain", p=1.0), get_augmentation("colored_noise", p=1.0)))
    >>> y = np.zeros(48000, dtype=np.float32)
    >>> augment_waveform(y, 16000, chain, seed=3).shape
    (48000,)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Union

import numpy as np
import scipy.signal
import soxr

from ..audio import pad_or_trim
from .registry import AugmentError, Chain, WaveformAugmentation, as_waveform, register

NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # colour -> exponent a of power ~ 1/f^a
NOISE_FLOOR_HZ = 20.0  # below this the 1/f shaping stays flat, else brown noise is mostly sub-audible
PEAK_LIMIT = 0.99  # gain's "rescale" keeps the peak at or below this
MAX_CUTOFF_FRACTION = 0.95  # a drawn cut-off is clamped to 95 % of the Nyquist frequency


@register
@dataclass(frozen=True)
class TimeShift(WaveformAugmentation):
    """Shift the clip by up to ``max_fraction`` of its length, left or right.

    The vacated part is silence (zeros), as if the recording had started earlier or
    later; with ``roll=True`` the clip wraps around instead.
    """

    name = "time_shift"
    p: float = 0.5  # probability of shifting a clip
    max_fraction: float = 0.5  # largest shift as a fraction of the clip length (0.5 = half)
    roll: bool = False  # wrap around (circular) instead of zero filling

    def validate(self) -> None:
        self._need(0.0 <= self.max_fraction <= 1.0, "max_fraction must be in [0, 1]")

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        limit = int(self.max_fraction * len(y))
        k = int(rng.integers(-limit, limit + 1))
        if self.roll or k == 0:
            return np.roll(y, k)
        out = np.zeros_like(y)
        if k > 0:
            out[k:] = y[:-k]
        else:
            out[:k] = y[-k:]
        return out


@register
@dataclass(frozen=True)
class PitchShift(WaveformAugmentation):
    """Shift the pitch by a uniform number of semitones in ``[min_semitones, max_semitones]``.

    ``method="phase_vocoder"`` is ``librosa.effects.pitch_shift`` (duration kept, 8-15 ms
    per 3 s clip). ``method="resample"`` resamples by the pitch ratio (soxr) and pads or
    cuts back to the same length (0.8 ms): it also changes tempo and duration by the same
    ratio (up to -16 % / +12 %), which is a plausible speaking-rate change but not a pure
    pitch change.
    """

    name = "pitch_shift"
    p: float = 0.3  # probability of shifting a clip
    min_semitones: float = -2.0  # lowest shift (negative = lower voice)
    max_semitones: float = 3.0  # highest shift
    method: str = "phase_vocoder"  # "phase_vocoder" (librosa, duration kept) or "resample" (fast)

    def validate(self) -> None:
        self._need(self.min_semitones <= self.max_semitones, "min_semitones must be <= max_semitones")
        self._need(abs(self.min_semitones) <= 12 and abs(self.max_semitones) <= 12,
                   "shifts must be within +-12 semitones")
        self._need(self.method in ("phase_vocoder", "resample"),
                   "method must be 'phase_vocoder' or 'resample'")

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        steps = float(rng.uniform(self.min_semitones, self.max_semitones))
        if steps == 0.0 or len(y) < 64:
            return y
        if self.method == "resample":
            # Reading sr * ratio samples per second as sr raises every frequency by ratio.
            ratio = 2.0 ** (steps / 12.0)
            return pad_or_trim(soxr.resample(y, sr * ratio, sr, quality="HQ"), len(y))
        import librosa  # lazy: importing librosa costs ~1 s, only this strategy needs it

        n_fft = min(2048, 1 << int(np.log2(len(y))))  # short clips need a shorter frame
        return librosa.effects.pitch_shift(y, sr=sr, n_steps=steps, n_fft=n_fft)


@register
@dataclass(frozen=True)
class ColoredNoise(WaveformAugmentation):
    """Add white, pink or brown noise at a uniform SNR in ``[min_snr_db, max_snr_db]``.

    Noise is white Gaussian shaped in the frequency domain (power ~ 1/f^a: a = 0, 1, 2,
    flat below 20 Hz), then scaled so that mean(y^2) / mean(noise^2) is exactly the
    drawn SNR. The signal power is that of the whole clip, padding included. A silent
    clip (power 0) is returned unchanged: there is no level to set the noise against.
    """

    name = "colored_noise"
    p: float = 0.5  # probability of adding noise
    colors: tuple[str, ...] = ("white", "pink", "brown")  # drawn uniformly per clip
    min_snr_db: float = 10.0  # noisiest SNR
    max_snr_db: float = 30.0  # cleanest SNR

    def validate(self) -> None:
        bad = [c for c in self.colors if c not in NOISE_COLORS]
        self._need(len(self.colors) > 0 and not bad, f"colors must be a non-empty subset of {list(NOISE_COLORS)}")
        self._need(self.min_snr_db <= self.max_snr_db, "min_snr_db must be <= max_snr_db")

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        color = self.colors[int(rng.integers(len(self.colors)))]
        snr_db = float(rng.uniform(self.min_snr_db, self.max_snr_db))
        noise = colored_noise(len(y), NOISE_COLORS[color], sr, rng)
        power = float(np.mean(y.astype(np.float64) ** 2))
        noise_power = float(np.mean(noise**2))
        if power == 0.0 or noise_power == 0.0:
            return y
        scale = np.sqrt(power / (noise_power * 10.0 ** (snr_db / 10.0)))
        return (y + scale * noise).astype(np.float32)


def colored_noise(n: int, exponent: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise with power spectrum ~ 1/f^exponent (float64, zero mean).

    Example:
        >>> colored_noise(1000, 1.0, 16000, np.random.default_rng(0)).shape
        (1000,)
    """
    white = rng.standard_normal(n)
    if exponent == 0.0 or n < 2:
        return white
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), NOISE_FLOOR_HZ)
    spectrum *= f ** (-exponent / 2.0)  # amplitude ~ f^-a/2 gives power ~ f^-a
    spectrum[0] = 0.0  # no DC offset
    return np.fft.irfft(spectrum, n)


@dataclass(frozen=True)
class _Filter(WaveformAugmentation):
    """Butterworth filter with a cut-off drawn uniformly in ``[min_cutoff_hz, max_cutoff_hz]``.

    Zero-phase (``sosfiltfilt``) so that nothing is delayed relative to the labels'
    timing; the effective order is twice ``order``. A cut-off above 95 % of Nyquist is
    clamped there.
    """

    btype: ClassVar[str] = ""  # "lowpass" or "highpass", fixed by the subclass
    order: int = 4  # Butterworth order (per pass; sosfiltfilt runs two passes)
    min_cutoff_hz: float = 0.0  # overridden by the subclasses
    max_cutoff_hz: float = 0.0

    def validate(self) -> None:
        self._need(0 < self.min_cutoff_hz <= self.max_cutoff_hz, "need 0 < min_cutoff_hz <= max_cutoff_hz")
        self._need(1 <= self.order <= 10, "order must be in 1..10")

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        cutoff = min(float(rng.uniform(self.min_cutoff_hz, self.max_cutoff_hz)), MAX_CUTOFF_FRACTION * sr / 2)
        if len(y) <= 3 * (2 * self.order + 1):  # sosfiltfilt's padding needs a few periods
            return y
        sos = scipy.signal.butter(self.order, cutoff, btype=self.btype, fs=sr, output="sos")
        return scipy.signal.sosfiltfilt(sos, y).astype(np.float32)


@register
@dataclass(frozen=True)
class LowPass(_Filter):
    """Low-pass: a muffled, narrow-band channel (telephone, cheap microphone)."""

    name = "lowpass"
    p: float = 0.2  # probability of filtering a clip
    btype = "lowpass"
    min_cutoff_hz: float = 4000.0  # most muffled (telephone band ends near 3.4-4 kHz)
    max_cutoff_hz: float = 7500.0  # least muffled (Nyquist is 8 kHz at 16 kHz)


@register
@dataclass(frozen=True)
class HighPass(_Filter):
    """High-pass: a thin channel without low frequencies (small loudspeaker, far microphone)."""

    name = "highpass"
    p: float = 0.2  # probability of filtering a clip
    btype = "highpass"
    min_cutoff_hz: float = 100.0  # mildest (removes rumble only)
    max_cutoff_hz: float = 800.0  # strongest (removes the fundamental of most voices)


@register
@dataclass(frozen=True)
class Gain(WaveformAugmentation):
    """Change the level by a uniform gain in ``[min_db, max_db]``, without clipping.

    ``clip="rescale"``: if the peak would exceed 1, the whole clip is scaled so its peak
    is 0.99 (no distortion; the effective gain is then smaller than drawn).
    ``clip="hard"``: samples are clipped to [-1, 1], simulating an overdriven recording.
    """

    name = "gain"
    p: float = 0.5  # probability of changing the level
    min_db: float = -6.0  # quietest
    max_db: float = 12.0  # loudest (before the clipping rule)
    clip: str = "rescale"  # "rescale" (peak <= 0.99, no distortion) or "hard" (clip to [-1, 1])

    def validate(self) -> None:
        self._need(self.min_db <= self.max_db, "min_db must be <= max_db")
        self._need(self.clip in ("rescale", "hard"), "clip must be 'rescale' or 'hard'")

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        out = y * np.float32(10.0 ** (float(rng.uniform(self.min_db, self.max_db)) / 20.0))
        peak = float(np.max(np.abs(out)))
        if self.clip == "hard":
            return np.clip(out, -1.0, 1.0)
        if peak > 1.0:
            out *= np.float32(PEAK_LIMIT / peak)
        return np.clip(out, -1.0, 1.0)  # guards against float32 rounding only


ChainLike = Union[Chain, Mapping[str, Any], Any]


def augment_waveform(y: Any, sr: int, chain: ChainLike, seed: int) -> np.ndarray:
    """Apply a waveform chain to one clip; the output depends only on ``(y, chain, seed)``.

    Args:
        y: mono audio (1-D, converted to float32).
        sr: its sample rate (16 kHz inside the package).
        chain: a waveform :class:`Chain`, its ``to_dict()``, or the object
            :func:`waveform_augmentation` returns.
        seed: the seed of this copy, e.g. ``derive_seed(config.seed, clip_id, k)``.

    Returns:
        float32 array of the same length, finite.

    Example:
        >>> from ser.augment import AugmentConfig, waveform_augmentation
        >>> aug = waveform_augmentation(AugmentConfig())
        >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
        >>> bool((augment_waveform(y, 16000, aug, 7) == augment_waveform(y, 16000, aug, 7)).all())
        True
    """
    chain = getattr(chain, "chain", chain)
    if isinstance(chain, Mapping):
        chain = Chain.from_dict(chain)
    if not isinstance(chain, Chain):
        raise AugmentError(f"chain must be a Chain or its to_dict(), got {type(chain).__name__}")
    if chain.kind not in (None, "waveform"):
        raise AugmentError(f"augment_waveform needs a waveform chain, got {chain.kind} strategies")
    y = as_waveform(y, "augment_waveform")
    if not np.isfinite(y).all():
        raise AugmentError("augment_waveform: input audio holds NaN or infinite samples")
    out = chain(y, np.random.default_rng(seed), sr)
    return np.ascontiguousarray(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=-1.0), dtype=np.float32)


__all__ = ["TimeShift", "PitchShift", "ColoredNoise", "LowPass", "HighPass", "Gain",
           "augment_waveform", "colored_noise"]
