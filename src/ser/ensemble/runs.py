"""The runs an ensemble is made of: loading studies, choosing the members, aligning clips.

A study is what ``ser compare`` writes: a single split (``DIR/runs/<name>/``) or k
speaker folds (``DIR/fold<i>/runs/<name>/``). Each run folder holds ``model.json`` and
``predictions.csv`` (validation and test probabilities). A single split is handled as
the one-fold case: :func:`load_folds` returns ``[(fold name, runs), ...]`` for both, and
:func:`select_members` picks the same members in every fold by validation UAR only.

Example:
    >>> folds = load_folds("runs/study")                     # doctest: +SKIP
    >>> names = select_members([runs for _, runs in folds], top=3)  # doctest: +SKIP
    >>> data = align_runs([folds[0][1][n] for n in names])   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import SerError
from ..evaluate import evaluate_predictions
from ..splits import speaker_keys

log = logging.getLogger(__name__)

EVAL_PARTS = ("val", "test")  # the parts of a split an ensemble reads: fitted on val, reported on test


class EnsembleError(SerError, ValueError):
    """Runs that cannot form an ensemble."""


def as_dirs(dirs: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One study folder or several, as a list.

    >>> as_dirs("study"), as_dirs(["a", "b"])
    (['study'], ['a', 'b'])
    """
    return [dirs] if isinstance(dirs, (str, Path)) else list(dirs)


def dirs_label(dirs: str | Path | Sequence[str | Path]) -> str:
    """One folder, or several joined by ``+``, as text for summaries and MLflow params.

    >>> dirs_label(["gpu", "cpu"])
    'gpu+cpu'
    """
    return "+".join(map(str, as_dirs(dirs)))


def speaker_ids(df: pd.DataFrame) -> np.ndarray:
    """The speaker of each clip as used to group (bootstrap, stacking folds, speaker table).

    Corpus-qualified (``ser.splits.speaker_keys``) when the table records the corpus; a
    table without a ``corpus`` column comes from one run of one manifest, whose bare
    speaker ids are the ones its split was made with.

    >>> speaker_ids(pd.DataFrame({"corpus": ["a", "b"], "speaker": ["01", "01"]})).tolist()
    ['a/01', 'b/01']
    """
    keys = speaker_keys(df) if "corpus" in df.columns else df["speaker"].astype(str)
    return keys.to_numpy(str)


# ----------------------------------------------------------------------------- loading

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
        raise EnsembleError(f"{root} is a {len(folds)}-fold study ({', '.join(folds)}); load_runs reads one "
                            "train/val/test split: use ser.ensemble.fit_ensemble (or `ser ensemble`), which "
                            "fits a fold study per fold")
    if not dirs:
        raise EnsembleError(f"{root}: no runs found (expected runs/<feature>/predictions.csv from `ser compare`)")
    return {d.name: _load_run(d) for d in dirs}


def _load_run(d: Path) -> dict:
    if not (d / "model.json").is_file():
        raise EnsembleError(f"{d}: model.json missing; a run folder is written by `ser train`/`ser compare`")
    meta = json.loads((d / "model.json").read_text())
    df = pd.read_csv(d / "predictions.csv", dtype={"path": str, "corpus": str, "speaker": str, "emotion": str})
    labels = [c[2:] for c in df.columns if c.startswith("p_")]
    if list(meta.get("labels", labels)) != labels:
        raise EnsembleError(f"{d}: model.json labels {meta['labels']} differ from predictions.csv {labels}")
    parts = {s: df[df["split"] == s].reset_index(drop=True) for s in EVAL_PARTS}
    for s, part in parts.items():
        if part.empty:
            raise EnsembleError(f"{d}/predictions.csv has no {s} clips; the ensemble needs val and test")
    y, p = _targets(parts["val"], labels, d)
    return {"name": d.name, "dir": d, "meta": meta, "labels": labels, **parts,
            "val_uar": evaluate_predictions(p, y, labels, n_boot=0)["uar"]}


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


def fold_dirs(study_dir: str | Path) -> list[Path]:
    """The ``fold<i>`` folders (with ``runs/``) of a ``ser compare --folds`` study, in fold order."""
    folds = [p.parent for p in Path(study_dir).glob("fold*/runs") if p.parent.name[4:].isdigit()]
    return sorted(folds, key=lambda d: int(d.name[4:]))


