"""The pooled-statistics baseline as an exportable linear member (``--model stats``).

``stats`` on a spectral map is the classic baseline made a member: the mean and standard
deviation of every row over frames, standardised (BatchNorm without affine, fitted on the
training clips), then one linear layer. It trains in the same loop, joins ensembles with
ResNets and encoder heads, and exports into the same ONNX graph.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # a tiny study, an ensemble and an export (~1 min)


@pytest.fixture(scope="module")
def linear_study(tmp_path_factory):
    from ser.audio import ClipConfig
    from ser.augment import AugmentConfig
    from ser.corpora import generate_synthetic, load_manifest
    from ser.ensemble import fit_ensemble
    from ser.study import run_study
    from ser.train import TrainConfig

    root = tmp_path_factory.mktemp("linear")
    data = generate_synthetic(root / "syn", speakers=6, per_emotion=1, progress=False)
    cfg = TrainConfig(model="stats", epochs=3, patience=3, clip=ClipConfig(seconds=1.0),
                      augment=AugmentConfig(enabled=False), n_boot=20)
    run_study(load_manifest("synthetic", data), "mel,mfcc", cfg, root / "study", val=0.2, test=0.2,
              cache_dir=root / "fc", tracking=False, progress=False, baseline=False)
    fit_ensemble(root / "study", root / "ens", top=2, trials=8, seed=0, tracking=False, progress=False, n_boot=20)
    return root


def test_stats_member_is_linear_in_the_pooled_statistics(linear_study):
    from ser.checkpoint import load_checkpoint

    model, meta = load_checkpoint(linear_study / "study" / "runs" / "mel" / "model.pt")
    linears = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1  # no hidden layer: a linear probe on standardised statistics
    assert linears[0].in_features == 2 * 64 and linears[0].out_features == len(meta["labels"])
    # frame order does not matter to mean/std pooling: a shuffled map gives the same logits
    model.eval()
    x = torch.randn(2, 1, 64, 40)
    with torch.no_grad():
        a, b = model(x), model(x[..., torch.randperm(40)])
    assert torch.allclose(a, b, atol=1e-5)


def test_linear_members_export_and_the_runtime_agrees_with_pytorch(linear_study):
    from ser.corpora import load_manifest
    from ser.ensemble import bundle_features, load_bundle, predict_bundle
    from ser.export.onnx_export import export_bundle
    from ser.runtime import load_model
    from ser.splits import speaker_keys

    out = linear_study / "onnx"
    report = export_bundle(linear_study / "ens" / "bundle", out, quantize="none", progress=False)
    assert report["parity"]["max_abs_diff"] < 1e-4
    _, meta = load_bundle(linear_study / "ens" / "bundle")
    m = load_manifest("synthetic", linear_study / "syn")
    test = m[speaker_keys(m).isin(meta["speakers"]["test"])]
    feats = bundle_features(meta, test, cache_dir=linear_study / "fc")
    expected = predict_bundle(linear_study / "ens" / "bundle", feats)
    model = load_model(out / "model.onnx")
    answers = [model.predict(str(p)) for p in test["path"]]
    got = np.array([[a["probabilities"][lab] for lab in model.labels] for a in answers])
    assert got.shape == expected.shape and len(got) > 0
    assert np.abs(got - expected).max() < 1e-3  # file -> runtime features -> ONNX vs cached features -> PyTorch
    assert (got.argmax(1) == expected.argmax(1)).mean() == 1.0
