"""Model shapes, a tiny real training run, checkpoints, resume and tracking."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ser.audio import ClipConfig
from ser.augment import AugmentConfig
from ser.checkpoint import CheckpointError, load_checkpoint
from ser.corpora import generate_synthetic, load_manifest
from ser.evaluate import classification_metrics
from ser.features import available_features, get_config, output_rows
from ser.models import AudioResNet, build_model
from ser.splits import speaker_split
from ser.train import TrainConfig, train_feature

CLIP = ClipConfig(seconds=1.0)  # 63 frames: small inputs keep the suite fast
NO_AUG = AugmentConfig(enabled=False)


@pytest.mark.parametrize("name", available_features())
def test_model_accepts_every_representation(name):
    rows = output_rows(name, get_config(name))
    model = AudioResNet(["a", "b", "c"], height=rows).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, rows, 63))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_small_heights_keep_rows_to_the_last_block():
    m = AudioResNet(["a", "b"], height=6)
    feats = {}
    def hook(mod, inputs, output):
        feats["l4"] = output.shape

    m.net.layer4.register_forward_hook(hook)
    m(torch.zeros(1, 1, 6, 188))
    assert feats["l4"][2] == 6 and feats["l4"][3] == 6  # all 6 rows kept, time 188 -> 6


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="known: resnet18"):
        build_model("vgg", ["a", "b"], 10)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = generate_synthetic(tmp_path_factory.mktemp("syn") / "c", speakers=6, per_emotion=4, progress=False)
    return speaker_split(load_manifest("synthetic", root), val=0.2, test=0.2, seed=0)


@pytest.fixture(scope="module")
def trained(split, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(feature="mfcc", epochs=8, patience=8, clip=CLIP, augment=AugmentConfig(copies=1), n_boot=50)
    res = train_feature(split, cfg, out, cache_dir=out / "fc", tracking=False, progress=False)
    return out, res, cfg


@pytest.mark.slow
def test_tiny_training_beats_chance(trained):
    out, res, _ = trained
    assert res.val["uar"] > 0.25  # 8 classes: chance is 0.125
    # the reported test UAR is the one its saved predictions give, inside its own CI
    pred = pd.read_csv(out / "predictions.csv").query("split == 'test'")
    y = pred["emotion"].map({e: i for i, e in enumerate(res.labels)}).to_numpy()
    p = pred[[f"p_{e}" for e in res.labels]].to_numpy()
    assert res.test["uar"] == pytest.approx(classification_metrics(y, p.argmax(1), res.labels)["uar"])
    lo, hi = res.test["ci"]["uar"]
    assert lo <= res.test["uar"] <= hi and res.test["n"] == len(pred)


@pytest.mark.slow
def test_checkpoint_round_trip(trained, split):
    out, res, cfg = trained
    model, meta = load_checkpoint(out / "model.pt")
    assert meta["labels"] == res.labels and meta["feature"] == "mfcc"
    assert meta["feature_key"]["name"] == "mfcc" and meta["clip"]["seconds"] == 1.0
    assert len(meta["mean"]) == len(meta["std"]) == model.height == 40
    sp = meta["speakers"]
    assert not (set(sp["train"]) & set(sp["test"])) and not (set(sp["val"]) & set(sp["test"]))
    assert meta["epoch"] == res.best_epoch
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["uar"] == pytest.approx(res.test["uar"])
    preds = (out / "predictions.csv").read_text().splitlines()
    assert preds[0].startswith("split,path,corpus,speaker,emotion,p_")
    assert len(preds) - 1 == int((split.split != "train").sum())


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="model.json"):
        load_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.json").write_text(json.dumps({"model": "resnet18", "labels": ["a", "b"], "height": 4}))
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(tmp_path)


@pytest.mark.slow
def test_resume_matches_uninterrupted(split, tmp_path):
    cfg = TrainConfig(feature="chroma", epochs=4, patience=10, clip=CLIP, augment=NO_AUG, n_boot=0)
    kw = dict(cache_dir=tmp_path / "fc", tracking=False, progress=False)
    full = train_feature(split, cfg, tmp_path / "full", **kw)
    part = train_feature(split, cfg, tmp_path / "part", stop_after=2, **kw)
    assert part.epochs_run == 2
    resumed = train_feature(split, cfg, tmp_path / "part", resume=True, **kw)
    assert resumed.epochs_run == 4 and resumed.best_epoch == full.best_epoch
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


@pytest.mark.slow
def test_tracking_writes_mlflow_and_tensorboard(split, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(feature="rms", epochs=1, clip=CLIP, augment=NO_AUG, n_boot=10)
    train_feature(split, cfg, tmp_path / "run", cache_dir=tmp_path / "fc", tracking=True, progress=False)
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    artifacts = list((tmp_path / "mlruns").rglob("model.pt"))
    assert artifacts and list((tmp_path / "mlruns").rglob("confusion.png"))
    import mlflow

    runs = mlflow.search_runs(experiment_names=["ser"])
    assert len(runs) == 1 and runs["params.feature"][0] == "rms" and "metrics.test_uar" in runs


def test_resuming_a_finished_run_only_retests_it(split, tmp_path):
    cfg = TrainConfig(feature="rms", epochs=3, patience=1, clip=CLIP, augment=NO_AUG, n_boot=0)
    kw = dict(cache_dir=tmp_path / "fc", tracking=False, progress=False)
    first = train_feature(split, cfg, tmp_path / "r", **kw)
    weights = (tmp_path / "r" / "model.pt").read_bytes()
    again = train_feature(split, cfg, tmp_path / "r", resume=True, **kw)
    assert (again.epochs_run, again.best_epoch) == (first.epochs_run, first.best_epoch)
    assert again.val["uar"] == first.val["uar"] and (tmp_path / "r" / "model.pt").read_bytes() == weights
    # the training time of the first session is carried over, not lost to a near-zero re-test
    saved = torch.load(tmp_path / "r" / "resume.pt", weights_only=True)["progress"]["seconds"]
    assert 0 < saved <= first.train_seconds and saved <= again.train_seconds


@pytest.mark.slow
def test_mixup_is_seeded_changes_training_and_resumes_exactly(split, tmp_path):
    base = TrainConfig(feature="rms", epochs=3, patience=10, clip=CLIP, augment=NO_AUG, n_boot=0)
    mix = TrainConfig(feature="rms", epochs=3, patience=10, clip=CLIP, augment=NO_AUG, n_boot=0, mixup=0.4)
    kw = dict(cache_dir=tmp_path / "fc", tracking=False, progress=False)
    train_feature(split, base, tmp_path / "plain", **kw)
    train_feature(split, mix, tmp_path / "mix", **kw)
    train_feature(split, mix, tmp_path / "part", stop_after=1, **kw)
    train_feature(split, mix, tmp_path / "part", resume=True, **kw)
    state = {d: torch.load(tmp_path / d / "resume.pt", weights_only=False)["model"] for d in ("plain", "mix", "part")}
    w = [k for k in state["mix"] if k.endswith("weight")][0]
    assert not torch.allclose(state["plain"][w], state["mix"][w])  # mixup really changes the updates
    assert all(torch.allclose(state["mix"][k].float(), state["part"][k].float(), atol=1e-5) for k in state["mix"])


def test_cli_training_defaults_match_train_config():
    from ser.cli import build_parser

    args = build_parser().parse_args(["train", "--corpus", "synthetic", "--data", "x", "--feature", "mel"])
    cfg = TrainConfig()
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("patience", "patience"),
                        ("seed", "seed"), ("mixup", "mixup"), ("dropout", "dropout"),
                        ("weight_decay", "weight_decay"), ("label_smoothing", "label_smoothing"), ("bf16", "bf16"),
                        ("model", "model")):
        assert getattr(args, flag) == getattr(cfg, field), flag
    assert args.aug_copies == cfg.augment.copies and args.no_augment is not cfg.augment.enabled


@pytest.mark.slow
def test_bf16_training_runs_resumes_exactly_and_keeps_fp32_weights(split, tmp_path):
    cfg = TrainConfig(feature="rms", epochs=3, patience=10, clip=CLIP, augment=NO_AUG, n_boot=0, bf16=True)
    kw = dict(cache_dir=tmp_path / "fc", tracking=False, progress=False)
    full = train_feature(split, cfg, tmp_path / "full", **kw)
    fp32 = train_feature(split, TrainConfig(**{**cfg.__dict__, "bf16": False}), tmp_path / "fp32", **kw)
    train_feature(split, cfg, tmp_path / "part", stop_after=1, **kw)
    train_feature(split, cfg, tmp_path / "part", resume=True, **kw)
    a = torch.load(tmp_path / "full" / "resume.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "resume.pt", weights_only=False)["model"]
    c = torch.load(tmp_path / "fp32" / "resume.pt", weights_only=False)["model"]
    assert all(a[k].dtype in (torch.float32, torch.int64) for k in a)  # autocast leaves the weights fp32
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded and resumable as in fp32
    w = [k for k in a if k.endswith("weight")][0]
    assert not torch.equal(a[w], c[w])  # the steps really ran in bfloat16
    assert full.test["n"] == int((split["split"] == "test").sum()) and np.isfinite(full.val["uar"])
