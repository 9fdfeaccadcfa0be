"""Tests of ser.corpora.download against a local HTTP server (no internet needed)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.corpora.download import (DownloadError, download_and_extract, download_file, download_files,
                                  extract_archive, zenodo_file)


def _wav_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    sig = np.random.default_rng(seed).uniform(-0.5, 0.5, 1600).astype(np.float32)
    sf.write(buf, sig, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


WAV_NAMES = ["Actor_01/03-01-01-01-01-01-01.wav", "Actor_01/03-01-05-01-01-01-01.wav"]


@pytest.fixture
def fixture_zip(server) -> Path:
    path = server.root / "corpus.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(WAV_NAMES):
            zf.writestr(name, _wav_bytes(i))
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_plain_download_with_md5(server, fixture_zip, tmp_path):
    out = download_file(f"{server.url}/corpus.zip", tmp_path / "o" / "c.zip", md5=_md5(fixture_zip),
                        sha256=hashlib.sha256(fixture_zip.read_bytes()).hexdigest(), progress=False)
    assert out.read_bytes() == fixture_zip.read_bytes()
    assert not out.with_name("c.zip.part").exists()


def test_interrupted_download_resumes_with_range(server, fixture_zip, tmp_path):
    server.cut_after, server.cuts_left = 100, 1
    out = download_file(f"{server.url}/corpus.zip", tmp_path / "c.zip", md5=_md5(fixture_zip),
                        retries=2, chunk_size=64, progress=False)
    assert out.read_bytes() == fixture_zip.read_bytes()
    assert [r for _, r in server.requests] == [None, "bytes=100-"]


def test_interrupted_without_retries_keeps_part_then_resumes(server, fixture_zip, tmp_path):
    server.cut_after, server.cuts_left = 200, 1
    dest = tmp_path / "c.zip"
    with pytest.raises(DownloadError, match="corpus.zip.*run again"):
        download_file(f"{server.url}/corpus.zip", dest, retries=0, progress=False)
    part = tmp_path / "c.zip.part"
    assert not dest.exists() and part.read_bytes() == fixture_zip.read_bytes()[:200]
    download_file(f"{server.url}/corpus.zip", dest, md5=_md5(fixture_zip), retries=0, progress=False)
    assert dest.read_bytes() == fixture_zip.read_bytes() and not part.exists()
    assert server.requests[-1][1] == "bytes=200-"


def test_server_ignoring_range_restarts_from_zero(server, fixture_zip, tmp_path):
    server.ignore_range = True
    (tmp_path / "c.zip.part").write_bytes(b"garbage-that-must-be-discarded")
    out = download_file(f"{server.url}/corpus.zip", tmp_path / "c.zip", md5=_md5(fixture_zip), progress=False)
    assert out.read_bytes() == fixture_zip.read_bytes()
    assert server.requests[0][1] == "bytes=30-"


def test_checksum_mismatch_leaves_nothing(server, fixture_zip, tmp_path):
    with pytest.raises(DownloadError, match=r"checksum mismatch.*expected 0{32} got [0-9a-f]{32}"):
        download_file(f"{server.url}/corpus.zip", tmp_path / "c.zip", md5="0" * 32, progress=False)
    assert list(tmp_path.glob("c.zip*")) == []


def test_http_404_raises_without_retry(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server.url}/missing.zip", tmp_path / "m.zip", retries=3, progress=False)
    assert len(server.requests) == 1


def test_existing_dest_with_matching_checksum_makes_no_request(server, fixture_zip, tmp_path):
    dest = tmp_path / "c.zip"
    dest.write_bytes(fixture_zip.read_bytes())
    assert download_file(f"{server.url}/corpus.zip", dest, md5=_md5(fixture_zip), progress=False) == dest
    assert server.requests == []
    dest.write_bytes(b"stale")  # a wrong existing file is replaced
    download_file(f"{server.url}/corpus.zip", dest, md5=_md5(fixture_zip), progress=False)
    assert dest.read_bytes() == fixture_zip.read_bytes() and len(server.requests) == 1


def test_extract_rejects_path_traversal(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil", "boom")
    with pytest.raises(DownloadError, match=r"unsafe.*\.\./evil"):
        extract_archive(evil, tmp_path / "t")
    assert not (tmp_path / "evil").exists()
    assert list((tmp_path / "t").iterdir()) == []


def test_extract_tar_gz_and_reject_absolute(tmp_path):
    good, bad = tmp_path / "g.tar.gz", tmp_path / "b.tar"
    src = tmp_path / "src.wav"
    src.write_bytes(_wav_bytes(3))
    with tarfile.open(good, "w:gz") as tf:
        tf.add(src, arcname="wav/a.wav")
    with tarfile.open(bad, "w") as tf:
        info = tarfile.TarInfo("/abs.wav")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"boom"))
    target = extract_archive(good, tmp_path / "t")
    assert (target / "wav" / "a.wav").read_bytes() == src.read_bytes()
    assert not list(target.glob(".extract-tmp-*"))
    with pytest.raises(DownloadError, match="abs.wav"):
        extract_archive(bad, tmp_path / "t")


def test_download_and_extract_marker_and_no_second_request(server, fixture_zip, tmp_path):
    target = tmp_path / "ravdess"
    url = f"{server.url}/corpus.zip"
    assert download_and_extract(url, target, archive_name="c.zip", md5=_md5(fixture_zip), progress=False) == target
    for i, name in enumerate(WAV_NAMES):
        assert (target / name).read_bytes() == _wav_bytes(i)
    assert (target / ".c.zip.complete").exists() and not (target / "c.zip").exists()
    assert sf.info(str(target / WAV_NAMES[0])).samplerate == 16000
    n = len(server.requests)
    download_and_extract(url, target, archive_name="c.zip", progress=False)
    assert len(server.requests) == n


def test_interrupted_download_and_extract_leaves_no_marker(server, fixture_zip, tmp_path):
    server.cut_after, server.cuts_left = 50, 10
    target = tmp_path / "ravdess"
    with pytest.raises(DownloadError):
        download_and_extract(f"{server.url}/corpus.zip", target, archive_name="c.zip", progress=False)
    assert not (target / ".c.zip.complete").exists()
    assert not any(p.suffix == ".wav" for p in target.rglob("*"))


def test_download_files_downloads_and_skips_existing(server, tmp_path):
    for i in range(3):
        (server.root / f"f{i}.wav").write_bytes(_wav_bytes(i))
    target = tmp_path / "cremad"
    (target / "AudioWAV").mkdir(parents=True)
    (target / "AudioWAV" / "f0.wav").write_bytes(b"already here")
    items = [(f"{server.url}/f{i}.wav", f"AudioWAV/f{i}.wav") for i in range(3)]
    assert download_files(items, target, progress=False) == target
    assert (target / "AudioWAV" / "f0.wav").read_bytes() == b"already here"
    assert (target / "AudioWAV" / "f2.wav").read_bytes() == _wav_bytes(2)
    assert sorted(p for p, _ in server.requests) == ["/f1.wav", "/f2.wav"]


def test_zenodo_file_parses_record_and_lists_keys(server, tmp_path):
    rec = server.root / "api" / "records"
    rec.mkdir(parents=True)
    files = [{"key": "Audio_Speech_Actors_01-24.zip", "checksum": "md5:" + "ab" * 16,
              "links": {"self": f"{server.url}/files/speech.zip/content"}},
             {"key": "Video.zip", "links": {"self": f"{server.url}/files/video.zip/content"}}]
    (rec / "1188976").write_text(json.dumps({"id": 1188976, "files": files}))
    api = f"{server.url}/api/records"
    assert zenodo_file(1188976, "Audio_Speech_Actors_01-24.zip", api_base=api) == (
        f"{server.url}/files/speech.zip/content", "ab" * 16)
    assert zenodo_file("1188976", "Video.zip", api_base=api)[1] is None
    with pytest.raises(DownloadError, match=r"no file 'nope.zip'.*Audio_Speech_Actors_01-24.zip.*Video.zip"):
        zenodo_file(1188976, "nope.zip", api_base=api)
    with pytest.raises(DownloadError, match="999"):
        zenodo_file(999, "x.zip", api_base=api)
