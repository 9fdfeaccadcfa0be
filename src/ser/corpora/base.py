"""The manifest: one table that every corpus ends in.

A manifest is a ``pandas.DataFrame`` with at least the columns of
``MANIFEST_COLUMNS`` (``path, corpus, speaker, emotion, duration``), one row per clip.
Corpus quirks (file naming, emotion codes, speaker ids) stop here: everything after
the manifest works on canonical emotion names and opaque speaker ids.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import soundfile as sf

from ..errors import SerError

log = logging.getLogger(__name__)

# Canonical emotion names (DESIGN.md); every corpus maps its codes to these.
EMOTIONS = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "boredom",  # EmoDB only
)
MANIFEST_COLUMNS = ("path", "corpus", "speaker", "emotion", "duration")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class CorpusError(SerError, ValueError):
    """A corpus folder or manifest that cannot be read; the message says what was expected."""


def audio_files(root: Path, pattern: str = "**/*") -> list[Path]:
    """Audio files under ``root`` matching ``pattern``, sorted (so manifests are stable)."""
    return sorted(
        p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )


def duration_of(path: Path) -> float:
    """Duration in seconds from the file header (no decoding); NaN when unreadable."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        log.warning("%s: cannot read header (%s); duration unknown", path, e)
        return float("nan")
    return float(info.frames) / float(info.samplerate) if info.samplerate else float("nan")


def check_folder(root: str | Path, corpus: str, layout: str) -> Path:
    """Resolve ``root`` and fail clearly when it is missing or not a folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise CorpusError(f"{corpus}: folder {path} does not exist; expected {layout}")
    if not path.is_dir():
        raise CorpusError(f"{corpus}: {path} is not a folder; expected {layout}")
    return path.resolve()


def make_manifest(rows: Iterable[Mapping], corpus: str, root: Path, layout: str) -> pd.DataFrame:
    """Build and validate a manifest from per-clip dicts (``path, speaker, emotion, ...``).

    Durations are read from file headers when a row has none. Raises ``CorpusError``
    naming the expected ``layout`` when no clip was found.
    """
    df = pd.DataFrame(list(rows))
    if df.empty:
        raise CorpusError(f"{corpus}: no clips found under {root}; expected {layout}")
    df["corpus"] = corpus
    if "duration" not in df.columns:
        df["duration"] = [duration_of(Path(p)) for p in df["path"]]
    df["path"] = df["path"].astype(str)
    df["speaker"] = df["speaker"].astype(str)
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df = df[list(MANIFEST_COLUMNS) + extra]
    validate_manifest(df, source=f"{corpus} at {root}")
    return df.sort_values("path", kind="stable").reset_index(drop=True)


def validate_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Check columns and values; raise ``CorpusError`` naming the problem and the fix."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise CorpusError(
            f"{source}: missing column(s) {missing}; a manifest needs {list(MANIFEST_COLUMNS)}"
        )
    if df.empty:
        raise CorpusError(f"{source}: the manifest has no rows")
    unknown = sorted(set(df["emotion"]) - set(EMOTIONS))
    if unknown:
        raise CorpusError(
            f"{source}: unknown emotion name(s) {unknown}; use the canonical names {list(EMOTIONS)}"
        )
    for col in ("path", "speaker"):
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            raise CorpusError(f"{source}: {int(blank.sum())} row(s) with an empty '{col}'")
    dup = df["path"].duplicated()
    if dup.any():
        raise CorpusError(f"{source}: duplicate path {df['path'][dup].iloc[0]!r}")
    return df


def emotion_labels(df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The emotions present in a manifest in canonical order, and each clip's index into them.

    Example:
        >>> emotion_labels(pd.DataFrame({"emotion": ["sad", "neutral", "sad"]}))
        (['neutral', 'sad'], array([1, 0, 1]))
    """
    labels = [e for e in EMOTIONS if e in set(df["emotion"])]
    return labels, df["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy()


def summarize(df: pd.DataFrame) -> str:
    """A short human-readable summary: files, speakers, emotions and counts, hours."""
    counts = df["emotion"].value_counts()
    order = [e for e in EMOTIONS if e in counts.index]
    lines = [
        f"corpus:   {', '.join(sorted(df['corpus'].unique()))}",
        f"files:    {len(df)}",
        f"speakers: {df['speaker'].nunique()}",
        f"emotions: {len(order)}",
        f"hours:    {df['duration'].sum() / 3600:.2f}",
        "per emotion:",
    ]
    lines += [f"  {e:<10} {int(counts[e])}" for e in order]
    return "\n".join(lines)
