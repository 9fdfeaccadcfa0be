"""The classic baseline: logistic regression on pooled statistics of cached features.

Each representation (rows x frames) is summarised by the mean and standard deviation of
every row over frames; the summaries of the chosen representations are concatenated,
standardised with statistics of the training rows only, and fed to a class-balanced
multinomial logistic regression. It is the yardstick the ResNet18 models must beat.

Example:
    >>> import numpy as np
    >>> X = np.arange(12, dtype=np.float32).reshape(1, 2, 6)
    >>> pooled_stats(X).round(3).tolist()
    [[2.5, 8.5, 1.708, 1.708]]
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluate import evaluate_predictions, predictions_table
from .fileio import write_json_atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def pooled_stats(X) -> np.ndarray:
    """Mean and standard deviation of each row over frames.

    Args:
        X: features of shape (N, rows, frames).

    Returns:
        float64 array (N, 2 * rows): the row means, then the row standard deviations.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or X.shape[2] == 0:
        raise ValueError(f"X must have shape (N, rows, frames) with frames >= 1, got {X.shape}")
    return np.concatenate([X.mean(axis=2), X.std(axis=2)], axis=1)


def _design(features: dict, n: int) -> np.ndarray:
    """Concatenate pooled statistics of every representation in ``features`` (dict order)."""
    if not features:
        raise ValueError("features is empty: pass {name: array (N, rows, frames)}")
    blocks = []
    for name, X in features.items():
        if len(X) != n:
            raise ValueError(f"feature {name!r} has {len(X)} clips, but y has {n}")
        blocks.append(pooled_stats(X))
    return np.concatenate(blocks, axis=1)


def logreg_baseline(features: dict[str, np.ndarray], y: np.ndarray, split: np.ndarray,
                    labels: list[str], seed: int = 0, C: float = 1.0) -> dict:
    """Fit the logistic-regression baseline on the train rows; score val and test.

    Args:
        features: {name: array (N, rows, frames)}; pooled statistics are concatenated in
            the dict's order.
        y: class indices into ``labels``, shape (N,).
        split: "train" / "val" / "test" per clip, shape (N,).
        labels: ordered class names; probability columns follow this order.
        seed: random state of the classifier. C: inverse regularisation strength.

    Returns:
        ``{"val_probs": (n_val, K), "test_probs": (n_test, K), "val": metrics,
        "test": metrics, "scaler": StandardScaler, "classifier": LogisticRegression}``,
        metrics from :func:`ser.evaluate.evaluate_predictions` (``None`` for an empty
        split). A class absent from the training rows gets probability 0 in its column
        (the classifier cannot predict it); its column still exists, in ``labels`` order.

    Example:
        >>> out = logreg_baseline({"mfcc": X}, y, split, ["sad", "angry"])  # doctest: +SKIP
        >>> out["test"]["uar"]                                              # doctest: +SKIP
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y)
    split = np.asarray(split).astype(str)
    k = len(labels)
    if y.ndim != 1 or split.shape != y.shape:
        raise ValueError(f"y and split must be 1-D of equal length, got {y.shape}, {split.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= k)):
        raise ValueError(f"y must hold integer indices 0..{k - 1} into labels {list(labels)}")
    unknown = sorted(set(split.tolist()) - set(SPLITS))
    if unknown:
        raise ValueError(f"split has unknown values {unknown}; allowed: {list(SPLITS)}")
    X = _design(features, len(y))
    train = split == "train"
    present = np.unique(y[train])
    if len(present) < 2:
        raise ValueError(f"the train rows hold {len(present)} class(es); need at least 2 to fit")
    missing = [labels[i] for i in range(k) if i not in set(present.tolist())]
    if missing:
        log.warning("classes absent from train get probability 0: %s", missing)
    scaler = StandardScaler().fit(X[train])
    clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(scaler.transform(X[train]), y[train])
    log.info("logreg baseline: %d train clips, %d dims, %d classes", int(train.sum()),
             X.shape[1], len(present))
    out: dict = {"scaler": scaler, "classifier": clf}
    for part in ("val", "test"):
        rows = split == part
        probs = np.zeros((int(rows.sum()), k))
        if rows.any():
            probs[:, clf.classes_] = clf.predict_proba(scaler.transform(X[rows]))
        out[f"{part}_probs"] = probs
        if rows.any():
            out[part] = evaluate_predictions(probs, y[rows], labels, seed=seed, groups=None)
        else:
            log.warning("no %s rows: %s metrics are None", part, part)
            out[part] = None
    return out


def save_baseline_run(run_dir: str | Path, manifest: pd.DataFrame, labels: list[str], result: dict,
                      features: list[str]) -> Path:
    """Write a fitted baseline as a run folder, like a ResNet run's but without a checkpoint.

    ``predictions.csv`` (val and test probabilities) and ``metrics.json`` have the training
    runs' format, so a fold ensemble can take the baseline as a member; ``model.json`` says
    ``"kind": "baseline"`` and names the features. There is no ``model.pt``: the baseline
    cannot be bundled or exported.

    Args:
        run_dir: output folder (created).
        manifest: the clips with their ``split`` column, in the order ``result`` was fitted on.
        labels: class names, in the probability columns' order.
        result: :func:`logreg_baseline`'s output.
        features: the representations whose pooled statistics it was fitted on.

    Returns:
        ``run_dir`` as a Path.
    """
    from .splits import split_speakers

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    probs = {part: result[f"{part}_probs"] for part in ("val", "test")}
    predictions_table(manifest, probs, labels).to_csv(out / "predictions.csv", index=False)
    clf = result["classifier"]
    write_json_atomic(out / "model.json", {
        "kind": "baseline", "model": "logreg_pooled_stats", "feature": "+".join(features), "features": features,
        "labels": labels, "speakers": split_speakers(manifest), "C": float(clf.C)})
    write_json_atomic(out / "metrics.json", {"feature": "baseline", "labels": labels,
                                             "val": result["val"], "test": result["test"]})
    return out
