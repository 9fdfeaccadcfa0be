"""Training for robustness (``--condition-aug``), telephone-only models (``--channel``) and
the model stating what it was trained for (metadata, metrics, MLflow params, ``/health``).

Encoder tests use a tiny random Whisper encoder (16 wide, 2 layers) written here and
registered under a test name; no test needs real weights. The end-to-end fixture trains
one ``rms`` member for one epoch on 1 s synthetic clips with a telephone channel and
condition augmentation, bundles and exports it (fp32 only).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_clip
from ser.audio import ClipConfig, load_audio, prepare_clip
from ser.augment import AugmentConfig, waveform_augmentation
from ser.cache import FeatureCache, encoded, encoder_section_keys, load_encoder_states, load_features, section_keys
from ser.cache.corpus import variant_waveform
from ser.cache.encoded_copies import copy_section_keys, load_encoder_copies
from ser.cache.entry import section_key
from ser.encoders import EncoderError, registry
from ser.encoders.weights import WhisperDims
from ser.encoders.whisper import WhisperEncoder
from ser.features import extract, feature_key, get_config
from ser.modelmeta import MetadataError, apply_channel, channel_spec, validate_metadata
from ser.train import TrainConfig, load_data, training_conditions, waveform_chain

CLIP = ClipConfig(seconds=1.0)
DIMS = WhisperDims(n_mels=80, n_ctx=64, n_state=16, n_head=2, n_layer=2)
NAME = "whisper_ctest"
CONDS = ("telephone", "snr10")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with:UserWarning")


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory):
    torch.manual_seed(0)
    enc = WhisperEncoder(DIMS)
    dims = {"n_mels": DIMS.n_mels, "n_vocab": 7, "n_audio_ctx": DIMS.n_ctx, "n_audio_state": DIMS.n_state,
            "n_audio_head": DIMS.n_head, "n_audio_layer": DIMS.n_layer, "n_text_ctx": 4,
            "n_text_state": DIMS.n_state, "n_text_head": DIMS.n_head, "n_text_layer": 1}
    path = tmp_path_factory.mktemp("enc") / "tiny.pt"
    torch.save({"dims": dims, "model_state_dict": {f"encoder.{k}": t.half() for k, t in enc.state_dict().items()}},
               path)
    registry.REGISTRY[NAME] = registry.EncoderSpec(NAME, "a tiny random encoder for tests", DIMS, 1, ())
    try:
        yield path
    finally:
        del registry.REGISTRY[NAME]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    d = tmp_path_factory.mktemp("clips")
    return pd.DataFrame({"path": [str(write_clip(d / f"c{i}.wav", seconds=0.9, freq=150.0 + 60 * i))
                                  for i in range(3)]})


@pytest.fixture
def loads(monkeypatch):
    """Counts encoder loads (both cache modules load through ``encoded.load_encoder``)."""
    calls = {"load": 0}
    real = encoded.get_encoder

    def counting(name, path=None):
        calls["load"] += 1
        return real(name, path)

    monkeypatch.setattr(encoded, "get_encoder", counting)
    return calls


# ---------------------------------------------------------------------------- configs and cache keys


def test_condition_step_is_appended_for_features_and_alone_for_encoders():
    aug = AugmentConfig(conditions=CONDS, copies=2)
    steps = [s["name"] for s in waveform_chain(TrainConfig(feature="mel", augment=aug))[0]["chain"]["steps"]]
    assert steps == ["time_shift", "pitch_shift", "colored_noise", "lowpass", "highpass", "gain", "condition"]
    chain, copies = waveform_chain(TrainConfig(feature="whisper_base@5", augment=aug))
    assert copies == 2 and chain["chain"]["steps"] == [{"name": "condition", "p": 1.0, "conditions": list(CONDS)}]
    assert waveform_chain(TrainConfig(feature="whisper_base@5")) == (None, 0)  # no conditions: no encoder copies
    assert training_conditions(TrainConfig(augment=aug, channel="telephone")) == {
        "condition_aug": list(CONDS), "channel": "telephone", "copies": 2}
    assert training_conditions(TrainConfig(augment=AugmentConfig(enabled=False, conditions=CONDS)))["condition_aug"] == []
    assert AugmentConfig(conditions="all").conditions[:2] == ("telephone", "telephone_alaw")
    assert "babble10" not in AugmentConfig(conditions="all").conditions


def test_feature_keys_change_with_conditions_and_channel_only_where_they_should():
    cfgs = {"mel": get_config("mel")}
    plain = waveform_augmentation(AugmentConfig()).to_dict()
    cond = waveform_augmentation(AugmentConfig(conditions=CONDS)).to_dict()
    k_plain, k_cond = section_keys(["mel"], cfgs, CLIP, plain, 2), section_keys(["mel"], cfgs, CLIP, cond, 2)
    # the clean clip's key is the one it always had: existing caches stay valid
    assert k_plain[("mel", 0)] == k_cond[("mel", 0)] == section_key(feature_key("mel", cfgs["mel"]), CLIP)
    assert k_plain[("mel", 1)] != k_cond[("mel", 1)] and k_cond[("mel", 1)] != k_cond[("mel", 2)]
    tel = section_keys(["mel"], cfgs, CLIP, cond, 2, channel=channel_spec("telephone"))
    gsm = section_keys(["mel"], cfgs, CLIP, cond, 2, channel=channel_spec("gsm"))
    assert len({*tel.values(), *gsm.values(), *k_cond.values()}) == 9  # a channel'd clip is another clip


def test_encoder_keys_change_with_channel_and_copies(tiny_pt):
    chain = waveform_augmentation(AugmentConfig(conditions=CONDS), chain=False).to_dict()
    other = waveform_augmentation(AugmentConfig(conditions=("gsm",)), chain=False).to_dict()
    clean = encoder_section_keys(NAME, [1], "sequence", CLIP, tiny_pt)[1]
    tel = encoder_section_keys(NAME, [1], "sequence", CLIP, tiny_pt, channel=channel_spec("telephone"))[1]
    copies = copy_section_keys(NAME, 1, CLIP, chain, 2, tiny_pt)
    keys = [clean, tel, *copies.values(), *copy_section_keys(NAME, 1, CLIP, other, 2, tiny_pt).values(),
            *copy_section_keys(NAME, 1, CLIP, chain, 2, tiny_pt, channel=channel_spec("telephone")).values()]
    assert len(set(keys)) == len(keys) == 8


# ---------------------------------------------------------------------------- encoder states of copies


def test_encoder_copies_are_cached_and_are_the_encoder_on_the_augmented_waveform(tiny_pt, clips, loads, tmp_path):
    chain = waveform_augmentation(AugmentConfig(conditions=CONDS, seed=3), chain=False).to_dict()
    fc = tmp_path / "fc"
    X = load_encoder_copies(clips, NAME, 1, CLIP, fc, augment=chain, copies=2, path=tiny_pt, batch_size=4,
                            progress=False)
    assert X.shape == (3, 2, DIMS.n_state, 50) and loads["load"] == 1
    again = load_encoder_copies(clips, NAME, 1, CLIP, fc, augment=chain, copies=2, path=tiny_pt, progress=False)
    assert loads["load"] == 1  # the second read encodes nothing
    np.testing.assert_array_equal(again, X)
    clean = load_encoder_states(clips, NAME, 1, CLIP, fc, path=tiny_pt, progress=False)
    model = registry.get_encoder(NAME, tiny_pt)
    cache = FeatureCache(fc)
    rms = load_features(clips, ["rms"], clip=CLIP, cache_dir=fc, augment=chain, copies=2, progress=False)["rms"]
    for i, p in enumerate(clips["path"]):
        y = prepare_clip(load_audio(p, 16000), CLIP)
        for k in (1, 2):
            w = variant_waveform(y, CLIP, chain, cache.audio_hash(p), k)
            assert not np.allclose(w, y)  # the condition was applied
            _, seqs = encoded.encode_batch(model, w[None], [], [1])
            np.testing.assert_allclose(X[i, k - 1], seqs[1][0], atol=1e-5)
            # the features' copy k of the same chain is made from the same audio
            np.testing.assert_allclose(rms[i, k], extract(w, 16000, ["rms"])["rms"], atol=1e-6)
        assert not np.allclose(X[i, 0], clean[i], atol=1e-3)


def test_encoder_copies_refuse_a_clip_rate_the_encoder_cannot_hear(tiny_pt, clips, loads, tmp_path):
    chain = waveform_augmentation(AugmentConfig(conditions=CONDS), chain=False).to_dict()
    with pytest.raises(EncoderError, match="16000 Hz"):
        load_encoder_copies(clips, NAME, 1, ClipConfig(sample_rate=8000, seconds=1.0), tmp_path / "fc",
                            augment=chain, copies=1, path=tiny_pt, progress=False)
    assert loads["load"] == 0  # refused before any weights were read


def test_channel_reaches_clean_states_and_copies(tiny_pt, clips, loads, tmp_path):
    chain = waveform_augmentation(AugmentConfig(conditions=("snr10",)), chain=False).to_dict()
    tel = channel_spec("telephone")
    fc = tmp_path / "fc"
    plain = load_encoder_states(clips, NAME, 1, CLIP, fc, path=tiny_pt, progress=False)
    states = load_encoder_states(clips, NAME, 1, CLIP, fc, path=tiny_pt, progress=False, channel=tel)
    model = registry.get_encoder(NAME, tiny_pt)
    y = prepare_clip(load_audio(clips["path"][0], 16000), CLIP)
    _, seqs = encoded.encode_batch(model, apply_channel(y, 16000, tel)[None], [], [1])
    np.testing.assert_allclose(states[0], seqs[1][0], atol=1e-5)
    assert not np.allclose(states, plain, atol=1e-3)
    X = load_encoder_copies(clips, NAME, 1, CLIP, fc, augment=chain, copies=1, path=tiny_pt, progress=False,
                            channel=tel)
    h = FeatureCache(fc).audio_hash(clips["path"][0])
    w = variant_waveform(y, CLIP, chain, h, 1, tel)
    np.testing.assert_array_equal(w, apply_channel(variant_waveform(y, CLIP, chain, h, 1), 16000, tel))
    _, seqs = encoded.encode_batch(model, w[None], [], [1])
    np.testing.assert_allclose(X[0, 0], seqs[1][0], atol=1e-5)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from ser.corpora import generate_synthetic, load_manifest
    from ser.splits import speaker_split

    root = generate_synthetic(tmp_path_factory.mktemp("syn") / "c", speakers=6, per_emotion=1, progress=False)
    return root, speaker_split(load_manifest("synthetic", root), val=0.2, test=0.2, seed=0)


def test_load_data_gives_encoder_members_their_copies(tiny_pt, split, tmp_path):
    _, manifest = split
    cfg = TrainConfig(feature=f"{NAME}@1", encoder_path=str(tiny_pt), clip=CLIP,
                      augment=AugmentConfig(conditions=CONDS, copies=2))
    data = load_data(manifest, cfg, tmp_path / "fc", progress=False)
    n_train = int(data.train.sum())
    assert data.x_train.shape == (n_train, 3, DIMS.n_state, 50)
    np.testing.assert_array_equal(data.x_train[:, 0], data.x[data.train])  # variant 0: the clean states
    assert not np.allclose(data.x_train[:, 1], data.x_train[:, 0], atol=1e-3)
    assert data.augment["waveform"]["chain"]["steps"][0]["name"] == "condition" and data.augment["copies"] == 2


# ---------------------------------------------------------------------------- a run, its bundle and model


class RecordingTracker:
    """Stands in for ser.tracking.Tracker: keeps the params a run logs."""

    params: list[dict] = []

    def __init__(self, *args, **kwargs) -> None:
        pass

    def log_params(self, params):
        RecordingTracker.params.append(params)

    def log_metrics(self, *args, **kwargs):
        pass

    def finish(self, *args, **kwargs):
        pass


@pytest.fixture(scope="module")
def exported(split, tmp_path_factory):
    """One epoch of rms and zcr with --channel telephone --condition-aug telephone,snr10
    --aug-copies 1, then their ensemble and its fp32 export."""
    from ser.ensemble import fit_ensemble
    from ser.export.onnx_export import export_bundle
    from ser.study import run_study

    data_dir, manifest = split
    root = tmp_path_factory.mktemp("tel")
    cfg = TrainConfig(epochs=1, patience=1, clip=CLIP, n_boot=10, channel="telephone",
                      augment=AugmentConfig(conditions=CONDS, copies=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ser.train.Tracker", RecordingTracker)
        RecordingTracker.params = []
        run_study(manifest.drop(columns="split"), "rms,zcr", cfg, root / "study", val=0.2, test=0.2,
                  cache_dir=root / "fc", tracking=False, progress=False, baseline=False)
    fit_ensemble(root / "study", root / "ens", top=2, trials=4, seed=0, tracking=False, progress=False, n_boot=10)
    export_bundle(root / "ens" / "bundle", root / "onnx", quantize="none", corpus="synthetic", data=data_dir,
                  cache_dir=root / "fc", progress=False)
    return root, list(RecordingTracker.params)


WANT = {"condition_aug": list(CONDS), "channel": "telephone", "copies": 1}


def test_run_records_conditions_in_metrics_params_and_checkpoint(exported):
    from ser.train import TrainResult

    root, params = exported
    run = root / "study" / "runs" / "rms"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training_conditions"] == WANT
    assert TrainResult.from_dict(metrics).training_conditions == WANT
    old = {k: v for k, v in metrics.items() if k != "training_conditions"}  # a metrics.json from before
    assert TrainResult.from_dict(old).training_conditions is None
    assert [p["feature"] for p in params] == ["rms", "zcr"]
    for logged in params:
        assert logged["training_conditions"] == WANT and logged["channel"] == "telephone"
        assert list(logged["augment"]["conditions"]) == list(CONDS)
    meta = json.loads((run / "model.json").read_text())
    assert meta["channel"] == channel_spec("telephone") and meta["training_conditions"] == WANT


def test_bundle_and_exported_metadata_state_the_conditions(exported):
    from ser.runtime import read_metadata

    root, _ = exported
    bundle = json.loads((root / "ens" / "bundle" / "bundle.json").read_text())
    doc = read_metadata(root / "onnx" / "model.onnx")
    for meta in (bundle, doc):
        assert meta["channel"] == channel_spec("telephone")
        assert meta["training_conditions"] == {"channel": "telephone", "condition_aug": list(CONDS),
                                               "members": {"rms": WANT, "zcr": WANT}}
    assert bundle["members"][0]["channel"] == channel_spec("telephone")


def test_runtime_hears_the_channel_as_training_did(exported, split):
    from ser.runtime import load_model

    root, _ = exported
    _, manifest = split
    model = load_model(root / "onnx" / "model.onnx")
    assert model.channel.name == "telephone"
    rows = manifest[manifest["split"] == "test"].head(3)
    prepared = [prepare_clip(load_audio(p, 16000), model.clip) for p in rows["path"]]
    runtime = model.features(prepared)["rms"]
    training = load_features(rows, ["rms"], clip=CLIP, cache_dir=root / "fc", progress=False,
                             channel=channel_spec("telephone"))["rms"]
    np.testing.assert_allclose(runtime, training, atol=1e-6)
    plain = load_features(rows, ["rms"], clip=CLIP, cache_dir=root / "fc", progress=False)["rms"]
    assert not np.allclose(runtime, plain, atol=1e-4)  # the channel really changes what the model hears
    assert model.predict(rows["path"].iloc[0])["emotion"] in model.labels


def test_health_and_labels_show_what_the_model_was_trained_for(exported):
    from fastapi.testclient import TestClient

    from ser.serve import create_app

    root, _ = exported
    with TestClient(create_app(root / "onnx" / "model.onnx", threads=1)) as client:
        health = client.get("/health").json()
        labels = client.get("/labels").json()
    want = {"channel": "telephone", "condition_aug": list(CONDS), "members": {"rms": WANT, "zcr": WANT}}
    assert health["trained_for"] == want and labels["metadata"]["trained_for"] == want


def test_metadata_conditions_are_optional_and_checked():
    doc = {"labels": ["a", "b"], "members": [{"name": "mel", "feature": "mel", "feature_key": {}, "rows": 64}],
           "clip": {"sample_rate": 16000, "seconds": 3.0}, "weights": [1.0], "temperature": 1.0}
    validate_metadata(doc)  # a model exported before the fields existed
    tel = channel_spec("telephone")
    validate_metadata({**doc, "channel": tel, "training_conditions": {"channel": "telephone", "condition_aug": []}})
    for bad, field in (({"channel": "telephone"}, "'channel'"),
                       ({"training_conditions": {"condition_aug": "gsm"}}, "'training_conditions.condition_aug'"),
                       ({"channel": tel, "training_conditions": {"channel": "gsm"}}, "'training_conditions.channel'")):
        with pytest.raises(MetadataError, match=field):
            validate_metadata({**doc, **bad})


def test_bundle_refuses_members_on_different_channels():
    from ser.ensemble.bundle import BundleError, bundle_conditions

    with pytest.raises(BundleError, match="different channels.*mel: telephone, mfcc: none"):
        bundle_conditions([{"name": "mel", "channel": channel_spec("telephone")}, {"name": "mfcc", "channel": None}])


# ---------------------------------------------------------------------------- command line


@pytest.mark.parametrize("command", ["train", "compare", "sweep"])
def test_cli_flags_reach_the_config(command):
    from ser.cli import _train_config, build_parser

    extra = {"train": ["--feature", "mel"], "compare": ["--out", "x"], "sweep": ["--grid", "{}", "--out", "x"]}
    args = build_parser().parse_args([command, "--corpus", "synthetic", "--data", "d", *extra[command],
                                      "--condition-aug", "telephone,gsm", "--channel", "telephone"])
    assert args.condition_aug == "telephone,gsm" and args.channel == "telephone"
    if command != "sweep":
        cfg = _train_config(args)
        assert cfg.augment.conditions == ("telephone", "gsm") and cfg.channel == "telephone"


@pytest.mark.parametrize("flags, message", [
    (["--condition-aug", "telephone,nope"], "ser: error: --condition-aug: unknown condition(s) 'nope'"),
    (["--condition-aug", "babble10"], "ser: error: --condition-aug: babble10 is held out for evaluation"),
    (["--channel", "nope"], "ser: error: --channel: unknown condition 'nope'"),
    (["--channel", "babble10"], "ser: error: --channel: babble10 is held out"),
])
def test_cli_refuses_bad_conditions_in_one_line(flags, message, capsys, tmp_path):
    from ser.cli import main

    for command in (["train", "--feature", "mel"], ["compare", "--out", str(tmp_path)]):
        rc = main([*command, "--corpus", "synthetic", "--data", str(tmp_path / "absent"), *flags])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(message) and err.count("\n") == 1, err
