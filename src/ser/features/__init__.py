"""Feature extraction: a registry of the eleven audio representations and a one-pass
``extract`` that shares the STFT, the filter banks, the log-mel, the chroma and the
tempogram between them.

Every representation is a float32, C-contiguous, finite rows x frames array; at the
defaults (n_fft 1024, hop 256, 16 kHz) a 3 s clip gives 188 frames for all of them:

=================  ====  ==================================================
name               rows  what
=================  ====  ==================================================
mel                64    log-mel spectrogram (dB)
linear             128   log-magnitude STFT, 4 bins pooled per row (dB)
mfcc               40    MFCCs from the log-mel
chroma             12    STFT chromagram (tuning 0)
spectral_contrast  7     octave-band peak-valley contrast (dB)
zcr                1     zero-crossing rate
rms                1     RMS energy
tempogram          64    autocorrelation tempogram of the mel onset envelope
tonnetz            6     tonal centroids from the chromagram
delta_mfcc         40    first-order delta of the MFCCs (width 9)
delta_tempogram    64    first-order delta of the tempogram (width 9)
=================  ====  ==================================================

Each extractor's docstring (``ser.features.spectral`` / ``ser.features.rhythm``) states
its librosa reference expression and tolerance; ``ser.features.reference`` computes the
references.

Example:
    >>> import numpy as np
    >>> from ser.features import extract, get_config, feature_key
    >>> y = np.zeros(48000, dtype=np.float32)
    >>> feats = extract(y, names=["mel", "mfcc"], configs={"mel": get_config("mel", n_mels=32)})
    >>> feats["mel"].shape, feats["mfcc"].shape
    ((32, 188), (40, 188))
"""
from .configs import (
    ChromaConfig,
    DeltaMfccConfig,
    DeltaTempogramConfig,
    LinearConfig,
    MelConfig,
    MfccConfig,
    RmsConfig,
    SpectralContrastConfig,
    TempogramConfig,
    TonnetzConfig,
    ZcrConfig,
)
from .core import MAX_ROWS, MIN_FRAMES, FeatureError, min_samples, n_frames
from .registry import (
    REGISTRY,
    FeatureSpec,
    available_features,
    config_from_key,
    default_configs,
    extract,
    feature_key,
    get_config,
    get_spec,
    output_rows,
    output_shape,
    resolve_config,
    resolve_names,
)

__all__ = [
    "REGISTRY",
    "MAX_ROWS",
    "MIN_FRAMES",
    "FeatureError",
    "FeatureSpec",
    "available_features",
    "config_from_key",
    "default_configs",
    "extract",
    "feature_key",
    "get_config",
    "get_spec",
    "min_samples",
    "n_frames",
    "output_rows",
    "output_shape",
    "resolve_config",
    "resolve_names",
    "ChromaConfig",
    "DeltaMfccConfig",
    "DeltaTempogramConfig",
    "LinearConfig",
    "MelConfig",
    "MfccConfig",
    "RmsConfig",
    "SpectralContrastConfig",
    "TempogramConfig",
    "TonnetzConfig",
    "ZcrConfig",
]
