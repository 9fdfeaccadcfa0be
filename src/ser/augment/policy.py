"""Which strategies each representation gets, and the factories that build them.

:data:`FEATURE_POLICY` and :data:`FEATURE_PARAMS` are plain dict literals meant to be
read in review; :data:`WAVEFORM_CHAIN` is the order of the waveform strategies. The
factories apply, in increasing precedence: the strategy's own defaults, the
representation's entry in :data:`FEATURE_PARAMS`, ``config.overrides`` and
``config.p``.

Only training data is augmented: the training code applies these callables to the
training split only, never to validation or test.

Example:
    >>> import numpy as np
    >>> from ser.augment import AugmentConfig, augmentation_for
    >>> aug = augmentation_for("mel", AugmentConfig(seed=1))
    >>> [s["name"] for s in aug.to_dict()["chain"]["steps"]]
    ['time_mask', 'freq_mask', 'time_roll']
    >>> aug(np.zeros((64, 188), np.float32)).shape
    (64, 188)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from ..audio import SAMPLE_RATE
from .registry import AugmentError, Chain, available_augmentations, get_augmentation, get_class

# representation -> feature strategies, applied in this order
FEATURE_POLICY: dict[str, tuple[str, ...]] = {
    "mel": ("time_mask", "freq_mask", "time_roll"),
    "linear": ("time_mask", "freq_mask", "time_roll"),
    "mfcc": ("time_mask", "freq_mask", "time_roll"),
    "chroma": ("time_mask", "harmonic_mask", "time_roll"),
    "spectral_contrast": ("time_mask", "freq_mask", "time_roll"),
    "zcr": ("jitter", "scaling", "time_warp", "segment_dropout"),
    "rms": ("jitter", "scaling", "time_warp", "segment_dropout"),
    "tempogram": ("time_mask", "freq_mask", "time_roll"),
    "tonnetz": ("time_mask", "harmonic_mask", "time_roll"),
    "delta_mfcc": ("time_mask", "freq_mask", "time_roll"),
    "delta_tempogram": ("time_mask", "freq_mask", "time_roll"),
}

# representation -> strategy -> parameters that differ from the strategy's defaults
FEATURE_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "linear": {"freq_mask": {"max_width": 16}},  # 128 rows: same share of the axis as 8 of 64
    "mfcc": {"freq_mask": {"max_width": 6}},  # 40 coefficients: ~15 % of the axis
    "delta_mfcc": {"freq_mask": {"max_width": 6}},
    "spectral_contrast": {"freq_mask": {"max_width": 1, "n_masks": 1}},  # only 7 rows (octave bands)
    "tonnetz": {"harmonic_mask": {"unit_rows": 2, "max_units": 1}},  # 3 interval circles x (x, y)
}

# waveform strategies, in order: the clip moves and changes voice, noise joins it, the
# channel band-limits both, and the recording level (with its clipping rule) comes last
WAVEFORM_CHAIN: tuple[str, ...] = ("time_shift", "pitch_shift", "colored_noise", "lowpass", "highpass", "gain")


@dataclass(frozen=True)
class AugmentConfig:
    """What to augment and how strongly; logged whole to MLflow (:meth:`to_dict`).

    Example:
        >>> AugmentConfig(overrides={"time_mask": {"max_width": 30}}).to_dict()["overrides"]
        {'time_mask': {'max_width': 30}}
    """

    enabled: bool = True  # False: the factories return the identity (nothing is augmented)
    seed: int = 0  # seed of the callable's own Generator, used when the caller passes none
    p: float | None = None  # if set, the probability of every strategy (1.0 in tests, 0.0 = off)
    policy: Mapping[str, Sequence[str]] = field(default_factory=dict)  # replaces FEATURE_POLICY entries
    waveform: Sequence[str] = WAVEFORM_CHAIN  # waveform strategies, in order
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # strategy -> params, all reps
    copies: int = 4  # K augmented waveform copies per training clip kept in the feature cache
    # ser.degrade presets (telephone, gsm, opus, snr10...): each augmented copy also goes
    # through one of them, drawn uniformly (the "condition" strategy, after the chain)
    conditions: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.p is not None and not 0.0 <= self.p <= 1.0:
            raise AugmentError(f"AugmentConfig.p must be None or in [0, 1], got {self.p!r}")
        if int(self.copies) != self.copies or self.copies < 0:
            raise AugmentError(f"AugmentConfig.copies must be an int >= 0, got {self.copies!r}")
        unknown = sorted(set(self.policy) - set(FEATURE_POLICY))
        if unknown:
            raise AugmentError(f"AugmentConfig.policy: unknown representation(s) {unknown}; "
                               f"known: {', '.join(FEATURE_POLICY)}")
        object.__setattr__(self, "conditions", check_conditions(self.conditions))
        for name in [*self.waveform, *self.overrides, *(n for v in self.policy.values() for n in v)]:
            get_class(name)  # unknown strategy names fail here, listing the known ones

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return {
            "enabled": bool(self.enabled), "seed": int(self.seed), "p": self.p,
            "policy": {k: list(v) for k, v in self.policy.items()},
            "waveform": list(self.waveform),
            "overrides": {k: dict(v) for k, v in self.overrides.items()},
            "copies": int(self.copies),
            "conditions": list(self.conditions),
        }


def check_conditions(names: str | Sequence[str]) -> tuple[str, ...]:
    """Condition preset names for augmentation, checked: a tuple (a comma list is split by
    :func:`ser.degrade.parse_conditions`; ``"all"`` is every preset but ``clean`` and babble).

    Babble conditions are refused: babble is made of other speakers' clips and is held
    out for evaluation (``ser robustness``), so a model is never tested on noise it saw.

    Raises:
        AugmentError: an unknown name (listing the known ones) or a babble condition.

    Example:
        >>> check_conditions("telephone,snr10")
        ('telephone', 'snr10')
        >>> check_conditions(["babble10"])
        Traceback (most recent call last):
        ...
        ser.augment.registry.AugmentError: condition augmentation: babble10 is held out for evaluation; choose others
    """
    if not names:
        return ()
    from ..degrade import DegradeError, parse_conditions

    text = names if isinstance(names, str) else ",".join(map(str, names))
    if text.strip() == "all":
        from .conditions import DEFAULT_CONDITIONS

        return DEFAULT_CONDITIONS
    try:
        conds = parse_conditions(text)
    except DegradeError as e:
        raise AugmentError(f"condition augmentation: {e}") from None
    babble = [c.name for c in conds if c.needs_babble]
    if babble:
        raise AugmentError(f"condition augmentation: {', '.join(babble)} is held out for evaluation; choose others")
    return tuple(dict.fromkeys(c.name for c in conds))


RngLike = Union[np.random.Generator, int, None]


class Augmenter:
    """The callable the factories return: a :class:`Chain` plus its own Generator.

    ``aug(x)`` draws from the Generator seeded with ``config.seed`` (a reproducible
    stream: the n-th call gives the same result in every run); ``aug(x, rng)`` uses the
    caller's Generator, ``aug(x, 5)`` a fresh one seeded with 5 (same seed, same output).
    Not frozen (it holds the Generator state); ``to_dict()`` describes it fully.
    """

    def __init__(self, chain: Chain, seed: int, kind: str, feature: str | None = None):
        self.chain = chain  # the strategies, in order (empty: identity)
        self.seed = int(seed)  # seed of the own Generator
        self.kind = kind  # "waveform" or "feature"
        self.feature = feature  # the representation a feature augmenter is for
        self.reset()

    def reset(self) -> None:
        """Restart the own Generator from ``seed``."""
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, x: Any, rng: RngLike = None, sr: int = SAMPLE_RATE) -> np.ndarray:
        if rng is None:
            rng = self._rng
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return self.chain(x, rng, sr)

    def __len__(self) -> int:
        return len(self.chain)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "feature", "seed", "chain"}``: what to log, and the cache key's input."""
        return {"kind": self.kind, "feature": self.feature, "seed": self.seed, "chain": self.chain.to_dict()}

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.chain) or "identity"
        return f"Augmenter({self.kind}{':' + self.feature if self.feature else ''}: {names}; seed={self.seed})"


