"""Tests for ser.evaluate: metrics against hand-computed values, bootstrap, reports, plots."""
from __future__ import annotations

import json
from fractions import Fraction as F

import numpy as np
import pandas as pd
import pytest

from ser.evaluate import (bootstrap_ci, paired_delta_ci, classification_metrics, evaluate_predictions,
                          format_report, plot_confusion, plot_confusion_grid, plot_leaderboard)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["neutral", "happy", "sad"]
# true:  n n n h h h s s
# pred:  n n h h h h s n
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 1, 2, 0]
# confusion (rows true, cols predicted): [[2,1,0],[0,3,0],[1,0,1]]
# recall    = 2/3, 3/3, 1/2          precision = 2/3 (2 of 3), 3/4 (3 of 4), 1/1
# f1        = 2/3, 6/7, 2/3
ACC = F(6, 8)
RECALL = [F(2, 3), F(1), F(1, 2)]
PRECISION = [F(2, 3), F(3, 4), F(1)]
F1 = [F(2, 3), F(6, 7), F(2, 3)]
UAR = (F(2, 3) + 1 + F(1, 2)) / 3          # 13/18
MACRO_F1 = (F(2, 3) + F(6, 7) + F(2, 3)) / 3  # 46/63


def test_metrics_match_hand_computed_values():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert UAR == F(13, 18) and MACRO_F1 == F(46, 63)
    assert m["n"] == 8 and m["labels"] == LABELS
    assert m["accuracy"] == pytest.approx(float(ACC))
    assert m["uar"] == pytest.approx(float(UAR))
    assert m["macro_f1"] == pytest.approx(float(MACRO_F1))
    for i, lab in enumerate(LABELS):
        c = m["per_class"][lab]
        assert c["recall"] == pytest.approx(float(RECALL[i]))
        assert c["precision"] == pytest.approx(float(PRECISION[i]))
        assert c["f1"] == pytest.approx(float(F1[i]))
    assert [m["per_class"][lab]["support"] for lab in LABELS] == [3, 3, 2]
    json.dumps(m)  # JSON-serialisable


def test_confusion_orientation_rows_true_cols_predicted():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["confusion"] == [[2, 1, 0], [0, 3, 0], [1, 0, 1]]
    m = classification_metrics([0], [2], LABELS)
    assert m["confusion"][0][2] == 1 and m["confusion"][2][0] == 0


