"""The torch-free runtime on a tiny hand-built model: answers, windows, silence, errors, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from ser.audio import AudioError
from ser.runtime import EmotionModel, load_model
from ser.audio import prepare_clip

from conftest import tone
from tiny_onnx import LABELS, make_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx"))


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = tone(seconds, sr, freq=180.0) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(int(seconds * sr)) / sr))
    return (y + rng.normal(0, 0.01, y.shape)).astype(np.float32)


def test_predict_answer_shape(model):
    a = model.predict(speech_like(2.0), sr=16000)
    assert set(a) == {"emotion", "probabilities", "duration_s", "model", "speech_s"} and a["speech_s"] > 0
    assert list(a["probabilities"]) == LABELS and a["emotion"] == max(a["probabilities"], key=a["probabilities"].get)
    assert sum(a["probabilities"].values()) == pytest.approx(1.0, abs=1e-6) and a["duration_s"] == 2.0
    assert a["model"] == "tiny"


def test_short_audio_is_the_training_clip(model):
    """Up to the single-clip limit, the answer is the model on exactly the training preparation."""
    y = speech_like(4.0)
    want = model.run(model.features([prepare_clip(y, model.clip)]))[0]
    got = model.predict(y)
    np.testing.assert_allclose([got["probabilities"][k] for k in LABELS], want, rtol=1e-6)


def test_file_bytes_array_and_resampled_inputs_agree(model, tmp_path):
    y = speech_like(2.0)
    path = tmp_path / "a.wav"
    sf.write(str(path), y, 16000, subtype="FLOAT")
    a, b, c = model.predict(path), model.predict(path.read_bytes()), model.predict(y)
    assert a == b == c
    stereo = tmp_path / "b.flac"
    sf.write(str(stereo), np.stack([y, y], axis=1), 16000)
    assert model.predict(stereo)["emotion"] == a["emotion"]
    import soxr

    y44 = soxr.resample(y, 16000, 44100)
    p44 = model.predict(y44, sr=44100)["probabilities"]
    assert max(abs(p44[k] - a["probabilities"][k]) for k in LABELS) < 0.02


def test_bad_arrays_are_refused(model):
    with pytest.raises(AudioError, match="NaN"):
        model.predict(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(AudioError, match="expected 1-D"):
        model.predict(np.zeros((2, 2, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="empty input"):
        model.predict(b"")


def test_timeline_covers_the_audio_and_skips_silence(model):
    sr = 16000
    y = np.concatenate([speech_like(6.0, seed=1), np.zeros(6 * sr, np.float32), speech_like(4.5, seed=2)])
    tl = model.timeline(y, window=3.0, hop=1.5)
    seg = tl["segments"]
    starts = [s["start"] for s in seg]
    assert starts == sorted(starts) and seg[0]["start"] == 0.0 and seg[-1]["end"] == pytest.approx(16.5)
    assert all(s["end"] - s["start"] == pytest.approx(3.0) for s in seg)
    # windows wholly inside the 6-12 s silence are skipped; none of the kept ones is silent
    assert tl["silent_windows"] >= 2
    assert not any(6.0 <= s["start"] and s["end"] <= 12.0 for s in seg)
    assert tl["window_s"] == 3.0 and tl["hop_s"] == 1.5 and tl["duration_s"] == 16.5
    mean = np.mean([[s["probabilities"][k] for k in LABELS] for s in seg], axis=0)
    np.testing.assert_allclose([tl["probabilities"][k] for k in LABELS], mean, rtol=1e-9)
    for s in seg:
        assert sum(s["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_long_audio_prediction_averages_windows(model):
    y = speech_like(12.0)
    a = model.predict(y)
    tl = model.timeline(y)
    assert a["windows"] == len(tl["segments"]) == 7  # 0, 1.5, ..., 9.0 s
    assert a["probabilities"] == tl["probabilities"] and a["emotion"] == tl["emotion"]


def test_short_and_silent_timelines(model):
    tl = model.timeline(speech_like(1.0))
    assert len(tl["segments"]) == 1 and tl["segments"][0]["end"] == 1.0
    silent = model.timeline(np.zeros(16000 * 4, np.float32))
    # no speech anywhere: no emotion and no made-up probabilities (they used to be uniform)
    assert silent["segments"] == [] and silent["emotion"] is None and "probabilities" not in silent
    assert silent["speech_s"] == 0.0
    quiet = model.predict(np.zeros(16000 * 3, np.float32))
    assert quiet["emotion"] is None and "probabilities" not in quiet and quiet["speech_s"] == 0.0
    for bad in ({"window": -1}, {"window": 0}, {"hop": 0}):
        with pytest.raises(ValueError, match="window and hop"):
            model.timeline(speech_like(1.0), **bad)


def test_model_with_other_features_and_threads(tmp_path):
    m = EmotionModel(make_tiny_model(tmp_path / "c.onnx", features=("chroma", "tonnetz", "mfcc")), threads=1)
    assert [x.rows for x in m.members] == [12, 6, 40]
    assert m.predict(speech_like(1.0))["emotion"] in LABELS
    m.warmup()


def test_cli_predict_prints_json_per_file_and_reports_bad_ones(tmp_path, capsys):
    from ser.cli import main

    path = make_tiny_model(tmp_path / "tiny.onnx")
    good = tmp_path / "good.wav"
    sf.write(str(good), speech_like(1.0), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    assert main(["predict", "--model", str(path), str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 1 and lines[0]["file"] == str(good) and lines[0]["emotion"] in LABELS
    assert "ser: error:" in err and "bad.wav" in err
    assert main(["predict", "--model", str(path), "--timeline", "--window", "0.5", str(good)]) == 0
    assert len(json.loads(capsys.readouterr().out)["segments"]) == 3  # 0, 0.25, 0.5 s
    assert main(["predict", "--model", str(tmp_path / "none.onnx"), str(good)]) == 2
    assert "no such file" in capsys.readouterr().err
