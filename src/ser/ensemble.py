"""The ensemble: Optuna-weighted average of the best runs, stacking, calibration, bundle.

Reads top to bottom: load the runs of one ``ser compare`` study, pick the members by
validation UAR, align their probabilities by clip path; fit everything on VALIDATION ONLY
(:func:`fit_on_validation`: simplex weights by TPE, temperature, stacking regression);
only then read the test clips, to report. Writes into ``out_dir``: ``optuna.db`` (the
study; a re-run with more trials continues it), ``summary.json``, ``ensemble.md``,
``predictions.csv`` (calibrated ensemble, val and test), ``trials.csv``, ``errors.csv``
(misclassified test clips), ``speakers.csv``, ``confusion.png``, ``reliability.png`` and
``bundle/`` (member checkpoints + ``bundle.json``: everything export needs).

Example:
    >>> summary = ensemble("study", "study/ensemble", top=3, trials=100)       # doctest: +SKIP
    >>> models, meta = load_bundle("study/ensemble/bundle")                       # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .calibration import apply_temperature, expected_calibration_error, fit_temperature, plot_reliability
from .bundle import BundleError, bundle_features, load_bundle, predict_bundle, write_bundle  # noqa: F401 (re-exported)
from .fileio import atomic_write_bytes, write_json_atomic
from .evaluate import evaluate_predictions, plot_confusion

log = logging.getLogger(__name__)

SPLITS = ("val", "test")
COMBINERS = ("weighted", "equal", "best_single", "stacking")
OBJECTIVES = ("uar", "log_loss")  # what the weight search maximises / minimises on validation


class EnsembleError(BundleError):
    """Runs that cannot form an ensemble, or a bundle that is not one of ours."""


# ----------------------------------------------------------------------------- runs

def load_runs(runs_dir: str | Path | Sequence[str | Path]) -> dict[str, dict]:
    """The runs of a single-split study (``DIR/runs/<name>/`` or ``DIR/<name>/``), by name.

    Several folders (studies of the same split, e.g. one trained on a GPU and one on a
    CPU) are merged; where two hold a run of the same name the first folder's is kept.
    Members from different splits are refused later, by :func:`align_runs`.

    Each run: ``{"name", "dir", "meta", "labels", "val": df, "test": df, "val_uar"}``;
    ``val_uar`` is recomputed from the run's validation probabilities.
    """
    if not isinstance(runs_dir, (str, Path)):
        return merge_runs([load_runs(d) for d in as_dirs(runs_dir)])
    root = Path(runs_dir)
    if not root.is_dir():
        raise EnsembleError(f"{root}: no such folder; pass the study folder of `ser compare` (or its runs/)")
    if (root / "model.json").is_file():
        raise EnsembleError(f"{root} is one run; pass the folder that holds several (the study or its runs/)")
    base = root / "runs" if (root / "runs").is_dir() else root
    dirs = [d for d in sorted(base.iterdir()) if d.is_dir() and (d / "predictions.csv").is_file()]
    folds = sorted(p.parent.name for p in root.glob("fold*/runs"))
    if not dirs and folds:
        raise EnsembleError(f"{root} is a {len(folds)}-fold study ({', '.join(folds)}); this ensemble needs "
                            "one train/val/test split: use ser.ensemble_folds.ensemble_folds (the CLI does)")
    if not dirs:
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


def merge_runs(studies: Sequence[Mapping[str, dict]]) -> dict[str, dict]:
    """Union of several studies' runs by name; on a clash the earlier study's run is kept."""
    if not studies:
        raise EnsembleError("no study folders given")
    merged: dict[str, dict] = {}
    for runs in studies:
        for name, run in runs.items():
            if name in merged:
                log.warning("run %s in %s ignored: %s has one of that name", name, run["dir"], merged[name]["dir"])
            else:
                merged[name] = run
    return merged


def as_dirs(dirs: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One study folder or several, as a list."""
    return [dirs] if isinstance(dirs, (str, Path)) else list(dirs)


def dirs_label(dirs: str | Path | Sequence[str | Path]) -> str:
    """One folder, or several joined by ``+``, as text for summaries and MLflow params."""
    return "+".join(map(str, as_dirs(dirs)))


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
    w = 0.0 - np.log(np.asarray(u, dtype=np.float64))  # 0.0 - : no negative zeros
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))


