"""nEMO (Polish emotional speech).

About the corpus:
    nEMO: 4481 utterances (about 3 hours) of Polish speech by 9 actors in 6 emotional
    states: anger, fear, happiness, neutral, sadness, surprised.

    Layout: a folder with ``samples/{speaker}_{emotion}_{n}.wav`` and ``data.tsv``
    (tab-separated columns ``file_id, emotion, raw_text, normalized_text, speaker_id,
    gender, age``). ``speaker_id`` may carry leading spaces; it is stripped. The labels
    in ``data.tsv`` win; a file missing from it falls back to its name.

    Licence: CC BY-NC-SA 4.0. Cite Christop (2024), nEMO: Dataset of Emotional Speech
    in Polish, LREC-COLING. Official source: the amu-cai/nEMO GitHub repository
    (no checksum published).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import CorpusError, audio_files, check_folder, make_manifest

ARCHIVE_URL = "https://github.com/amu-cai/nEMO/archive/refs/heads/main.zip"
ARCHIVE = "nemo.zip"
LAYOUT = "samples/{speaker}_{emotion}_{n}.wav plus data.tsv (file_id, emotion, ..., speaker_id, gender, age)"

EMOTION_CODES = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprised",
}


def _find_root(root: Path) -> Path:
    """The folder holding ``samples/`` (the GitHub archive nests it one level down)."""
    if (root / "samples").is_dir():
        return root
    nested = [p.parent for p in root.glob("*/samples") if p.is_dir()]
    if len(nested) == 1:
        return nested[0]
    raise CorpusError(f"nemo: no samples/ folder under {root}; expected {LAYOUT}")


def _read_table(base: Path) -> dict[str, dict]:
    tsv = base / "data.tsv"
    if not tsv.is_file():
        return {}
    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    need = {"file_id", "emotion", "speaker_id"}
    if not need <= set(table.columns):
        raise CorpusError(f"nemo: {tsv} lacks column(s) {sorted(need - set(table.columns))}")
    out = {}
    for row in table.itertuples(index=False):
        out[Path(row.file_id.strip()).stem] = row._asdict()
    return out


def prepare_nemo(corpus_dir: str | Path) -> pd.DataFrame:
    """Manifest of an nEMO folder.

    Args:
        corpus_dir: the folder with ``samples/`` and ``data.tsv`` (or its parent).

    Returns:
        Manifest with ``path, corpus, speaker, emotion, duration`` plus ``gender, age, text``.
    """
    root = check_folder(corpus_dir, "nemo", LAYOUT)
    base = _find_root(root)
    table = _read_table(base)
    rows = []
    for path in audio_files(base / "samples", "*"):
        meta = table.get(path.stem)
        parts = path.stem.split("_")
        if meta is not None:
            speaker, code = meta["speaker_id"].strip(), meta["emotion"].strip().lower()
        elif len(parts) >= 3:
            speaker, code = parts[0], parts[1].lower()
        else:
            continue
        if code not in EMOTION_CODES:
            raise CorpusError(f"nemo: {path.name}: unknown emotion {code!r}; known {sorted(EMOTION_CODES)}")
        row = {"path": str(path), "speaker": speaker, "emotion": EMOTION_CODES[code]}
        if meta is not None:
            row.update(gender=meta.get("gender", "").strip(), age=meta.get("age", "").strip(),
                       text=meta.get("normalized_text", "").strip())
        rows.append(row)
    return make_manifest(rows, "nemo", root, LAYOUT)


def download_nemo(target_dir: str | Path, url: str = ARCHIVE_URL, progress: bool = True) -> Path:
    """Download and unpack nEMO from its GitHub repository into ``target_dir``."""
    from .download import download_and_extract

    return download_and_extract(url, Path(target_dir), archive_name=ARCHIVE, progress=progress)