def is_fold_study(study_dir: str | Path | Sequence[str | Path]) -> bool:
    """True for a k-fold study folder (``fold0/runs`` ...) without a single split's ``runs/``
    (for several folders: true when all are)."""
    dirs = as_dirs(study_dir)
    return bool(dirs) and all(not (Path(d) / "runs").is_dir() and bool(fold_dirs(d)) for d in dirs)


def load_fold_runs(study_dir: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[dict[str, dict]]]:
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


def load_folds(study_dir: str | Path | Sequence[str | Path]) -> list[tuple[str | None, dict[str, dict]]]:
    """``[(fold name, runs), ...]``: ``fold0``, ``fold1`` ... of a k-fold study, or one
    ``(None, runs)`` for a single split (the one-fold case)."""
    if is_fold_study(study_dir):
        dirs, runs = load_fold_runs(study_dir)
        return [(d.name, r) for d, r in zip(dirs, runs)]
    return [(None, load_runs(study_dir))]


# ------------------------------------------------------------------------------ members

def select_members(runs: Mapping[str, dict] | Sequence[Mapping[str, dict]], top: int = 3,
                   features: str | Iterable[str] | None = None) -> list[str]:
    """The member names: ``features`` by name, else the ``top`` runs by VALIDATION UAR (never test).

    Args:
        runs: one split's runs by name, or a list of them (one per fold); members must be
            present in every fold and are ranked by validation UAR averaged over the folds
            (ties: by name).
        top: how many members when ``features`` does not name them (at least 2).
        features: member run names, a comma string or a list (duplicates dropped).
    """
    folds = [runs] if isinstance(runs, Mapping) else list(runs)
    common = [n for n in folds[0] if all(n in f for f in folds[1:])]
    if features:
        names = [n.strip() for n in features.split(",")] if isinstance(features, str) else list(features)
        names = list(dict.fromkeys(names))
        missing = [n for n in names if n not in common]
        if missing and len(folds) == 1:
            raise EnsembleError(f"no run named {missing}; available: {', '.join(common)}")
        if missing:
            raise EnsembleError(f"runs {missing} are not in every fold; in all folds: {', '.join(sorted(common))}")
    else:
        if top < 2:
            raise EnsembleError(f"--top {top}: an ensemble needs at least 2 members")
        mean_val = {n: float(np.mean([f[n]["val_uar"] for f in folds])) for n in common}
        names = sorted(common, key=lambda n: (-mean_val[n], n))[:top]
        if len(names) < top:
            log.warning("only %d runs in the study; using all of them instead of the top %d", len(names), top)
    if len(names) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 runs (present in every fold), got {names}")
    return names


# ---------------------------------------------------------------------------- alignment

def _targets(df: pd.DataFrame, labels: list[str], where: Any) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(df["emotion"]) - set(labels))
    if unknown:
        raise EnsembleError(f"{where}: emotions {unknown} are not among the labels {labels}")
    return df["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy(), \
        df[[f"p_{lab}" for lab in labels]].to_numpy(np.float64)


def align_runs(members: list[dict]) -> dict[str, Any]:
    """Stack the members' probabilities per part, aligned by clip path to the first member.

    Returns:
        ``{"labels", "names", "val": part, "test": part}``, a part being ``{"probs" (M, N, K),
        "y", "paths", "speakers" (see :func:`speaker_ids`), "clips" (the first member's
        path, speaker, emotion and, where recorded, corpus columns)}``. Fails unless every
        member has the same labels, the same split speakers and the same val and test clips.
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
    for s in EVAL_PARTS:
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
            probs.append(_targets(df, labels, m["dir"])[1])
        y, _ = _targets(ref[s], labels, ref["dir"])
        cols = [c for c in ("path", "corpus", "speaker", "emotion") if c in ref[s].columns]
        out[s] = {"probs": np.stack(probs), "y": y, "paths": paths, "speakers": speaker_ids(ref[s]),
                  "clips": ref[s][cols].reset_index(drop=True)}
    return out
