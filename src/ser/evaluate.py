"""Evaluation: metrics, bootstrap confidence intervals, text reports and plots.

Targets and predictions are integer indices into an ordered ``labels`` list. UAR
(unweighted average recall) and macro-F1 average over the classes *present in y_true*;
``per_class`` and ``confusion`` cover every label. Plots use ``matplotlib.figure.Figure``
with the Agg canvas (no pyplot, no global backend change), written atomically.

Example:
    >>> m = classification_metrics([0, 1, 1], [0, 1, 0], ["sad", "happy"])
    >>> m["accuracy"], m["uar"]
    (0.6666666666666666, 0.75)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from .fileio import save_figure

CI_METRICS = ("accuracy", "uar", "macro_f1")  # the metrics bootstrap intervals are given for

log = logging.getLogger(__name__)


def _check(y_true, y_pred, labels) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate and convert targets/predictions; return (y_true, y_pred, n_classes)."""
    k = len(labels)
    if k == 0:
        raise ValueError("labels is empty: pass the model's ordered list of class names")
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.ndim != 1 or yp.ndim != 1 or len(yt) != len(yp):
        raise ValueError(f"length/shape mismatch: y_true has shape {yt.shape}, y_pred {yp.shape}; "
                         "both must be 1-D with one entry per clip")
    if len(yt) == 0:
        raise ValueError("y_true is empty: nothing to evaluate")
    for name, y in (("y_true", yt), ("y_pred", yp)):
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= k):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise ValueError(f"{name} has label index {bad} out of range 0..{k - 1} for {k} "
                             f"labels {list(labels)}")
    return yt.astype(np.int64), yp.astype(np.int64), k