def _build(names: Sequence[str], config: AugmentConfig, params: Mapping[str, Mapping[str, Any]]) -> Chain:
    steps = []
    for name in names:
        kw = {**params.get(name, {}), **config.overrides.get(name, {})}
        if config.p is not None:
            kw["p"] = config.p
        steps.append(get_augmentation(name, **kw))
    return Chain(tuple(steps))


def feature_policy(config: AugmentConfig | None = None) -> dict[str, tuple[str, ...]]:
    """The effective representation -> strategies mapping (``config.policy`` applied)."""
    config = config or AugmentConfig()
    return {k: tuple(config.policy.get(k, v)) for k, v in FEATURE_POLICY.items()}


def augmentation_for(feature_name: str, config: AugmentConfig | None = None) -> Augmenter:
    """The feature augmentation of one representation, per :data:`FEATURE_POLICY`.

    Args:
        feature_name: one of the eleven representations (``mel``, ..., ``delta_tempogram``).
        config: strength, probabilities and seed; ``AugmentConfig()`` if None.

    Returns:
        An :class:`Augmenter`: ``aug(x[, rng]) -> x`` for (rows, frames) or
        (n, rows, frames) float32 arrays; the identity when ``config.enabled`` is False.

    Raises:
        AugmentError: unknown representation (lists the known ones), unknown strategy or
            parameter, or a waveform strategy named in the feature policy.

    Example:
        >>> augmentation_for("zcr").chain.steps[0].name
        'jitter'
    """
    config = config or AugmentConfig()
    policy = feature_policy(config)
    if feature_name not in policy:
        raise AugmentError(f"no augmentation policy for representation {feature_name!r}; "
                           f"known representations: {', '.join(policy)}")
    names = policy[feature_name] if config.enabled else ()
    wrong = [n for n in names if n not in available_augmentations("feature")]
    if wrong:
        raise AugmentError(f"{feature_name}: {wrong} are not feature strategies; feature strategies: "
                           f"{', '.join(available_augmentations('feature'))}")
    chain = _build(names, config, FEATURE_PARAMS.get(feature_name, {}))
    return Augmenter(chain, config.seed, "feature", feature_name)


