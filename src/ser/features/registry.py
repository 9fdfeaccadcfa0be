"""The registry of the eleven representations and the one-pass ``extract``.

Each entry (:class:`FeatureSpec`) has a ``name``, a frozen config dataclass, a ``version``
(bumped whenever the code changes the output, so caches keyed by :func:`feature_key`
invalidate), its extractor and the tolerance to which it matches its librosa reference
(``ser.features.reference``).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np

from ..audio import SAMPLE_RATE
from . import configs as C
from . import rhythm, spectral
from .core import FeatureError, Shared, check_audio, n_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSpec:
    """One registry entry."""

    name: str  # registry key, as used on the command line and in caches
    config_cls: type  # frozen dataclass holding the parameters (its defaults are the defaults)
    version: int  # bump when the extractor's output changes for the same config
    fn: Callable[[Shared, Any], np.ndarray]  # (shared memo, config) -> rows x frames array
    rows: Callable[[Any], int]  # config -> number of output rows
    atol: float  # absolute tolerance against the librosa reference (tested)
    rtol: float = 0.0  # relative tolerance against the librosa reference (tested)


_SPECS = (
    FeatureSpec("mel", C.MelConfig, 1, spectral.mel, lambda c: c.n_mels, 1e-3),
    FeatureSpec("linear", C.LinearConfig, 1, spectral.linear, lambda c: c.n_rows, 1e-3),
    FeatureSpec("mfcc", C.MfccConfig, 1, spectral.mfcc, lambda c: c.n_mfcc, 2e-3, 1e-5),
    FeatureSpec("chroma", C.ChromaConfig, 1, spectral.chroma, lambda c: c.n_chroma, 1e-5),
    FeatureSpec(
        "spectral_contrast", C.SpectralContrastConfig, 1, spectral.spectral_contrast,
        lambda c: c.n_bands + 1, 1e-3,
    ),
    FeatureSpec("zcr", C.ZcrConfig, 1, rhythm.zcr, lambda c: 1, 1e-7),
    FeatureSpec("rms", C.RmsConfig, 1, rhythm.rms, lambda c: 1, 1e-7, 1e-5),
    FeatureSpec("tempogram", C.TempogramConfig, 1, rhythm.tempogram, lambda c: c.win_length, 1e-4),
    FeatureSpec("tonnetz", C.TonnetzConfig, 1, spectral.tonnetz, lambda c: 6, 1e-5),
    FeatureSpec("delta_mfcc", C.DeltaMfccConfig, 1, spectral.delta_mfcc, lambda c: c.n_mfcc, 5e-4, 1e-5),
    FeatureSpec(
        "delta_tempogram", C.DeltaTempogramConfig, 1, rhythm.delta_tempogram,
        lambda c: c.win_length, 1e-4,
    ),
)
REGISTRY: dict[str, FeatureSpec] = {spec.name: spec for spec in _SPECS}
_DEFAULTS = {spec.name: spec.config_cls() for spec in _SPECS}  # frozen, so shareable

Names = Union[str, Iterable[str]]


def available_features() -> list[str]:
    """The eleven representation names, in DESIGN order.

    Example:
        >>> available_features()[:3]
        ['mel', 'linear', 'mfcc']
    """
    return list(REGISTRY)


def get_spec(name: str) -> FeatureSpec:
    """The registry entry of ``name``.

    Raises:
        FeatureError: unknown name; the message lists the known ones.
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise FeatureError(
            f"unknown feature {name!r}; known features: {', '.join(REGISTRY)} (or 'all')"
        ) from None


def get_config(name: str, **overrides: Any) -> Any:
    """The default config of ``name``, with ``overrides`` applied.

    Args:
        name: a registry name.
        **overrides: config fields to change, e.g. ``n_mels=128``.

    Returns:
        A frozen config dataclass instance.

    Raises:
        FeatureError: unknown name, unknown field or invalid value.

    Example:
        >>> get_config("mel", n_mels=32).n_mels
        32
    """
    cls = get_spec(name).config_cls
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise FeatureError(f"{name}: unknown config field(s) {unknown}; fields are {known}")
    return cls(**overrides)


def default_configs() -> dict[str, Any]:
    """``{name: default config}`` for the eleven representations (frozen instances).

    Example:
        >>> default_configs()["mel"].n_mels
        64
    """
    return dict(_DEFAULTS)


def resolve_config(name: str, config: Any = None) -> Any:
    """``config`` checked to be ``name``'s config class, or the default when None.

    Raises:
        FeatureError: unknown name or a config of another class.
    """
    spec = get_spec(name)
    if config is None:
        return _DEFAULTS[name]
    if type(config) is not spec.config_cls:
        raise FeatureError(
            f"config for {name!r} must be a {spec.config_cls.__name__}, got "
            f"{type(config).__name__}; build one with get_config({name!r}, ...)"
        )
    return config


