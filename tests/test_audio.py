"""ser.audio: decoding every promised format, mixing, resampling, and every AudioError."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_clip
from ser.audio import (N_SAMPLES, SAMPLE_RATE, AudioError, load_audio, pad_or_trim,
                       prepare_clip, trim_silence)


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_formats_decode_to_mono_16k(tmp_path, fmt, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(str(path), tone(1.0, 16000), 16000, format=fmt)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SAMPLE_RATE) < 0.1 * SAMPLE_RATE  # MP3 adds encoder delay/padding
    assert np.isfinite(y).all() and 0.05 < np.abs(y).max() <= 1.0


def test_file_and_bytes_agree(tmp_path):
    path = write_clip(tmp_path / "a.wav")
    assert np.array_equal(load_audio(path), load_audio(path.read_bytes()))


def test_resample_and_mixdown(tmp_path):
    path = tmp_path / "stereo44k.wav"
    sf.write(str(path), tone(1.0, 44100, channels=2), 44100)
    y = load_audio(path)
    assert abs(len(y) - 16000) <= 1
    # the mix of channels scaled 0.5 and 1.0 is 0.75 times the tone
    ref = load_audio(write_clip(tmp_path / "mono44k.wav", 1.0, 44100))
    np.testing.assert_allclose(y, 0.75 * ref, atol=1e-4)


def test_other_target_rate(tmp_path):
    assert abs(len(load_audio(write_clip(tmp_path / "a.wav", 1.0), sr=8000)) - 8000) <= 1


def _wav_bytes(y, sr=16000, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty input"),
        (b"hello, this is plainly not audio at all" * 10, "cannot decode"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + b"\x00" * 200, "MP4/M4A/AAC audio is not supported"),
        (b"MThd\x00\x00\x00\x06" + b"\x00" * 50, "MIDI audio is not supported"),
    ],
)
def test_bad_bytes_raise(data, match):
    with pytest.raises(AudioError, match=match):
        load_audio(data)


def test_zero_length_wav():
    data = _wav_bytes(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="zero-length"):
        load_audio(data)


def test_truncated_header():
    data = _wav_bytes(tone(0.5))[:30]  # cut inside the RIFF header
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(data)


def test_truncated_flac_is_error_or_shorter_clean_audio(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(str(path), tone(2.0), 16000)
    cut = path.read_bytes()[: path.stat().st_size // 2]
    try:
        y = load_audio(cut)
    except AudioError as e:
        assert "<" in str(e) and "bytes>" in str(e)  # names the source
    else:  # libsndfile may decode the intact frames: then it is shorter and finite
        assert 0 < len(y) < 2 * SAMPLE_RATE and np.isfinite(y).all()


def test_all_nan_raises_and_some_nan_is_cleaned():
    y = np.full(1600, np.nan, dtype=np.float32)
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(_wav_bytes(y, subtype="FLOAT"))
    y = tone(0.2)
    y[100:110] = np.nan
    y[200] = np.inf
    out = load_audio(_wav_bytes(y, subtype="FLOAT"))
    assert np.isfinite(out).all() and out[100] == 0.0


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty input"):
        load_audio(empty)


def test_trim_silence_removes_quiet_ends():
    sr = SAMPLE_RATE
    y = np.concatenate([np.zeros(sr // 2), tone(1.0), 1e-5 * np.ones(sr // 2)]).astype(np.float32)
    t = trim_silence(y)
    assert abs(len(t) - sr) < 0.05 * sr
    assert np.abs(t[:480]).max() > 0.01  # starts within a frame of the onset


def test_trim_silence_keeps_all_silent_clip():
    y = np.zeros(8000, dtype=np.float32)
    assert len(trim_silence(y)) == 8000


def test_pad_or_trim():
    y = np.arange(10, dtype=np.float32)
    assert np.array_equal(pad_or_trim(y, 4), y[:4])
    assert np.array_equal(pad_or_trim(y, 4, mode="center"), y[3:7])
    padded = pad_or_trim(y, 15)
    assert len(padded) == 15 and padded[10:].sum() == 0 and padded.dtype == np.float32
    with pytest.raises(ValueError, match="mode"):
        pad_or_trim(y, 4, mode="end")
    with pytest.raises(ValueError, match="positive"):
        pad_or_trim(y, 0)


def test_prepare_clip_is_fixed_length():
    y = np.concatenate([np.zeros(8000), tone(5.0)]).astype(np.float32)
    assert prepare_clip(y).shape == (N_SAMPLES,)
