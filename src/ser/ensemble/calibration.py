"""Calibration and error analysis of class probabilities: expected calibration error,
temperature scaling, reliability diagrams, the misclassified clips and per-speaker scores.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T > 0`` fitted
on validation clips by minimising the negative log-likelihood; ``T > 1`` softens an
over-confident model. The argmax, and so accuracy, UAR and macro-F1, never changes.
For averaged probabilities (an ensemble) the logits are their logarithms.

Example:
    >>> import numpy as np
    >>> p = np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.02, 0.98]])
    >>> t = fit_temperature(p, [0, 1, 0, 1])
    >>> t > 1, expected_calibration_error(apply_temperature(p, t), [0, 1, 0, 1]) < \
expected_calibration_error(p, [0, 1, 0, 1])
    (True, True)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import save_figure

N_BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram
EPS = 1e-12  # probability floor before the logarithm
T_BOUNDS = (0.05, 20.0)  # search range of the temperature


def to_logits(probs) -> np.ndarray:
    """Log-probabilities (floored at ``EPS``): logits whose softmax gives ``probs`` back."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)``: the probabilities after temperature scaling."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return np.exp(_log_softmax(to_logits(probs) / float(temperature)))


def _targets(probs, y_true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or y.shape != (len(p),) or len(p) == 0:
        raise ValueError(f"need probs (N, K) and y_true (N,) with N > 0, got {p.shape} and {y.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    return p, y.astype(np.int64)


def fit_temperature(probs, y_true, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature minimising the NLL of ``y_true`` (fit on validation clips only).

    Args:
        probs: (N, K) class probabilities; y_true: (N,) class indices.
        bounds: search range of ``T``; the search runs over ``log T`` (bounded Brent).

    Returns:
        ``T`` (1.0 means the probabilities were already calibrated in the NLL sense).
    """
    from scipy.optimize import minimize_scalar

    p, y = _targets(probs, y_true)
    logits, rows = to_logits(p), np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(logits / np.exp(log_t))[rows, y].mean())

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x)) if nll(res.x) < nll(0.0) else 1.0


def calibration_bins(probs, y_true, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Top-label confidence bins ``(lo, hi]``: count, mean confidence and accuracy per bin."""
    p, y = _targets(probs, y_true)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, minlength=n_bins) / count
        accuracy = np.bincount(idx, correct, minlength=n_bins) / count
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(probs, y_true, n_bins: int = N_BINS) -> float:
    """ECE: the clip-weighted mean |accuracy - confidence| over confidence bins."""
    b = calibration_bins(probs, y_true, n_bins)
    used = b["count"] > 0
    return float((b["count"][used] * np.abs(b["accuracy"][used] - b["confidence"][used])).sum()
                 / b["count"].sum())


def plot_reliability(panels: dict[str, dict[str, tuple]], path: str | Path, n_bins: int = N_BINS) -> Path:
    """Save reliability diagrams: one panel per entry, one curve per ``(probs, y_true)``.

    Args:
        panels: ``{panel title: {curve label: (probs, y_true)}}``, e.g.
            ``{"validation": {"before": (p, y), "after T": (q, y)}}``.
        path: PNG destination (written atomically).

    Example:
        >>> plot_reliability({"test": {"raw": (p, y)}}, "reliability.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("panels is empty: pass {title: {label: (probs, y_true)}}")
    fig = Figure(figsize=(4.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (title, curves) in zip(axes, panels.items()):
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect")
        for label, (p, y) in curves.items():
            b = calibration_bins(p, y, n_bins)
            used = b["count"] > 0
            ece = expected_calibration_error(p, y, n_bins)
            ax.plot(b["confidence"][used], b["accuracy"][used], marker="o", ms=4,
                    label=f"{label} (ECE {ece:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def error_table(probs, y_true, labels, paths, speakers, top: int = 3):
    """The misclassified clips: path, speaker, true, predicted, p(true), top-``top`` labels and
    probabilities, most confident mistakes first (a pandas DataFrame)."""
    import pandas as pd

    p, y = _targets(probs, y_true)
    order = np.argsort(-p, axis=1)[:, :top]
    pred, rows = p.argmax(axis=1), np.arange(len(y))
    df = pd.DataFrame({"path": list(paths), "speaker": list(speakers), "true": [labels[i] for i in y],
                       "predicted": [labels[i] for i in pred], "p_true": p[rows, y]})
    for r in range(order.shape[1]):
        df[f"top{r + 1}"] = [labels[i] for i in order[:, r]]
        df[f"p_top{r + 1}"] = p[rows, order[:, r]]
    wrong = df[pred != y]
    return wrong.sort_values("p_top1", ascending=False, kind="stable").reset_index(drop=True)


def speaker_table(probs, y_true, labels, speakers):
    """Per-speaker clips, correct, accuracy and UAR (a pandas DataFrame, worst accuracy first).

    ``speakers`` are grouping keys: pass corpus-qualified ones (``ser.ensemble.speaker_ids``),
    so speaker "01" of two corpora stays two rows."""
    import pandas as pd

    from ..evaluate import classification_metrics

    p, y = _targets(probs, y_true)
    pred, spk = p.argmax(axis=1), np.asarray(speakers).astype(str)
    rows = []
    for s in sorted(set(spk)):
        m = spk == s
        met = classification_metrics(y[m], pred[m], labels)
        rows.append({"speaker": s, "n": int(m.sum()), "correct": int((pred[m] == y[m]).sum()),
                     "accuracy": met["accuracy"], "uar": met["uar"]})
    return pd.DataFrame(rows).sort_values(["accuracy", "speaker"], kind="stable").reset_index(drop=True)
