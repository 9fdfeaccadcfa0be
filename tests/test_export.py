"""ONNX export of a tiny bundle trained in the test: validity, parity with PyTorch, int8, metadata."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from ser.audio import load_audio
from ser.ensemble import bundle_features, load_bundle, predict_bundle
from ser.export.onnx_export import FILES, PARITY_TOL, ExportError, export_bundle, model_metadata
from ser.runtime import ModelError, load_model, read_metadata

from tiny_onnx import make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here uses the trained tiny study (about a minute, once)


@pytest.fixture(scope="module")
def exported(study, ens):
    out = study / "onnx"
    report = export_bundle(study / "ens" / "bundle", out, quantize="both", corpus="synthetic",
                           data=study / "syn", cache_dir=study / "fc", calibration_clips=40, progress=False)
    return out, report


@pytest.fixture(scope="module")
def test_split(study):
    """The bundle's test clips (manifest rows) and their raw features."""
    from ser.corpora import load_manifest
    from ser.splits import speaker_keys

    _, meta = load_bundle(study / "ens" / "bundle")
    m = load_manifest("synthetic", study / "syn")
    test = m[speaker_keys(m).isin(meta["speakers"]["test"])]  # the split records corpus/speaker
    return test, bundle_features(meta, test, cache_dir=study / "fc")


def test_export_writes_valid_models_and_report(study, exported):
    out, report = exported
    for kind, name in FILES.items():
        assert (out / name).is_file() and report["files"][kind] == str(out / name)
        onnx.checker.check_model(onnx.load(str(out / name)))
    _, meta = load_bundle(study / "ens" / "bundle")
    n_train = sum(f"synthetic/{p.parent.name.split('_')[-1]}" in meta["speakers"]["train"]
                  for p in (study / "syn").rglob("*.wav"))
    assert report["serve"] == "int8_static" and report["calibration"]["clips"] == min(40, n_train)
    assert json.loads((out / "export.json").read_text())["parity"] == report["parity"]
    # int8 is about 4x smaller than fp32
    assert report["sizes_mb"]["fp32"] / report["sizes_mb"]["int8_static"] > 3.0
    graph = onnx.load(str(out / FILES["int8_static"])).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 20, "static int8 should be QDQ"
    assert any(n.op_type == "ConvInteger" or n.op_type == "DynamicQuantizeLinear"
               for n in onnx.load(str(out / FILES["int8_dynamic"])).graph.node)


def test_fp32_parity_with_pytorch_on_test_speakers(study, exported, test_split):
    out, report = exported
    assert report["parity"]["max_abs_diff"] <= PARITY_TOL and report["parity"]["argmax_agreement"] == 1.0
    _, feats = test_split
    torch_p = predict_bundle(study / "ens" / "bundle", feats)
    onnx_p = load_model(out / FILES["fp32"]).run(feats)
    assert onnx_p.shape == torch_p.shape and np.abs(onnx_p - torch_p).max() <= PARITY_TOL
    np.testing.assert_allclose(onnx_p.sum(1), 1.0, atol=1e-5)
    assert (onnx_p.argmax(1) == torch_p.argmax(1)).all()


def test_dynamic_batch_and_time_axes(study, exported, test_split):
    out, _ = exported
    _, feats = test_split
    short = {k: v[:3, :, :20] for k, v in feats.items()}  # another batch size and frame count than exported
    p = load_model(out / FILES["fp32"]).run(short)
    np.testing.assert_allclose(p, predict_bundle(study / "ens" / "bundle", short), atol=PARITY_TOL)


def test_int8_runs_and_agrees_with_fp32_on_most_inputs(exported, test_split):
    out, report = exported
    _, feats = test_split
    fp32 = load_model(out / FILES["fp32"]).run(feats)
    for kind in ("int8_static", "int8_dynamic"):
        q = load_model(out / FILES[kind]).run(feats)
        assert np.isfinite(q).all() and np.allclose(q.sum(1), 1.0, atol=1e-4)
        assert np.mean(q.argmax(1) == fp32.argmax(1)) >= 0.8, kind
        assert np.abs(q - fp32).max() < 0.25, kind
        assert report["int8_vs_fp32"][kind]["argmax_agreement"] >= 0.8


def test_metadata_round_trip(study, exported):
    out, _ = exported
    _, meta = load_bundle(study / "ens" / "bundle")
    for kind, precision in (("fp32", "fp32"), ("int8_static", "int8-static"), ("int8_dynamic", "int8-dynamic")):
        doc = read_metadata(out / FILES[kind])
        want = model_metadata(meta, precision)
        for key in ("labels", "members", "clip", "weights", "temperature", "precision", "speakers"):
            assert doc[key] == want[key], key
        model = load_model(out / FILES[kind])
        assert model.labels == meta["labels"] and [m.name for m in model.members] == [m["name"] for m in
                                                                                       meta["members"]]
        assert model.clip.seconds == 1.0 and model.meta["precision"] == precision


