"""The ensemble's outputs: tables, plots, ``summary.json`` and the Markdown report.

:func:`write_outputs` writes everything a fitted ensemble reports (every file atomically):
``predictions.csv`` (calibrated weighted ensemble, val and test; with a ``fold`` column
for a fold study), ``errors.csv`` (misclassified test clips, most confident first),
``speakers.csv`` (per test speaker), ``trials.csv`` (every Optuna trial), ``folds.csv``
(a fold study: per fold speakers, weights, temperature, UARs), ``confusion.png``,
``reliability.png``, ``summary.json`` and ``ensemble.md`` (:func:`markdown_report`).

Example:
    >>> with_ci({"uar": 0.6634, "ci": {"uar": [0.612, 0.7151]}}, "uar")
    '0.663 [0.612, 0.715]'
    >>> with_ci({"uar": 0.5}, "uar")
    '0.500'
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluate import plot_confusion
from ..fileio import atomic_write_bytes, write_json_atomic
from .calibration import error_table, plot_reliability, speaker_table
from .runs import EVAL_PARTS
from .search import COMBINERS

TABLE_HEAD = ["| combiner | val UAR | test UAR [95% CI] | accuracy [95% CI] | macro-F1 [95% CI] | test ECE |",
              "|---|---|---|---|---|---|"]


def with_ci(m: Mapping[str, Any], k: str) -> str:
    """Metric ``k`` of a metrics dict as ``0.663 [0.612, 0.715]`` (the value alone without a bootstrap)."""
    lo, hi = m.get("ci", {}).get(k, (np.nan, np.nan))
    return f"{m[k]:.3f}" if np.isnan(lo) else f"{m[k]:.3f} [{lo:.3f}, {hi:.3f}]"


def _combiner_rows(results: Mapping[str, Any], title: Mapping[str, str]) -> list[str]:
    rows = []
    for k in COMBINERS:
        if k in results:
            m, v = results[k]["test"], results[k]["val"]
            rows.append(f"| {title[k]} | {'n/a' if v is None else format(v['uar'], '.3f')} | {with_ci(m, 'uar')} | "
                        f"{with_ci(m, 'accuracy')} | {with_ci(m, 'macro_f1')} | {results[k]['ece_test']:.3f} |")
    return rows


def _ece_rows(ece: Mapping[str, Mapping[str, float]]) -> list[str]:
    return ["| split | ECE before | ECE after |", "|---|---|---|"] + [
        f"| {s} | {e['before']:.3f} | {e['after']:.3f} |" for s, e in ece.items()]


def markdown_report(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: combiners with test CIs and calibration; for a fold study
    also each member pooled and the per-fold weights."""
    r, names = summary["results"], summary["members"]
    title = {"weighted": "weighted (Optuna, T per fold)", "equal": "equal weights",
             "best_single": f"best single ({summary['best_single']})", "stacking": "stacking (logistic regression)"}
    if summary["folds"] == 1:
        t = summary["temperature"]
        title["weighted"] = f"weighted (Optuna, T={t:.2f})"
        w = ", ".join(f"{n} {x:.3f}" for n, x in summary["weights"].items())
        lines = [f"Ensemble of {', '.join(names)}: weights {w}; {summary['n_trials']} trials "
                 f"(best #{summary['best_trial']}), seed {summary['seed']}. Weights, temperature and stacking were "
                 f"fitted on validation speakers only; test speakers: {', '.join(summary['test_speakers'])}.", "",
                 *TABLE_HEAD, *_combiner_rows(r, title),
                 "", f"Temperature scaling (T={t:.3f}, fitted on validation), ECE with 15 bins:", "",
                 *_ece_rows(summary["ece"])]
        return "\n".join(lines) + "\n"
    lines = [f"Ensemble of {', '.join(names)} over {summary['folds']} speaker folds: in each fold the weights, "
             f"the temperature and the stacking were fitted on that fold's validation speakers only; test "
             f"predictions pooled over the folds ({summary['n_test']} clips, every speaker once).", "",
             *TABLE_HEAD, *_combiner_rows(r, title),
             "", "Each member alone, pooled the same way:", "",
             "| member | mean val UAR | test UAR [95% CI] | accuracy [95% CI] | test UAR per fold |",
             "|---|---|---|---|---|"]
    for n, m in summary["members_pooled"].items():
        per_fold = ", ".join(f"{u:.2f}" for u in m["test_uar_per_fold"])
        lines.append(f"| {n} | {m['val_uar_mean']:.3f} | {with_ci(m['test'], 'uar')} | "
                     f"{with_ci(m['test'], 'accuracy')} | {per_fold} |")
    lines += ["", "ECE with 15 bins, pooled:", "", *_ece_rows(summary["ece"])]
    lines += ["", "| fold | test speakers | " + " | ".join(f"w {n}" for n in names) + " | T | val UAR | test UAR |",
              "|" + "---|" * (len(names) + 5)]
    for f in summary["per_fold"]:
        lines.append(f"| {f['fold']} | {f['test_speakers']} | " + " | ".join(f"{f['w_' + n]:.3f}" for n in names) +
                     f" | {f['temperature']:.2f} | {f['val_uar']:.3f} | {f['test_uar']:.3f} |")
    return "\n".join(lines) + "\n"


