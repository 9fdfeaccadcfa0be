"""Degradations of the recording channel, for robustness evaluation (and augmentation).

A *condition* turns clean mono audio into what a real channel would deliver: a phone
line, a mobile or VoIP codec, background noise at a measured SNR, a reverberant room,
a wrong recording level. Each is a frozen dataclass; the named presets are the
contract the reports use (see ``docs/robustness.md`` for what each one does exactly).

Layout:

- :mod:`ser.degrade.registry`: :class:`Condition` (the base), :class:`DegradeError`
  and the registry of condition classes (keyed by ``kind``).
- :mod:`ser.degrade.channel`: ``telephone`` (G.711 mu-/A-law), ``gsm``, ``opus``
  through libsndfile's codecs.
- :mod:`ser.degrade.noise`: white, pink and babble noise at an SNR.
- :mod:`ser.degrade.room`: reverberation from a synthetic impulse response.
- :mod:`ser.degrade.level`: ``clean``, gain (``quiet``, ``loud``) and ``clipping``.
- :mod:`ser.degrade.presets`: :data:`PRESETS`, :func:`get_condition`,
  :func:`parse_conditions`, :func:`degrade`.

Every call ``cond(y, sr=16000, seed=0, babble=None)`` returns float32 mono of the same
length and rate, finite, bit-identical for the same ``(condition, y, sr, seed, babble)``.

Example:
    >>> import numpy as np
    >>> from ser.degrade import degrade, get_condition, parse_conditions
    >>> y = (0.1 * np.sin(np.arange(48000) / 8)).astype(np.float32)
    >>> [degrade(y, 16000, c, seed=0).shape for c in parse_conditions("telephone,snr10")]
    [(48000,), (48000,)]
    >>> get_condition("babble10").needs_babble
    True
"""
from __future__ import annotations

from .channel import Gsm, Opus, Telephone
from .level import Clean, Clipping, Gain
from .noise import Noise
from .presets import (PRESETS, available_conditions, degrade, from_dict, get_condition, parse_conditions,
                      trainable_conditions)
from .registry import Condition, DegradeError, condition_kinds, register
from .room import Reverb

__all__ = [
    "PRESETS", "Clean", "Clipping", "Condition", "DegradeError", "Gain", "Gsm", "Noise", "Opus",
    "Reverb", "Telephone", "available_conditions", "condition_kinds", "degrade", "from_dict",
    "get_condition", "parse_conditions", "register", "trainable_conditions",
]
