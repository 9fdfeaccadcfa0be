"""ser.audio: decoding every promised format, mixing, resampling, and every AudioError."""
from __future__ import annotations

import io
import os
import subprocess
import sys

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


# ----------------------------------------------------------------------------- decoding within a budget
def _one_shot(data: bytes, sr: int = SAMPLE_RATE) -> np.ndarray:
    """What load_audio did before it streamed: the whole file decoded, then mixed and resampled."""
    import soxr

    y, file_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    y = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
    y = np.where(np.isfinite(y), y, np.float32(0.0))
    return soxr.resample(y, file_sr, sr, quality="HQ") if file_sr != sr else y


def _encoded(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,sr,channels,seconds", [("WAV", 16000, 1, 3), ("WAV", 44100, 2, 3), ("OGG", 22050, 1, 2),
                                                     ("MP3", 44100, 2, 3), ("FLAC", 48000, 8, 12),
                                                     ("FLAC", 44100, 2, 40)])
def test_streamed_decoding_is_identical_to_one_shot(fmt, sr, channels, seconds):
    # 48 kHz x 8 channels x 12 s and 44.1 kHz stereo x 40 s span several 4 MB blocks
    y = (0.3 * np.random.default_rng(sr + channels).standard_normal((int(sr * seconds), channels))).astype(np.float32)
    data = _encoded(y, sr, fmt)
    assert np.array_equal(load_audio(data), _one_shot(data))


def _unknown_length(data: bytes) -> bytes:
    """A FLAC whose STREAMINFO says "length unknown" (total samples 0), as streaming encoders write."""
    out = bytearray(data)
    bits = int.from_bytes(out[18:26], "big") & ~((1 << 36) - 1)
    out[18:26] = bits.to_bytes(8, "big")
    return bytes(out)


def test_unknown_length_stream_decodes_up_to_the_limit():
    from ser.audio import AudioTooLongError, DecodeLimits

    y = tone(10.0)
    data = _unknown_length(_encoded(y, 16000, "FLAC"))
    assert sf.info(io.BytesIO(data)).frames >= 2 ** 62  # libsndfile: length unknown
    assert np.array_equal(load_audio(data), load_audio(_encoded(y, 16000, "FLAC")))
    with pytest.raises(AudioTooLongError, match="longer than 5 s") as e:
        load_audio(data, limits=DecodeLimits(max_seconds=5))
    assert 5 < e.value.seconds < 7  # it stopped soon after the limit


def test_limits_are_checked_from_the_header():
    from ser.audio import AudioTooLongError, DecodeLimits

    with pytest.raises(AudioTooLongError, match="declares 20.0 s"):
        load_audio(_encoded(np.zeros(20 * 8000, np.int16), 8000, "FLAC"), limits=DecodeLimits(max_seconds=10))
    with pytest.raises(AudioTooLongError, match="8-channel audio at 192000 Hz"):  # more work than 8 ch x 96 kHz
        load_audio(_encoded(np.zeros((192000 * 2, 8), np.int16), 192000, "FLAC"), limits=DecodeLimits(max_seconds=1.5))
    with pytest.raises(AudioError, match="65 channels"):
        load_audio(_encoded(np.zeros((160, 65), np.int16), 16000))
    wav = bytearray(_encoded(np.zeros(160, np.int16), 16000))
    wav[24:28] = (2_000_000).to_bytes(4, "little")  # the header's sample rate
    with pytest.raises(AudioError, match="2000000 Hz"):
        load_audio(bytes(wav))


def test_nonfinite_and_out_of_range_samples():
    with pytest.raises(AudioError, match="16000 of 16001 samples are NaN"):
        load_audio(_encoded(np.r_[np.full(16000, np.nan), [0.5]].astype(np.float32), 16000, subtype="FLOAT"))
    with pytest.raises(AudioError, match="far beyond full scale"):
        load_audio(_encoded(np.full(1600, 1e30, np.float32), 16000, subtype="FLOAT"))
    hot = load_audio(_encoded(np.full(1600, 1.5, np.float32), 16000, subtype="FLOAT"))  # a little over: kept
    assert hot.max() == pytest.approx(1.5)


