"""ser: speech emotion recognition toolkit.

The flat public API; the CLI, the service, the export scripts and the notebooks are thin
shells over these names. Heavy modules load on first use, so ``import ser`` is cheap.

Example:
    >>> import ser
    >>> y = ser.load_audio("clip.wav")                             # doctest: +SKIP
    >>> m = ser.load_manifest("ravdess", "../shared/data/ravdess")  # doctest: +SKIP
    >>> split = ser.speaker_split(m, val=0.15, test=0.15, seed=0)  # doctest: +SKIP
    >>> feats = ser.extract(y, 16000, ["mel", "mfcc"])              # doctest: +SKIP
    >>> X = ser.load_features(m, ["mel"])["mel"]     # cached, (clips, 64, 188)  # doctest: +SKIP
    >>> board = ser.run_study(m, "all", ser.TrainConfig(epochs=20), "study")  # doctest: +SKIP
    >>> summary = ser.fit_ensemble("study", "study/ensemble", top=3)  # doctest: +SKIP
    >>> ser.export_bundle("study/ensemble/bundle", "model", corpus="ravdess", data="...")  # doctest: +SKIP
    >>> ser.load_model("model/model.int8.onnx").predict("clip.wav")  # no torch  # doctest: +SKIP
"""
from __future__ import annotations

from ._lazy import lazy_api

__version__ = "0.1.0"

# public name -> module that defines it. No name here may equal a submodule's name: a
# submodule import sets the package attribute of that name and would replace the function.
_API = {
    "SerError": "ser.errors",
    "load_audio": "ser.audio",
    "prepare_clip": "ser.audio",
    "ClipConfig": "ser.audio",
    "AudioError": "ser.audio",
    "SAMPLE_RATE": "ser.audio",
    "load_manifest": "ser.corpora",
    "generate_synthetic": "ser.corpora",
    "EMOTIONS": "ser.corpora",
    "speaker_split": "ser.splits",
    "speaker_folds": "ser.splits",
    "extract": "ser.features",
    "available_features": "ser.features",
    "load_features": "ser.cache",
    "AugmentConfig": "ser.augment",
    "TrainConfig": "ser.train",
    "TrainResult": "ser.train",
    "train_feature": "ser.train",
    "run_study": "ser.study",
    "fit_ensemble": "ser.ensemble",
    "export_bundle": "ser.export.onnx_export",
    "load_model": "ser.runtime",
    "robustness_report": "ser.robustness",
    "get_condition": "ser.degrade",
    "available_conditions": "ser.degrade",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
