"""CREMA-D.

About the corpus:
    Crowd-sourced Emotional Multimodal Actors Dataset: 91 actors (48 male, 43 female,
    ages 20-74, several ethnicities) speak 12 sentences in 6 emotions; 7442 clips.

    Layout: ``AudioWAV/1001_DFA_ANG_XX.wav``. Fields: actor id ``1001``-``1091`` (the
    speaker), sentence code (``IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA, ITS, TSI,
    WSI``), emotion (``ANG`` angry, ``DIS`` disgust, ``FEA`` fearful, ``HAP`` happy,
    ``NEU`` neutral, ``SAD`` sad), level (``LO, MD, HI, XX`` unspecified).

    Licence: Open Database License (ODbL) 1.0 / Database Contents License. Cite Cao et
    al. (2014), IEEE Trans. Affective Computing 5(4):377-390. Official source: the
    CheyneyComputerScience/CREMA-D GitHub repository (audio in Git LFS, served one file
    at a time; the file list comes from its processedResults/summaryTable.csv; no
    checksums are published, so each file is downloaded atomically and kept only
    when complete).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from .base import audio_files, check_folder, make_manifest

REPO_RAW = "https://raw.githubusercontent.com/CheyneyComputerScience/CREMA-D/master"
REPO_MEDIA = "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master"
FILE_LIST = "processedResults/summaryTable.csv"
LAYOUT = "AudioWAV/AAAA_SSS_EEE_LL.wav, e.g. AudioWAV/1001_DFA_ANG_XX.wav"

EMOTION_CODES = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_name(path: Path) -> dict | None:
    """Fields of one CREMA-D file name, or None when it is not CREMA-D-style."""
    m = _NAME.match(path.stem)
    if m is None or m.group(3) not in EMOTION_CODES:
        return None
    actor, sentence, emo, level = m.groups()
    return {
        "path": str(path),
        "speaker": actor,
        "emotion": EMOTION_CODES[emo],
        "sentence": sentence,
        "level": level,
    }


def prepare_cremad(corpus_dir: str | Path) -> pd.DataFrame:
    """Manifest of a CREMA-D folder (``AudioWAV/*.wav``, or the WAVs directly).

    Args:
        corpus_dir: the CREMA-D checkout or a folder of its WAV files.

    Returns:
        Manifest with ``path, corpus, speaker, emotion, duration`` plus ``sentence, level``.
    """
    root = check_folder(corpus_dir, "cremad", LAYOUT)
    base = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    rows = [r for p in audio_files(base, "*") if (r := parse_name(p))]
    return make_manifest(rows, "cremad", root, LAYOUT)


def cremad_file_names(table_csv: str) -> list[str]:
    """Clip names (without extension) from the repository's summaryTable.csv text."""
    reader = csv.DictReader(io.StringIO(table_csv))
    if reader.fieldnames is None or "FileName" not in reader.fieldnames:
        raise ValueError(f"{FILE_LIST}: no 'FileName' column (columns: {reader.fieldnames})")
    return sorted({row["FileName"].strip() for row in reader if row["FileName"].strip()})


def download_cremad(
    target_dir: str | Path, raw_base: str = REPO_RAW, media_base: str = REPO_MEDIA, progress: bool = True
) -> Path:
    """Download the CREMA-D audio into ``target_dir/AudioWAV``, one file at a time.

    Restartable: files already present are skipped, each file is written atomically.

    Args:
        target_dir: destination folder.
        raw_base, media_base: repository URLs (a local server in tests).

    Returns:
        ``target_dir``, ready for ``prepare_cremad``.
    """
    from .download import download_file, download_files

    target = Path(target_dir)
    table = download_file(f"{raw_base}/{FILE_LIST}", target / "summaryTable.csv", progress=False)
    names = cremad_file_names(table.read_text(encoding="utf-8"))
    items = [(f"{media_base}/AudioWAV/{n}.wav", f"AudioWAV/{n}.wav") for n in names]
    return download_files(items, target, progress=progress)
