"""The named presets and the lookup functions over them.

:data:`PRESETS` maps each preset name to a configured condition whose ``name`` is that
preset name; the names are a contract (reports, CLI flags and model metadata use
them). ``"clean"`` comes first: it is the reference every other row is compared to.

Example:
    >>> from ser.degrade import available_conditions, get_condition, parse_conditions
    >>> available_conditions()[:3]
    ['clean', 'telephone', 'telephone_alaw']
    >>> get_condition("snr10").to_dict()
    {'name': 'snr10', 'kind': 'noise', 'color': 'white', 'snr_db': 10.0, 'talkers': 5}
    >>> [c.name for c in parse_conditions(" telephone , snr10 ")]
    ['telephone', 'snr10']
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from .channel import Gsm, Opus, Telephone
from .level import Clean, Clipping, Gain
from .noise import Noise
from .registry import Condition, DegradeError, build
from .room import Reverb

PRESETS: dict[str, Condition] = {c.name: c for c in (
    Clean(name="clean"),
    Telephone(name="telephone", law="ulaw"),
    Telephone(name="telephone_alaw", law="alaw"),
    Gsm(name="gsm"),
    Opus(name="opus", compression_level=0.97, rate=16000),
    Noise(name="snr20", color="white", snr_db=20.0),
    Noise(name="snr10", color="white", snr_db=10.0),
    Noise(name="snr5", color="white", snr_db=5.0),
    Noise(name="pink10", color="pink", snr_db=10.0),
    Noise(name="babble10", color="babble", snr_db=10.0, talkers=5),
    Reverb(name="reverb", rt60_s=0.5, drr_db=0.0),
    Gain(name="quiet", db=-20.0),
    Gain(name="loud", db=20.0, clip=True),
    Clipping(name="clipping", fraction=0.1),
)}

ConditionLike = Union[str, Condition, Mapping[str, Any]]


def available_conditions() -> list[str]:
    """The preset names, ``"clean"`` first."""
    return list(PRESETS)


def trainable_conditions(include_clean: bool = False) -> list[str]:
    """The presets a model may hear in training: all but babble, held out for evaluation
    (it is made of other speakers' clips), and but ``clean`` unless ``include_clean``.

    Example:
        >>> "babble10" in trainable_conditions(), "clean" in trainable_conditions()
        (False, False)
    """
    return [n for n, c in PRESETS.items() if not c.needs_babble and (include_clean or n != "clean")]


def get_condition(name: ConditionLike) -> Condition:
    """The preset called ``name`` (a condition or its ``to_dict()`` passes through).

    Raises:
        DegradeError: unknown name; the message lists the presets.

    Example:
        >>> get_condition("loud").to_dict()
        {'name': 'loud', 'kind': 'gain', 'db': 20.0, 'clip': True}
    """
    if isinstance(name, Condition):
        return name
    if isinstance(name, Mapping):
        return from_dict(name)
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise DegradeError(f"unknown condition {name!r}; known conditions: "
                           f"{', '.join(PRESETS)} (or 'all')") from None


def from_dict(d: Mapping[str, Any]) -> Condition:
    """Rebuild a condition from its ``to_dict()``; ``{"name": preset}`` alone names a preset.

    Example:
        >>> from_dict(get_condition("reverb").to_dict()) == get_condition("reverb")
        True
    """
    if not isinstance(d, Mapping) or "name" not in d:
        raise DegradeError(f"expected a condition mapping with a 'name' key, got {d!r}")
    params = dict(d)
    if "kind" not in params:
        return get_condition(params["name"])
    return build(params.pop("kind"), **params)


def parse_conditions(spec: Union[str, Iterable[str]]) -> tuple[Condition, ...]:
    """Conditions from ``"a,b"`` (whitespace ignored, duplicates dropped) or ``"all"``.

    Raises:
        DegradeError: empty list or unknown names; the message lists the presets.

    Example:
        >>> len(parse_conditions("all")) == len(available_conditions())
        True
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(n).strip() for n in names if str(n).strip()]
    if names == ["all"]:
        return tuple(PRESETS.values())
    if not names:
        raise DegradeError(f"no condition named in {spec!r}; known conditions: {', '.join(PRESETS)} (or 'all')")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise DegradeError(f"unknown condition(s) {', '.join(map(repr, unknown))}; "
                           f"known conditions: {', '.join(PRESETS)} (or 'all')")
    return tuple(PRESETS[n] for n in dict.fromkeys(names))


def degrade(y: Any, sr: int, name_or_condition: ConditionLike, seed: int = 0,
            babble: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Apply one condition (a preset name, a condition or its ``to_dict()``) to ``y``.

    Returns:
        float32 mono, same length and rate as ``y``; the same for the same seed.

    Example:
        >>> y = np.full(8000, 0.5, np.float32)
        >>> round(float(degrade(y, 16000, "quiet").max()), 6)
        0.05
    """
    return get_condition(name_or_condition)(y, sr, seed=seed, babble=babble)


__all__ = ["PRESETS", "available_conditions", "degrade", "from_dict", "get_condition", "parse_conditions"]
