"""Corpus readers: every layout (fixtures made here), the CSV manifest, downloads, real data."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_clip
from ser.corpora import (CORPORA, CorpusError, download_corpus, load_manifest, read_manifest,
                         summarize, write_manifest)
from ser.corpora.cremad import download_cremad
from ser.corpora.emodb import download_emodb
from ser.corpora.nemo import download_nemo
from ser.corpora.ravdess import download_ravdess



def make_ravdess(root: Path, actors=(1, 2, 3, 4), ext="wav") -> Path:
    for a in actors:
        for emo in range(1, 9):
            for intensity in ((1,) if emo == 1 else (1, 2)):
                write_clip(root / f"Actor_{a:02d}" / f"03-01-{emo:02d}-{intensity:02d}-01-01-{a:02d}.{ext}", 0.2)
    (root / f"Actor_{actors[0]:02d}" / "notes.txt").write_text("not audio")
    return root


def make_cremad(root: Path, actors=(1001, 1002, 1003)) -> Path:
    for a in actors:
        for emo in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"):
            write_clip(root / "AudioWAV" / f"{a}_DFA_{emo}_XX.wav", 0.2)
    return root


def make_nemo(root: Path, speakers=("SB0", "SB1", "MJ0")) -> Path:
    rows = ["file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"]
    for s in speakers:
        for emo in ("anger", "fear", "happiness", "neutral", "sadness", "surprised"):
            name = f"{s}_{emo}_0.wav"
            write_clip(root / "samples" / name, 0.2)
            rows.append(f"{name}\t{emo}\tTekst.\ttekst\t  {s}\tfemale\t25")
    (root / "data.tsv").write_text("\n".join(rows) + "\n")
    return root


def make_emodb(root: Path, flat=False) -> Path:
    base = root if flat else root / "wav"
    for spk in ("03", "08", "09"):
        for letter in "WLEAFTN":
            write_clip(base / f"{spk}a01{letter}a.wav", 0.2)
    return root


def test_ravdess_layout(tmp_path):
    m = load_manifest("ravdess", make_ravdess(tmp_path / "rav"))
    assert len(m) == 4 * 15 and m.speaker.nunique() == 4 and m.emotion.nunique() == 8
    assert set(m.columns) >= {"path", "corpus", "speaker", "emotion", "duration", "intensity", "gender"}
    assert (m.corpus == "ravdess").all() and m.duration.round(2).eq(0.2).all()
    row = m[m.path.str.endswith("03-01-05-02-01-01-02.wav")].iloc[0]
    assert (row.emotion, row.speaker, row.gender, row.intensity) == ("angry", "02", "female", "02")


def test_ravdess_flac_layout(tmp_path):
    m = load_manifest("ravdess", make_ravdess(tmp_path / "rav", actors=(7,), ext="flac"))
    assert len(m) == 15 and set(m.speaker) == {"07"}


def test_cremad_layout(tmp_path):
    m = load_manifest("cremad", make_cremad(tmp_path / "crema"))
    assert len(m) == 18 and set(m.speaker) == {"1001", "1002", "1003"}
    assert set(m.emotion) == {"angry", "disgust", "fearful", "happy", "neutral", "sad"}


def test_nemo_layout_strips_speaker_spaces(tmp_path):
    m = load_manifest("nemo", make_nemo(tmp_path / "nemo"))
    assert len(m) == 18 and set(m.speaker) == {"SB0", "SB1", "MJ0"}
    assert set(m.emotion) == {"angry", "fearful", "happy", "neutral", "sad", "surprised"}
    assert (m.gender == "female").all()


def test_nemo_nested_archive_layout(tmp_path):
    make_nemo(tmp_path / "nemo" / "nEMO-main")
    assert len(load_manifest("nemo", tmp_path / "nemo")) == 18


@pytest.mark.parametrize("flat", [False, True])
def test_emodb_layout(tmp_path, flat):
    m = load_manifest("emodb", make_emodb(tmp_path / "emodb", flat=flat))
    assert len(m) == 21 and m.speaker.nunique() == 3 and m.emotion.nunique() == 7
    assert set(m[m.path.str.endswith("03a01La.wav")].emotion) == {"boredom"}


@pytest.mark.parametrize("corpus", [c for c in CORPORA if c != "manifest"])
def test_empty_or_wrong_folder_says_expected_layout(tmp_path, corpus):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="expected"):
        load_manifest(corpus, tmp_path / "empty")
    with pytest.raises(CorpusError, match="does not exist"):
        load_manifest(corpus, tmp_path / "missing")


def test_unknown_corpus_lists_known():
    with pytest.raises(CorpusError, match="known: synthetic, ravdess"):
        load_manifest("iemocap", ".")


def test_csv_manifest_round_trip(tmp_path):
    m = load_manifest("ravdess", make_ravdess(tmp_path / "rav", actors=(1,)))
    csv = write_manifest(m, tmp_path / "m.csv")
    back = read_manifest(csv)
    assert back.path.tolist() == m.path.tolist() and back.speaker.tolist() == m.speaker.tolist()


def test_csv_manifest_relative_paths_and_missing_duration(tmp_path):
    write_clip(tmp_path / "clips" / "a.wav", 0.5)
    (tmp_path / "m.csv").write_text("path,corpus,speaker,emotion,duration\nclips/a.wav,mine,s1,angry,\n")
    m = read_manifest(tmp_path / "m.csv")
    assert Path(m.path[0]).is_absolute() and m.duration[0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text,match",
    [
        ("path,speaker,emotion\na.wav,s,angry\n", "missing column"),
        ("path,corpus,speaker,emotion,duration\na.wav,c,s,furious,1\n", "unknown emotion name"),
        ("path,corpus,speaker,emotion,duration\n", "no rows"),
        ("path,corpus,speaker,emotion,duration\na.wav,c,,angry,1\n", "empty 'speaker'"),
        ("path,corpus,speaker,emotion,duration\na.wav,c,s,angry,1\na.wav,c,s,sad,1\n", "duplicate path"),
    ],
)
def test_csv_manifest_errors(tmp_path, text, match):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(CorpusError, match=match):
        read_manifest(tmp_path / "m.csv")


def test_summary_lists_counts(tmp_path):
    text = summarize(load_manifest("cremad", make_cremad(tmp_path / "c")))
    assert "files:    18" in text and "speakers: 3" in text and "angry      3" in text


# --- downloads against a local server ------------------------------------------------

def _zip_of(folder: Path, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, prefix + p.relative_to(folder).as_posix())
    return buf.getvalue()


def test_download_ravdess_from_zenodo_api(tmp_path, server):
    archive = _zip_of(make_ravdess(tmp_path / "src", actors=(1, 2)))
    (server.root / "files").mkdir()
    (server.root / "files" / "Audio_Speech_Actors_01-24.zip").write_bytes(archive)
    record = {"files": [{"key": "Audio_Speech_Actors_01-24.zip",
                         "checksum": "md5:" + hashlib.md5(archive).hexdigest(),
                         "links": {"self": f"{server.url}/files/Audio_Speech_Actors_01-24.zip"}}]}
    (server.root / "1188976").write_text(json.dumps(record))
    out = download_ravdess(tmp_path / "rav", api_base=server.url, progress=False)
    assert len(load_manifest("ravdess", out)) == 30
    n = len(server.requests)
    download_ravdess(tmp_path / "rav", api_base=server.url, progress=False)
    assert len(server.requests) == n + 1  # only the record JSON again, no archive


def test_download_ravdess_corrupted_archive_fails(tmp_path, server):
    (server.root / "a.zip").write_bytes(b"PK corrupted bytes")
    record = {"files": [{"key": "Audio_Speech_Actors_01-24.zip", "checksum": "md5:" + "0" * 32,
                         "links": {"self": f"{server.url}/a.zip"}}]}
    (server.root / "1188976").write_text(json.dumps(record))
    with pytest.raises(Exception, match="checksum mismatch"):
        download_ravdess(tmp_path / "rav", api_base=server.url, progress=False)
    assert not list((tmp_path / "rav").glob("Actor_*"))


def test_download_emodb_and_nemo_archives(tmp_path, server):
    (server.root / "emodb.zip").write_bytes(_zip_of(make_emodb(tmp_path / "e")))
    (server.root / "nemo.zip").write_bytes(_zip_of(make_nemo(tmp_path / "n"), prefix="nEMO-main/"))
    assert len(load_manifest("emodb", download_emodb(tmp_path / "E", url=f"{server.url}/emodb.zip",
                                                     progress=False))) == 21
    assert len(load_manifest("nemo", download_nemo(tmp_path / "N", url=f"{server.url}/nemo.zip",
                                                   progress=False))) == 18


def test_download_cremad_file_by_file(tmp_path, server):
    src = make_cremad(server.root / "media", actors=(1001, 1002))
    names = sorted(p.stem for p in (src / "AudioWAV").glob("*.wav"))
    (server.root / "raw" / "processedResults").mkdir(parents=True)
    table = pd.DataFrame({"FileName": names, "VoiceVote": "x"})
    table.to_csv(server.root / "raw" / "processedResults" / "summaryTable.csv")
    out = download_cremad(tmp_path / "C", raw_base=f"{server.url}/raw", media_base=f"{server.url}/media",
                          progress=False)
    m = load_manifest("cremad", out)
    assert len(m) == 12 and m.speaker.nunique() == 2


def test_synthetic_has_no_download(tmp_path):
    with pytest.raises(CorpusError, match="ser data synth"):
        download_corpus("synthetic", tmp_path)


# --- the real corpora in ../shared/data (skipped where absent) ------------------------

@pytest.mark.shared_data
def test_real_ravdess_counts(shared_data):
    m = load_manifest("ravdess", shared_data / "ravdess")
    assert (len(m), m.speaker.nunique(), m.emotion.nunique()) == (1440, 24, 8)
    counts = m.emotion.value_counts()
    assert counts["neutral"] == 96 and (counts.drop("neutral") == 192).all()


@pytest.mark.shared_data
def test_real_emodb_counts(shared_data):
    m = load_manifest("emodb", shared_data / "emodb")
    assert (len(m), m.speaker.nunique(), m.emotion.nunique()) == (535, 10, 7)
    expected = {"angry": 127, "boredom": 81, "disgust": 46, "fearful": 69, "happy": 71, "sad": 62,
                "neutral": 79}
    assert m.emotion.value_counts().to_dict() == expected
