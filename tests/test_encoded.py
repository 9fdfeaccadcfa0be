"""Encoder states through the feature cache (ser.cache.encoded) and the layer study (ser.probe).

A tiny random Whisper encoder is registered as ``fake`` and loaded from a ``.pt`` file by
path, as a user's own weights would be; no test needs the real weights.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_clip
from ser.audio import ClipConfig, load_audio, prepare_clip
from ser.cache import (FeatureCache, clip_states, encoded, encoder_group, encoder_section_keys, extract_encoder,
                       load_encoder_states)
from ser.encoders import EncoderError, registry
from ser.encoders.weights import WhisperDims
from ser.encoders.whisper import WhisperEncoder
from ser.errors import SerError

DIMS = WhisperDims(n_mels=80, n_ctx=64, n_state=16, n_head=2, n_layer=2)
CLIP = ClipConfig(seconds=0.5)  # 25 states a clip


def _write_pt(path, seed: int):
    torch.manual_seed(seed)
    enc = WhisperEncoder(DIMS)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # LayerNorms too: every layer differs from the last
    dims = {"n_mels": DIMS.n_mels, "n_vocab": 7, "n_audio_ctx": DIMS.n_ctx, "n_audio_state": DIMS.n_state,
            "n_audio_head": DIMS.n_head, "n_audio_layer": DIMS.n_layer, "n_text_ctx": 4,
            "n_text_state": DIMS.n_state, "n_text_head": DIMS.n_head, "n_text_layer": 1}
    sd = {f"encoder.{k}": t.half() for k, t in enc.state_dict().items()}
    torch.save({"dims": dims, "model_state_dict": sd}, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return _write_pt(d / "fake.pt", 0), _write_pt(d / "other.pt", 1)


@pytest.fixture
def fake(monkeypatch, weights):
    """Registers the ``fake`` encoder; counts encoder loads and forward calls."""
    spec = registry.EncoderSpec("fake", "a tiny random test encoder", DIMS, 1, ())
    monkeypatch.setitem(registry.REGISTRY, "fake", spec)
    calls = {"load": 0, "forward": 0}
    real = encoded.get_encoder

    def counting(name, path=None):
        calls["load"] += 1
        model = real(name, path)
        forward = model.forward

        def counted(*a, **kw):
            calls["forward"] += 1
            calls["top"] = kw.get("max_layer")
            return forward(*a, **kw)

        model.forward = counted
        return model

    monkeypatch.setattr(encoded, "get_encoder", counting)
    return calls


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    paths = [write_clip(d / f"c{i}.wav", seconds=0.4 + 0.05 * i, freq=150.0 + 40 * i) for i in range(5)]
    return pd.DataFrame({"path": [str(p) for p in paths]})


def test_shapes_pooled_and_warm_call_computes_nothing(fake, weights, corpus, tmp_path, monkeypatch):
    from ser.cache import store

    monkeypatch.setattr(store, "PACK_MIN", 1)  # five clips are worth a pack here
    pt = weights[0]
    report = extract_encoder(corpus, "fake", clip=CLIP, cache_dir=tmp_path, sequences=(1,), path=pt,
                             batch_size=2, progress=False)
    assert (report.computed, report.reused, report.layers, report.sequences) == (5, 0, [0, 1, 2], [1])
    assert fake == {"load": 1, "forward": 3, "top": 2}  # 5 clips in batches of 2, every layer
    assert list((tmp_path / "packs").glob("*.pack"))  # packed at the end, as extract_corpus does
    assert not list((tmp_path / "entries").rglob("*.ser"))

    seq = load_encoder_states(corpus, "fake", 1, CLIP, tmp_path, path=pt, progress=False)
    assert seq.shape == (5, 16, 25) and seq.dtype == np.float32
    for layer in (0, 1, 2):  # every layer's pooled statistics came from the one pass
        pooled = load_encoder_states(corpus, "fake", layer, CLIP, tmp_path, path=pt, pooled=True, progress=False)
        assert pooled.shape == (5, 32, 1)
    pooled = load_encoder_states(corpus, "fake", 1, CLIP, tmp_path, path=pt, pooled=True, progress=False)
    np.testing.assert_allclose(pooled[:, :16, 0], seq.mean(axis=2), atol=1e-5)
    np.testing.assert_allclose(pooled[:, 16:, 0], seq.std(axis=2), atol=1e-5)
    again = extract_encoder(corpus, "fake", clip=CLIP, cache_dir=tmp_path, sequences=(1,), path=pt, progress=False)
    assert (again.computed, again.reused) == (0, 5)
    assert fake == {"load": 1, "forward": 3, "top": 2}  # warm: no encoder loaded, nothing run
    # only what is lacking: the sequence of layer 0 needs the embedding alone, not the top layer
    extract_encoder(corpus, "fake", clip=CLIP, cache_dir=tmp_path, sequences=(0,), path=pt, batch_size=8,
                    progress=False)
    assert fake == {"load": 2, "forward": 4, "top": 0}

    # a sequence not cached yet: computed for every clip and merged into their entries
    seq2 = load_encoder_states(corpus, "fake", 2, CLIP, tmp_path, path=pt, batch_size=8, progress=False)
    assert seq2.shape == (5, 16, 25) and fake == {"load": 3, "forward": 5, "top": 2}
    np.testing.assert_array_equal(load_encoder_states(corpus, "fake", 1, CLIP, tmp_path, path=pt, progress=False), seq)


def registry_log_mel(y: np.ndarray) -> np.ndarray:
    from ser.encoders import log_mel_spectrogram

    return log_mel_spectrogram(y, DIMS.n_mels)


def test_parity_with_running_the_encoder_on_the_clip(fake, weights, corpus, tmp_path):
    pt = weights[0]
    seq = load_encoder_states(corpus, "fake", 2, CLIP, tmp_path, path=pt, batch_size=4, progress=False)
    path = corpus["path"][3]
    y = prepare_clip(load_audio(path), CLIP)  # what the cache encodes, by hand
    model = registry.get_encoder("fake", pt)
    with torch.no_grad():
        mel = torch.from_numpy(registry_log_mel(y))[None]
        direct = model(mel, max_layer=2)[2][0].T.numpy()
    np.testing.assert_allclose(seq[3], direct, atol=1e-4)
    from_file = clip_states(path, "fake", 2, CLIP, path=pt)
    from_array = clip_states(load_audio(path), "fake", 2, CLIP, path=pt)  # the decoded waveform, prepared alike
    np.testing.assert_array_equal(from_file, from_array)
    np.testing.assert_allclose(from_file, seq[3], atol=1e-5)  # batch of 4 vs batch of 1
    pooled = clip_states(path, "fake", 2, CLIP, path=pt, pooled=True)
    np.testing.assert_allclose(pooled[:, 0], np.r_[from_file.mean(1), from_file.std(1)], atol=1e-5)


def test_keys_change_with_layer_clip_and_weights(fake, weights, corpus, tmp_path):
    pt, other = weights
    k = encoder_section_keys("fake", [0, 1], "pooled", CLIP, pt)
    assert k[0] != k[1]
    assert k[1] != encoder_section_keys("fake", [1], "sequence", CLIP, pt)[1]
    assert k[1] != encoder_section_keys("fake", [1], "pooled", ClipConfig(seconds=0.6), pt)[1]
    assert k[1] != encoder_section_keys("fake", [1], "pooled", CLIP, other)[1]
    assert k == encoder_section_keys("fake", [0, 1], "pooled", CLIP, pt)  # stable
    # other weights: other states, computed anew, kept apart from the first weights' entries
    a = load_encoder_states(corpus, "fake", 1, CLIP, tmp_path, path=pt, progress=False)
    b = load_encoder_states(corpus, "fake", 1, CLIP, tmp_path, path=other, progress=False)
    assert fake["load"] == 2 and not np.allclose(a, b)
    sha = [registry.resolve_weights("fake", w).sha256 for w in (pt, other)]
    cache = FeatureCache(tmp_path)
    h = cache.audio_hash(corpus["path"][0])
    assert encoder_group(sha[0]) != encoder_group(sha[1])
    assert set(cache.read(h, group=encoder_group(sha[0]))) >= {k[0], k[1]}
    assert cache.read(h) == {}  # the plain features' entry holds none of it
    # another clip length: another key, computed again
    c = load_encoder_states(corpus, "fake", 1, ClipConfig(seconds=0.6), tmp_path, path=pt, progress=False)
    assert c.shape == (5, 16, 30) and fake["load"] == 3


def test_clear_errors(fake, weights, corpus, tmp_path):
    with pytest.raises(EncoderError, match="unknown encoder 'nope'"):
        load_encoder_states(corpus, "nope", 1, CLIP, tmp_path)
    with pytest.raises(EncoderError, match="layer 5 out of range"):
        extract_encoder(corpus, "fake", [5], CLIP, tmp_path, path=weights[0])
    with pytest.raises(EncoderError, match="16000 Hz"):
        load_encoder_states(corpus, "fake", 1, ClipConfig(sample_rate=8000), tmp_path, path=weights[0])
    with pytest.raises(SerError, match="no clips"):
        load_encoder_states(corpus.iloc[:0], "fake", 1, CLIP, tmp_path, path=weights[0])
    assert fake["load"] == 0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from ser.corpora import generate_synthetic, load_manifest

    root = generate_synthetic(tmp_path_factory.mktemp("synth"), speakers=6, per_emotion=1, progress=False)
    return load_manifest("synthetic", root)


def test_probe_layers_on_the_synthetic_corpus(fake, weights, synthetic, tmp_path):
    from ser.probe import probe_layers

    out = tmp_path / "layers"
    table = probe_layers(synthetic, "fake", folds=3, clip=CLIP, cache_dir=tmp_path / "cache", out_dir=out,
                         path=weights[0], grid=(0.01, 1.0), n_boot=50, progress=False)
    assert table["layer"].tolist() == [0, 1, 2]
    assert table["chosen"].sum() == 1
    chosen = int(table.loc[table["chosen"], "layer"].iloc[0])
    assert chosen == int(table["layer"][table["val_uar"] == table["val_uar"].max()].min())  # by validation only
    assert table["n_test"].eq(len(synthetic)).all()  # 3 folds: every clip tested once
    assert ((table["test_uar_lo"] <= table["test_uar"]) & (table["test_uar"] <= table["test_uar_hi"])).all()
    assert {p.name for p in out.iterdir()} == {"layers.csv", "layers.md", "layers.png", "layers.json"}
    assert f"**{chosen}** (chosen)" in (out / "layers.md").read_text()
    assert pd.read_csv(out / "layers.csv")["chosen"].tolist() == table["chosen"].tolist()
    import json

    settings = json.loads((out / "layers.json").read_text())
    assert settings["chosen_layer"] == chosen and settings["extraction"]["computed"] == len(synthetic)
    assert fake["load"] == 1  # one pass gave every layer
    with pytest.raises(EncoderError, match="unknown encoder 'whisper_huge'"):
        probe_layers(synthetic, "whisper_huge", folds=3, cache_dir=tmp_path / "cache")


def test_probe_chooses_by_validation_never_test(monkeypatch, fake, synthetic, tmp_path):
    # layer 0 is learnable on validation speakers only, layer 1 on test speakers only:
    # the study must choose 0 although 1 has the better test UAR
    from ser import probe
    from ser.splits import speaker_split

    split = speaker_split(synthetic, seed=0)["split"].to_numpy()
    labels = sorted(set(synthetic["emotion"]))
    y = synthetic["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy()
    rng = np.random.default_rng(0)
    signal = 3.0 * np.eye(16)[y % 16] + rng.normal(scale=0.3, size=(len(y), 16))
    noise = rng.normal(size=(len(y), 16))
    hide = {0: split == "test", 1: split == "val", 2: np.ones(len(y), bool)}

    def states(manifest, encoder, layer, *a, **kw):
        X = np.where(hide[layer][:, None], noise, signal)
        return np.concatenate([X, X], axis=1)[:, :, None].astype(np.float32)

    monkeypatch.setattr(probe, "extract_encoder", lambda *a, **kw: None)
    monkeypatch.setattr(probe, "load_encoder_states", states)
    table = probe.probe_layers(synthetic, "fake", n_boot=20)
    assert table.loc[1, "test_uar"] > table.loc[0, "test_uar"]
    assert table["chosen"].tolist() == [True, False, False]


def test_cli_layers_one_line_error(capsys, tmp_path):
    from ser.cli import main

    d = tmp_path / "synth"
    from ser.corpora import generate_synthetic

    generate_synthetic(d, speakers=3, per_emotion=1, progress=False)
    rc = main(["-q", "layers", "--encoder", "whisper_huge", "--corpus", "synthetic", "--data", str(d),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown encoder 'whisper_huge'" in err


@pytest.mark.parametrize("flag,value", [("--folds", "0"), ("--val", "1"), ("--batch-size", "-2")])
def test_cli_layers_impossible_flag_values(flag, value, capsys):
    from ser.cli import main

    with pytest.raises(SystemExit) as e:
        main(["layers", "--encoder", "whisper_base", "--corpus", "synthetic", "--data", "x", "--out", "o", flag, value])
    assert e.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
