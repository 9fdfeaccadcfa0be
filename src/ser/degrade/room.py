"""Room reverberation from a synthetic room impulse response (RIR).

The RIR is a direct-path impulse (1 at time 0) plus a tail of Gaussian noise under an
exponential envelope that falls 60 dB in ``rt60_s`` seconds, starting ``predelay_ms``
after the direct path and ending at ``rt60_s``. The tail is scaled so that the energy
of the direct path over the energy of the tail is ``drr_db`` (direct-to-reverberant
ratio; 0 dB is a talker a couple of metres away in an ordinary room). The tail is
drawn from ``default_rng(seed)``: one room per seed.

The input is convolved with the RIR (``scipy.signal.fftconvolve``), cut to the input
length (the reverberant tail past the end is dropped, as a fixed-length clip would)
and scaled back to the input's RMS, so reverberation changes the sound, not the level.
A silent input stays silent.

Example:
    >>> import numpy as np
    >>> from ser.degrade import Reverb
    >>> y = np.zeros(16000, np.float32); y[:4000] = np.sin(np.arange(4000) / 4)
    >>> out = Reverb(rt60_s=0.5)(y, 16000, seed=0)
    >>> bool(np.abs(out[6000:]).max() > 0.01), round(float(np.sqrt(np.mean(out ** 2)) / np.sqrt(np.mean(y ** 2))), 4)
    (True, 1.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from .registry import Condition, power, register

DECAY_DB = 60.0  # RT60: the time the energy takes to fall by 60 dB


def synthetic_rir(sr: int, rt60_s: float, drr_db: float, predelay_ms: float,
                  rng: np.random.Generator) -> np.ndarray:
    """The impulse response described in the module docstring, float64, ``rt60_s`` long.

    Example:
        >>> h = synthetic_rir(16000, 0.3, 0.0, 2.0, np.random.default_rng(0))
        >>> len(h), float(h[0])
        (4800, 1.0)
    """
    n = max(2, int(round(rt60_s * sr)))
    start = min(n - 1, max(1, int(round(predelay_ms * 1e-3 * sr))))
    t = np.arange(n - start) / sr
    # amplitude falls 60 dB (a factor 1000) in rt60_s: exp(-ln(1000) t / rt60)
    tail = rng.standard_normal(n - start) * np.exp(-np.log(10.0 ** (DECAY_DB / 20.0)) * t / rt60_s)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / power(tail) / len(tail))  # energy(tail) = 10^(-drr/10)
    h = np.zeros(n)
    h[0] = 1.0
    h[start:] = tail
    return h


@register
@dataclass(frozen=True)
class Reverb(Condition):
    """Reverberation: convolve with a synthetic RIR, cut to length, keep the input's RMS."""

    kind = "reverb"
    rt60_s: float = 0.5  # reverberation time in seconds (living room ~0.4, hall ~1.5)
    drr_db: float = 0.0  # direct-to-reverberant energy ratio in dB; lower = farther away
    predelay_ms: float = 2.0  # gap between the direct path and the first reflections

    def validate(self) -> None:
        self._need(0.05 <= self.rt60_s <= 3.0, "rt60_s must be in [0.05, 3] seconds")
        self._need(-20.0 <= self.drr_db <= 30.0, "drr_db must be in [-20, 30]")
        self._need(0.0 <= self.predelay_ms <= 50.0, "predelay_ms must be in [0, 50]")

    def apply(self, y, sr, rng, babble):
        before = power(y)
        h = synthetic_rir(sr, float(self.rt60_s), float(self.drr_db), float(self.predelay_ms), rng)
        if before == 0.0:
            return y
        out = scipy.signal.fftconvolve(y, h)[: len(y)]
        after = power(out)
        return out * np.sqrt(before / after) if after > 0.0 else out


__all__ = ["Reverb", "synthetic_rir"]
