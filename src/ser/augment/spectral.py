"""Feature strategies for 2-D representations: SpecAugment-style masks, time roll and
harmonic masks. They run on cached (rows, frames) float32 arrays at batch time (each
well under a millisecond), or on a (n, rows, frames) batch item by item.

Mask fill values (``fill``):

- ``"row_mean"`` (default): each row's own mean over time. Rows of one representation
  live on very different scales (MFCC c0 is ~-300, the other coefficients ~+-20), so a
  single value would be an outlier in most rows; a row's mean is its neutral value,
  i.e. 0 after per-row standardisation, which is what SpecAugment's zero fill means.
- ``"mean"``: the mean of the whole array; ``"min"``: its minimum (silence for dB
  spectrograms and energies); ``"zero"``: 0 (no energy for chroma, the neutral centre
  for tonnetz).

Example:
    >>> import numpy as np
    >>> from ser.augment import get_augmentation
    >>> mask = get_augmentation("time_mask", p=1.0, max_width=10, n_masks=1)
    >>> x = np.arange(6 * 50, dtype=np.float32).reshape(6, 50)
    >>> y = mask(x, np.random.default_rng(0))
    >>> int((y != x).any(axis=0).sum()) <= 10
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .registry import FeatureAugmentation, register

FILLS = ("row_mean", "mean", "min", "zero")  # allowed mask fill values, see the module docstring


def fill_value(x: np.ndarray, fill: str) -> np.ndarray:
    """The value masked cells get: broadcastable to ``x`` (rows, frames).

    Example:
        >>> fill_value(np.array([[1., 3.], [5., 7.]]), "row_mean").ravel().tolist()
        [2.0, 6.0]
    """
    if fill == "row_mean":
        return x.mean(axis=1, keepdims=True)
    if fill == "mean":
        return np.full((1, 1), x.mean(), dtype=x.dtype)
    if fill == "min":
        return np.full((1, 1), x.min(), dtype=x.dtype)
    return np.zeros((1, 1), dtype=x.dtype)


def draw_spans(rng: np.random.Generator, size: int, max_width: int, n: int) -> list[tuple[int, int]]:
    """``n`` spans ``[start, start + w)`` inside ``[0, size)``, ``w`` uniform in 0..max_width.

    The SpecAugment rule: the width is drawn first, then a start that keeps the span
    inside the axis. Spans may overlap.
    """
    spans = []
    for _ in range(n):
        w = int(rng.integers(0, min(max_width, size) + 1))
        t0 = int(rng.integers(0, size - w + 1))
        spans.append((t0, t0 + w))
    return spans


@dataclass(frozen=True)
class _Mask(FeatureAugmentation):
    """Shared checks of the masking strategies."""

    max_width: int = 20  # widest mask (frames or rows); the width is uniform in 0..max_width
    n_masks: int = 2  # number of masks per item (they may overlap)
    fill: str = "row_mean"  # what masked cells become: row_mean, mean, min or zero

    def validate(self) -> None:
        self._need(int(self.max_width) == self.max_width and self.max_width >= 0, "max_width must be an int >= 0")
        self._need(int(self.n_masks) == self.n_masks and self.n_masks >= 0, "n_masks must be an int >= 0")
        self._need(self.fill in FILLS, f"fill must be one of {FILLS}")


@register
@dataclass(frozen=True)
class TimeMask(_Mask):
    """Mask ``n_masks`` runs of up to ``max_width`` consecutive frames (all rows).

    Teaches the model not to rely on one moment of the utterance (a word, a laugh).
    """

    name = "time_mask"
    p: float = 0.8  # probability of masking an item
    max_width: int = 20  # widest mask in frames (20 x 16 ms = 0.32 s at hop 256)
    n_masks: int = 2  # masks per item
    fill: str = "row_mean"  # see the module docstring

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        value = fill_value(x, self.fill)
        for t0, t1 in draw_spans(rng, x.shape[1], self.max_width, self.n_masks):
            x[:, t0:t1] = value
        return x


@register
@dataclass(frozen=True)
class FreqMask(_Mask):
    """Mask ``n_masks`` bands of up to ``max_width`` adjacent rows (all frames).

    Meant for representations whose rows are an ordered frequency (or lag/quefrency)
    axis; never for the 1-row curves ``zcr``/``rms``, where it would erase everything.
    """

    name = "freq_mask"
    p: float = 0.8  # probability of masking an item
    max_width: int = 8  # widest mask in rows (the policy sets it per representation)
    n_masks: int = 2  # masks per item
    fill: str = "row_mean"  # see the module docstring

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        value = fill_value(x, self.fill)
        for r0, r1 in draw_spans(rng, x.shape[0], self.max_width, self.n_masks):
            x[r0:r1, :] = value[r0:r1] if value.shape[0] > 1 else value
        return x


@register
@dataclass(frozen=True)
class TimeRoll(FeatureAugmentation):
    """Roll the frames circularly by up to ``max_fraction`` of the length, either way.

    The feature-side counterpart of the waveform time shift: where the speech sits in
    the clip should not matter. Values are only moved, never changed.
    """

    name = "time_roll"
    p: float = 0.5  # probability of rolling an item
    max_fraction: float = 0.25  # largest roll as a fraction of the number of frames

    def validate(self) -> None:
        self._need(0.0 <= self.max_fraction <= 1.0, "max_fraction must be in [0, 1]")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        limit = int(self.max_fraction * x.shape[1])
        return np.roll(x, int(rng.integers(-limit, limit + 1)), axis=1)


@register
@dataclass(frozen=True)
class HarmonicMask(FeatureAugmentation):
    """Mask up to ``max_units`` whole harmonic units, over all frames.

    A unit is ``unit_rows`` adjacent rows: 1 for chroma (one pitch class), 2 for tonnetz
    (the x/y pair of one interval circle: fifths, minor thirds, major thirds), so that a
    mask removes one pitch class / one tonal relation rather than half of one. Units
    are drawn without replacement; the count is uniform in 1..max_units.
    """

    name = "harmonic_mask"
    p: float = 0.5  # probability of masking an item
    max_units: int = 2  # most units masked per item
    unit_rows: int = 1  # rows per unit: 1 for chroma, 2 for tonnetz (set by the policy)
    fill: str = "zero"  # chroma: no energy in that class; tonnetz: the neutral centre

    def validate(self) -> None:
        self._need(int(self.max_units) == self.max_units and self.max_units >= 1, "max_units must be an int >= 1")
        self._need(int(self.unit_rows) == self.unit_rows and self.unit_rows >= 1, "unit_rows must be an int >= 1")
        self._need(self.fill in FILLS, f"fill must be one of {FILLS}")

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        n_units = x.shape[0] // self.unit_rows
        if n_units < 2:  # masking the only unit would erase the representation
            return x
        value = fill_value(x, self.fill)
        count = int(rng.integers(1, min(self.max_units, n_units - 1) + 1))
        for u in rng.choice(n_units, size=count, replace=False):
            r0, r1 = int(u) * self.unit_rows, (int(u) + 1) * self.unit_rows
            x[r0:r1, :] = value[r0:r1] if value.shape[0] > 1 else value
        return x
