"""Any corpus as a CSV manifest.

About the format:
    A CSV file with at least the columns ``path, corpus, speaker, emotion, duration``
    (one row per clip; extra columns are kept). Relative paths are resolved against the
    CSV's folder. Emotions must use the canonical names of ``ser.corpora.EMOTIONS``.
    An empty ``duration`` is read from the audio header. This is how a user's own data
    (or a mix of corpora) enters the toolkit.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import MANIFEST_COLUMNS, CorpusError, duration_of, validate_manifest


def read_manifest(csv_path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest CSV.

    Args:
        csv_path: the CSV file.

    Returns:
        The manifest, paths made absolute.

    Example:
        >>> read_manifest("my_calls.csv")  # doctest: +SKIP
    """
    path = Path(csv_path).expanduser()
    if not path.is_file():
        raise CorpusError(
            f"manifest: {path} is not a file; expected a CSV with columns {list(MANIFEST_COLUMNS)}"
        )
    try:
        df = pd.read_csv(path, dtype={"speaker": str, "path": str, "corpus": str, "emotion": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise CorpusError(f"manifest: cannot parse {path} as CSV ({e})") from e
    validate_manifest(df, source=str(path))
    base = path.resolve().parent
    df["path"] = [str(p if Path(p).is_absolute() else (base / p)) for p in df["path"]]
    if df["duration"].isna().any():
        df.loc[df["duration"].isna(), "duration"] = [
            duration_of(Path(p)) for p in df.loc[df["duration"].isna(), "path"]
        ]
    return df.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, csv_path: str | Path) -> Path:
    """Write a manifest CSV atomically (temp file + rename)."""
    validate_manifest(df)
    out = Path(csv_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out)
    return out