def waveform_augmentation(config: AugmentConfig | None = None, chain: bool = True) -> Augmenter:
    """The waveform chain (:data:`WAVEFORM_CHAIN` or ``config.waveform``), then the
    ``condition`` step when ``config.conditions`` names any.

    Use its ``to_dict()`` in the cache key of augmented copies and
    :func:`ser.augment.augment_waveform` (or ``aug(y, seed)``) to make copy k.

    Args:
        config: the strategies, strengths and seed; ``AugmentConfig()`` if None.
        chain: False leaves the strategies of ``config.waveform`` out: only the condition
            step (encoder members, whose copies are channel conditions only).

    Returns:
        An :class:`Augmenter` over mono float32 audio; the identity when disabled.

    Example:
        >>> [s["name"] for s in waveform_augmentation().to_dict()["chain"]["steps"]][:2]
        ['time_shift', 'pitch_shift']
    """
    config = config or AugmentConfig()
    names = tuple(config.waveform) if config.enabled and chain else ()
    wrong = [n for n in names if n not in available_augmentations("waveform")]
    if wrong:
        raise AugmentError(f"{wrong} are not waveform strategies; waveform strategies: "
                           f"{', '.join(available_augmentations('waveform'))}")
    steps = _build(names, config, {}).steps
    if config.enabled and config.conditions:
        # p=1: every augmented copy is heard through one of the conditions (copy 0 stays clean)
        params = {"condition": {"p": 1.0, "conditions": tuple(config.conditions)}}
        steps += _build(("condition",), config, params).steps
    return Augmenter(Chain(steps), config.seed, "waveform")


def describe_policy(config: AugmentConfig | None = None) -> dict[str, list[dict[str, Any]]]:
    """Representation -> its chain's ``to_dict()`` steps (for docs and logs)."""
    return {name: augmentation_for(name, config).to_dict()["chain"]["steps"] for name in FEATURE_POLICY}


__all__ = ["FEATURE_POLICY", "FEATURE_PARAMS", "WAVEFORM_CHAIN", "AugmentConfig", "Augmenter",
           "augmentation_for", "check_conditions", "waveform_augmentation", "feature_policy", "describe_policy"]
