"""The augmentation registry, the strategy base classes and the :class:`Chain`.

Every strategy is a frozen dataclass registered under a unique ``name``; its fields are
its parameters (each with a comment), its ``p`` field the probability that it fires.
``to_dict()`` gives ``{"name": ..., **params}``, which is what is logged to MLflow and
what the waveform cache is keyed by; :func:`from_dict` rebuilds the identical strategy.

A strategy is called as ``strategy(x, rng)`` with a ``numpy.random.Generator``; all its
randomness comes from that generator, so the output is a pure function of
``(strategy, x, generator state)``.

Example:
    >>> import numpy as np
    >>> from ser.augment import get_augmentation, Chain
    >>> chain = Chain((get_augmentation("time_mask", p=1.0), get_augmentation("freq_mask")))
    >>> x = np.zeros((64, 188), dtype=np.float32)
    >>> chain(x, np.random.default_rng(0)).shape
    (64, 188)
    >>> Chain.from_dict(chain.to_dict()) == chain
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import SerError

KINDS = ("waveform", "feature")  # a strategy works on audio samples or on cached features

_REGISTRY: dict[str, type["Augmentation"]] = {}


class AugmentError(SerError, ValueError):
    """Bad augmentation name, parameter or input; the message says what is allowed."""


@dataclass(frozen=True)
class Augmentation:
    """Base of every strategy: a frozen dataclass with a probability ``p``.

    Subclasses set the class attributes ``name`` and ``kind`` and implement
    ``apply(x, rng, sr)``, which receives a private copy (it may modify it in place)
    and is only called when the strategy fires.
    """

    name: ClassVar[str] = ""  # registry key
    kind: ClassVar[str] = ""  # "waveform" or "feature"

    p: float = 0.5  # probability that the strategy is applied to one clip / one item

    def __post_init__(self) -> None:
        try:
            ok = 0.0 <= float(self.p) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise AugmentError(f"{self.name}: p must be a probability in [0, 1], got {self.p!r}")
        self.validate()

    def validate(self) -> None:
        """Check the parameters; raise :class:`AugmentError` naming the bad one."""

    def apply(self, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
        raise NotImplementedError

    def fires(self, rng: np.random.Generator) -> bool:
        # Always draw, even for p in {0, 1}, so the random stream of the steps after
        # this one does not depend on p.
        return bool(rng.random() < self.p)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": name, **params}``: JSON-ready, enough to rebuild the strategy."""
        params = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"name": self.name, **params}

    # helpers shared by the checks of the subclasses
    def _need(self, ok: bool, what: str) -> None:
        if not ok:
            raise AugmentError(f"{self.name}: {what} (parameters: {self.to_dict()})")


def _plain(value: Any) -> Any:
    """Tuples become lists so that ``to_dict()`` is plain JSON."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def as_waveform(y: Any, name: str) -> np.ndarray:
    """``y`` as a finite 1-D float32 waveform, or an AugmentError naming the strategy ``name``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise AugmentError(f"{name}: expects mono 1-D audio, got shape {y.shape}")
    return y


