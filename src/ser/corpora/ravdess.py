"""RAVDESS, speech part.

About the corpus:
    The Ryerson Audio-Visual Database of Emotional Speech and Song: 24 professional
    actors (12 female, 12 male) speak two lexically matched statements in a neutral
    North American accent. The speech part has 1440 files: 60 per actor.

    Layout: ``Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`` (``.flac`` in our converted copy).
    Fields: modality ``MM`` (03 audio-only), vocal channel ``VV`` (01 speech),
    emotion ``EE`` (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
    07 disgust, 08 surprised), intensity ``II`` (01 normal, 02 strong; neutral has no
    strong), statement ``SS`` (01 "Kids are talking by the door", 02 "Dogs are sitting
    by the door"), repetition ``RR``, actor ``AA`` (01-24; odd male, even female).
    The actor is the speaker. Counts: neutral 96, each other emotion 192.

    Licence: CC BY-NC-SA 4.0. Cite Livingstone & Russo (2018), PLoS ONE 13(5):
    e0196391. Official source: Zenodo record 1188976, which publishes an MD5 per file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .base import check_folder, make_manifest

ZENODO_RECORD = "1188976"
ARCHIVE = "Audio_Speech_Actors_01-24.zip"
ZENODO_API = "https://zenodo.org/api/records"
LAYOUT = "Actor_XX/03-01-EE-II-SS-RR-AA.wav (or .flac), e.g. Actor_01/03-01-05-01-02-01-01.wav"

EMOTION_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def parse_name(path: Path) -> dict | None:
    """Fields of one RAVDESS file name, or None when the name is not RAVDESS-style."""
    m = _NAME.match(path.stem)
    if m is None or m.group(3) not in EMOTION_CODES:
        return None
    _, _, emo, intensity, statement, repetition, actor = m.groups()
    return {
        "path": str(path),
        "speaker": actor,
        "emotion": EMOTION_CODES[emo],
        "intensity": intensity,
        "statement": statement,
        "repetition": repetition,
        "gender": "male" if int(actor) % 2 else "female",
    }


def read_ravdess_layout(corpus_dir: str | Path, corpus: str) -> pd.DataFrame:
    """Manifest of any folder in RAVDESS naming (shared with the synthetic corpus)."""
    root = check_folder(corpus_dir, corpus, LAYOUT)
    rows = [r for p in sorted(root.rglob("*")) if p.is_file() and (r := parse_name(p))]
    rows = [r for r in rows if Path(r["path"]).suffix.lower() in (".wav", ".flac", ".ogg", ".mp3")]
    return make_manifest(rows, corpus, root, LAYOUT)


def prepare_ravdess(corpus_dir: str | Path) -> pd.DataFrame:
    """Manifest of a RAVDESS speech folder (``Actor_XX/*.wav|.flac``).

    Args:
        corpus_dir: the folder holding ``Actor_01`` ... ``Actor_24``.

    Returns:
        Manifest with ``path, corpus, speaker, emotion, duration`` plus
        ``intensity, statement, repetition, gender``.

    Example:
        >>> m = prepare_ravdess("../shared/data/ravdess")  # doctest: +SKIP
        >>> len(m), m.speaker.nunique()                    # doctest: +SKIP
        (1440, 24)
    """
    return read_ravdess_layout(corpus_dir, "ravdess")


def download_ravdess(target_dir: str | Path, api_base: str = ZENODO_API, progress: bool = True) -> Path:
    """Download and unpack the RAVDESS speech archive from Zenodo, MD5-verified.

    Resumes an interrupted download; a completed one is not fetched again.

    Args:
        target_dir: where ``Actor_XX`` folders end up.
        api_base: Zenodo records API (a local server in tests).

    Returns:
        ``target_dir``, ready for ``prepare_ravdess``.
    """
    from .download import download_and_extract, zenodo_file

    url, md5 = zenodo_file(ZENODO_RECORD, ARCHIVE, api_base=api_base)
    return download_and_extract(url, Path(target_dir), archive_name=ARCHIVE, md5=md5, progress=progress)
