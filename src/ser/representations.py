"""Representation names: the eleven hand-made features and the layers of pretrained encoders.

Every member of a study is trained on one representation, named on the command line and
in run folders as:

- a feature name (``mel``, ``mfcc``, ...): a 2-D array from :mod:`ser.features`;
- an encoder name with a layer, ``whisper_base@5``: the hidden states of that layer
  (dims x frames) of a frozen pretrained encoder (:mod:`ser.encoders`). A bare encoder
  name (``whisper_base``) means its default layer and is written out in full
  (``whisper_base@5``), so a run folder always says which layer it used.

Example:
    >>> resolve_representations("mel, whisper_tiny_en")
    ['mel', 'whisper_tiny_en@2']
    >>> is_encoder("whisper_base@3"), is_encoder("mfcc")
    (True, False)
    >>> encoder_config("whisper_base@3")
    EncoderConfig(name='whisper_base', layer=3)
"""
from __future__ import annotations

from typing import Any, Iterable, Union

from .encoders import EncoderError
from .encoders.registry import REGISTRY as ENCODERS
from .encoders.registry import EncoderConfig, get_spec
from .features import FeatureError, available_features, output_rows, resolve_names

SEP = "@"  # between an encoder's name and its layer

Names = Union[str, Iterable[str]]


def is_encoder(name: str) -> bool:
    """Whether ``name`` names an encoder representation (``whisper_base`` or ``whisper_base@5``)."""
    return str(name).split(SEP, 1)[0] in ENCODERS


def encoder_config(name: str) -> EncoderConfig:
    """The encoder and layer ``name`` stands for; a bare encoder name takes its default layer.

    Raises:
        EncoderError: unknown encoder, a layer that is not a number, or one the encoder lacks.
    """
    base, _, layer = str(name).partition(SEP)
    spec = get_spec(base)
    if not layer:
        return EncoderConfig(base, spec.default_layer)
    try:
        n = int(layer)
    except ValueError:
        raise EncoderError(f"{name!r}: the layer after {SEP!r} must be a number, e.g. {base}{SEP}"
                           f"{spec.default_layer}") from None
    if not 0 <= n <= spec.dims.n_layer:
        raise EncoderError(f"{name!r}: {base} has layers 0-{spec.dims.n_layer} (0 = after the convolutions)")
    return EncoderConfig(base, n)


def representation_name(config: EncoderConfig) -> str:
    """The canonical name of an encoder layer: ``whisper_base@5``."""
    return f"{config.name}{SEP}{config.layer}"


def resolve_representations(names: Names) -> list[str]:
    """``"all"`` (the eleven features), ``"mel,whisper_base@5"`` or a list -> validated
    canonical names without duplicates, in the order given.

    Raises:
        FeatureError: an unknown name (the message lists features and encoders).
    """
    if isinstance(names, str):
        if names.strip() == "all":
            return available_features()
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = []
    for name in names:
        if is_encoder(name):
            out.append(representation_name(encoder_config(name)))
        else:
            try:
                out += resolve_names([name])
            except FeatureError:
                raise FeatureError(f"unknown representation {name!r}; features: {', '.join(available_features())}"
                                   f" (or 'all'); encoders: {', '.join(ENCODERS)} (optionally {SEP}LAYER)") from None
    if not out:
        raise FeatureError("no representation requested; e.g. --features mel or --features whisper_base")
    return list(dict.fromkeys(out))


def split_kinds(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(feature names, encoder representation names)`` of resolved names, order kept."""
    names = list(names)
    return [n for n in names if not is_encoder(n)], [n for n in names if is_encoder(n)]


def representation_rows(name: str, config: Any = None) -> int:
    """Rows of a representation: a feature's output rows, an encoder's width."""
    if is_encoder(name):
        return int(get_spec(encoder_config(name).name).dims.n_state)
    return output_rows(name, config)
