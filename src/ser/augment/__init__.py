"""Data augmentation for training: waveform strategies (before extraction) and feature
strategies (on cached features, at batch time), in one registry.

Only training data is augmented; validation and test never are.

Layout:

- :mod:`ser.augment.registry`: the registry (:func:`register`,
  :func:`available_augmentations`, :func:`get_augmentation`), the base classes and the
  frozen :class:`Chain`.
- :mod:`ser.augment.waveform`: ``time_shift``, ``pitch_shift``, ``colored_noise``,
  ``lowpass``, ``highpass``, ``gain`` and :func:`augment_waveform`.
- :mod:`ser.augment.spectral`: ``time_mask``, ``freq_mask``, ``time_roll``,
  ``harmonic_mask`` for 2-D representations.
- :mod:`ser.augment.curves`: ``jitter``, ``scaling``, ``time_warp``,
  ``segment_dropout`` for the 1-row curves ``zcr`` and ``rms``.
- :mod:`ser.augment.policy`: the reviewable mapping :data:`FEATURE_POLICY`
  (representation -> strategies), :class:`AugmentConfig` and the factories
  :func:`augmentation_for` and :func:`waveform_augmentation`.

Every strategy is a frozen dataclass with a probability ``p``; ``to_dict()`` (name and
parameters) is what goes to MLflow and into cache keys, and :func:`from_dict` /
:meth:`Chain.from_dict` rebuild it exactly. All randomness comes from the
``numpy.random.Generator`` passed in, so a seed fixes the output.

Waveform augmentation is too slow to run per batch (pitch shift 8-15 ms per clip, times
eleven representations to re-extract), so the feature cache stores ``config.copies``
augmented copies per training clip, made once::

    aug = waveform_augmentation(config)            # key the cache by aug.to_dict()
    for k in range(config.copies):
        y_k = augment_waveform(y, 16000, aug, derive_seed(config.seed, clip_id, k))

Feature augmentation runs at batch time::

    aug = augmentation_for("mel", config)          # log aug.to_dict() to MLflow
    batch = aug(batch)                             # (n, 64, 188) float32, train only

Example:
    >>> import numpy as np
    >>> from ser.augment import AugmentConfig, augmentation_for
    >>> aug = augmentation_for("chroma", AugmentConfig(seed=0, p=1.0))
    >>> x = np.random.default_rng(0).random((12, 188)).astype(np.float32)
    >>> out = aug(x, 3)
    >>> out.shape, out.dtype, bool((out == aug(x, 3)).all())
    ((12, 188), dtype('float32'), True)
"""
from __future__ import annotations

from . import waveform, spectral, curves, conditions  # noqa: F401,I001  (registers the strategies, in listing order)
from .policy import (
    FEATURE_PARAMS,
    FEATURE_POLICY,
    WAVEFORM_CHAIN,
    AugmentConfig,
    Augmenter,
    augmentation_for,
    describe_policy,
    feature_policy,
    waveform_augmentation,
)
from .registry import (
    Augmentation,
    AugmentError,
    Chain,
    FeatureAugmentation,
    WaveformAugmentation,
    available_augmentations,
    derive_seed,
    from_dict,
    get_augmentation,
    register,
    stable_hash,
)
from .waveform import augment_waveform

__all__ = [
    "AugmentConfig", "AugmentError", "Augmentation", "Augmenter", "Chain",
    "FEATURE_PARAMS", "FEATURE_POLICY", "FeatureAugmentation", "WAVEFORM_CHAIN",
    "WaveformAugmentation", "augment_waveform", "augmentation_for",
    "available_augmentations", "derive_seed", "describe_policy", "feature_policy",
    "from_dict", "get_augmentation", "register", "stable_hash", "waveform_augmentation",
]
