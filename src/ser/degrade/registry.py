"""The :class:`Condition` base class, the condition-class registry and :class:`DegradeError`.

A condition is a frozen dataclass: its fields are its parameters (a comment each),
its class attribute ``kind`` is the key of its class in the registry, and its field
``name`` is the label it is known by: the preset name for the presets
(``get_condition("snr10").name == "snr10"``); for a condition built by hand without
a name, a label made from the kind and the parameters that differ from the defaults.
``to_dict()`` gives ``{"name": ..., "kind": ..., **params}``, plain JSON;
:func:`ser.degrade.from_dict` rebuilds the identical condition (it goes into cache
keys and model metadata).

A condition is called as ``cond(y, sr=16000, seed=0, babble=None)``. All its randomness
comes from ``numpy.random.default_rng(seed)``, so the output is a pure function of
``(condition, y, sr, seed, babble)``: bit-identical on every call.

Example:
    >>> import numpy as np
    >>> from ser.degrade import Noise, from_dict
    >>> cond = Noise(color="pink", snr_db=15.0)
    >>> cond.name, cond.to_dict()["kind"]
    ('noise(color=pink,snr_db=15.0)', 'noise')
    >>> from_dict(cond.to_dict()) == cond
    True
    >>> y = np.sin(np.arange(16000) / 5).astype(np.float32)
    >>> bool((cond(y, seed=1) == cond(y, seed=1)).all())
    True
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import SerError

MIN_RATE = 8000  # Hz; the telephone band and the codecs need at least 8 kHz audio

_CLASSES: dict[str, type["Condition"]] = {}


class DegradeError(SerError, ValueError):
    """Bad condition name, parameter or input; the message says what is allowed."""


@dataclass(frozen=True)
class Condition:
    """Base of every condition: ``cond(y, sr, seed, babble) -> y'`` (float32, same length).

    Subclasses set the class attribute ``kind`` (the registry key), declare their
    parameters as fields with defaults and implement ``apply(y, sr, rng, babble)``,
    which gets a float64 copy of a non-empty, finite input.
    """

    kind: ClassVar[str] = ""  # registry key of the class ("noise", "telephone", ...)
    needs_babble: ClassVar[bool] = False  # True: the call needs babble= clips (see Noise)

    name: str = ""  # label: the preset name; "" = made from kind and parameters

    def __post_init__(self) -> None:
        self.validate()
        if not self.name:
            # only what differs from the class defaults, so labels stay short
            params = ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                              if f.name != "name" and getattr(self, f.name) != f.default)
            object.__setattr__(self, "name", f"{self.kind}({params})" if params else self.kind)
        if not isinstance(self.name, str):
            raise DegradeError(f"{self.kind}: name must be a string, got {self.name!r}")

    def validate(self) -> None:
        """Check the parameters; raise :class:`DegradeError` naming the bad one."""

    def apply(self, y: np.ndarray, sr: int, rng: np.random.Generator,
              babble: Sequence[np.ndarray] | None) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters (every field except ``name``), JSON-ready."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "name"}

    def to_dict(self) -> dict[str, Any]:
        """``{"name": label, "kind": class key, **params}``: JSON-ready; ``from_dict`` rebuilds it."""
        return {"name": self.name, "kind": self.kind, **self.params()}

    def __call__(self, y: Any, sr: int = SAMPLE_RATE, seed: int = 0,
                 babble: Sequence[np.ndarray] | None = None) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise DegradeError(f"{self.name}: expects mono 1-D audio, got shape {y.shape}")
        if not np.isfinite(y).all():
            raise DegradeError(f"{self.name}: input audio holds NaN or infinite samples")
        if int(sr) != sr or sr < MIN_RATE:
            raise DegradeError(f"{self.name}: sample rate must be an integer >= {MIN_RATE} Hz, got {sr!r}")
        if self.needs_babble and not babble:
            raise DegradeError(f"{self.name}: babble noise needs babble= a non-empty sequence of "
                               "16 kHz clips (training speakers)")
        if y.size == 0:
            return y.copy()
        out = self.apply(y.astype(np.float64), int(sr), np.random.default_rng(seed), babble)
        out = np.nan_to_num(np.asarray(out, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        return np.ascontiguousarray(fit_length(out, len(y)), dtype=np.float32)

    # shared by the checks of the subclasses
    def _need(self, ok: bool, what: str) -> None:
        if not ok:
            raise DegradeError(f"{self.kind}: {what} (parameters: {self.params()})")


def _plain(value: Any) -> Any:
    """Tuples become lists and numpy scalars Python numbers, so ``to_dict()`` is plain JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded at the end to ``n`` samples (codecs and resamplers round lengths)."""
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def power(y: np.ndarray) -> float:
    """Mean square of ``y`` in float64 (the power in every SNR and level rule here)."""
    return float(np.mean(np.square(y, dtype=np.float64))) if len(y) else 0.0


def register(cls: type[Condition]) -> type[Condition]:
    """Class decorator: add a condition class to the registry under ``cls.kind``."""
    if not (isinstance(cls, type) and issubclass(cls, Condition)) or not cls.kind:
        raise TypeError(f"register expects a Condition subclass with a kind, got {cls!r}")
    if _CLASSES.get(cls.kind, cls) is not cls:
        raise ValueError(f"condition kind {cls.kind!r} is already registered")
    _CLASSES[cls.kind] = cls
    return cls


def condition_kinds() -> list[str]:
    """Registered condition classes (their ``kind``), in registration order."""
    return list(_CLASSES)


def build(kind: str, **params: Any) -> Condition:
    """A condition of class ``kind`` with ``params`` (lists become tuples)."""
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DegradeError(f"unknown condition kind {kind!r}; known kinds: {', '.join(_CLASSES)}")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise DegradeError(f"{kind}: unknown parameter(s) {unknown}; parameters are {fields}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
