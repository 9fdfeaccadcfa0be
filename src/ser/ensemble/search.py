"""What an ensemble learns, from validation clips only: weights, temperature, stacking.

The combiners: a weighted average of member probabilities with simplex weights found by
Optuna's TPE (:func:`search_weights`, maximising validation UAR or minimising validation
log loss), equal weights, the best single member, and stacking (a logistic regression on
the concatenated member probabilities). :func:`fit_on_validation` fits all of it from one
split's (or one fold's) validation part; the test part is never passed in.

Example:
    >>> import numpy as np
    >>> probs = np.array([[[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.2, 0.8]]])  # (M, N, K)
    >>> combine(probs, [0.5, 0.5]).round(2).tolist()
    [[0.75, 0.25], [0.3, 0.7]]
    >>> simplex_weights([np.exp(-1), np.exp(-1)]).tolist()
    [0.5, 0.5]
"""
from __future__ import annotations

import hashlib
import logging
from typing import Sequence

import numpy as np

from ..evaluate import evaluate_predictions
from .calibration import fit_temperature
from .runs import EnsembleError

log = logging.getLogger(__name__)

COMBINERS = ("weighted", "equal", "best_single", "stacking")
OBJECTIVES = ("uar", "log_loss")  # what the weight search maximises / minimises on validation


def combine(probs: np.ndarray, weights) -> np.ndarray:
    """Weighted average of member probabilities ``(M, N, K)`` -> ``(N, K)``."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), probs, axes=1)


def simplex_weights(u) -> np.ndarray:
    """Map ``u`` in (0, 1]^M to the simplex: ``-log u`` normalised (uniform u -> flat Dirichlet)."""
    w = 0.0 - np.log(np.asarray(u, dtype=np.float64))  # 0.0 - : no negative zeros
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))


def optuna_study_name(prefix: str, names: Sequence[str], seed: int, val: dict, objective: str = "uar") -> str:
    """The Optuna study of one weight search: members, seed, a fingerprint of the validation
    probabilities and labels (other clips -> another study) and the objective (studies of
    different objectives never continue each other).

    >>> val = {"probs": np.zeros((2, 1, 2)), "y": np.zeros(1, int)}
    >>> name = optuna_study_name("fold0", ["mel", "mfcc"], 0, val, "log_loss")
    >>> name.startswith("fold0-mel+mfcc-s0-"), name.endswith("-log_loss")
    (True, True)
    """
    fp = hashlib.blake2b(val["probs"].tobytes() + val["y"].tobytes(), digest_size=6).hexdigest()
    suffix = "" if objective == "uar" else f"-{objective}"
    return f"{prefix}-{'+'.join(names)}-s{seed}-{fp}{suffix}"


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
        ``{"weights", "val_uar", "val_log_loss", "best_trial", "n_trials", "objective",
        "trials": [...]}``.
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


def fit_on_validation(val: dict, labels: list[str], trials: int, seed: int, storage: str | None,
                      study_name: str, progress: bool = False, objective: str = "uar") -> dict:
    """Everything the ensemble learns, from the validation part alone (test never passed in).

    Args:
        val: an aligned part (:func:`ser.ensemble.align_runs`): ``probs`` (M, N, K), ``y``,
            ``speakers`` (the stacking's cross-validation groups).
        labels, trials, seed, storage, study_name, progress, objective: as in :func:`search_weights`.

    Returns:
        ``{"search", "weights", "temperature", "stacker", "stack_val_cv"}``.
    """
    search = search_weights(val["probs"], val["y"], labels, trials, seed, storage, study_name, progress, objective)
    temperature = fit_temperature(combine(val["probs"], search["weights"]), val["y"])
    stacker, stack_cv = fit_stacking(val["probs"], val["y"], val["speakers"], seed)
    return {"search": search, "weights": np.asarray(search["weights"]), "temperature": temperature,
            "stacker": stacker, "stack_val_cv": stack_cv}
