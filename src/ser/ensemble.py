"""The ensemble: Optuna-weighted average of the best runs, stacking, calibration, bundle.

Reads top to bottom: load the runs of one ``ser compare`` study, pick the members by
validation UAR, align their validation/test probabilities by clip path; then fit
everything on VALIDATION ONLY (:func:`fit_on_validation`: TPE weights on the simplex,
the temperature, the stacking regression), and only then read the test clips to report.

Writes into ``out_dir``::

    optuna.db          the study (SQLite); re-running with more trials continues it
    summary.json       members, weights, temperature, val/test metrics of every combiner
    ensemble.md        the same as Markdown tables (test metrics with speaker-bootstrap CIs)
    predictions.csv    val/test probabilities of the calibrated weighted ensemble
    trials.csv         every trial: number, val UAR, val log loss, weights
    errors.csv         misclassified test clips: true, predicted, top-3 probabilities, speaker
    speakers.csv       per-speaker test accuracy and UAR
    confusion.png, reliability.png
    bundle/            member checkpoints + bundle.json: everything export needs

Example:
    >>> summary = ensemble("study", "study/ensemble", top=3, trials=100)       # doctest: +SKIP
    >>> models, meta = load_bundle("study/ensemble/bundle")                       # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .calibration import apply_temperature, expected_calibration_error, fit_temperature, plot_reliability
from .checkpoint import CheckpointError, load_checkpoint, write_json_atomic
from .evaluate import evaluate_predictions, plot_confusion

log = logging.getLogger(__name__)

SPLITS = ("val", "test")
COMBINERS = ("weighted", "equal", "best_single", "stacking")


class EnsembleError(ValueError):
    """Runs that cannot form an ensemble, or a bundle that is not one of ours."""


# ----------------------------------------------------------------------------- runs

def load_runs(runs_dir: str | Path) -> dict[str, dict]:
    """The runs of a single-split study (``DIR/runs/<name>/`` or ``DIR/<name>/``), by name.

    Each run: ``{"name", "dir", "meta", "labels", "val": df, "test": df, "val_uar"}``;
    ``val_uar`` is recomputed from the run's validation probabilities.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise EnsembleError(f"{root}: no such folder; pass the study folder of `ser compare` (or its runs/)")
    if (root / "model.json").is_file():
        raise EnsembleError(f"{root} is one run; pass the folder that holds several (the study or its runs/)")
    base = root / "runs" if (root / "runs").is_dir() else root
    dirs = [d for d in sorted(base.iterdir()) if d.is_dir() and (d / "predictions.csv").is_file()]
    if not dirs:
        folds = sorted(p.parent.name for p in root.glob("fold*/runs"))
        if folds:
            raise EnsembleError(f"{root} is a {len(folds)}-fold study ({', '.join(folds)}); the ensemble needs "
                                "one train/val/test split: run `ser compare` without --folds")
        raise EnsembleError(f"{root}: no runs found (expected runs/<feature>/predictions.csv from `ser compare`)")
    runs = {}
    for d in dirs:
        if not (d / "model.json").is_file():
            raise EnsembleError(f"{d}: model.json missing; a run folder is written by `ser train`/`ser compare`")
        meta = json.loads((d / "model.json").read_text())
        df = pd.read_csv(d / "predictions.csv", dtype={"path": str, "speaker": str, "emotion": str})
        labels = [c[2:] for c in df.columns if c.startswith("p_")]
        if list(meta.get("labels", labels)) != labels:
            raise EnsembleError(f"{d}: model.json labels {meta['labels']} differ from predictions.csv {labels}")
        parts = {s: df[df["split"] == s].reset_index(drop=True) for s in SPLITS}
        for s, part in parts.items():
            if part.empty:
                raise EnsembleError(f"{d}/predictions.csv has no {s} clips; the ensemble needs val and test")
        y, p = _targets(parts["val"], labels, d)
        runs[d.name] = {"name": d.name, "dir": d, "meta": meta, "labels": labels, **parts,
                        "val_uar": evaluate_predictions(p, y, labels, n_boot=0)["uar"]}
    return runs


