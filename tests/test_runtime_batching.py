"""Answers that do not depend on the batch, and model inputs computed once.

A tiny hand-built model reads Whisper log-mel on three graph inputs (two with 80 bands, as
two encoders on other weights would, one with 128) plus a feature; its dynamic-int8 twin
(onnxruntime's ``quantize_dynamic``) quantizes activations with one scale per batch, the
way the real exported encoders do. No torch; the whole module runs in about a second.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ser.audio import prepare_clip
from ser.encoders.logmel import log_mel_spectrogram
from ser.features import extract, feature_key, get_config, output_rows
from ser.runtime import METADATA_KEY, OUTPUT, EmotionModel, limit_blas_threads, quantizes_at_run_time
from ser import runtime_inputs

from test_runtime import speech_like
from tiny_onnx import LABELS, make_tiny_model

MELS = {"enc_a@2": 80, "enc_b@4": 80, "enc_c@1": 128}  # graph input -> mel bands
SR = 16000


def make_logmel_model(path, hidden: int = 16, seed: int = 0) -> None:
    """Per log-mel input: frames x W1, ReLU, mean over time, x W2 (the MatMuls dynamic int8
    quantizes); an "rms" feature member beside them; logits summed, softmax."""
    rng = np.random.default_rng(seed)
    nodes, inits, inputs, parts, members = [], [], [], [], []
    for name, n_mels in {**MELS, "rms": output_rows("rms")}.items():
        rows, p = n_mels, name.replace("@", "_")
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", rows, f"frames_{p}"]))
        inits += [numpy_helper.from_array(rng.normal(0, 0.3, (rows, hidden)).astype(np.float32), f"{p}_w1"),
                  numpy_helper.from_array(rng.normal(0, 0.5, (hidden, len(LABELS))).astype(np.float32), f"{p}_w2")]
        nodes += [helper.make_node("Transpose", [name], [f"{p}_t"], perm=[0, 2, 1]),
                  helper.make_node("MatMul", [f"{p}_t", f"{p}_w1"], [f"{p}_h"]),
                  helper.make_node("Relu", [f"{p}_h"], [f"{p}_r"]),
                  helper.make_node("ReduceMean", [f"{p}_r"], [f"{p}_m"], axes=[1], keepdims=0),
                  helper.make_node("MatMul", [f"{p}_m", f"{p}_w2"], [f"{p}_z"])]
        parts.append(f"{p}_z")
        if name == "rms":
            members.append({"name": name, "feature": name, "feature_key": feature_key(name, get_config(name)),
                            "rows": rows, "weight": 0.25})
        else:
            members.append({"name": name, "feature": name, "feature_key": {"name": name, "version": 1},
                            "rows": rows, "weight": 0.25,
                            "input": {"kind": "whisper_logmel", "n_mels": rows, "name": name}})
    nodes += [helper.make_node("Sum", parts, ["logits"]), helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1)]
    graph = helper.make_graph(nodes, "tiny_logmel", inputs, [helper.make_tensor_value_info(
        OUTPUT, TensorProto.FLOAT, ["batch", len(LABELS)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"format": "ser-onnx", "version": 1, "labels": LABELS, "members": members,
            "clip": {"sample_rate": SR, "seconds": 1.0, "trim_top_db": 30.0, "crop": "start"},
            "weights": [m["weight"] for m in members], "temperature": 1.0, "precision": "fp32"}
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(fp32, dynamic int8) of the log-mel model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = tmp_path_factory.mktemp("batching")
    make_logmel_model(root / "model.onnx")
    quantize_dynamic(str(root / "model.onnx"), str(root / "model.dynamic.onnx"), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"])
    return EmotionModel(root / "model.onnx", threads=1), EmotionModel(root / "model.dynamic.onnx", threads=1)


def clips() -> list[np.ndarray]:
    """A speech-like clip and very different company: loud clipped noise, a quiet hum."""
    rng = np.random.default_rng(1)
    loud = np.clip(rng.normal(0, 1.0, SR), -1, 1).astype(np.float32)
    hum = (0.01 * np.sin(2 * np.pi * 50 * np.arange(SR) / SR)).astype(np.float32)
    return [speech_like(1.0), loud, hum, speech_like(1.0, seed=3) * 0.05]


def test_the_model_kind_is_read_from_the_graph(models, tmp_path):
    fp32, dynamic = models
    assert not fp32.per_clip and dynamic.per_clip
    # the dynamic twin kept the fp32 metadata ("precision": "fp32"): the graph decides, not the label
    assert dynamic.meta["precision"] == "fp32" and quantizes_at_run_time(dynamic.path)
    assert not quantizes_at_run_time(make_tiny_model(tmp_path / "tiny.onnx"))


def test_dynamic_int8_answers_do_not_depend_on_the_batch(models):
    fp32, dynamic = models
    ys = clips()
    for model in models:
        alone = np.stack([model.probabilities([y])[0] for y in ys])
        together = model.probabilities(ys)
        reordered = model.probabilities(ys[::-1])[::-1]
        tol = 1e-7 if model.per_clip else 1e-6  # per clip: the very computation; fp32: rows never mix
        np.testing.assert_allclose(together, alone, rtol=0, atol=tol)
        np.testing.assert_allclose(reordered, alone, rtol=0, atol=tol)
    # the check means something: one session call on the batch does move the quiet clips' answers
    feats = dynamic.features(ys)
    batched = dynamic.session.run([OUTPUT], feats)[0]
    single = np.concatenate([dynamic.session.run([OUTPUT], {k: v[i:i + 1] for k, v in feats.items()})[0]
                             for i in range(len(ys))])
    assert np.abs(batched - single).max() > 1e-4
    assert np.abs(dynamic.probabilities(ys) - single).max() == 0.0


def test_timeline_windows_equal_the_windows_alone(models):
    _, dynamic = models
    y = np.concatenate([speech_like(4.0, seed=5) * 0.05, np.clip(speech_like(4.0, seed=6) * 20, -1, 1),
                        speech_like(3.0, seed=7)])
    tl = dynamic.timeline(y, window=1.0, hop=0.25)
    assert len(tl["segments"]) > 16  # more than one batch of windows, mixing quiet and loud ones
    w = SR
    for seg in tl["segments"]:
        s = int(round(seg["start"] * SR))
        alone = dynamic.probabilities([prepare_clip(y[s:s + w], dynamic.clip)])[0]
        np.testing.assert_allclose([seg["probabilities"][k] for k in LABELS], alone, rtol=0, atol=1e-7)


def test_logmel_is_computed_once_per_band_count(models, monkeypatch):
    fp32, _ = models
    ys = [prepare_clip(y, fp32.clip) for y in clips()]
    # before: one log-mel per graph input, each computed on its own
    before = {name: np.stack([log_mel_spectrogram(y, n) for y in ys]) for name, n in MELS.items()}
    before["rms"] = np.stack([extract(y, SR, ["rms"], {"rms": get_config("rms")})["rms"] for y in ys])
    calls = []

    def counted(y, n_mels):
        calls.append(n_mels)
        return log_mel_spectrogram(y, n_mels)

    monkeypatch.setattr(runtime_inputs, "log_mel_spectrogram", counted)
    got = fp32.features(ys)
    assert sorted(got) == sorted(before)
    for name in before:
        assert got[name].dtype == before[name].dtype and np.array_equal(got[name], before[name]), name
    assert sorted(calls) == sorted([80, 128] * len(ys))  # not three per clip


def test_blas_threads_are_capped_for_a_worker():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    was = blas()
    assert was, "numpy has a BLAS library"
    try:
        limit_blas_threads(None)
        assert blas() == was
        limit_blas_threads(1)
        assert blas() == [1] * len(was)
    finally:
        threadpool_limits(limits=max(was), user_api="blas")
