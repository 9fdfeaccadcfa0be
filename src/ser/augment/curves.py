"""Feature strategies for 1-D curves (``zcr``, ``rms``: one row x frames), from
time-series augmentation (Um et al., 2017): jitter, scaling, time warp, segment dropout.

They also accept several rows (each row is treated as one curve with shared random
draws), but the policy uses them only for the two 1-row representations: frequency
masks make no sense there (one row: a frequency mask would erase the whole input).

A curve that is non-negative on input (both ``zcr`` and ``rms`` are) stays non-negative.

Example:
    >>> import numpy as np
    >>> from ser.augment import get_augmentation
    >>> rms = np.abs(np.sin(np.linspace(0, 6, 188, dtype=np.float32)))[None]
    >>> out = get_augmentation("scaling", p=1.0)(rms, np.random.default_rng(0))
    >>> out.shape, bool((out >= 0).all())
    ((1, 188), True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .registry import FeatureAugmentation, register
from .spectral import FILLS, draw_spans, fill_value


def _keep_sign(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Clip at 0 where the input curve was non-negative (energies and rates cannot be < 0)."""
    return np.maximum(out, 0.0) if x.min() >= 0.0 else out


@register
@dataclass(frozen=True)
class Jitter(FeatureAugmentation):
    """Add Gaussian noise with sigma = ``sigma`` x the curve's standard deviation.

    Relative to each row's spread, so it means the same for ``zcr`` (~0.1) and ``rms``.
    """

    name = "jitter"
    p: float = 0.5  # probability of jittering an item
    sigma: float = 0.05  # noise std as a fraction of each row's std over time

    def validate(self) -> None:
        self._need(0.0 <= self.sigma <= 1.0, "sigma must be in [0, 1]")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        scale = self.sigma * x.std(axis=1, keepdims=True)
        return _keep_sign(x + scale * rng.standard_normal(x.shape).astype(np.float32), x)


@register
@dataclass(frozen=True)
class Scaling(FeatureAugmentation):
    """Multiply the curve by a factor log-uniform in ``[min_factor, max_factor]``.

    For ``rms``: a louder or quieter recording; for ``zcr``: a brighter or duller voice.
    """

    name = "scaling"
    p: float = 0.5  # probability of scaling an item
    min_factor: float = 0.8  # smallest factor
    max_factor: float = 1.25  # largest factor (log-symmetric to 0.8)

    def validate(self) -> None:
        self._need(0.0 < self.min_factor <= self.max_factor, "need 0 < min_factor <= max_factor")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        factor = np.exp(rng.uniform(np.log(self.min_factor), np.log(self.max_factor)))
        return x * np.float32(factor)


@register
@dataclass(frozen=True)
class TimeWarp(FeatureAugmentation):
    """Stretch one part of the curve and squeeze the rest (SpecAugment's time warp).

    A centre frame ``c`` is moved by ``d`` (uniform in +-``max_shift``) and the two sides
    are linearly resampled (``np.interp``), so the ends stay put and the curve is only
    resampled: every output value lies between neighbouring input values. Mimics a
    local change of speaking rate.
    """

    name = "time_warp"
    p: float = 0.5  # probability of warping an item
    max_shift: int = 10  # largest displacement of the centre frame, in frames

    def validate(self) -> None:
        self._need(int(self.max_shift) == self.max_shift and self.max_shift >= 0, "max_shift must be an int >= 0")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        n = x.shape[1]
        shift = min(self.max_shift, (n - 2) // 2 - 1)  # keep the centre strictly inside
        if shift < 1:
            return x
        c = int(rng.integers(shift + 1, n - 1 - shift))
        d = int(rng.integers(-shift, shift + 1))
        if d == 0:
            return x
        t = np.arange(n, dtype=np.float64)
        # output frame t reads input position src(t): [0, c+d] -> [0, c], [c+d, n-1] -> [c, n-1]
        src = np.where(t <= c + d, t * c / (c + d), c + (t - c - d) * (n - 1 - c) / (n - 1 - c - d))
        return np.stack([np.interp(src, t, row) for row in x]).astype(np.float32)


@register
@dataclass(frozen=True)
class SegmentDropout(FeatureAugmentation):
    """Replace up to ``n_segments`` runs of up to ``max_width`` frames by ``fill``.

    The 1-D counterpart of the time mask: with ``fill="min"`` a dropped run looks like
    a pause (lowest energy / rate in the clip).
    """

    name = "segment_dropout"
    p: float = 0.5  # probability of dropping segments in an item
    max_width: int = 10  # longest dropped run in frames (10 x 16 ms = 0.16 s)
    n_segments: int = 2  # dropped runs per item (they may overlap)
    fill: str = "min"  # row_mean, mean, min or zero (see ser.augment.spectral)

    def validate(self) -> None:
        self._need(int(self.max_width) == self.max_width and self.max_width >= 0, "max_width must be an int >= 0")
        self._need(int(self.n_segments) == self.n_segments and self.n_segments >= 0,
                   "n_segments must be an int >= 0")
        self._need(self.fill in FILLS, f"fill must be one of {FILLS}")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        value = fill_value(x, self.fill)
        for t0, t1 in draw_spans(rng, x.shape[1], self.max_width, self.n_segments):
            x[:, t0:t1] = value
        return x
