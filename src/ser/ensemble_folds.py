"""The ensemble of a k-fold study: fitted per fold on its validation speakers, tested pooled.

Why: a single split tests few speakers (4 of RAVDESS's 24 actors), so its ensemble figure
swings by ten points with the choice of actors. ``ser compare --folds k`` tests every
speaker once; this module gives the ensemble the same protocol. In each fold the
members' Optuna weights, the temperature and the stacking regression are fitted on
THAT FOLD'S VALIDATION SPEAKERS ONLY (:func:`ser.ensemble.fit_on_validation`), then
applied to its test speakers; the test predictions of all folds are pooled and scored
with a bootstrap over whole speakers, as the study pools single representations.

The members are the same representations in every fold: the ``top`` by validation UAR
averaged over the folds, or named ones. No bundle is written: k fold ensembles estimate
how well the recipe carries to unseen speakers; they are not one deployable model (for
that, ``ser ensemble`` on a single-split study).

Writes into ``out_dir``: ``summary.json``, ``ensemble.md``, ``folds.csv`` (per fold:
speakers, weights, temperature, UARs), ``predictions.csv`` (pooled, calibrated weighted
ensemble; val and test), ``errors.csv``, ``speakers.csv``, ``confusion.png``,
``reliability.png`` and ``optuna.db`` (one Optuna study per fold; a re-run continues them).

Example:
    >>> summary = ensemble_folds("runs/ravdess_folds6", "runs/ravdess_folds6/ensemble")  # doctest: +SKIP
    >>> summary["results"]["weighted"]["test"]["uar"]                                     # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .calibration import apply_temperature, expected_calibration_error, plot_reliability
from .fileio import atomic_write_bytes, write_json_atomic
from .ensemble import (COMBINERS, SPLITS, EnsembleError, _study_suffix, align_runs, as_dirs, combine, dirs_label,
                       fit_on_validation, load_runs, merge_runs, stacking_proba, with_ci)
from .evaluate import evaluate_predictions, plot_confusion

log = logging.getLogger(__name__)


def fold_dirs(study_dir: str | Path) -> list[Path]:
    """The ``fold<i>`` folders (with ``runs/``) of a ``ser compare --folds`` study, in fold order."""
    folds = [p.parent for p in Path(study_dir).glob("fold*/runs") if p.parent.name[4:].isdigit()]
    return sorted(folds, key=lambda d: int(d.name[4:]))


def is_fold_study(study_dir: str | Path | Sequence[str | Path]) -> bool:
    """True for a k-fold study folder (``fold0/runs`` ...) without a single split's ``runs/``
    (for several folders: true when all are)."""
    dirs = as_dirs(study_dir)
    return bool(dirs) and all(not (Path(d) / "runs").is_dir() and bool(fold_dirs(d)) for d in dirs)


def _fold_runs(study_dir: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[dict[str, dict]]]:
    """Each fold's folder and runs; several studies of the same folds are merged fold by fold."""
    studies = as_dirs(study_dir)
    per_study = [fold_dirs(d) for d in studies]
    for d, folds in zip(studies, per_study):
        if len(folds) < 2:
            raise EnsembleError(f"{d}: not a k-fold study (no fold<i>/runs folders); "
                                "for a single split use `ser ensemble` on it")
    if len({len(f) for f in per_study}) > 1:
        raise EnsembleError("the studies have different numbers of folds: " + ", ".join(
            f"{d} {len(f)}" for d, f in zip(studies, per_study)))
    runs = [merge_runs([load_runs(f[i]) for f in per_study]) for i in range(len(per_study[0]))]
    return per_study[0], runs


def _members(runs: list[dict[str, dict]], top: int, features: str | Iterable[str] | None) -> list[str]:
    common = set.intersection(*(set(r) for r in runs))
    if features:
        names = [n.strip() for n in features.split(",")] if isinstance(features, str) else list(features)
        names = list(dict.fromkeys(names))
        missing = [n for n in names if n not in common]
        if missing:
            raise EnsembleError(f"runs {missing} are not in every fold; in all folds: {', '.join(sorted(common))}")
    else:
        if top < 2:
            raise EnsembleError(f"--top {top}: an ensemble needs at least 2 members")
        mean_val = {n: float(np.mean([r[n]["val_uar"] for r in runs])) for n in common}
        names = sorted(common, key=lambda n: (-mean_val[n], n))[:top]
    if len(names) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 runs present in every fold, got {names}")
    return names