def _as_features(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (2, 3):
        raise AugmentError(
            f"{name}: expects a (rows, frames) feature array or a (n, rows, frames) batch, "
            f"got shape {x.shape}"
        )
    return x


@dataclass(frozen=True)
class WaveformAugmentation(Augmentation):
    """A strategy on mono float32 audio: ``strategy(y, rng, sr=16000) -> y`` (same length)."""

    kind: ClassVar[str] = "waveform"

    def __call__(self, y: Any, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
        y = as_waveform(y, self.name)
        if not self.fires(rng) or y.size == 0:
            return y
        out = self.apply(y.copy(), rng, sr)
        return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class FeatureAugmentation(Augmentation):
    """A strategy on a cached feature: ``strategy(x, rng) -> x`` for (rows, frames) arrays.

    A (n, rows, frames) batch is augmented item by item (each item draws its own coin
    and parameters). The input is never modified in place.
    """

    kind: ClassVar[str] = "feature"

    def __call__(self, x: Any, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
        x = _as_features(x, self.name)
        if x.ndim == 3:
            return np.stack([self(item, rng) for item in x]) if len(x) else x.copy()
        if not self.fires(rng) or x.size == 0:
            return x
        out = self.apply(x.copy(), rng, sr)
        return np.ascontiguousarray(out, dtype=np.float32)


def register(cls: type[Augmentation]) -> type[Augmentation]:
    """Class decorator: add a strategy to the registry under ``cls.name``.

    Example:
        >>> @register                                          # doctest: +SKIP
        ... @dataclass(frozen=True)
        ... class Invert(FeatureAugmentation):
        ...     name = "invert"
        ...     def apply(self, x, rng, sr): return -x
    """
    if not (isinstance(cls, type) and issubclass(cls, Augmentation)):
        raise TypeError(f"register expects an Augmentation subclass, got {cls!r}")
    if not cls.name or cls.kind not in KINDS:
        raise TypeError(f"{cls.__name__} needs a class attribute name and a kind in {KINDS}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"augmentation {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_augmentations(kind: str | None = None) -> list[str]:
    """Registered strategy names, in registration order; ``kind`` filters.

    Args:
        kind: ``None`` (all), ``"waveform"`` or ``"feature"``.

    Example:
        >>> available_augmentations("waveform")[:2]
        ['time_shift', 'pitch_shift']
    """
    if kind is not None and kind not in KINDS:
        raise AugmentError(f"kind must be one of {KINDS} or None, got {kind!r}")
    return [n for n, c in _REGISTRY.items() if kind is None or c.kind == kind]


def get_class(name: str) -> type[Augmentation]:
    """The strategy class registered as ``name``; unknown names list the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise AugmentError(
            f"unknown augmentation {name!r}; known augmentations: "
            f"{', '.join(available_augmentations())}"
        ) from None


def get_augmentation(name: str, **params: Any) -> Augmentation:
    """A strategy instance: its defaults with ``params`` applied.

    Raises:
        AugmentError: unknown name (lists the known ones), unknown parameter (lists the
            fields) or invalid value.

    Example:
        >>> get_augmentation("gain", max_db=6.0).to_dict()["max_db"]
        6.0
    """
    cls = get_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise AugmentError(f"{name}: unknown parameter(s) {unknown}; parameters are {list(fields)}")
    # JSON turns tuples into lists; give tuple-valued fields their tuples back
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return cls(**fixed)


def from_dict(d: Mapping[str, Any]) -> Augmentation:
    """Rebuild a strategy from its ``to_dict()``."""
    if not isinstance(d, Mapping) or "name" not in d:
        raise AugmentError(f"expected a mapping with a 'name' key, got {d!r}")
    params = dict(d)
    return get_augmentation(params.pop("name"), **params)


@dataclass(frozen=True)
class Chain:
    """Strategies applied in order, all of one kind (waveform or feature).

    An empty chain is the identity. ``chain(x, rng)`` never modifies ``x`` in place (it
    may return ``x`` itself when no step fires).
    """

    steps: tuple[Augmentation, ...] = ()  # the strategies, applied first to last

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        for s in self.steps:
            if not isinstance(s, Augmentation):
                raise AugmentError(f"Chain steps must be augmentations, got {s!r}")
        kinds = {s.kind for s in self.steps}
        if len(kinds) > 1:
            raise AugmentError(
                f"a Chain mixes waveform and feature strategies {[s.name for s in self.steps]}; "
                "waveform ones run before extraction, feature ones on cached features"
            )

    @property
    def kind(self) -> str | None:
        """``"waveform"``, ``"feature"``, or ``None`` for an empty chain."""
        return self.steps[0].kind if self.steps else None

    def __call__(self, x: Any, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
        out = np.asarray(x, dtype=np.float32)
        for step in self.steps:
            out = step(out, rng, sr)
        return out

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Augmentation]:
        return iter(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": "chain", "steps": [step.to_dict(), ...]}``."""
        return {"name": "chain", "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Chain":
        """Rebuild a chain from its ``to_dict()``."""
        if not isinstance(d, Mapping) or d.get("name") != "chain" or "steps" not in d:
            raise AugmentError(f"expected a chain dict {{'name': 'chain', 'steps': [...]}}, got {d!r}")
        return cls(tuple(from_dict(s) for s in d["steps"]))

    def key(self) -> str:
        """A short stable hash of ``to_dict()`` (16 hex digits), e.g. for cache keys."""
        return stable_hash(self.to_dict())


def stable_hash(obj: Any) -> str:
    """16 hex digits of the SHA-256 of ``obj``'s canonical JSON."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and platforms).

    Use it to give each cached augmented copy its own seed, e.g.
    ``derive_seed(config.seed, clip_path, k)`` for copy ``k`` of a clip.

    Example:
        >>> derive_seed(0, "a.wav", 1) == derive_seed(0, "a.wav", 1)
        True
    """
    text = json.dumps([str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