def test_uar_and_macro_f1_ignore_classes_absent_from_y_true():
    labels = LABELS + ["angry"]
    m = classification_metrics(Y_TRUE, Y_PRED, labels)
    assert m["uar"] == pytest.approx(float(UAR))
    assert m["macro_f1"] == pytest.approx(float(MACRO_F1))
    assert m["per_class"]["angry"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert len(m["confusion"]) == 4 and all(len(r) == 4 for r in m["confusion"])
    # a wrong prediction of an absent class lowers recall of the true class only
    m = classification_metrics([0, 0, 1, 1], [0, 3, 1, 1], labels)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["per_class"]["angry"]["precision"] == 0.0


def test_bootstrap_ci_contains_point_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    yt = rng.integers(0, 3, 300)
    yp = np.where(rng.random(300) < 0.7, yt, rng.integers(0, 3, 300))
    m = classification_metrics(yt, yp, LABELS)
    ci = bootstrap_ci(yt, yp, LABELS, n_boot=500, seed=3)
    assert set(ci) == {"accuracy", "uar", "macro_f1"}
    for key, (lo, hi) in ci.items():
        assert lo <= m[key] <= hi and hi - lo < 0.2
    assert bootstrap_ci(yt, yp, LABELS, n_boot=500, seed=3) == ci
    assert bootstrap_ci(yt, yp, LABELS, n_boot=500, seed=4) != ci
    wide = bootstrap_ci(yt, yp, LABELS, n_boot=500, seed=3, alpha=0.01)
    assert wide["accuracy"][0] <= ci["accuracy"][0] and wide["accuracy"][1] >= ci["accuracy"][1]


def test_grouped_bootstrap_is_wider_with_heterogeneous_speakers():
    # 4 speakers x 50 clips: two speakers always right, two always wrong
    yt = np.tile([0, 1], 100)
    speakers = np.repeat(np.arange(4), 50)
    yp = np.where(speakers < 2, yt, 1 - yt)
    clip = bootstrap_ci(yt, yp, ["a", "b"], n_boot=1000, seed=0)
    grouped = bootstrap_ci(yt, yp, ["a", "b"], n_boot=1000, seed=0, groups=speakers)
    w_clip = clip["accuracy"][1] - clip["accuracy"][0]
    w_group = grouped["accuracy"][1] - grouped["accuracy"][0]
    assert w_clip < 0.2 and w_group > 0.5
    assert grouped["accuracy"][0] <= 0.5 <= grouped["accuracy"][1]


def test_perfect_predictions_give_ci_of_one():
    y = [0, 1, 2, 2, 1, 0, 1]
    ci = bootstrap_ci(y, y, LABELS, n_boot=200)
    assert ci == {"accuracy": [1.0, 1.0], "uar": [1.0, 1.0], "macro_f1": [1.0, 1.0]}
    assert bootstrap_ci(y, y, LABELS, n_boot=200, groups=[0, 0, 1, 1, 2, 2, 2]) == ci


def test_evaluate_predictions_argmax_ci_and_log_loss():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    y = [0, 1, 2, 2]
    out = evaluate_predictions(probs, y, LABELS, n_boot=100, seed=0)
    assert out["confusion"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert out["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.25, 0.6])))
    assert set(out["ci"]) == {"accuracy", "uar", "macro_f1"}
    json.dumps(out)
    zero = np.array([[1.0, 0.0, 0.0]])  # true-class probability 0 is clipped, not inf
    assert np.isfinite(evaluate_predictions(zero, [1], LABELS, n_boot=10)["log_loss"])


def test_format_report_lists_classes_and_cis():
    out = evaluate_predictions(np.eye(3)[[0, 1, 2, 0]], [0, 1, 2, 1], LABELS, n_boot=50)
    text = format_report(out)
    for token in LABELS + ["precision", "recall", "f1-score", "support", "UAR", "macro-F1", "["]:
        assert token in text
    assert "[" not in format_report(classification_metrics([0, 1], [0, 1], LABELS))


@pytest.mark.parametrize("kwargs,match", [
    ({"y_true": [0, 1, 2], "y_pred": [0, 1]}, "mismatch"),
    ({"y_true": [0, 1, 3], "y_pred": [0, 1, 2]}, "out of range"),
    ({"y_true": [0, 1, 2], "y_pred": [0, -1, 2]}, "out of range"),
    ({"y_true": [0.0, 1.0], "y_pred": [0, 1]}, "integer"),
    ({"y_true": [], "y_pred": []}, "empty"),
])
def test_bad_input_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(labels=LABELS, **kwargs)
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(labels=LABELS, n_boot=10, **kwargs)


def test_bad_probs_and_groups_raise(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        evaluate_predictions(np.ones((2, 2)) / 2, [0, 1], LABELS)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci([0, 1], [0, 1], LABELS, groups=[0, 1, 2])
    with pytest.raises(ValueError, match="shape"):
        plot_confusion([[1, 2], [3, 4]], LABELS, tmp_path / "cm.png")
    assert not any(tmp_path.iterdir())


def _only_png(folder, name):
    files = sorted(p.name for p in folder.iterdir())
    assert files == [name], f"unexpected files (temp left behind?): {files}"
    data = (folder / name).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_confusion_writes_png_atomically(tmp_path):
    out = plot_confusion([[2, 1, 0], [0, 3, 0], [1, 0, 1]], LABELS, tmp_path / "cm.png", title="t")
    assert out == tmp_path / "cm.png"
    _only_png(tmp_path, "cm.png")
    plot_confusion([[0, 0, 0], [0, 3, 0], [1, 0, 1]], LABELS, out, normalize=False)  # overwrite
    _only_png(tmp_path, "cm.png")


def test_plot_confusion_grid(tmp_path):
    items = {f"feat{i}": ([[i, 1], [0, 2]], ["a", "b"]) for i in range(5)}
    plot_confusion_grid(items, tmp_path / "grid.png", ncols=3)
    _only_png(tmp_path, "grid.png")
    with pytest.raises(ValueError, match="empty"):
        plot_confusion_grid({}, tmp_path / "x.png")


def test_plot_leaderboard(tmp_path):
    df = pd.DataFrame({"feature": ["mel", "mfcc", "zcr"], "uar": [0.5, 0.6, 0.3],
                       "uar_lo": [0.4, 0.5, 0.2], "uar_hi": [0.6, 0.7, 0.4], "n_classes": 8})
    plot_leaderboard(df, tmp_path / "lb.png")
    _only_png(tmp_path, "lb.png")
    plot_leaderboard(df[["feature", "uar"]], tmp_path / "lb.png", n_classes=8)
    _only_png(tmp_path, "lb.png")
    plot_leaderboard(df.assign(uar_lo=np.nan, uar_hi=np.nan), tmp_path / "lb.png")  # no CIs
    _only_png(tmp_path, "lb.png")
    with pytest.raises(ValueError, match="accuracy"):
        plot_leaderboard(df, tmp_path / "lb.png", metric="accuracy")


def test_paired_delta_ci_uses_the_bootstrap_draws_and_cancels_what_is_shared():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    groups = np.repeat(np.arange(10), 30)
    # speakers differ in difficulty (right 30% to 95% of the time): what a paired change cancels
    b = np.where(rng.random(300) < np.linspace(0.3, 0.95, 10)[groups], y, (y + 1) % 3)
    labels = ["a", "b", "c"]
    # against perfect predictions every resample's change is uar(b) - 1: the same draws as bootstrap_ci
    d = paired_delta_ci(y, y, b, labels, n_boot=300, seed=4, groups=groups)
    ci = bootstrap_ci(y, b, labels, n_boot=300, seed=4, groups=groups)
    np.testing.assert_allclose(d["uar"], np.array(ci["uar"]) - 1.0, atol=1e-12)
    assert paired_delta_ci(y, b, b, labels, n_boot=100, groups=groups)["uar"] == [0.0, 0.0]
    # c = b with one answer in 20 changed: the paired interval is much tighter than b's own
    c = b.copy()
    c[::20] = (c[::20] + 1) % 3
    paired = paired_delta_ci(y, b, c, labels, n_boot=300, seed=4, groups=groups)["uar"]
    assert paired[1] - paired[0] < 0.5 * (ci["uar"][1] - ci["uar"][0])
    with pytest.raises(ValueError, match="out of range"):
        paired_delta_ci(y, b, np.full(300, 5), labels, n_boot=10)