def _trials_table(fits: Sequence[Mapping[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    """Every trial of every fold's search: its validation scores and weights (``fold``: several folds)."""
    rows = []
    for i, fit in enumerate(fits):
        for tr in fit["search"]["trials"]:
            rows.append({**({"fold": i} if len(fits) > 1 else {}),
                         **{k: v for k, v in tr.items() if k != "weights"},
                         **{f"w_{n}": x for n, x in zip(names, tr["weights"])}})
    return pd.DataFrame(rows)


def write_outputs(out_dir: str | Path, summary: Mapping[str, Any], pooled: Mapping[str, Any],
                  fits: Sequence[Mapping[str, Any]]) -> list[str]:
    """Write the tables, plots, ``summary.json`` and ``ensemble.md`` (see module docstring).

    Args:
        out_dir: the output folder.
        summary: the ensemble's summary (:func:`ser.ensemble.fit_ensemble`).
        pooled: from :func:`ser.ensemble.fit_folds`: ``labels``, ``names`` and per part
            ``clips`` (DataFrame), ``y``, ``speakers`` (grouping keys), ``raw``, ``weighted``.
        fits: each fold's fit (for ``trials.csv``).

    Returns:
        The names of the files written, relative to ``out_dir``.
    """
    out = Path(out_dir)
    labels, test = pooled["labels"], pooled["test"]
    args = (test["weighted"], test["y"], labels)
    tables = {
        "predictions.csv": pd.concat([pd.concat([pooled[s]["clips"], pd.DataFrame(
            pooled[s]["weighted"], columns=[f"p_{lab}" for lab in labels])], axis=1) for s in EVAL_PARTS]),
        "errors.csv": error_table(*args, test["clips"]["path"].to_numpy(), test["speakers"]),
        "speakers.csv": speaker_table(*args, test["speakers"]),
        "trials.csv": _trials_table(fits, pooled["names"])}
    if summary["folds"] > 1:
        tables["folds.csv"] = pd.DataFrame(summary["per_fold"])
    for name, df in tables.items():
        atomic_write_bytes(out / name, df.to_csv(index=False).encode())
    single = summary["folds"] == 1
    plot_confusion(summary["results"]["weighted"]["test"]["confusion"], labels, out / "confusion.png",
                   title="ensemble test" if single else f"ensemble, {summary['folds']} folds pooled")
    after = f"after (T={summary['temperature']:.2f})" if single else "after (T per fold)"
    plot_reliability({title: {"before": (pooled[s]["raw"], pooled[s]["y"]),
                              after: (pooled[s]["weighted"], pooled[s]["y"])}
                      for s, title in (("val", "validation"), ("test", "test"))}, out / "reliability.png")
    write_json_atomic(out / "summary.json", summary)
    atomic_write_bytes(out / "ensemble.md", markdown_report(summary).encode())
    return [*tables, "confusion.png", "reliability.png", "summary.json", "ensemble.md"]
