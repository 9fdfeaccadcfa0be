"""Pretrained speech encoders: Whisper's audio encoder, its weight loaders and a registry.

- :mod:`ser.encoders.logmel` (numpy only): Whisper's log-mel spectrogram and mel filter bank;
  the torch-free runtime imports it.
- :mod:`ser.encoders.whisper` (torch): :class:`WhisperEncoder`, returning every layer's
  hidden states, and :func:`log_mel_torch`, the GPU-capable twin of the numpy log-mel.
- :mod:`ser.encoders.weights`: loaders for CTranslate2 (faster-whisper) model directories,
  split ``model.bin.part*`` included, and openai-whisper ``.pt`` checkpoints; SHA-256.
- :mod:`ser.encoders.registry`: ``whisper_tiny_en`` and ``whisper_base``, resolved to the
  pinned, hash-checked weight packages or to a path the user gives.

Names load on first use, so ``import ser.encoders`` (and the numpy log-mel) never imports
torch. See ``docs/encoders.md``.

Example:
    >>> from ser.encoders import available_encoders
    >>> available_encoders()
    ['whisper_tiny_en', 'whisper_base']
    >>> enc = get_encoder("whisper_tiny_en")                                 # doctest: +SKIP
    >>> states = enc(log_mel_torch(torch.from_numpy(y))[None], max_layer=2)  # doctest: +SKIP
"""
from __future__ import annotations

from .._lazy import lazy_api
from ..errors import SerError


class EncoderError(SerError, ValueError):
    """A user-fixable encoder problem: unknown name, weights missing or not matching their
    SHA-256, an unreadable or incomplete weight file, an input the encoder cannot take."""


# public name -> module that defines it
_API = {
    "log_mel_spectrogram": "ser.encoders.logmel",
    "mel_filters": "ser.encoders.logmel",
    "WhisperEncoder": "ser.encoders.whisper",
    "build_encoder": "ser.encoders.whisper",
    "log_mel_torch": "ser.encoders.whisper",
    "WhisperDims": "ser.encoders.weights",
    "load_ctranslate2": "ser.encoders.weights",
    "load_openai_checkpoint": "ser.encoders.weights",
    "load_weights": "ser.encoders.weights",
    "EncoderConfig": "ser.encoders.registry",
    "EncoderSpec": "ser.encoders.registry",
    "available_encoders": "ser.encoders.registry",
    "get_spec": "ser.encoders.registry",
    "get_config": "ser.encoders.registry",
    "resolve_weights": "ser.encoders.registry",
    "get_encoder": "ser.encoders.registry",
    "encoder_key": "ser.encoders.registry",
    "sha256_file": "ser.encoders.registry",
}
__all__ = sorted([*_API, "EncoderError"])
__getattr__, __dir__ = lazy_api(__name__, _API)
