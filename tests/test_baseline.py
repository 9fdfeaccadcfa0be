"""Tests for ser.baseline: pooled statistics and the logistic-regression baseline."""
from __future__ import annotations

import numpy as np
import pytest

from ser.baseline import logreg_baseline, pooled_stats

LABELS = ["neutral", "happy", "sad"]


def make_data(n_per_class: int = 40, seed: int = 0, classes=(0, 1, 2)):
    """Gaussian features (N, 4 rows, 20 frames) whose row means depend on the class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes), n_per_class)
    centers = np.array([[0, 0, 0, 0], [1.5, -1, 0, 0.5], [0, 1, -1.5, 0]], dtype=float)
    X = rng.normal(size=(len(y), 4, 20)) + centers[y][:, :, None]
    split = rng.choice(["train", "val", "test"], size=len(y), p=[0.6, 0.2, 0.2])
    return X.astype(np.float32), y, split


def test_pooled_stats_shape_and_values():
    X = np.random.default_rng(0).normal(size=(5, 4, 20))
    s = pooled_stats(X)
    assert s.shape == (5, 8)
    np.testing.assert_allclose(s[:, :4], X.mean(axis=2))
    np.testing.assert_allclose(s[:, 4:], X.std(axis=2))
    with pytest.raises(ValueError, match="rows, frames"):
        pooled_stats(X[0])


def test_baseline_scores_well_above_chance():
    X, y, split = make_data()
    out = logreg_baseline({"a": X, "b": X[:, :2] * 2}, y, split, LABELS)
    n_val, n_test = (split == "val").sum(), (split == "test").sum()
    assert out["val_probs"].shape == (n_val, 3) and out["test_probs"].shape == (n_test, 3)
    np.testing.assert_allclose(out["test_probs"].sum(axis=1), 1.0)
    assert out["test"]["uar"] > 0.8 and out["val"]["uar"] > 0.8  # chance is 1/3
    assert out["test"]["n"] == n_test and "ci" in out["test"] and "log_loss" in out["test"]
    assert out["classifier"].coef_.shape[1] == 2 * (4 + 2)


def test_scaler_is_fit_on_train_rows_only():
    X, y, split = make_data()
    out = logreg_baseline({"a": X}, y, split, LABELS)
    train = split == "train"
    np.testing.assert_allclose(out["scaler"].mean_, pooled_stats(X[train]).mean(axis=0))
    shifted = X.copy()
    shifted[split == "test"] += 1000.0  # a wild test set must not move the fitted model
    out2 = logreg_baseline({"a": shifted}, y, split, LABELS)
    np.testing.assert_allclose(out2["scaler"].mean_, out["scaler"].mean_)
    np.testing.assert_allclose(out2["scaler"].scale_, out["scaler"].scale_)
    np.testing.assert_allclose(out2["val_probs"], out["val_probs"])


def test_columns_follow_labels_when_a_class_is_missing_from_train():
    X, y, split = make_data(seed=1)
    split = np.where((y == 1) & (split == "train"), "val", split)  # no "happy" in train
    out = logreg_baseline({"a": X}, y, split, LABELS)
    probs = out["test_probs"]
    assert probs.shape[1] == 3
    np.testing.assert_array_equal(probs[:, 1], 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    y_test = y[split == "test"]
    assert (probs[y_test == 0].argmax(axis=1) == 0).mean() > 0.8
    assert (probs[y_test == 2].argmax(axis=1) == 2).mean() > 0.8
    assert out["test"]["per_class"]["happy"]["recall"] == 0.0


def test_bad_input_raises():
    X, y, split = make_data(n_per_class=5)
    with pytest.raises(ValueError, match="unknown"):
        logreg_baseline({"a": X}, y, np.where(split == "val", "dev", split), LABELS)
    with pytest.raises(ValueError, match="clips"):
        logreg_baseline({"a": X[:-1]}, y, split, LABELS)
    with pytest.raises(ValueError, match="need at least 2"):
        logreg_baseline({"a": X}, np.zeros_like(y), split, LABELS)
    with pytest.raises(ValueError, match="empty"):
        logreg_baseline({}, y, split, LABELS)
    with pytest.raises(ValueError, match="indices"):
        logreg_baseline({"a": X}, y + 1, split, LABELS)
