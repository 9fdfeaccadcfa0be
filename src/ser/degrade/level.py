"""Level conditions: the identity, a fixed gain (optionally clipped at full scale) and clipping.

``Gain`` multiplies by ``10 ** (db / 20)`` exactly; with ``clip=True`` the result is
then hard-clipped to [-1, 1], as a recorder overdriven by a loud talker would be.
``Clipping`` hard-clips at ``fraction`` of the clip's own peak (whatever its level) and
scales the result back to the input's RMS, so it changes the waveform's shape, not its
loudness; the output's peak never exceeds the input's.

Example:
    >>> import numpy as np
    >>> from ser.degrade import Clipping, Gain
    >>> y = np.array([0.5, -0.25, 0.05], np.float32)
    >>> Gain(db=20.0, clip=True)(y).tolist()
    [1.0, -1.0, 0.5]
    >>> bool(np.abs(Clipping(fraction=0.2)(y)).max() <= 0.5)
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .registry import Condition, power, register


@register
@dataclass(frozen=True)
class Clean(Condition):
    """The identity: the reference row of every robustness table."""

    kind = "clean"

    def apply(self, y, sr, rng, babble):
        return y


@register
@dataclass(frozen=True)
class Gain(Condition):
    """Multiply by ``10 ** (db / 20)``; ``clip=True`` then hard-clips to [-1, 1]."""

    kind = "gain"
    db: float = 0.0  # gain in dB: -20 = a tenth of the amplitude, +20 = ten times
    clip: bool = False  # clip the result at full scale (+-1.0), as a fixed-point recorder does

    def validate(self) -> None:
        self._need(np.isfinite(self.db) and -80.0 <= self.db <= 60.0, "db must be in [-80, 60]")
        self._need(isinstance(self.clip, bool), "clip must be True or False")

    def apply(self, y, sr, rng, babble):
        out = y * 10.0 ** (self.db / 20.0)
        return np.clip(out, -1.0, 1.0) if self.clip else out


@register
@dataclass(frozen=True)
class Clipping(Condition):
    """Hard-clip at ``fraction`` of the clip's peak, then restore the input's RMS."""

    kind = "clipping"
    fraction: float = 0.1  # clipping threshold as a fraction of the peak; lower = harsher

    def validate(self) -> None:
        self._need(0.0 < self.fraction <= 1.0, "fraction must be in (0, 1]")

    def apply(self, y, sr, rng, babble):
        threshold = self.fraction * float(np.max(np.abs(y)))
        if threshold == 0.0:
            return y
        out = np.clip(y, -threshold, threshold)
        return out * np.sqrt(power(y) / power(out))


__all__ = ["Clean", "Clipping", "Gain"]