def feature_key(name: str, config: Any = None) -> dict[str, Any]:
    """Everything that determines a representation's output, as a flat dict (cache keys,
    MLflow params): ``{"name": ..., "version": ..., **asdict(config)}``.

    Example:
        >>> feature_key("zcr")
        {'name': 'zcr', 'version': 1, 'frame_length': 1024, 'hop_length': 256}
    """
    config = resolve_config(name, config)
    return {"name": name, "version": get_spec(name).version, **dataclasses.asdict(config)}


def config_from_key(key: Mapping[str, Any]) -> Any:
    """The config a :func:`feature_key` dict describes (its inverse; ``version`` is not checked).

    Example:
        >>> config_from_key(feature_key("zcr", get_config("zcr", hop_length=512))).hop_length
        512
    """
    params = {k: v for k, v in key.items() if k not in ("name", "version")}
    return get_config(key["name"], **params)


def output_rows(name: str, config: Any = None) -> int:
    """Rows of ``name``'s output under ``config`` (default config if None).

    Example:
        >>> output_rows("mfcc")
        40
    """
    return int(get_spec(name).rows(resolve_config(name, config)))


def output_shape(name: str, n_samples: int, config: Any = None) -> tuple[int, int]:
    """(rows, frames) of ``name``'s output for a clip of ``n_samples`` samples.

    Example:
        >>> output_shape("mel", 48000)
        (64, 188)
    """
    config = resolve_config(name, config)
    return output_rows(name, config), n_frames(n_samples, config.hop_length)


def resolve_names(names: Names) -> list[str]:
    """``"all"``, ``"mel,mfcc"`` or an iterable of names -> validated list without duplicates.

    Example:
        >>> resolve_names("mel, mfcc,mel")
        ['mel', 'mfcc']
    """
    if isinstance(names, str):
        names = available_features() if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    out = list(dict.fromkeys(names))
    unknown = [n for n in out if n not in REGISTRY]
    if unknown or not out:
        raise FeatureError(f"unknown feature(s) {unknown or out}; known: {', '.join(REGISTRY)} (or 'all')")
    return out


def extract(
    y: np.ndarray,
    sr: int = SAMPLE_RATE,
    names: Names = "all",
    configs: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Compute any subset of the representations in one pass.

    Representations share the STFT power spectrogram (same ``n_fft``/``hop_length``), the
    mel power and log-mel (mel, mfcc, delta_mfcc, tempogram's onset envelope), the
    chromagram (chroma, tonnetz), the MFCCs (delta_mfcc) and the tempogram
    (delta_tempogram); filter banks are cached across calls. Configs with different
    parameters are computed separately, so mixed hops work.

    Input handling: ``y`` is converted to float32. A clip shorter than
    ``(MIN_FRAMES - 1) * hop_length`` samples (2048 = 128 ms at the default hop) is
    zero-padded at the end to that length first, so every output has at least 9 frames and
    the width-9 deltas work; the output then equals the librosa reference of the padded
    clip. Silence, clipping and DC offsets give finite output of the usual shape. ``sr``
    other than 16000 is allowed: filter banks follow ``sr``, but the defaults (and any
    trained model) assume 16 kHz, and spectral_contrast needs ``sr / 2`` above
    ``fmin * 2**(n_bands - 1)`` (6400 Hz by default).

    Args:
        y: mono audio, 1-D floating point in [-1, 1].
        sr: sample rate in Hz.
        names: ``"all"`` (the eleven), one name, or a list of names.
        configs: optional ``{name: config}``; missing names use their defaults. Entries
            for names not requested are ignored.

    Returns:
        ``{name: array}`` in request order; each array float32, C-contiguous, finite, of
        shape ``(output_rows(name, config), 1 + max(len(y), min_samples) // hop_length)``.

    Raises:
        FeatureError: unknown name, wrong config type, invalid config for ``sr``, bad
            audio (not 1-D, empty, not floating point, NaN/inf), a clip too short for a
            delta wider than 9 frames, or samples so far outside [-1, 1] (~1e15) that a
            representation overflows.

    Example:
        >>> y = np.zeros(48000, dtype=np.float32)
        >>> {k: v.shape for k, v in extract(y, names=["mel", "zcr"]).items()}
        {'mel': (64, 188), 'zcr': (1, 188)}
    """
    wanted = resolve_names(names)
    configs = dict(configs or {})
    for key in configs:
        get_spec(key)
    chosen = {name: resolve_config(name, configs.get(name)) for name in wanted}
    ctx = Shared(check_audio(y, sr), int(sr))
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        spec = REGISTRY[name]
        # always a fresh copy: intermediates may live in reused work buffers
        arr = np.array(spec.fn(ctx, chosen[name]), dtype=np.float32, order="C", copy=True)
        if not np.isfinite(arr).all():
            peak = float(np.abs(ctx.y).max())
            raise FeatureError(
                f"{name}: non-finite output; the audio peaks at {peak:.3g}, expected samples "
                "in [-1, 1] (scale the audio; if it is in range, please report a bug)"
            )
        out[name] = arr
    log.debug("extracted %s from %d samples at %d Hz", wanted, ctx.y.size, sr)
    return out