@pytest.mark.parametrize("data,reason", [
    (b"hello, plainly not audio" * 20, "no WAV/FLAC/OGG/MP3 header found"),
    (np.zeros(4000, np.int16).tobytes(), "no WAV/FLAC/OGG/MP3 header found"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40), "Short 'fmt ' chunk"),
])
def test_decoder_messages_are_readable(data, reason):
    with pytest.raises(AudioError) as e:
        load_audio(data)
    assert reason in str(e.value) and "BytesIO" not in str(e.value) and "Error opening" not in str(e.value)


def test_truncated_flac_is_refused_with_a_reason():
    data = _encoded(tone(2.0), 16000, "FLAC")
    with pytest.raises(AudioError, match="cut short or damaged"):
        load_audio(data[: len(data) // 2])


def test_non_regular_files_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(fifo)


@pytest.mark.slow
def test_multichannel_bomb_decodes_in_bounded_memory(tmp_path):
    """8 channels at 96 kHz for 600 s (~0.5 MB of FLAC): the one-shot decoder needed ~2 GB."""
    path = tmp_path / "bomb.flac"
    with sf.SoundFile(str(path), "w", 96000, 8, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((96000 * 20, 8), np.int16)
        for _ in range(30):
            f.write(block)
    # VmHWM is this process's own peak; ru_maxrss would carry the forking test runner's over exec
    code = ("import re; from ser.audio import load_audio, DecodeLimits; "
            f"y = load_audio({str(path)!r}, limits=DecodeLimits(max_seconds=600)); "
            "print(len(y), int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    samples, peak_mb = map(int, out.stdout.split())
    assert samples == 600 * SAMPLE_RATE and peak_mb < 400, peak_mb


# ----------------------------------------------------------------------------- voice activity (ser.vad)
def _non_speech(n: int = 48000) -> dict[str, np.ndarray]:
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    t = np.arange(n) / 16000
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)

    def at(x: np.ndarray, db: float) -> np.ndarray:
        return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (db / 20)).astype(np.float32)

    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 6))
    cases = {"zeros": np.zeros(n, np.float32), "one sample": np.r_[np.zeros(n - 1), [0.9]].astype(np.float32),
             "dither": (rng.integers(-1, 2, n) / 32768).astype(np.float32), "quiet hum": at(hum, -65),
             "loud hum": at(hum, -20)}
    for db in (-60, -40, -20, -6):
        cases[f"white {db} dB"] = at(white, db)
        cases[f"pink {db} dB"] = at(pink, db)
        cases[f"brown {db} dB"] = at(lfilter([1.0], [1.0, -0.995], white), db)
    return cases


@pytest.mark.parametrize("case", list(_non_speech()))
def test_vad_finds_no_speech_in_silence_noise_and_hum(case):
    from ser.vad import detect_speech

    activity = detect_speech(_non_speech()[case])
    assert not activity.is_speech and activity.speech_s < 0.1, activity.speech_s


def test_vad_finds_voiced_sound_and_locates_it():
    from ser.vad import detect_speech

    y = np.concatenate([np.zeros(32000), tone(1.0, freq=140.0), np.zeros(32000)]).astype(np.float32)
    activity = detect_speech(y)
    assert activity.is_speech and activity.speech_s == pytest.approx(1.0, abs=0.1)
    assert activity.window_has_speech(32000, 48000) and not activity.window_has_speech(0, 30000)
    assert activity.seconds_between(0, len(y)) == pytest.approx(activity.speech_s, abs=0.02)
    # NaN counts as silence, never as sound
    assert detect_speech(np.full(48000, np.nan, np.float32)).speech_s == 0.0


@pytest.mark.slow
@pytest.mark.shared_data
def test_vad_finds_speech_in_every_corpus_utterance(shared_data):
    from ser.vad import detect_speech

    files = sorted((shared_data / "ravdess").glob("*/*.flac")) + sorted((shared_data / "emodb").glob("*.flac"))
    assert len(files) > 1000
    missed = [f.name for f in files if not detect_speech(load_audio(f)).is_speech]
    assert missed == [], f"{len(missed)} of {len(files)} utterances missed: {missed[:10]}"
