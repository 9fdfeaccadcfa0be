"""Robustness: how a trained model holds up when the audio is degraded (issue #17).

A model is scored on the test speakers of its own split, clean and under each condition
of :mod:`ser.degrade` (telephone band, codecs, noise, babble, reverberation, level),
with the metrics of ``ser compare`` (accuracy, UAR, macro-F1, bootstrap CIs over whole
speakers). Exported models go through the torch-free runtime as the service runs them;
bundles and runs through their PyTorch members, their inputs computed from the degraded
audio (never from the cache of clean features).

- :mod:`ser.robustness.target`: which model(s), which split (recorded test speakers,
  training speakers for babble), one target per fold of a fold study.
- :mod:`ser.robustness.scorers`: waveforms to probabilities, one path per kind of model.
- :mod:`ser.robustness.score`: decode once, degrade in memory (seeded per clip), predict.
- :mod:`ser.robustness.report`: :func:`robustness_report`, the metrics per condition.
- :mod:`ser.robustness.files`: the CSV, Markdown, PNG and JSON files.

Names load lazily so that ``import ser.robustness`` stays cheap.

Example:
    >>> from ser.robustness import robustness_report                                  # doctest: +SKIP
    >>> robustness_report(bundle="study/ensemble/bundle", corpus="ravdess",
    ...                   data="../shared/data/ravdess", conditions="telephone,snr5")   # doctest: +SKIP
"""
from __future__ import annotations

from .._lazy import lazy_api

_API = {
    "robustness_report": "ser.robustness.report",
    "resolve_conditions": "ser.robustness.report",
    "default_out": "ser.robustness.report",
    "condition_tables": "ser.robustness.report",
    "RobustnessError": "ser.robustness.scorers",
    "OnnxScorer": "ser.robustness.scorers",
    "TorchScorer": "ser.robustness.scorers",
    "Target": "ser.robustness.target",
    "resolve_targets": "ser.robustness.target",
    "split_rows": "ser.robustness.target",
    "babble_rows": "ser.robustness.target",
    "clip_seed": "ser.robustness.score",
    "score_conditions": "ser.robustness.score",
    "write_report": "ser.robustness.files",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
