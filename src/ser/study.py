"""The comparison study (`ser compare`): one model per representation on the same speaker-disjoint split.

Writes into ``out_dir``::

    split.csv                  the manifest with its split column(s)
    runs/<feature>/            one training run each (checkpoint, predictions, metrics)
    fold<i>/runs/<feature>/    the same per fold, with ``folds=k``
    runs/baseline_logreg/      the baseline's val/test predictions (no checkpoint), per fold too
    leaderboard.csv / .md      test metrics with bootstrap 95% CIs, best first
    leaderboard.png            bar plot of test UAR with error bars and chance
    confusions.png             a grid of test confusion matrices
    study.json                 settings and wall time

Example:
    >>> board = run_study(manifest, ["mel", "mfcc"], TrainConfig(epochs=20), "study")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .cache import DEFAULT_ROOT, extract_corpus, extract_encoder, load_features
from .cache.encoded_copies import load_encoder_copies
from .evaluate import evaluate_predictions, plot_confusion_grid, plot_leaderboard
from .fileio import write_json_atomic
from .modelmeta import channel_spec
from .representations import encoder_config, representation_rows, resolve_representations, split_kinds
from .splits import speaker_folds, speaker_keys, speaker_split
from .runner import train_runs
from .train import TrainConfig, waveform_chain

log = logging.getLogger(__name__)

BASELINE = "baseline_logreg"  # leaderboard name of the pooled-statistics baseline


def _pooled_test(run_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Test probabilities, labels and speakers pooled over folds (every speaker tested once)."""
    frames = [pd.read_csv(d / "predictions.csv") for d in run_dirs]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["split"] == "test"]
    labels = [c[2:] for c in df.columns if c.startswith("p_")]
    y = df["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy()
    return df[[f"p_{l}" for l in labels]].to_numpy(), y, speaker_keys(df).to_numpy(), labels


def _row(name: str, rows: int, test: dict, val_uar: float, extra: dict) -> dict:
    row = {"feature": name, "rows": rows, "val_uar": val_uar}
    for k in ("uar", "accuracy", "macro_f1"):
        row[f"test_{k}"] = test[k]
        lo, hi = test.get("ci", {}).get(k, (np.nan, np.nan))
        row[f"test_{k}_lo"], row[f"test_{k}_hi"] = lo, hi
    row["n_classes"] = len(test["labels"])
    row["n_test"] = test["n"]
    return {**row, **extra}


def _baseline(manifest: pd.DataFrame, splits: list[pd.DataFrame], names: list[str], cfg: TrainConfig,
              cache_dir, jobs, progress, run_dirs: list[Path]) -> tuple[dict, float, list[str]]:
    """The logistic-regression baseline on every split; test predictions pooled over them.

    The splits are copies of ``manifest`` (same rows, same order), so the features and
    labels are loaded once and only the split column changes. Each split's fit is saved as
    a run folder (``runs/baseline_logreg``), so ensembles can take it as a member.
    """
    from .baseline import logreg_baseline, save_baseline_run
    from .corpora import emotion_labels

    feats = load_features(manifest, names, clip=cfg.clip, cache_dir=cache_dir, jobs=jobs, progress=progress)
    labels, y = emotion_labels(manifest)
    parts = [logreg_baseline(feats, y, s["split"].to_numpy(), labels, seed=cfg.seed) for s in splits]
    for s, part, run_dir in zip(splits, parts, run_dirs):
        save_baseline_run(run_dir, s, labels, part, names)
    tests = [s["split"].to_numpy() == "test" for s in splits]
    probs = np.concatenate([p["test_probs"] for p in parts])
    groups = np.concatenate([speaker_keys(s).to_numpy()[t] for s, t in zip(splits, tests)])
    metrics = evaluate_predictions(probs, np.concatenate([y[t] for t in tests]), labels, n_boot=cfg.n_boot,
                                   seed=cfg.seed, groups=groups)
    return metrics, float(np.mean([p["val"]["uar"] for p in parts])), labels


def run_study(manifest: pd.DataFrame, features: str | Iterable[str], cfg: TrainConfig, out_dir: str | Path, *,
            folds: int | None = None, val: float = 0.15, test: float = 0.15, split_seed: int = 0,
            cache_dir: str | Path = DEFAULT_ROOT, tracking: bool = True, jobs: int = 1, progress: bool = True,
            baseline: bool = True, resume: bool = False, parallel: int = 1) -> pd.DataFrame:
    """Train one model per representation and write the leaderboard.

    Args:
        manifest: the corpus manifest (no split column needed).
        features: ``"all"``, a comma list or names.
        cfg: training settings shared by every run (``feature`` is replaced per run).
        out_dir: study folder (see module docstring).
        folds: ``None`` for one train/val/test split, or ``k`` leave-speakers-out folds.
        val, test, split_seed: the single split's speaker fractions and seed.
        baseline: add the logistic-regression baseline on pooled statistics of all features.
        resume: continue each run from its ``resume.pt`` (a finished run is only re-tested),
            so a killed or extended study (more features) redoes no finished work.
        parallel: training runs at a time, each in its own process (worth it on a GPU or
            a many-core CPU; the CPU threads are shared out between them). Every run is
            seeded on its own, so the order they finish in changes nothing.

    Returns:
        The leaderboard, best test UAR first.
    """
    names = resolve_representations(features)
    feature_names, encoder_names = split_kinds(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits = (speaker_folds(manifest, folds, seed=split_seed) if folds
              else [speaker_split(manifest, val=val, test=test, seed=split_seed)])
    fold_dirs = [out / f"fold{i}" for i in range(len(splits))] if folds else [out]
    pd.concat([s.assign(fold=i) for i, s in enumerate(splits)]).to_csv(out / "split.csv", index=False)
    # everything cached once here, not once per run (parallel runs would race for it)
    channel = channel_spec(cfg.channel)
    train_rows = manifest["path"].isin(set().union(*(s.loc[s["split"] == "train", "path"] for s in splits)))
    if feature_names:
        extract_corpus(manifest, feature_names, clip=cfg.clip, cache_dir=cache_dir, jobs=jobs, progress=progress,
                       channel=channel)
        chain, copies = waveform_chain(replace(cfg, feature=feature_names[0]))
        if copies:  # every training clip's augmented copies, all features in one pass per copy
            extract_corpus(manifest[train_rows], feature_names, clip=cfg.clip, cache_dir=cache_dir, jobs=jobs,
                           progress=progress, augment=chain, copies=copies, channel=channel)
    for name in encoder_names:
        enc = encoder_config(name)
        extract_encoder(manifest, enc.name, [enc.layer], clip=cfg.clip, cache_dir=cache_dir,
                        sequences=(enc.layer,), path=cfg.encoder_path, progress=progress, channel=channel)
        chain, copies = waveform_chain(replace(cfg, feature=name))
        if copies:
            load_encoder_copies(manifest[train_rows], enc.name, enc.layer, cfg.clip, cache_dir, augment=chain,
                                copies=copies, channel=channel, path=cfg.encoder_path, progress=progress)

    tasks = [(split_df, replace(cfg, feature=name), fdir / "runs" / name)
             for name in names for split_df, fdir in zip(splits, fold_dirs)]
    results = train_runs(tasks, parallel=parallel, cache_dir=cache_dir, tracking=tracking, jobs=jobs,
                         progress=progress, resume=resume)

    rows, confusions = [], {}
    for name in names:
        run_dirs, val_uars, extra = [], [], {"best_epoch": [], "epochs_run": [], "train_seconds": 0.0}
        for fdir in fold_dirs:
            run = fdir / "runs" / name
            res = results[run]
            run_dirs.append(run)
            val_uars.append(res.val["uar"])
            extra["best_epoch"].append(res.best_epoch)
            extra["epochs_run"].append(res.epochs_run)
            extra["train_seconds"] += res.train_seconds
        probs, y, groups, labels = _pooled_test(run_dirs)
        test_metrics = evaluate_predictions(probs, y, labels, n_boot=cfg.n_boot, seed=cfg.seed, groups=groups)
        extra = {k: (",".join(map(str, v)) if isinstance(v, list) else round(v, 1)) for k, v in extra.items()}
        rows.append(_row(name, representation_rows(name), test_metrics, float(np.mean(val_uars)), extra))
        confusions[name] = (test_metrics["confusion"], labels)
        log.info("%s: test UAR %.3f", name, test_metrics["uar"])

    if baseline and feature_names:  # statistics of the hand-made features only
        bt, val_uar, labels = _baseline(manifest, splits, feature_names, cfg, cache_dir, jobs, progress,
                                        [fdir / "runs" / BASELINE for fdir in fold_dirs])
        rows.append(_row(BASELINE, sum(representation_rows(n) for n in feature_names) * 2, bt, val_uar,
                         {"best_epoch": "", "epochs_run": "", "train_seconds": np.nan}))
        confusions[BASELINE] = (bt["confusion"], labels)

    board = pd.DataFrame(rows).sort_values("test_uar", ascending=False).reset_index(drop=True)
    board.to_csv(out / "leaderboard.csv", index=False)
    (out / "leaderboard.md").write_text(leaderboard_markdown(board))
    plot_leaderboard(board, out / "leaderboard.png", metric="test_uar")
    plot_confusion_grid(confusions, out / "confusions.png")
    write_json_atomic(out / "study.json", {
        "features": names, "folds": folds, "val": val, "test": test, "split_seed": split_seed,
        "train_config": asdict(cfg), "wall_seconds": time.perf_counter() - t0,
        "corpus": sorted(map(str, manifest["corpus"].unique())), "clips": len(manifest),
        "speakers": int(speaker_keys(manifest).nunique())})
    return board


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table with 95% CIs."""
    lines = ["| # | representation | rows | test UAR [95% CI] | accuracy [95% CI] | macro-F1 [95% CI] | val UAR |",
             "|---|---|---|---|---|---|---|"]

    def ci(r, k):
        return f"{r[f'test_{k}']:.3f} [{r[f'test_{k}_lo']:.3f}, {r[f'test_{k}_hi']:.3f}]"

    for i, r in board.iterrows():
        lines.append(f"| {i + 1} | {r['feature']} | {r['rows']} | {ci(r, 'uar')} | {ci(r, 'accuracy')} | "
                     f"{ci(r, 'macro_f1')} | {r['val_uar']:.3f} |")
    return "\n".join(lines) + "\n"
