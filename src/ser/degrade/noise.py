"""Additive noise at a measured SNR: white, pink (power ~ 1/f) and babble (other talkers).

The SNR is that of the whole clip: ``10 * log10(power(y) / power(noise))`` with power
the mean square over every sample, padding included. The noise is scaled (in float64)
so that this measured value is the target to well within 0.01 dB; the clean part of
the output is ``y`` itself, so ``out - y`` is exactly the added noise up to float32
rounding.

A silent input (power 0) is returned unchanged: an SNR has no level to set the noise
against, and inventing one would make "snr10" of silence mean something arbitrary.

Babble is ``talkers`` clips drawn from the ``babble=`` pool (without replacement while
the pool allows), each started at a random offset, looped or cut to the input length
and normalised to unit power, then summed. The pool must be clips of *training*
speakers at 16 kHz (they are resampled when ``sr`` differs), so that an evaluation
never hears a test speaker in the background.

Example:
    >>> import numpy as np
    >>> from ser.degrade import get_condition
    >>> y = np.sin(np.arange(16000) / 3).astype(np.float32)
    >>> out = get_condition("snr10")(y, 16000, seed=0)
    >>> noise = out.astype(np.float64) - y
    >>> round(float(10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise ** 2))), 2)
    10.0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from .channel import to_rate
from .registry import Condition, DegradeError, power, register

COLORS = ("white", "pink", "babble")  # the noise kinds Noise knows
PINK_FLOOR_HZ = 20.0  # the 1/f shaping is flat below this, else pink noise is mostly rumble
MAX_TALKERS = 64  # more voices than this is a crowd hum, not babble


def pink_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise with power ~ 1/f (flat below 20 Hz, no DC), float64.

    Example:
        >>> pink_noise(1000, 16000, np.random.default_rng(0)).shape
        (1000,)
    """
    white = rng.standard_normal(n)
    if n < 2:
        return white
    spectrum = np.fft.rfft(white)
    spectrum *= np.maximum(np.fft.rfftfreq(n, 1.0 / sr), PINK_FLOOR_HZ) ** -0.5  # amplitude f^-1/2
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def babble_noise(n: int, sr: int, pool: Sequence[np.ndarray], talkers: int,
                 rng: np.random.Generator, who: str = "babble") -> np.ndarray:
    """The sum of ``talkers`` pool clips at random offsets, each looped to ``n`` samples at unit power.

    Silent clips in the pool are skipped; a pool with no audible clip raises
    :class:`DegradeError`.
    """
    clips = []
    for i, c in enumerate(pool):
        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 1 or not np.isfinite(c).all():
            raise DegradeError(f"{who}: babble clip {i} must be finite mono 1-D audio, got shape {c.shape}")
        if power(c) > 0.0:
            clips.append(c)
    if not clips:
        raise DegradeError(f"{who}: the babble pool holds no audible clip ({len(pool)} given)")
    replace = len(clips) < talkers
    picks = rng.choice(len(clips), size=talkers, replace=replace)
    out = np.zeros(n)
    for k in picks:
        c = to_rate(clips[int(k)], SAMPLE_RATE, sr)
        c = np.roll(c, -int(rng.integers(len(c))))  # start anywhere in the clip
        c = np.resize(c, n)  # np.resize repeats cyclically: loops short clips, cuts long ones
        p = power(c)
        if p > 0.0:
            out += c / np.sqrt(p)
    return out


@register
@dataclass(frozen=True)
class Noise(Condition):
    """Add white, pink or babble noise at ``snr_db`` dB SNR (measured over the whole clip)."""

    kind = "noise"
    color: str = "white"  # "white", "pink" (1/f power) or "babble" (needs babble= clips)
    snr_db: float = 10.0  # 10*log10(power(y)/power(noise)); lower = noisier
    talkers: int = 5  # babble only: voices summed (each at equal power)

    @property
    def needs_babble(self) -> bool:  # type: ignore[override]
        return self.color == "babble"

    def validate(self) -> None:
        self._need(self.color in COLORS, f"color must be one of {list(COLORS)}")
        self._need(np.isfinite(self.snr_db) and -30.0 <= self.snr_db <= 80.0, "snr_db must be in [-30, 80]")
        self._need(int(self.talkers) == self.talkers and 1 <= self.talkers <= MAX_TALKERS,
                   f"talkers must be an integer in 1..{MAX_TALKERS}")

    def apply(self, y, sr, rng, babble):
        clean = power(y)
        if clean == 0.0:
            return y
        n = len(y)
        if self.color == "white":
            noise = rng.standard_normal(n)
        elif self.color == "pink":
            noise = pink_noise(n, sr, rng)
        else:
            noise = babble_noise(n, sr, babble, int(self.talkers), rng, self.name)
        p = power(noise)
        if p == 0.0:  # a one-sample pink noise or a pool of DC clips: nothing to scale
            return y
        noise *= np.sqrt(clean / (p * 10.0 ** (self.snr_db / 10.0)))
        return y + noise


__all__ = ["Noise", "babble_noise", "pink_noise"]
