"""Berlin EmoDB.

About the corpus:
    Berlin Database of Emotional Speech: 10 actors (5 female, 5 male) speak 10 German
    sentences in 7 emotions; 535 utterances survive the perception test.

    Layout: ``wav/03a01Fa.wav`` in the official archive, or flat (``03a01Fa.flac`` in
    our converted copy). Name ``SSTTTEV``: speaker ``SS`` (03, 08, 09, 10, 11, 12, 13,
    14, 15, 16), text ``TTT``, emotion letter ``E`` (German initials: W Wut = anger,
    L Langeweile = boredom, E Ekel = disgust, A Angst = fear, F Freude = happiness,
    T Trauer = sadness, N neutral), version ``V``. Speaker = chars 1-2.
    Counts: anger 127, boredom 81, disgust 46, fear 69, happiness 71, sadness 62,
    neutral 79.

    Licence: freely available for research (CC0 1.0 in a later redistribution). Cite
    Burkhardt et al. (2005), A database of German emotional speech, Interspeech.
    Official source: http://emodb.bilderbar.info (no checksum published).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .base import audio_files, check_folder, make_manifest

URL = "http://emodb.bilderbar.info/download/download.zip"
ARCHIVE = "emodb.zip"
LAYOUT = "wav/SSTTTEV.wav or flat SSTTTEV.wav|.flac, e.g. wav/03a01Fa.wav"
GENDER = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
          "12": "male", "13": "female", "14": "female", "15": "male", "16": "female"}

EMOTION_CODES = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")


def parse_name(path: Path) -> dict | None:
    """Fields of one EmoDB file name, or None when it is not EmoDB-style."""
    m = _NAME.match(path.stem)
    if m is None:
        return None
    speaker, text, letter, version = m.groups()
    return {
        "path": str(path),
        "speaker": speaker,
        "emotion": EMOTION_CODES[letter],
        "text": text,
        "version": version,
        "gender": GENDER.get(speaker, "unknown"),
    }


def prepare_emodb(corpus_dir: str | Path) -> pd.DataFrame:
    """Manifest of an EmoDB folder (``wav/*.wav`` or flat ``*.wav|.flac``).

    Args:
        corpus_dir: the EmoDB folder.

    Returns:
        Manifest with ``path, corpus, speaker, emotion, duration`` plus ``text, version, gender``.

    Example:
        >>> prepare_emodb("../shared/data/emodb").speaker.nunique()  # doctest: +SKIP
        10
    """
    root = check_folder(corpus_dir, "emodb", LAYOUT)
    base = root / "wav" if (root / "wav").is_dir() else root
    rows = [r for p in audio_files(base, "*") if (r := parse_name(p))]
    return make_manifest(rows, "emodb", root, LAYOUT)


def download_emodb(target_dir: str | Path, url: str = URL, progress: bool = True) -> Path:
    """Download and unpack the official EmoDB archive (``wav/`` ends up in ``target_dir``).

    The source publishes no checksum; the download is still streamed, resumable and
    atomic (an interrupted one never looks complete).
    """
    from .download import download_and_extract

    return download_and_extract(url, Path(target_dir), archive_name=ARCHIVE, progress=progress)
