"""Speaker-independent splits: no speaker is ever in two of train, validation and test.

A split is a copy of the manifest with a ``split`` column (``train``/``val``/``test``).
Speakers are grouped whole; among many seeded random groupings the one whose emotion
(and, where known, gender) mix per split is closest to the whole corpus is kept, so
splits are stratified as far as the speakers allow and identical for a seed.

Example:
    >>> from ser.splits import speaker_split
    >>> df = speaker_split(manifest, val=0.15, test=0.15, seed=0)   # doctest: +SKIP
    >>> df.groupby("split").speaker.nunique()                       # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import SerError

SPLITS = ("train", "val", "test")
N_CANDIDATES = 400  # random speaker groupings scored per split; more = better balance, slower


class SplitError(SerError, ValueError):
    """A split that cannot be made, or one that leaks a speaker between parts."""


def speaker_keys(df: pd.DataFrame) -> pd.Series:
    """A corpus-qualified speaker id, so speaker "01" of two corpora stays two people.

    Tables written before runs recorded the corpus (no ``corpus`` column) fall back to
    the bare speaker id: they always held one corpus.

    Example:
        >>> speaker_keys(pd.DataFrame({"corpus": ["a", "b"], "speaker": ["01", "01"]})).tolist()
        ['a/01', 'b/01']
    """
    if "corpus" not in df.columns:
        return df["speaker"].astype(str)
    return df["corpus"].astype(str) + "/" + df["speaker"].astype(str)


def _profiles(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Speaker keys and a (speakers x categories) count matrix (emotion, plus gender)."""
    keys = speaker_keys(df)
    table = pd.crosstab(keys, df["emotion"])
    if "gender" in df.columns:
        table = table.join(pd.crosstab(keys, df["gender"]).add_prefix("gender:") * 0.5)
    return table.index.to_numpy(), table.to_numpy(dtype=float)


def _score(counts: np.ndarray, groups: np.ndarray, n_groups: int) -> float:
    """Lower is better: L1 distance of each group's mix from the whole, missing classes penalised."""
    total = counts.sum(axis=0)
    p_all = total / total.sum()
    score = 0.0
    for g in range(n_groups):
        c = counts[groups == g].sum(axis=0)
        score += np.abs(c / max(c.sum(), 1e-9) - p_all).sum()
        score += 1.0 * np.count_nonzero((c == 0) & (total > 0))
    return score


def _best_grouping(counts: np.ndarray, sizes: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    best, best_score = None, np.inf
    for _ in range(N_CANDIDATES):
        groups = rng.permutation(labels)
        s = _score(counts, groups, len(sizes))
        if s < best_score - 1e-12:
            best, best_score = groups, s
    return best


def speaker_split(manifest: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0) -> pd.DataFrame:
    """Split a manifest into train/val/test by speaker.

    Args:
        manifest: a manifest (``path, corpus, speaker, emotion, duration``, ...).
        val: fraction of speakers for validation, in (0, 1); at least one speaker.
        test: fraction of speakers for test, in (0, 1); at least one speaker.
        seed: the same seed gives the same split.

    Returns:
        A copy of ``manifest`` with a ``split`` column.

    Raises:
        SplitError: too few speakers for the fractions asked.
    """
    # training needs validation speakers (model selection) and a study needs test speakers
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise SplitError(f"val={val}, test={test}: each must be in (0, 1) and their sum below 1 "
                         f"(a split needs train, validation and test speakers)")
    keys, counts = _profiles(manifest)
    n = len(keys)
    n_test, n_val = max(1, round(test * n)), max(1, round(val * n))
    if n - n_test - n_val < 1:
        raise SplitError(
            f"{n} speaker(s) cannot make a speaker-disjoint split with val={val}, test={test}: "
            f"need at least {n_test + n_val + 1}; use a corpus with more speakers or smaller fractions"
        )
    groups = _best_grouping(counts, [n - n_val - n_test, n_val, n_test], seed)
    assign = dict(zip(keys, np.asarray(SPLITS)[groups]))
    out = manifest.copy()
    out["split"] = speaker_keys(out).map(assign)
    check_speaker_disjoint(out)
    return out


def speaker_folds(manifest: pd.DataFrame, k: int = 5, seed: int = 0) -> list[pd.DataFrame]:
    """Leave-speakers-out folds: speakers are cut into ``k`` groups.

    Fold ``i`` tests on group ``i``, validates on group ``(i + 1) % k`` and trains on
    the rest, so every speaker is tested exactly once.

    Args:
        manifest: a manifest.
        k: number of folds, 3 or more (a fold needs train, val and test speakers).
        seed: the same seed gives the same folds.

    Returns:
        ``k`` copies of ``manifest``, each with a ``split`` column.
    """
    keys, counts = _profiles(manifest)
    n = len(keys)
    if k < 3:
        raise SplitError(f"k={k}: need k >= 3 folds (each fold has train, val and test speakers)")
    if n < k:
        raise SplitError(f"{n} speaker(s) cannot make {k} speaker folds; use k <= {n}")
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    groups = _best_grouping(counts, sizes, seed)
    key_group = dict(zip(keys, groups))
    g = speaker_keys(manifest).map(key_group).to_numpy()
    folds = []
    for i in range(k):
        out = manifest.copy()
        out["split"] = np.where(g == i, "test", np.where(g == (i + 1) % k, "val", "train"))
        check_speaker_disjoint(out)
        folds.append(out)
    return folds


def check_speaker_disjoint(df: pd.DataFrame) -> None:
    """Raise ``SplitError`` when any speaker appears in more than one split."""
    if "split" not in df.columns:
        raise SplitError("no 'split' column; make one with speaker_split or speaker_folds")
    bad = set(df["split"].dropna()) - set(SPLITS)
    if bad or df["split"].isna().any():
        raise SplitError(f"split values must be {SPLITS}; found {sorted(map(str, bad)) or 'missing values'}")
    per_speaker = df.assign(_k=speaker_keys(df)).groupby("_k")["split"].nunique()
    leaking = per_speaker[per_speaker > 1]
    if len(leaking):
        raise SplitError(
            f"speaker leak: {len(leaking)} speaker(s) in more than one split, e.g. {list(leaking.index[:5])}"
        )


def split_speakers(df: pd.DataFrame) -> dict[str, list[str]]:
    """The corpus-qualified speakers (:func:`speaker_keys`) of each split, for checkpoints and reports."""
    check_speaker_disjoint(df)
    keys = speaker_keys(df)
    return {s: sorted(keys[df["split"] == s].unique()) for s in SPLITS}