def _scores(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, UAR and macro-F1 from confusion matrices of shape (..., K, K)."""
    conf = conf.astype(np.float64)
    diag = np.diagonal(conf, axis1=-2, axis2=-1)
    support, predicted = conf.sum(-1), conf.sum(-2)
    n = support.sum(-1)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, diag / support, 0.0)
        precision = np.where(predicted > 0, diag / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    n_present = present.sum(-1)
    return {"accuracy": diag.sum(-1) / n,
            "uar": (recall * present).sum(-1) / n_present,
            "macro_f1": (f1 * present).sum(-1) / n_present,
            "precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_metrics(y_true, y_pred, labels) -> dict:
    """Accuracy, UAR, macro-F1, per-class scores and confusion matrix (JSON-serialisable).

    Args:
        y_true: true class indices into ``labels``, shape (N,).
        y_pred: predicted class indices into ``labels``, shape (N,).
        labels: ordered class names.

    Returns:
        ``{"n", "accuracy", "uar", "macro_f1", "per_class", "confusion", "labels"}``;
        ``uar``/``macro_f1`` average over classes present in ``y_true``; ``per_class`` maps
        every label to ``{precision, recall, f1, support}`` (0.0 where undefined);
        ``confusion[i][j]`` counts items of true class i predicted as j.

    Example:
        >>> classification_metrics([0, 0, 1], [0, 1, 1], ["a", "b", "c"])["confusion"]
        [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    """
    yt, yp, k = _check(y_true, y_pred, labels)
    conf = np.bincount(yt * k + yp, minlength=k * k).reshape(k, k)
    s = _scores(conf)
    per_class = {str(lab): {"precision": float(s["precision"][i]), "recall": float(s["recall"][i]),
                            "f1": float(s["f1"][i]), "support": int(s["support"][i])}
                 for i, lab in enumerate(labels)}
    return {"n": int(len(yt)), "accuracy": float(s["accuracy"]), "uar": float(s["uar"]),
            "macro_f1": float(s["macro_f1"]), "per_class": per_class,
            "confusion": conf.tolist(), "labels": [str(x) for x in labels]}


def bootstrap_ci(y_true, y_pred, labels, n_boot: int = 1000, seed: int = 0, groups=None,
                 alpha: float = 0.05) -> dict[str, list[float]]:
    """Percentile bootstrap confidence intervals for accuracy, UAR and macro-F1.

    Without ``groups`` clips are resampled with replacement. With ``groups`` (e.g. the
    speaker of each clip) whole groups are resampled (cluster bootstrap): clips of one
    speaker are correlated, so with few speakers the clip bootstrap is overconfident and
    the cluster bootstrap gives the more honest, usually wider, interval. Vectorised:
    each resample is a count vector over units times per-unit confusion matrices.

    Args:
        y_true, y_pred, labels: as in :func:`classification_metrics`.
        n_boot: resamples; seed: RNG seed (same seed, same interval); alpha: 1 - level.
        groups: optional group id per clip, shape (N,).

    Returns:
        ``{"accuracy": [lo, hi], "uar": [lo, hi], "macro_f1": [lo, hi]}``.

    Example:
        >>> bootstrap_ci([0, 1, 1, 0], [0, 1, 1, 0], ["a", "b"], n_boot=50)["uar"]
        [1.0, 1.0]
    """
    yt, yp, k = _check(y_true, y_pred, labels)
    weights, unit = _resamples(yt, groups, n_boot, seed, alpha)
    return _percentile_ci(_resampled_scores(weights, unit, yt, yp, k), alpha)


def paired_delta_ci(y_true, pred_a, pred_b, labels, n_boot: int = 1000, seed: int = 0, groups=None,
                    alpha: float = 0.05) -> dict[str, list[float]]:
    """Percentile bootstrap CIs of ``metric(pred_b) - metric(pred_a)`` on the same clips.

    Both predictions are scored on the *same* resamples (of clips, or of whole ``groups``
    as in :func:`bootstrap_ci`, with the same draws for a seed), so what the speakers
    share cancels: the interval of a difference is far narrower than the two intervals
    side by side suggest. An interval that excludes 0 is a difference the resampling of
    speakers does not explain.

    Returns:
        ``{"accuracy": [lo, hi], "uar": [lo, hi], "macro_f1": [lo, hi]}`` of b minus a.

    Example:
        >>> y = [0, 0, 1, 1] * 5                     # 5 speakers of 4 clips each
        >>> speakers = [i // 4 for i in range(20)]  # b misses one clip of each speaker's first class
        >>> paired_delta_ci(y, y, [0, 1, 1, 1] * 5, ["a", "b"], n_boot=200, groups=speakers)["uar"]
        [-0.25, -0.25]
    """
    yt, ya, k = _check(y_true, pred_a, labels)
    _, yb, _ = _check(y_true, pred_b, labels)
    weights, unit = _resamples(yt, groups, n_boot, seed, alpha)
    a, b = (_resampled_scores(weights, unit, yt, yp, k) for yp in (ya, yb))
    return _percentile_ci({m: b[m] - a[m] for m in CI_METRICS}, alpha)


def _resamples(yt: np.ndarray, groups, n_boot: int, seed: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(how often each unit is drawn per resample (n_boot, U), each clip's unit (N,))."""
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got n_boot={n_boot}, alpha={alpha}")
    if groups is None:
        unit = np.arange(len(yt))
    else:
        g = np.asarray(groups)
        if g.shape != yt.shape:
            raise ValueError(f"groups has shape {g.shape}, expected one id per clip {yt.shape}")
        _, unit = np.unique(g, return_inverse=True)
    n_units = int(unit.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    offsets = (np.arange(n_boot)[:, None] * n_units + draws).ravel()
    return np.bincount(offsets, minlength=n_boot * n_units).reshape(n_boot, n_units), unit


def _resampled_scores(weights: np.ndarray, unit: np.ndarray, yt: np.ndarray, yp: np.ndarray,
                      k: int) -> dict[str, np.ndarray]:
    """:func:`_scores` of every resample: per-unit confusion counts, weighted by the draws."""
    conf = np.zeros((weights.shape[1], k * k))  # per-unit flattened confusion counts (U, K*K)
    np.add.at(conf, (unit, yt * k + yp), 1.0)
    return _scores((weights @ conf).reshape(len(weights), k, k))


def _percentile_ci(values: Mapping[str, np.ndarray], alpha: float) -> dict[str, list[float]]:
    """``[lo, hi]`` percentile interval of each metric of :data:`CI_METRICS` over the resamples."""
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    return {m: [float(v) for v in np.nanpercentile(values[m], q)] for m in CI_METRICS}


def evaluate_predictions(probs, y_true, labels, n_boot: int = 1000, seed: int = 0,
                         groups=None) -> dict:
    """Metrics of class probabilities: argmax predictions, bootstrap CIs and log loss.

    Args:
        probs: (N, K) class probabilities, columns in ``labels`` order.
        y_true, labels, n_boot, seed, groups: as in :func:`bootstrap_ci` (``n_boot=0``
            skips the bootstrap).

    Returns:
        :func:`classification_metrics` plus ``ci`` and ``log_loss`` (mean negative log
        probability of the true class, probabilities clipped to [1e-15, 1]).

    Example:
        >>> evaluate_predictions([[0.9, 0.1], [0.2, 0.8]], [0, 1], ["a", "b"], n_boot=10)["uar"]
        1.0
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(labels):
        raise ValueError(f"probs must have shape (N, {len(labels)}) for labels {list(labels)}, "
                         f"got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    y_pred = p.argmax(axis=1)
    out = classification_metrics(y_true, y_pred, labels)
    yt = np.asarray(y_true, dtype=np.int64)
    out["log_loss"] = float(-np.mean(np.log(np.clip(p[np.arange(len(yt)), yt], 1e-15, 1.0))))
    if n_boot:
        out["ci"] = bootstrap_ci(yt, y_pred, labels, n_boot=n_boot, seed=seed, groups=groups)
    return out


def predictions_table(manifest, probs: dict, labels) -> pd.DataFrame:
    """A run's ``predictions.csv`` table: one row per val and test clip with its probabilities.

    Args:
        manifest: the clips with a ``split`` column, in the order the probabilities follow.
        probs: ``{"val": (n_val, K), "test": (n_test, K)}`` in ``labels`` column order.
        labels: class names.

    Returns:
        Columns ``split, path, corpus, speaker, emotion, p_<label>...``; val rows first
        (``corpus`` with ``speaker`` identifies a person: ``ser.splits.speaker_keys``).
    """
    import pandas as pd

    split = manifest["split"].astype(str).to_numpy()
    rows = []
    for s in ("val", "test"):
        part = manifest.loc[split == s, ["path", "corpus", "speaker", "emotion"]].reset_index(drop=True)
        part.insert(0, "split", s)
        rows.append(pd.concat([part, pd.DataFrame(probs[s], columns=[f"p_{lab}" for lab in labels])], axis=1))
    return pd.concat(rows)


def format_report(metrics: dict) -> str:
    """A text classification report: per-class table, then accuracy/UAR/macro-F1 (+CIs)."""
    width = max([len(x) for x in metrics["labels"]] + [12])
    lines = [f"{'':>{width}}  precision  recall  f1-score  support"]
    for lab, c in metrics["per_class"].items():
        lines.append(f"{lab:>{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  "
                     f"{c['f1']:8.3f}  {c['support']:7d}")
    lines, ci = lines + [""], metrics.get("ci", {})
    for key, name in (("accuracy", "accuracy"), ("uar", "UAR"), ("macro_f1", "macro-F1")):
        extra = f"  [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if key in ci else ""
        lines.append(f"{name:>{width}}  {metrics[key]:.3f}{extra}")
    if "log_loss" in metrics:
        lines.append(f"{'log loss':>{width}}  {metrics['log_loss']:.3f}")
    lines.append(f"{'n':>{width}}  {metrics['n']}")
    return "\n".join(lines)


def _draw_confusion(ax, confusion, labels, title=None, normalize=True, annotate=True) -> None:
    """Annotated heatmap on ``ax``: colour = row share (or count), text = share and count."""
    c = np.asarray(confusion, dtype=np.float64)
    if c.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion has shape {c.shape}, expected {(len(labels),) * 2} for labels")
    rows = c.sum(axis=1, keepdims=True)
    share = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
    val = share if normalize else c
    ax.imshow(val, cmap="Blues", vmin=0, vmax=1 if normalize else max(c.max(), 1))
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    if title:
        ax.set_title(title, fontsize=9)
    if annotate:
        hi = val.max() / 2 if val.max() > 0 else 0.5
        for i, j in np.ndindex(*c.shape):
            txt = f"{share[i, j]:.2f}\n({int(c[i, j])})" if normalize else str(int(c[i, j]))
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="white" if val[i, j] > hi else "black")


def plot_confusion(confusion, labels, path, title=None, normalize=True) -> Path:
    """Save a confusion matrix heatmap (rows = true; row-normalised, with counts) as PNG.

    Example:
        >>> plot_confusion([[3, 1], [0, 4]], ["sad", "angry"], "cm.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    k = len(labels)
    fig = Figure(figsize=(1.0 + 0.7 * k, 0.8 + 0.7 * k))
    _draw_confusion(fig.add_subplot(), confusion, list(labels), title, normalize)
    return save_figure(fig, path)


def plot_confusion_grid(items: dict, path, ncols: int = 4) -> Path:
    """Save a grid of small confusion matrices, ``items`` = {name: (confusion, labels)}."""
    from matplotlib.figure import Figure

    if not items:
        raise ValueError("items is empty: pass {name: (confusion, labels)}")
    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, (conf, labels)) in zip(axes, items.items()):
        _draw_confusion(ax, conf, list(labels), title=str(name), annotate=len(labels) <= 8)
    for ax in axes[len(items):]:
        ax.set_axis_off()
    return save_figure(fig, path)


def plot_leaderboard(df, path, metric: str = "uar", n_classes: int | None = None,
                     name_col: str | None = None) -> Path:
    """Horizontal bars of ``df[metric]``, sorted, with CI error bars and a chance line.

    Args:
        df: pandas DataFrame, one row per model/representation; names from ``name_col``
            (default: a ``name``, ``feature`` or ``representation`` column, else the index).
            Error bars from ``{metric}_lo``/``{metric}_hi`` when present.
        path: PNG destination. metric: column to plot.
        n_classes: for the chance line 1/n_classes; default from a ``n_classes`` column.

    """
    from matplotlib.figure import Figure

    if metric not in df.columns:
        raise ValueError(f"metric {metric!r} is not a column; columns are {list(df.columns)}")
    d = df.sort_values(metric)
    name_col = name_col or next((c for c in ("name", "feature", "representation")
                                 if c in d.columns), None)
    names = [str(x) for x in (d[name_col] if name_col else d.index)]
    vals = d[metric].to_numpy(dtype=float)
    err = None
    if f"{metric}_lo" in d.columns and f"{metric}_hi" in d.columns:
        lo, hi = d[f"{metric}_lo"].to_numpy(dtype=float), d[f"{metric}_hi"].to_numpy(dtype=float)
        err = np.nan_to_num(np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)]))
    if n_classes is None and "n_classes" in d.columns:
        uniq = d["n_classes"].dropna().unique()
        n_classes = int(uniq[0]) if len(uniq) == 1 else None
        if len(uniq) > 1:
            log.warning("n_classes differs between rows (%s); no chance line drawn", list(uniq))
    fig = Figure(figsize=(7, 0.8 + 0.35 * len(d)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, vals, xerr=err, color="#4c72b0", capsize=3)
    if n_classes:
        ax.axvline(1.0 / n_classes, color="#c44e52", ls="--", label=f"chance (1/{n_classes})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel=metric, xlim=(0, 1))
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)