def test_runtime_from_audio_matches_pytorch_on_cached_features(study, exported, test_split):
    """File path, bytes and array give the same answer, and it is the PyTorch bundle's on the
    training pipeline's (cached) features of the same clip."""
    out, _ = exported
    test, feats = test_split
    model = load_model(out / FILES["fp32"])
    path = test["path"].iloc[0]
    a = model.predict(path)
    b = model.predict(Path(path).read_bytes())
    c = model.predict(load_audio(path), sr=16000)
    assert a == b == c
    torch_p = predict_bundle(study / "ens" / "bundle", {k: v[:1] for k, v in feats.items()})[0]
    got = np.array([a["probabilities"][lab] for lab in model.labels])
    np.testing.assert_allclose(got, torch_p, atol=1e-4)
    assert a["emotion"] == model.labels[int(torch_p.argmax())] and a["model"] == "model"


def test_static_needs_the_corpus_and_bad_arguments_are_refused(study, ens, tmp_path):
    bundle = study / "ens" / "bundle"
    with pytest.raises(ExportError, match="--corpus and --data"):
        export_bundle(bundle, tmp_path / "a", quantize="static", progress=False)
    with pytest.raises(ExportError, match="both --corpus and --data"):
        export_bundle(bundle, tmp_path / "b", quantize="none", corpus="synthetic", progress=False)
    with pytest.raises(ExportError, match="quantize="):
        export_bundle(bundle, tmp_path / "c", quantize="int4", progress=False)
    other = tmp_path / "other.csv"
    pd.DataFrame({"path": ["x.wav"], "corpus": ["c"], "speaker": ["zz"], "emotion": ["sad"],
                  "duration": [1.0]}).to_csv(other, index=False)
    with pytest.raises(ExportError, match="training speakers"):
        export_bundle(bundle, tmp_path / "d", quantize="none", corpus="manifest", data=other, progress=False)


def test_export_without_corpus_checks_parity_on_random_inputs(study, ens, tmp_path):
    report = export_bundle(study / "ens" / "bundle", tmp_path / "m", quantize="none", progress=False)
    assert set(report["files"]) == {"fp32"} and report["serve"] == "fp32"
    assert report["parity"]["max_abs_diff"] <= PARITY_TOL and "random" in report["parity"]["inputs"]


def test_bad_model_files_give_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load_model(junk)
    with pytest.raises(ModelError, match="not an ONNX model"):
        read_metadata(junk)
    with pytest.raises(ModelError, match="without ser metadata"):
        load_model(make_tiny_model(tmp_path / "bare.onnx", metadata={}))
    with pytest.raises(ModelError, match="malformed ser metadata"):
        load_model(make_tiny_model(tmp_path / "odd.onnx", metadata={"format": "something-else"}))


def _poisoned_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with a `torch` that fails on import: whatever imports torch fails."""
    fake = tmp_path / "poison" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch imported on the torch-free path')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "poison"), str(ROOT / "src")])}


def test_inference_path_imports_no_torch(exported, test_split, tmp_path):
    out, _ = exported
    test, _ = test_split
    env = _poisoned_env(tmp_path)
    model, audio = str(out / FILES["int8_static"]), test["path"].iloc[0]
    script = subprocess.run([sys.executable, str(ROOT / "export_scripts" / "test_onnx_model.py"), "--model_path",
                             model, "--audio_path", audio], capture_output=True, text=True, env=env, timeout=120)
    assert script.returncode == 0, script.stderr
    answer = json.loads(script.stdout)
    assert answer["emotion"] in answer["probabilities"] and answer["file"] == audio
    cli = subprocess.run([sys.executable, "-m", "ser.cli", "predict", "--model", model, audio], capture_output=True,
                         text=True, env=env, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["probabilities"] == answer["probabilities"]
    # and the poison works: the export itself does need torch
    bad = subprocess.run([sys.executable, "-c", "import ser.export.onnx_export"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode != 0 and "torch-free path" in bad.stderr


def test_cli_export_and_quantization_compare(study, exported, tmp_path):
    from ser.cli import main

    out, _ = exported
    rc = subprocess.run([sys.executable, str(ROOT / "export_scripts" / "test_quantization.py"), "--compare",
                         "--model_path", str(study / "ens" / "bundle"), "--output_dir", str(out), "--corpus",
                         "synthetic", "--data", str(study / "syn"), "--cache", str(study / "fc"), "--repeats", "2",
                         "--markdown", str(tmp_path / "q.md")], capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    table = (tmp_path / "q.md").read_text()
    for name in ("PyTorch fp32", "ONNX fp32", "ONNX int8 static", "ONNX int8 dynamic"):
        assert f"| {name}" in table
    rows = json.loads((out / "quantization.json").read_text())
    assert rows[1]["argmax_agreement"] == 1.0 and rows[1]["max_abs_diff"] <= PARITY_TOL
    assert main(["export", "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), "--quantize",
                 "none"]) == 2
