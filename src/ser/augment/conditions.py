"""The ``condition`` waveform strategy: train on the channel degradations of :mod:`ser.degrade`.

When it fires, the strategy draws one of its named presets uniformly from the
generator, then a seed for it from the same generator, and applies it
(``get_condition(name)(y, sr, seed=seed)``); the output is therefore a pure function of
``(strategy, y, generator state)`` like every other strategy's. A name listed twice is
drawn twice as often.

Babble presets are refused: babble noise is built from other speakers' clips and is
held out for evaluation, so that a robustness figure for babble measures a condition
the model never trained on.

Example:
    >>> import numpy as np
    >>> from ser.augment import get_augmentation, from_dict
    >>> aug = get_augmentation("condition", conditions=("telephone", "snr10"), p=1.0)
    >>> aug.to_dict()
    {'name': 'condition', 'p': 1.0, 'conditions': ['telephone', 'snr10']}
    >>> from_dict(aug.to_dict()) == aug
    True
    >>> y = (0.1 * np.sin(np.arange(16000) / 8)).astype(np.float32)
    >>> aug(y, np.random.default_rng(0)).shape
    (16000,)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..degrade import DegradeError, available_conditions, get_condition, trainable_conditions
from .registry import AugmentError, WaveformAugmentation, register

SEED_LIMIT = 2**63 - 1  # seeds drawn for the condition are in [0, 2**63 - 1)
# default: every preset but the identity and the held-out babble ones
DEFAULT_CONDITIONS: tuple[str, ...] = tuple(trainable_conditions())


@register
@dataclass(frozen=True)
class ConditionAugmentation(WaveformAugmentation):
    """Apply one of ``conditions`` (``ser.degrade`` presets), drawn uniformly per clip."""

    name = "condition"
    p: float = 1.0  # probability of degrading a clip
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS  # preset names to draw from (no babble)

    def __post_init__(self) -> None:
        # "telephone,gsm" and lists (JSON) become the tuple the field holds, so that
        # to_dict() -> from_dict() gives an equal strategy and a stable cache key
        value = self.conditions
        if isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        if isinstance(value, (list, tuple)):
            object.__setattr__(self, "conditions", tuple(value))
        super().__post_init__()

    def validate(self) -> None:
        self._need(isinstance(self.conditions, tuple) and len(self.conditions) > 0
                   and all(isinstance(n, str) for n in self.conditions),
                   "conditions must be a non-empty tuple of preset names")
        known = available_conditions()
        unknown = [n for n in self.conditions if n not in known]
        self._need(not unknown, f"unknown condition(s) {unknown}; known conditions: {', '.join(known)}")
        babble = [n for n in self.conditions if get_condition(n).needs_babble]
        self._need(not babble, f"{babble} cannot be used for augmentation: babble is held out for evaluation")

    def apply(self, y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        cond = get_condition(self.conditions[int(rng.integers(len(self.conditions)))])
        seed = int(rng.integers(SEED_LIMIT))
        try:
            return cond(y, sr, seed=seed)
        except DegradeError as e:
            raise AugmentError(f"{self.name}: {e}") from None


__all__ = ["ConditionAugmentation", "DEFAULT_CONDITIONS"]