def search_weights(val_probs: np.ndarray, y_val, labels: list[str], trials: int = 100, seed: int = 0,
                   storage: str | None = None, study_name: str = "ensemble", progress: bool = False,
                   objective: str = "uar") -> dict:
    """Optuna TPE over simplex weights, scored on the validation clips.

    ``objective="uar"`` maximises validation UAR (ties: lower log loss); ``"log_loss"``
    minimises validation log loss (ties: higher UAR). UAR on a few hundred clips is a step
    function that TPE can fit to the validation speakers' quirks; log loss is smooth and
    rewards every clip's probability, so its weights tend to carry better to new speakers.
    A new study first tries equal weights and each member alone. ``trials`` is the study's
    total: with a ``storage`` the study is loaded if it exists and runs only the trials it
    still lacks (5 then 10 gives 10 trials, not 15).

    Returns:
        ``{"weights", "val_uar", "val_log_loss", "best_trial", "n_trials", "trials": [...]}``.
    """
    import optuna

    if trials < 1:
        raise EnsembleError(f"trials must be >= 1, got {trials}")
    if objective not in OBJECTIVES:
        raise EnsembleError(f"objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    m = len(val_probs)
    if isinstance(storage, str) and storage.startswith("sqlite:"):
        storage = _sqlite_storage(storage)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    if not study.trials:
        study.enqueue_trial({f"u{i}": float(np.exp(-1)) for i in range(m)})
        for j in range(m):
            study.enqueue_trial({f"u{i}": float(np.exp(-1)) if i == j else 1.0 for i in range(m)})

    def score(trial) -> float:
        w = simplex_weights([trial.suggest_float(f"u{i}", 1e-6, 1.0) for i in range(m)])
        res = evaluate_predictions(combine(val_probs, w), y_val, labels, n_boot=0)
        trial.set_user_attr("weights", w.tolist())
        trial.set_user_attr("log_loss", res["log_loss"])
        trial.set_user_attr("uar", res["uar"])
        return res["uar"] if objective == "uar" else -res["log_loss"]

    complete = optuna.trial.TrialState.COMPLETE
    todo = trials - len(study.get_trials(states=(complete,)))
    if todo > 0:
        study.optimize(score, n_trials=todo, show_progress_bar=progress)
    done = study.get_trials(states=(complete,))

    def uar(t) -> float:  # studies written before the objective option keep UAR only as the value
        return t.user_attrs.get("uar", t.value)

    def rank(t) -> tuple:
        secondary = -t.user_attrs["log_loss"] if objective == "uar" else uar(t)
        return t.value, secondary, -t.number

    best = max(done, key=rank)
    return {"weights": best.user_attrs["weights"], "val_uar": uar(best), "best_trial": best.number,
            "val_log_loss": best.user_attrs["log_loss"], "n_trials": len(done), "objective": objective,
            "trials": [{"number": t.number, "val_uar": uar(t), "val_log_loss": t.user_attrs["log_loss"],
                        "weights": t.user_attrs["weights"]} for t in done]}


def _sqlite_storage(url: str):
    """Optuna's RDB storage with SQLite in WAL mode (no fsync per commit: ~6x faster trials)."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)

    @event.listens_for(storage.engine, "connect")
    def _pragmas(conn, _record) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    storage.engine.dispose()  # reconnect with the pragmas
    return storage


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


def _study_suffix(objective: str) -> str:
    """Optuna study name suffix: studies of different objectives never continue each other."""
    return "" if objective == "uar" else f"-{objective}"


def fit_on_validation(val: dict, labels: list[str], trials: int, seed: int, storage: str | None,
                      study_name: str, progress: bool = False, objective: str = "uar") -> dict:
    """Everything the ensemble learns, from the validation split alone (test never passed in)."""
    search = search_weights(val["probs"], val["y"], labels, trials, seed, storage, study_name, progress, objective)
    temperature = fit_temperature(combine(val["probs"], search["weights"]), val["y"])
    stacker, stack_cv = fit_stacking(val["probs"], val["y"], val["speakers"], seed)
    return {"search": search, "weights": np.asarray(search["weights"]), "temperature": temperature,
            "stacker": stacker, "stack_val_cv": stack_cv}


# ---------------------------------------------------------------------------- the study

def ensemble(runs_dir: str | Path | Sequence[str | Path], out_dir: str | Path, top: int = 3, trials: int = 100,
             features: str | Iterable[str] | None = None, seed: int = 0, tracking: bool = True,
             progress: bool = True, n_boot: int = 1000, experiment: str = "ser",
             objective: str = "uar") -> dict[str, Any]:
    """Search, fit, evaluate and bundle the ensemble of a single-split study (see module docstring).

    Args:
        runs_dir: the ``ser compare`` study folder or its ``runs/``; or several such folders
            of the same split, whose runs are pooled (see :func:`load_runs`).
        out_dir: output folder; its ``optuna.db`` makes a re-run continue the study.
        top: members by validation UAR (ignored when ``features`` names them).
        trials: total trials of the Optuna study (a re-run with more continues up to it).
        features: member run names (comma string or list) instead of the top ``top``.
        seed: TPE sampler, stacking and bootstrap seed.
        tracking: log the search to MLflow. progress: Optuna's progress bar.
        n_boot: bootstrap resamples (whole test speakers) for the CIs.
        objective: what the weight search optimises on validation, ``"uar"`` or
            ``"log_loss"`` (see :func:`search_weights`).

    Returns:
        The summary (also ``summary.json``): members, weights, temperature, trials and, per
        combiner (weighted, equal, best_single, stacking), val and test metrics.
    """
    from .calibration import error_table, speaker_table
    from .tracking import Tracker

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(runs_dir)
    if not features:  # the top k among runs that can be bundled (the baseline has no checkpoint)
        skipped = [n for n, r in runs.items() if not (r["dir"] / "model.pt").is_file()]
        if skipped:
            log.info("not candidates (no model.pt, cannot be bundled): %s", ", ".join(skipped))
        runs = {n: r for n, r in runs.items() if n not in skipped}
    members = select_runs(runs, top, features)
    for m in members:
        if not (m["dir"] / "model.pt").is_file():
            what = "a baseline run" if m["meta"].get("kind") == "baseline" else "a run without model.pt"
            raise EnsembleError(f"{m['dir']} is {what}; the bundle needs every member's checkpoint "
                                "(a fold study's ensemble, which writes no bundle, can use it)")
    data = align_runs(members)
    labels, names, val, test = data["labels"], data["names"], data["val"], data["test"]
    tracker = Tracker(out, experiment, run_name="ensemble", enabled=tracking)
    tracker.log_params({"members": names, "trials": trials, "seed": seed, "top": top, "runs_dir": dirs_label(runs_dir),
                        "objective": objective,
                        "member_val_uar": {m["name"]: m["val_uar"] for m in members}})

    # 1. everything learnt comes from the validation speakers
    fp = hashlib.blake2b(val["probs"].tobytes() + val["y"].tobytes(), digest_size=6).hexdigest()
    study = f"ensemble-{'+'.join(names)}-s{seed}-{fp}{_study_suffix(objective)}"
    fit = fit_on_validation(val, labels, trials, seed, f"sqlite:///{(out / 'optuna.db').resolve()}", study, progress,
                            objective)
    w, t = fit["weights"], fit["temperature"]
    best = max(range(len(members)), key=lambda i: (members[i]["val_uar"], -i))

    # 2. apply to both splits; the test clips are read from here on, only to report
    weightings = {"weighted": w, "equal": np.full(len(names), 1 / len(names)),
                  "best_single": np.eye(len(names))[best]}
    probs: dict[str, dict[str, np.ndarray | None]] = {}
    for s, d in (("val", val), ("test", test)):
        probs[s] = {k: combine(d["probs"], v) for k, v in weightings.items()}
        probs[s]["weighted"] = apply_temperature(probs[s]["weighted"], t)
        if fit["stacker"] is not None:
            probs[s]["stacking"] = stacking_proba(fit["stacker"], d["probs"], len(labels))
    if "stacking" in probs["val"]:  # its honest validation score is the speaker-grouped CV one (or none)
        probs["val"]["stacking"] = fit["stack_val_cv"]
    results: dict[str, Any] = {}
    for k, p in probs["test"].items():
        vp = probs["val"][k]
        results[k] = {"val": None if vp is None else evaluate_predictions(vp, val["y"], labels, n_boot=0),
                      "test": evaluate_predictions(p, test["y"], labels, n_boot=n_boot, seed=seed,
                                                   groups=test["speakers"]),
                      "ece_test": expected_calibration_error(p, test["y"])}
    results["best_single"]["member"] = names[best]
    raw = {s: combine(d["probs"], w) for s, d in (("val", val), ("test", test))}
    ece = {s: {"before": expected_calibration_error(raw[s], d["y"]),
               "after": expected_calibration_error(probs[s]["weighted"], d["y"])}
           for s, d in (("val", val), ("test", test))}

    # 3. files: predictions, error analysis, trials, plots, bundle, summary
    args = (probs["test"]["weighted"], test["y"], labels)
    tables = {"predictions.csv": pd.concat([pd.DataFrame(
        {"split": s, "path": d["paths"], "speaker": d["speakers"], "emotion": [labels[i] for i in d["y"]],
         **{f"p_{lab}": probs[s]["weighted"][:, j] for j, lab in enumerate(labels)}})
        for s, d in (("val", val), ("test", test))]),
        "errors.csv": error_table(*args, test["paths"], test["speakers"]),
        "speakers.csv": speaker_table(*args, test["speakers"]),
        "trials.csv": pd.DataFrame([{**{k: v for k, v in tr.items() if k != "weights"},
                                     **{f"w_{n}": x for n, x in zip(names, tr["weights"])}}
                                    for tr in fit["search"]["trials"]])}
    for name, df in tables.items():
        atomic_write_bytes(out / name, df.to_csv(index=False).encode())
    plot_confusion(results["weighted"]["test"]["confusion"], labels, out / "confusion.png", title="ensemble test")
    plot_reliability({sname: {"before": (raw[s], d["y"]), f"after (T={t:.2f})": (probs[s]["weighted"], d["y"])}
                      for s, sname, d in (("val", "validation", val), ("test", "test", test))},
                     out / "reliability.png")
    brief = {s: {k: v for k, v in results["weighted"][s].items() if k in ("n", "accuracy", "uar", "macro_f1",
                                                                         "log_loss", "ci")} for s in SPLITS}
    write_bundle(out / "bundle", members, w, t, labels, {"metrics": brief, "ece": ece})
    summary = {"runs_dir": dirs_label(runs_dir), "members": [{"name": m["name"], "feature": m["meta"]["feature"],
                                                       "val_uar": m["val_uar"]} for m in members],
               "labels": labels, "weights": dict(zip(names, map(float, w))), "temperature": t, "seed": seed,
               "objective": objective,
               "study": study, "n_trials": fit["search"]["n_trials"], "best_trial": fit["search"]["best_trial"],
               "search_val_uar": fit["search"]["val_uar"], "results": results, "ece": ece,
               "stacking_val": "speaker-grouped cross-validation" if fit["stack_val_cv"] is not None else None,
               "test_speakers": sorted(set(test["speakers"])), "bundle": str(out / "bundle")}
    write_json_atomic(out / "summary.json", summary)
    atomic_write_bytes(out / "ensemble.md", ensemble_markdown(summary).encode())

    # 4. tracking (a no-op when off)
    for tr in fit["search"]["trials"]:
        tracker.log_metrics({"trial_val_uar": tr["val_uar"]}, step=tr["number"])
    tracker.log_metrics({"best_val_uar": fit["search"]["val_uar"], "temperature": t,
                         **{f"w_{n}": float(x) for n, x in zip(names, w)},
                         **{f"{k}_test_{m}": r["test"][m] for k, r in results.items()
                            for m in ("uar", "accuracy", "macro_f1")},
                         **{f"ece_{s}_{b}": v for s, e in ece.items() for b, v in e.items()}}, step=0)
    if tracker.run is not None:
        for name in ("ensemble.md", "summary.json", "reliability.png", *tables, "bundle/bundle.json"):
            tracker.mlflow.log_artifact(str(out / name))
    tracker.finish({"feature": "ensemble", "test": results["weighted"]["test"]}, labels)
    log.info("ensemble %s: weights %s, T %.2f, test UAR %.3f (best single %.3f)", names, np.round(w, 3), t,
             results["weighted"]["test"]["uar"], results["best_single"]["test"]["uar"])
    return summary


def with_ci(m: Mapping[str, Any], k: str) -> str:
    """Metric ``k`` of a metrics dict as ``0.663 [0.612, 0.715]`` (the value alone without a bootstrap)."""
    lo, hi = m.get("ci", {}).get(k, (np.nan, np.nan))
    return f"{m[k]:.3f}" if np.isnan(lo) else f"{m[k]:.3f} [{lo:.3f}, {hi:.3f}]"


def ensemble_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: combiners with test CIs, calibration, weights."""
    w = ", ".join(f"{n} {x:.3f}" for n, x in summary["weights"].items())
    r, e, t = summary["results"], summary["ece"], summary["temperature"]
    names = {"weighted": f"weighted (Optuna, T={t:.2f})", "equal": "equal weights",
             "best_single": f"best single ({r['best_single'].get('member')})",
             "stacking": "stacking (logistic regression)"}
    lines = [f"Ensemble of {', '.join(summary['weights'])}: weights {w}; {summary['n_trials']} trials "
             f"(best #{summary['best_trial']}), seed {summary['seed']}. Weights, temperature and stacking were "
             f"fitted on validation speakers only; test speakers: {', '.join(summary['test_speakers'])}.", "",
             "| combiner | val UAR | test UAR [95% CI] | accuracy [95% CI] | macro-F1 [95% CI] | test ECE |",
             "|---|---|---|---|---|---|"]
    for k in COMBINERS:
        if k in r:
            m, v = r[k]["test"], r[k]["val"]
            val_uar = "n/a" if v is None else f"{v['uar']:.3f}"
            lines.append(f"| {names[k]} | {val_uar} | {with_ci(m, 'uar')} | "
                         f"{with_ci(m, 'accuracy')} | {with_ci(m, 'macro_f1')} | {r[k]['ece_test']:.3f} |")
    lines += ["", f"Temperature scaling (T={t:.3f}, fitted on validation), ECE with 15 bins:", "",
              "| split | ECE before | ECE after |", "|---|---|---|"]
    lines += [f"| {s} | {e[s]['before']:.3f} | {e[s]['after']:.3f} |" for s in SPLITS]
    return "\n".join(lines) + "\n"