def ensemble_folds(study_dir: str | Path | Sequence[str | Path], out_dir: str | Path, top: int = 3, trials: int = 100,
                   features: str | Iterable[str] | None = None, seed: int = 0, n_boot: int = 1000,
                   progress: bool = True, objective: str = "uar") -> dict[str, Any]:
    """Fit the ensemble in every fold on its validation speakers; score the pooled test folds.

    Args:
        study_dir: a ``ser compare --folds k`` study folder, or several with the same folds
            (their runs are pooled fold by fold; on a name clash the first study's run is
            kept; members whose clips or speakers differ are refused).
        out_dir: output folder (see module docstring).
        top: members by validation UAR averaged over folds (ignored when ``features`` names them).
        trials: Optuna trials per fold. seed: TPE, stacking and bootstrap seed.
        features: member run names instead of the top ``top``.
        n_boot: bootstrap resamples (whole test speakers) for the pooled CIs.
        progress: a progress bar over the folds.
        objective: what each fold's weight search optimises on its validation clips,
            ``"uar"`` or ``"log_loss"`` (see :func:`ser.ensemble.search_weights`).

    Returns:
        The summary (also ``summary.json``): members, per-fold weights and temperatures and,
        per combiner (weighted, equal, best_single, stacking), pooled val and test metrics.
    """
    from tqdm.auto import tqdm

    from .calibration import error_table, speaker_table

    folds, runs = _fold_runs(study_dir)
    names = _members(runs, top, features)
    best = max(names, key=lambda n: (np.mean([r[n]["val_uar"] for r in runs]), -names.index(n)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'optuna.db').resolve()}"
    weightings_fixed = {"equal": np.full(len(names), 1 / len(names)),
                        "best_single": np.eye(len(names))[names.index(best)]}

    labels: list[str] | None = None
    probs: dict[str, dict[str, list]] = {s: {k: [] for k in (*COMBINERS, "raw")} for s in SPLITS}
    rows: dict[str, list] = {s: [] for s in SPLITS}
    member_test: list[tuple[np.ndarray, np.ndarray]] = []  # per fold: (M, N, K) member probs, labels
    fold_table, stack_ok, stack_val_ok = [], True, True
    for i, (fdir, fruns) in enumerate(tqdm(list(zip(folds, runs)), desc="folds", unit="fold", disable=not progress)):
        data = align_runs([fruns[n] for n in names])
        if labels is None:
            labels = data["labels"]
        elif data["labels"] != labels:
            raise EnsembleError(f"{fdir}: labels {data['labels']} differ from fold 0's {labels}")
        val, test = data["val"], data["test"]
        member_test.append((test["probs"], test["y"]))
        # 1. this fold's weights, temperature and stacking: from its validation speakers only
        fp = hashlib.blake2b(val["probs"].tobytes() + val["y"].tobytes(), digest_size=6).hexdigest()
        fit = fit_on_validation(val, labels, trials, seed, storage,
                                f"{fdir.name}-{'+'.join(names)}-s{seed}-{fp}{_study_suffix(objective)}",
                                objective=objective)
        w, t = fit["weights"], fit["temperature"]
        stack_ok &= fit["stacker"] is not None
        stack_val_ok &= fit["stack_val_cv"] is not None
        # 2. applied to this fold's val and test clips
        for s, d in (("val", val), ("test", test)):
            raw = combine(d["probs"], w)
            probs[s]["raw"].append(raw)
            probs[s]["weighted"].append(apply_temperature(raw, t))
            for k, v in weightings_fixed.items():
                probs[s][k].append(combine(d["probs"], v))
            if fit["stacker"] is not None:
                probs[s]["stacking"].append(fit["stack_val_cv"] if s == "val" else
                                            stacking_proba(fit["stacker"], d["probs"], len(labels)))
            rows[s].append(pd.DataFrame({"split": s, "fold": i, "path": d["paths"], "speaker": d["speakers"],
                                         "emotion": [labels[j] for j in d["y"]]}))
        fold_table.append({
            "fold": i, "test_speakers": " ".join(sorted(set(test["speakers"]))),
            "val_speakers": " ".join(sorted(set(val["speakers"]))), "temperature": t,
            **{f"w_{n}": float(x) for n, x in zip(names, w)},
            "val_uar": fit["search"]["val_uar"],
            "test_uar": evaluate_predictions(probs["test"]["weighted"][-1], test["y"], labels, n_boot=0)["uar"]})

    # 3. pooled over folds: every test speaker once
    meta = {s: pd.concat(rows[s], ignore_index=True) for s in SPLITS}
    y = {s: meta[s]["emotion"].map({e: j for j, e in enumerate(labels)}).to_numpy() for s in SPLITS}
    groups = meta["test"]["speaker"].astype(str).to_numpy()
    kinds = [k for k in COMBINERS if k != "stacking" or stack_ok]
    results: dict[str, Any] = {}
    for k in kinds:
        p_test = np.concatenate(probs["test"][k])
        val_ok = k != "stacking" or stack_val_ok
        results[k] = {"val": (evaluate_predictions(np.concatenate(probs["val"][k]), y["val"], labels, n_boot=0)
                              if val_ok else None),
                      "test": evaluate_predictions(p_test, y["test"], labels, n_boot=n_boot, seed=seed, groups=groups),
                      "ece_test": expected_calibration_error(p_test, y["test"])}
    results["best_single"]["member"] = best
    members_pooled = {}  # each member alone, pooled like the study's leaderboard
    for j, n in enumerate(names):
        m = evaluate_predictions(np.concatenate([p[j] for p, _ in member_test]), y["test"], labels, n_boot=n_boot,
                                 seed=seed, groups=groups)
        members_pooled[n] = {"test": m, "val_uar_mean": float(np.mean([r[n]["val_uar"] for r in runs])),
                             "test_uar_per_fold": [evaluate_predictions(p[j], yt, labels, n_boot=0)["uar"]
                                                   for p, yt in member_test]}
    pooled = {s: {k: np.concatenate(probs[s][k]) for k in ("raw", "weighted")} for s in SPLITS}
    ece = {s: {"before": expected_calibration_error(pooled[s]["raw"], y[s]),
               "after": expected_calibration_error(pooled[s]["weighted"], y[s])} for s in SPLITS}

    # 4. files
    pt = pooled["test"]["weighted"]
    tables = {
        "folds.csv": pd.DataFrame(fold_table),
        "predictions.csv": pd.concat([pd.concat([meta[s], pd.DataFrame(pooled[s]["weighted"], columns=[
            f"p_{lab}" for lab in labels])], axis=1) for s in SPLITS]),
        "errors.csv": error_table(pt, y["test"], labels, meta["test"]["path"].to_numpy(), groups),
        "speakers.csv": speaker_table(pt, y["test"], labels, groups)}
    for fname, df in tables.items():
        atomic_write_bytes(out / fname, df.to_csv(index=False).encode())
    plot_confusion(results["weighted"]["test"]["confusion"], labels, out / "confusion.png",
                   title=f"ensemble, {len(folds)} folds pooled")
    plot_reliability({sname: {"before": (pooled[s]["raw"], y[s]), "after (T per fold)": (pooled[s]["weighted"], y[s])}
                      for s, sname in (("val", "validation"), ("test", "test"))}, out / "reliability.png")
    summary = {"study_dir": dirs_label(study_dir), "folds": len(folds), "members": names, "best_single": best,
               "labels": labels, "seed": seed, "trials_per_fold": trials, "objective": objective, "per_fold": fold_table,
               "results": results, "members_pooled": members_pooled, "ece": ece, "test_speakers": sorted(set(groups)), "n_test": int(len(groups))}
    write_json_atomic(out / "summary.json", summary)
    atomic_write_bytes(out / "ensemble.md", folds_markdown(summary).encode())
    log.info("fold ensemble %s: pooled test UAR %.3f (best single %s %.3f)", names,
             results["weighted"]["test"]["uar"], best, results["best_single"]["test"]["uar"])
    return summary


