"""The ensemble of a study: fit on validation speakers, score on test speakers, report.

One sequence for both kinds of study. A ``ser compare --folds k`` study has k folds; a
single-split study is the one-fold case. In each fold the members' Optuna weights, the
temperature and the stacking regression are fitted on THAT FOLD'S VALIDATION SPEAKERS
ONLY (:func:`ser.ensemble.fit_on_validation`) and applied to its test speakers; the
test predictions of all folds are pooled and scored with a bootstrap over whole speakers
(with one fold: the split's test speakers). Members are the same runs in every fold:
the ``top`` by validation UAR (averaged over the folds), or named ones.

A single split's ensemble is one deployable model: it also writes ``bundle/`` (member
checkpoints + ``bundle.json``, what ``ser export`` needs) and is tracked in MLflow. k
fold ensembles estimate how well the recipe carries to unseen speakers; they are not one
model, so a fold study gets no bundle.

Writes into ``out_dir`` (see :func:`ser.ensemble.write_outputs`): ``optuna.db`` (one
study per fold; a re-run with more trials continues them), ``summary.json``,
``ensemble.md``, ``predictions.csv``, ``trials.csv``, ``errors.csv``, ``speakers.csv``,
``confusion.png``, ``reliability.png``; ``folds.csv`` for a fold study; ``bundle/`` for a
single split.

Example:
    >>> summary = fit_ensemble("study", "study/ensemble", top=3, trials=100)   # doctest: +SKIP
    >>> summary["results"]["weighted"]["test"]["uar"]                            # doctest: +SKIP
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluate import evaluate_predictions
from .bundle import write_bundle
from .calibration import apply_temperature, expected_calibration_error
from .report import write_outputs
from .runs import EVAL_PARTS, EnsembleError, align_runs, dirs_label, load_folds, select_members
from .search import COMBINERS, combine, fit_on_validation, optuna_study_name, stacking_proba

log = logging.getLogger(__name__)


def fit_ensemble(runs: str | Path | Sequence[str | Path], out_dir: str | Path, top: int = 3,
                 features: str | Iterable[str] | None = None, trials: int = 100, seed: int = 0,
                 objective: str = "uar", n_boot: int = 1000, tracking: bool = True, progress: bool = True,
                 experiment: str = "ser") -> dict[str, Any]:
    """Fit, score and report the ensemble of a study (see module docstring).

    Args:
        runs: a ``ser compare`` study folder (single split, or its ``runs/``; or a
            ``--folds`` study), or several of the same split or folds, whose runs are
            pooled (on a name clash the first folder's run is kept; members whose clips
            or speakers differ are refused).
        out_dir: output folder; its ``optuna.db`` makes a re-run continue the studies.
        top: members by validation UAR (ignored when ``features`` names them). For a
            single split only runs with a checkpoint are candidates (the bundle needs it).
        features: member run names (comma string or list) instead of the top ``top``.
        trials: total Optuna trials per fold (a re-run with more continues up to it).
        seed: TPE sampler, stacking and bootstrap seed.
        objective: what the weight search optimises on validation, ``"uar"`` or
            ``"log_loss"`` (see :func:`ser.ensemble.search_weights`).
        n_boot: bootstrap resamples (whole test speakers) for the CIs.
        tracking: log a single split's ensemble to MLflow (fold studies are not tracked).
        progress: Optuna's progress bar (single split) or a bar over the folds.
        experiment: the MLflow experiment.

    Returns:
        The summary (also ``summary.json``): ``folds``, ``members``, ``best_single``,
        ``per_fold`` (weights, temperature, UARs), ``results`` (per combiner: weighted,
        equal, best_single, stacking; pooled val and test metrics), ``members_pooled``,
        ``ece``, ``test_speakers``, ``n_test``; a single split adds ``weights``,
        ``temperature``, ``study``, ``n_trials``, ``best_trial``, ``search_val_uar`` and
        ``bundle``.
    """
    from ..tracking import Tracker

    folds = load_folds(runs)
    single = len(folds) == 1
    if single and not features:  # the top k among runs that can be bundled (the baseline has no checkpoint)
        candidates = folds[0][1]
        skipped = [n for n, r in candidates.items() if not (r["dir"] / "model.pt").is_file()]
        if skipped:
            log.info("not candidates (no model.pt, cannot be bundled): %s", ", ".join(skipped))
        folds = [(None, {n: r for n, r in candidates.items() if n not in skipped})]
    names = select_members([r for _, r in folds], top, features)
    members = [folds[0][1][n] for n in names]
    if single:
        for m in members:
            if not (m["dir"] / "model.pt").is_file():
                what = "a baseline run" if m["meta"].get("kind") == "baseline" else "a run without model.pt"
                raise EnsembleError(f"{m['dir']} is {what}; the bundle needs every member's checkpoint "
                                    "(a fold study's ensemble, which writes no bundle, can use it)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(out, experiment, run_name="ensemble", enabled=tracking and single)
    tracker.log_params({"members": names, "trials": trials, "seed": seed, "top": top, "runs_dir": dirs_label(runs),
                        "objective": objective, "member_val_uar": {m["name"]: m["val_uar"] for m in members}})

    summary, pooled, fits = fit_folds(folds, names, out, trials, seed, objective, n_boot, progress)
    summary = {"study_dir": dirs_label(runs), **summary}
    if single:
        fit, r = fits[0], summary["results"]["weighted"]
        w, t = fit["weights"], fit["temperature"]
        brief = {s: {k: v for k, v in r[s].items() if k in ("n", "accuracy", "uar", "macro_f1", "log_loss", "ci")}
                 for s in EVAL_PARTS}
        write_bundle(out / "bundle", members, w, t, summary["labels"], {"metrics": brief, "ece": summary["ece"]})
        summary.update({"weights": dict(zip(names, map(float, w))), "temperature": t, "study": fit["study"],
                        "n_trials": fit["search"]["n_trials"], "best_trial": fit["search"]["best_trial"],
                        "search_val_uar": fit["search"]["val_uar"], "bundle": str(out / "bundle")})
    written = write_outputs(out, summary, pooled, fits)
    if single:
        _track(tracker, summary, fits[0], written)
    log.info("ensemble %s over %d fold(s): pooled test UAR %.3f (best single %s %.3f)", names, len(folds),
             summary["results"]["weighted"]["test"]["uar"], summary["best_single"],
             summary["results"]["best_single"]["test"]["uar"])
    return summary


def fit_folds(folds: Sequence[tuple[str | None, Mapping[str, dict]]], names: Sequence[str], out_dir: str | Path,
              trials: int = 100, seed: int = 0, objective: str = "uar", n_boot: int = 1000,
              progress: bool = False) -> tuple[dict[str, Any], dict[str, Any], list[dict]]:
    """Fit every fold on its validation part, apply it to both parts, score the pooled folds.

    The one sequence behind :func:`fit_ensemble`; writes only ``out_dir/optuna.db``.

    Args:
        folds: ``[(fold name, runs by name), ...]`` (:func:`ser.ensemble.load_folds`); a
            single split is ``[(None, runs)]``, its Optuna study named ``ensemble-...``.
        names: the members, present in every fold (:func:`ser.ensemble.select_members`).
        trials, seed, objective: the weight search's (:func:`ser.ensemble.search_weights`).
        n_boot: bootstrap resamples (whole test speakers) for the pooled CIs.
        progress: Optuna's bar for one fold, a bar over the folds for several.

    Returns:
        ``(summary, pooled, fits)``: the summary's fold-independent fields; the pooled
        clips, labels and probabilities per part (for :func:`ser.ensemble.write_outputs`);
        each fold's fit (:func:`ser.ensemble.fit_on_validation` plus ``fold`` and ``study``).
    """
    from tqdm.auto import tqdm

    names, single = list(names), len(folds) == 1
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(Path(out_dir) / 'optuna.db').resolve()}"
    mean_val = [float(np.mean([runs[n]["val_uar"] for _, runs in folds])) for n in names]
    best = max(range(len(names)), key=lambda i: (mean_val[i], -i))
    fixed = {"equal": np.full(len(names), 1 / len(names)), "best_single": np.eye(len(names))[best]}
    labels: list[str] | None = None
    parts: dict[str, list[dict]] = {s: [] for s in EVAL_PARTS}
    probs: dict[str, dict[str, list]] = {s: {k: [] for k in ("raw", *COMBINERS)} for s in EVAL_PARTS}
    fits, per_fold = [], []
    for i, (fold, runs) in enumerate(tqdm(folds, desc="folds", unit="fold", disable=single or not progress)):
        data = align_runs([runs[n] for n in names])
        if labels is None:
            labels = data["labels"]
        elif data["labels"] != labels:
            raise EnsembleError(f"{fold}: labels {data['labels']} differ from the first fold's {labels}")
        val, test = data["val"], data["test"]
        # 1. this fold's weights, temperature and stacking: from its validation speakers only
        study = optuna_study_name(fold or "ensemble", names, seed, val, objective)
        fit = fit_on_validation(val, labels, trials, seed, storage, study, progress and single, objective)
        fits.append({**fit, "fold": fold, "study": study})
        # 2. applied to this fold's val and test clips; the test clips are read from here on, only to report
        for s, d in (("val", val), ("test", test)):
            parts[s].append(d)
            for k, p in _apply(fit, d, s, fixed, len(labels)).items():
                probs[s][k].append(p)
        per_fold.append({
            "fold": i, "test_speakers": " ".join(sorted(set(test["speakers"]))),
            "val_speakers": " ".join(sorted(set(val["speakers"]))), "temperature": fit["temperature"],
            **{f"w_{n}": float(x) for n, x in zip(names, fit["weights"])}, "val_uar": fit["search"]["val_uar"],
            "test_uar": evaluate_predictions(probs["test"]["weighted"][-1], test["y"], labels, n_boot=0)["uar"]})

    # 3. pooled over folds: every test speaker once
    y = {s: np.concatenate([d["y"] for d in parts[s]]) for s in EVAL_PARTS}
    groups = np.concatenate([d["speakers"] for d in parts["test"]])
    results: dict[str, Any] = {}
    for k in COMBINERS:
        if k == "stacking" and any(f["stacker"] is None for f in fits):
            continue
        val_p, p_test = probs["val"][k], np.concatenate(probs["test"][k])
        results[k] = {"val": None if any(p is None for p in val_p) else  # stacking: its CV score, or none
                      evaluate_predictions(np.concatenate(val_p), y["val"], labels, n_boot=0),
                      "test": evaluate_predictions(p_test, y["test"], labels, n_boot=n_boot, seed=seed, groups=groups),
                      "ece_test": expected_calibration_error(p_test, y["test"])}
    results["best_single"]["member"] = names[best]
    members_pooled = {}  # each member alone, pooled like the study's leaderboard
    for j, n in enumerate(names):
        own = [d["probs"][j] for d in parts["test"]]
        members_pooled[n] = {
            "test": evaluate_predictions(np.concatenate(own), y["test"], labels, n_boot=n_boot, seed=seed,
                                         groups=groups),
            "val_uar_mean": mean_val[j],
            "test_uar_per_fold": [evaluate_predictions(p, d["y"], labels, n_boot=0)["uar"]
                                  for p, d in zip(own, parts["test"])]}
    pooled: dict[str, Any] = {"labels": labels, "names": names}
    for s in EVAL_PARTS:
        pooled[s] = {"clips": _clips(parts[s], s, with_fold=not single), "y": y[s],
                     "speakers": np.concatenate([d["speakers"] for d in parts[s]]),
                     **{k: np.concatenate(probs[s][k]) for k in ("raw", "weighted")}}
    ece = {s: {"before": expected_calibration_error(pooled[s]["raw"], y[s]),
               "after": expected_calibration_error(pooled[s]["weighted"], y[s])} for s in EVAL_PARTS}
    stack_cv = "stacking" in results and results["stacking"]["val"] is not None
    summary = {"folds": len(folds), "members": names, "best_single": names[best], "labels": labels, "seed": seed,
               "trials_per_fold": trials, "objective": objective, "per_fold": per_fold, "results": results,
               "members_pooled": members_pooled, "ece": ece,
               "stacking_val": "speaker-grouped cross-validation" if stack_cv else None,
               "test_speakers": sorted(set(groups)), "n_test": int(len(groups))}
    return summary, pooled, fits


def _apply(fit: dict, part: dict, name: str, fixed: Mapping[str, np.ndarray], n_classes: int) -> dict:
    """Every combiner's probabilities on one part of one fold (``raw``: weighted, before the temperature)."""
    raw = combine(part["probs"], fit["weights"])
    out = {"raw": raw, "weighted": apply_temperature(raw, fit["temperature"]),
           **{k: combine(part["probs"], w) for k, w in fixed.items()}}
    if fit["stacker"] is not None:  # its honest validation score is the speaker-grouped CV one (or none)
        out["stacking"] = fit["stack_val_cv"] if name == "val" else stacking_proba(fit["stacker"], part["probs"],
                                                                                   n_classes)
    return out


