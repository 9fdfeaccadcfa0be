"""The ensemble of a study's runs: chosen and fitted on validation speakers, tested, bundled.

- :mod:`ser.ensemble.runs`: load a study's runs (a single split or k folds), choose the
  members by validation UAR, align their clips.
- :mod:`ser.ensemble.search`: the combiners, the Optuna weight search, stacking, and
  :func:`fit_on_validation` (everything learnt, from validation clips only).
- :mod:`ser.ensemble.calibration`: temperature scaling, ECE, reliability diagrams,
  error and speaker tables.
- :mod:`ser.ensemble.fit`: :func:`fit_ensemble`, the one sequence for both kinds of
  study (a single split is the one-fold case).
- :mod:`ser.ensemble.report`: the tables, plots, summary and Markdown report.
- :mod:`ser.ensemble.bundle`: a single split's deployable bundle (member checkpoints +
  ``bundle.json``) and its PyTorch prediction.

Names load lazily so that ``import ser.ensemble`` stays cheap (no torch, optuna, sklearn).

Example:
    >>> from ser.ensemble import fit_ensemble, load_bundle                          # doctest: +SKIP
    >>> summary = fit_ensemble("runs/study", "runs/study/ensemble", top=3)           # doctest: +SKIP
    >>> models, meta = load_bundle("runs/study/ensemble/bundle")                    # doctest: +SKIP
"""
from __future__ import annotations

from .._lazy import lazy_api

_API = {
    # the study
    "fit_ensemble": "ser.ensemble.fit",
    "fit_folds": "ser.ensemble.fit",
    # runs
    "EVAL_PARTS": "ser.ensemble.runs",
    "EnsembleError": "ser.ensemble.runs",
    "load_runs": "ser.ensemble.runs",
    "load_fold_runs": "ser.ensemble.runs",
    "load_folds": "ser.ensemble.runs",
    "merge_runs": "ser.ensemble.runs",
    "as_dirs": "ser.ensemble.runs",
    "dirs_label": "ser.ensemble.runs",
    "fold_dirs": "ser.ensemble.runs",
    "is_fold_study": "ser.ensemble.runs",
    "select_members": "ser.ensemble.runs",
    "align_runs": "ser.ensemble.runs",
    "speaker_ids": "ser.ensemble.runs",
    # search
    "COMBINERS": "ser.ensemble.search",
    "OBJECTIVES": "ser.ensemble.search",
    "combine": "ser.ensemble.search",
    "simplex_weights": "ser.ensemble.search",
    "search_weights": "ser.ensemble.search",
    "optuna_study_name": "ser.ensemble.search",
    "fit_stacking": "ser.ensemble.search",
    "stacking_proba": "ser.ensemble.search",
    "fit_on_validation": "ser.ensemble.search",
    # calibration
    "apply_temperature": "ser.ensemble.calibration",
    "fit_temperature": "ser.ensemble.calibration",
    "expected_calibration_error": "ser.ensemble.calibration",
    "calibration_bins": "ser.ensemble.calibration",
    "plot_reliability": "ser.ensemble.calibration",
    "error_table": "ser.ensemble.calibration",
    "speaker_table": "ser.ensemble.calibration",
    # report
    "with_ci": "ser.ensemble.report",
    "markdown_report": "ser.ensemble.report",
    "write_outputs": "ser.ensemble.report",
    # bundle
    "BundleError": "ser.ensemble.bundle",
    "write_bundle": "ser.ensemble.bundle",
    "load_bundle": "ser.ensemble.bundle",
    "predict_bundle": "ser.ensemble.bundle",
    "bundle_features": "ser.ensemble.bundle",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
