"""Corpora: one module per corpus, all ending in one manifest table.

``load_manifest(corpus, path)`` is the single entry point the rest of the package uses;
``CORPORA`` lists the known names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .base import EMOTIONS, MANIFEST_COLUMNS, CorpusError, emotion_labels, summarize, validate_manifest
from .cremad import download_cremad, prepare_cremad
from .emodb import download_emodb, prepare_emodb
from .manifest import read_manifest, write_manifest
from .nemo import download_nemo, prepare_nemo
from .ravdess import download_ravdess, prepare_ravdess
from .synthetic import generate_synthetic, prepare_synthetic

# name -> prepare function; "manifest" reads a CSV file instead of a folder.
PREPARERS: dict[str, Callable[[str | Path], pd.DataFrame]] = {
    "synthetic": prepare_synthetic,
    "ravdess": prepare_ravdess,
    "cremad": prepare_cremad,
    "nemo": prepare_nemo,
    "emodb": prepare_emodb,
    "manifest": read_manifest,
}
# name -> download function, for corpora with an official download.
DOWNLOADERS: dict[str, Callable[..., Path]] = {
    "ravdess": download_ravdess,
    "cremad": download_cremad,
    "nemo": download_nemo,
    "emodb": download_emodb,
}
CORPORA = tuple(PREPARERS)


def load_manifest(corpus: str, path: str | Path) -> pd.DataFrame:
    """Manifest of ``corpus`` read from ``path`` (a folder, or a CSV for ``manifest``).

    Args:
        corpus: one of ``CORPORA``.
        path: the corpus folder, or the CSV file when ``corpus == "manifest"``.

    Returns:
        A validated manifest (``path, corpus, speaker, emotion, duration``, ...).

    Example:
        >>> m = load_manifest("ravdess", "../shared/data/ravdess")  # doctest: +SKIP
    """
    if corpus not in PREPARERS:
        raise CorpusError(f"unknown corpus {corpus!r}; known: {', '.join(CORPORA)}")
    return PREPARERS[corpus](path)


def download_corpus(corpus: str, target_dir: str | Path, **kwargs) -> Path:
    """Download ``corpus`` from its official source into ``target_dir``."""
    if corpus not in DOWNLOADERS:
        hint = " (generate it with `ser data synth`)" if corpus == "synthetic" else ""
        raise CorpusError(
            f"corpus {corpus!r} has no download{hint}; downloadable: {', '.join(DOWNLOADERS)}"
        )
    return DOWNLOADERS[corpus](target_dir, **kwargs)


__all__ = [
    "CORPORA", "EMOTIONS", "MANIFEST_COLUMNS", "CorpusError", "emotion_labels", "load_manifest", "download_corpus",
    "summarize", "validate_manifest", "read_manifest", "write_manifest", "generate_synthetic",
]