def _clips(parts: list[dict], name: str, with_fold: bool) -> pd.DataFrame:
    """The clips of one part over the folds: ``split``, ``fold`` (several folds), then the run's columns."""
    frames = []
    for i, d in enumerate(parts):
        df = d["clips"].copy()
        if with_fold:
            df.insert(0, "fold", i)
        df.insert(0, "split", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _track(tracker, summary: dict, fit: dict, written: Sequence[str]) -> None:
    """A single split's search and result in MLflow (a no-op when tracking is off)."""
    results, t, names = summary["results"], summary["temperature"], summary["members"]
    for tr in fit["search"]["trials"]:
        tracker.log_metrics({"trial_val_uar": tr["val_uar"]}, step=tr["number"])
    tracker.log_metrics({"best_val_uar": fit["search"]["val_uar"], "temperature": t,
                         **{f"w_{n}": float(x) for n, x in zip(names, fit["weights"])},
                         **{f"{k}_test_{m}": r["test"][m] for k, r in results.items()
                            for m in ("uar", "accuracy", "macro_f1")},
                         **{f"ece_{s}_{b}": v for s, e in summary["ece"].items() for b, v in e.items()}}, step=0)
    if tracker.run is not None:
        out = Path(summary["bundle"]).parent
        for name in (*(f for f in written if f != "confusion.png"), "bundle/bundle.json"):
            tracker.mlflow.log_artifact(str(out / name))  # confusion.png: logged by finish
    tracker.finish({"feature": "ensemble", "test": results["weighted"]["test"]}, summary["labels"])