def _targets(df: pd.DataFrame, labels: list[str], where: Any) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(df["emotion"]) - set(labels))
    if unknown:
        raise EnsembleError(f"{where}: emotions {unknown} are not among the labels {labels}")
    return df["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy(), \
        df[[f"p_{lab}" for lab in labels]].to_numpy(np.float64)


def select_runs(runs: Mapping[str, dict], top: int = 3, features: str | Iterable[str] | None = None) -> list[dict]:
    """The members: ``features`` by name, else the ``top`` runs by VALIDATION UAR (never test)."""
    if features:
        names = [n.strip() for n in features.split(",")] if isinstance(features, str) else list(features)
        unknown = [n for n in names if n not in runs]
        if unknown:
            raise EnsembleError(f"no run named {unknown}; available: {', '.join(runs)}")
        chosen = [runs[n] for n in dict.fromkeys(names)]
    else:
        if top < 2:
            raise EnsembleError(f"--top {top}: an ensemble needs at least 2 members")
        chosen = sorted(runs.values(), key=lambda r: (-r["val_uar"], r["name"]))[:top]
        if len(chosen) < top:
            log.warning("only %d runs in the study; using all of them instead of the top %d", len(chosen), top)
    if len(chosen) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 runs, got {[r['name'] for r in chosen]}")
    return chosen


def align_runs(members: list[dict]) -> dict[str, Any]:
    """Stack the members' probabilities per split, aligned by clip path to the first member.

    Returns:
        ``{"labels", "names", "val": split, "test": split}``, a split being ``{"probs" (M, N, K),
        "y", "paths", "speakers"}``. Fails unless every member has the same labels, the same
        split speakers and the same validation and test clips.
    """
    ref = members[0]
    labels = ref["labels"]
    out: dict[str, Any] = {"labels": labels, "names": [m["name"] for m in members]}
    for m in members[1:]:
        if m["labels"] != labels:
            raise EnsembleError(f"runs {ref['name']} and {m['name']} have different labels ({labels} vs "
                                f"{m['labels']}); members must be trained on the same corpus and classes")
        a, b = ref["meta"].get("speakers"), m["meta"].get("speakers")
        if a and b and a != b:
            raise EnsembleError(f"runs {ref['name']} and {m['name']} were trained on different speaker splits "
                                f"({a} vs {b}); members must come from one study")
    for s in SPLITS:
        paths = ref[s]["path"].tolist()
        if len(set(paths)) != len(paths):
            raise EnsembleError(f"run {ref['name']}: duplicate {s} paths in predictions.csv")
        probs = []
        for m in members:
            df = m[s]
            if sorted(df["path"]) != sorted(paths):
                only_a, only_b = sorted(set(paths) - set(df["path"])), sorted(set(df["path"]) - set(paths))
                raise EnsembleError(
                    f"runs {ref['name']} and {m['name']} disagree on the {s} clips ({len(only_a)} only in "
                    f"{ref['name']}, {len(only_b)} only in {m['name']}, e.g. {(only_a + only_b)[:2]}); "
                    "members must come from one study (same split)")
            df = df.set_index("path").loc[paths].reset_index()
            y, p = _targets(df, labels, m["dir"])
            probs.append(p)
        y, _ = _targets(ref[s], labels, ref["dir"])
        out[s] = {"probs": np.stack(probs), "y": y, "paths": paths, "speakers": ref[s]["speaker"].to_numpy(str)}
    return out


# ------------------------------------------------------------------- fit (validation only)

def combine(probs: np.ndarray, weights) -> np.ndarray:
    """Weighted average of member probabilities ``(M, N, K)`` -> ``(N, K)``."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), probs, axes=1)


def simplex_weights(u) -> np.ndarray:
    """Map ``u`` in (0, 1]^M to the simplex: ``-log u`` normalised (uniform u -> flat Dirichlet)."""
    w = -np.log(np.asarray(u, dtype=np.float64))
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))


def search_weights(val_probs: np.ndarray, y_val, labels: list[str], trials: int = 100, seed: int = 0,
                   storage: str | None = None, study_name: str = "ensemble", progress: bool = False) -> dict:
    """Optuna TPE over simplex weights maximising validation UAR (ties: lower validation log loss).

    A new study first tries equal weights and each member alone. ``trials`` is the study's
    total: with a ``storage`` the study is loaded if it exists and runs only the trials it
    still lacks (5 then 10 gives 10 trials, not 15).

    Returns:
        ``{"weights", "val_uar", "val_log_loss", "best_trial", "n_trials", "trials": [...]}``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    m = len(val_probs)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    if not study.trials:
        study.enqueue_trial({f"u{i}": float(np.exp(-1)) for i in range(m)})
        for j in range(m):
            study.enqueue_trial({f"u{i}": float(np.exp(-1)) if i == j else 1.0 for i in range(m)})

    def objective(trial) -> float:
        w = simplex_weights([trial.suggest_float(f"u{i}", 1e-6, 1.0) for i in range(m)])
        res = evaluate_predictions(combine(val_probs, w), y_val, labels, n_boot=0)
        trial.set_user_attr("weights", w.tolist())
        trial.set_user_attr("log_loss", res["log_loss"])
        return res["uar"]

    complete = optuna.trial.TrialState.COMPLETE
    todo = trials - len(study.get_trials(states=(complete,)))
    if todo > 0:
        study.optimize(objective, n_trials=todo, show_progress_bar=progress)
    done = study.get_trials(states=(complete,))
    best = max(done, key=lambda t: (t.value, -t.user_attrs["log_loss"], -t.number))
    return {"weights": best.user_attrs["weights"], "val_uar": best.value, "best_trial": best.number,
            "val_log_loss": best.user_attrs["log_loss"], "n_trials": len(done),
            "trials": [{"number": t.number, "val_uar": t.value, "val_log_loss": t.user_attrs["log_loss"],
                        "weights": t.user_attrs["weights"]} for t in done]}


def _stack_x(probs: np.ndarray) -> np.ndarray:
    return probs.transpose(1, 0, 2).reshape(probs.shape[1], -1)


def stacking_proba(clf, probs: np.ndarray, n_classes: int) -> np.ndarray:
    """The stacking regression's (N, K) probabilities for member probabilities ``(M, N, K)``."""
    out = np.zeros((probs.shape[1], n_classes))
    out[:, clf.classes_] = clf.predict_proba(_stack_x(probs))
    return out


def fit_stacking(val_probs: np.ndarray, y_val, groups, seed: int = 0):
    """Logistic regression on concatenated validation probabilities; plus its speaker-grouped
    cross-validated validation probabilities (``None`` with fewer than 2 validation speakers)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    x, y = _stack_x(val_probs), np.asarray(y_val)
    if len(np.unique(y)) < 2:
        log.warning("stacking skipped: the validation clips hold a single class")
        return None, None
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, y)
    cv, k = None, val_probs.shape[2]
    n_groups = len(np.unique(groups))
    if n_groups >= 2:
        cv = np.zeros((len(y), k))
        for tr, te in GroupKFold(n_splits=min(5, n_groups)).split(x, y, groups):
            if len(np.unique(y[tr])) < 2:
                return clf, None
            fold = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x[tr], y[tr])
            cv[te] = stacking_proba(fold, val_probs[:, te], k)
    return clf, cv


def fit_on_validation(val: dict, labels: list[str], trials: int, seed: int, storage: str | None,
                      study_name: str, progress: bool = False) -> dict:
    """Everything the ensemble learns, from the validation split alone (test never passed in)."""
    search = search_weights(val["probs"], val["y"], labels, trials, seed, storage, study_name, progress)
    temperature = fit_temperature(combine(val["probs"], search["weights"]), val["y"])
    stacker, stack_cv = fit_stacking(val["probs"], val["y"], val["speakers"], seed)
    return {"search": search, "weights": np.asarray(search["weights"]), "temperature": temperature,
            "stacker": stacker, "stack_val_cv": stack_cv}