def folds_markdown(summary: dict[str, Any]) -> str:
    """The fold ensemble's summary as Markdown: pooled combiners with CIs, calibration, folds."""
    r, names = summary["results"], summary["members"]
    title = {"weighted": "weighted (Optuna, T per fold)", "equal": "equal weights",
             "best_single": f"best single ({summary['best_single']})", "stacking": "stacking (logistic regression)"}
    lines = [f"Ensemble of {', '.join(names)} over {summary['folds']} speaker folds: in each fold the weights, "
             f"the temperature and the stacking were fitted on that fold's validation speakers only; test "
             f"predictions pooled over the folds ({summary['n_test']} clips, every speaker once).", "",
             "| combiner | val UAR | test UAR [95% CI] | accuracy [95% CI] | macro-F1 [95% CI] | test ECE |",
             "|---|---|---|---|---|---|"]
    for k in COMBINERS:
        if k in r:
            v = r[k]["val"]
            lines.append(f"| {title[k]} | {'n/a' if v is None else format(v['uar'], '.3f')} | "
                         f"{with_ci(r[k]['test'], 'uar')} | {with_ci(r[k]['test'], 'accuracy')} | "
                         f"{with_ci(r[k]['test'], 'macro_f1')} | {r[k]['ece_test']:.3f} |")
    lines += ["", "Each member alone, pooled the same way:", "",
              "| member | mean val UAR | test UAR [95% CI] | accuracy [95% CI] | test UAR per fold |",
              "|---|---|---|---|---|"]
    for n, m in summary["members_pooled"].items():
        lines.append(f"| {n} | {m['val_uar_mean']:.3f} | {with_ci(m['test'], 'uar')} | {with_ci(m['test'], 'accuracy')} | "
                     + ", ".join(f"{u:.2f}" for u in m["test_uar_per_fold"]) + " |")
    lines += ["", "ECE with 15 bins, pooled:", "", "| split | ECE before | ECE after |", "|---|---|---|"]
    lines += [f"| {s} | {e['before']:.3f} | {e['after']:.3f} |" for s, e in summary["ece"].items()]
    lines += ["", "| fold | test speakers | " + " | ".join(f"w {n}" for n in names) + " | T | val UAR | test UAR |",
              "|" + "---|" * (len(names) + 5)]
    for f in summary["per_fold"]:
        lines.append(f"| {f['fold']} | {f['test_speakers']} | " + " | ".join(f"{f['w_' + n]:.3f}" for n in names) +
                     f" | {f['temperature']:.2f} | {f['val_uar']:.3f} | {f['test_uar']:.3f} |")
    return "\n".join(lines) + "\n"
