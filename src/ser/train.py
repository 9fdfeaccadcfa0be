"""Train one AudioResNet on one representation, on a speaker-disjoint split.

``train_feature`` reads top to bottom in six steps: set up, data (:func:`load_data`),
model, resume, epochs (:func:`train_epoch`, validation, save on improvement, patience),
then the test of the best checkpoint (:func:`evaluate_best`).

Example:
    >>> from ser.train import TrainConfig, train_feature
    >>> result = train_feature(split_manifest, TrainConfig(feature="mel", epochs=30), "runs/mel")  # doctest: +SKIP
    >>> result.test["uar"]                                                                        # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .audio import ClipConfig
from .augment import AugmentConfig, augmentation_for, waveform_augmentation
from .cache import DEFAULT_ROOT, load_features
from .checkpoint import load_checkpoint, load_resume_state, save_checkpoint, save_resume_state
from .evaluate import evaluate_predictions, predictions_table
from .fileio import write_json_atomic
from .features import feature_key, get_config
from .modelmeta import channel_spec
from .models import build_model
from .representations import encoder_config, is_encoder
from .splits import SplitError, check_speaker_disjoint, speaker_keys, split_speakers
from .tracking import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (logged whole to MLflow)."""

    feature: str = "mel"  # a feature (ser.features) or an encoder layer (whisper_base@5): ser.representations
    model: str = "auto"  # model registry name; auto = resnet18 for features, asp for encoder states
    epochs: int = 20  # upper bound (the one-cycle schedule spans it); early stopping may end sooner
    batch_size: int = 32  # clips per optimiser step
    lr: float = 1e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    dropout: float = 0.3  # before the classifier
    label_smoothing: float = 0.05  # softens targets; helps calibration on small corpora
    mixup: float = 0.0  # Beta(a, a) mixup of training batches (inputs and targets); 0 = off
    bf16: bool = False  # bfloat16 autocast for the training steps only; weights, optimiser, evaluation stay fp32
    patience: int = 6  # epochs without a better validation UAR before stopping
    seed: int = 0  # weights, batch order, augmentation draws
    # training clips only (never val/test): cached waveform copies (augment.copies) + online
    # feature masks; AugmentConfig(enabled=False) turns both off; its seed is replaced by ``seed``
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)  # how files become clips
    encoder_path: str | None = None  # encoder weights (CTranslate2 dir or .pt) instead of the installed package
    n_boot: int = 1000  # bootstrap resamples for the test confidence intervals
    # a ser.degrade preset (telephone: a model for phone calls) every clip (train, val, test)
    # goes through after prepare_clip; the exported model applies it to incoming audio too
    channel: str | None = None

    def __post_init__(self) -> None:
        channel_spec(self.channel)  # a bad name fails here, listing the known ones


def training_conditions(cfg: TrainConfig) -> dict[str, Any]:
    """What a model was trained for: ``{"condition_aug": [...], "channel": name or None,
    "copies": augmented copies per training clip}`` (metadata, metrics and MLflow params)."""
    _, copies = waveform_chain(cfg)
    aug = list(cfg.augment.conditions) if cfg.augment.enabled and copies else []
    return {"condition_aug": aug, "channel": cfg.channel, "copies": copies}


def pick_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA, or a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def normalization(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and std over training clips and frames (never val or test)."""
    mean = x_train.mean(axis=(0, 2)).astype(np.float32)
    std = x_train.std(axis=(0, 2)).astype(np.float32)
    return mean, np.maximum(std, 1e-5).astype(np.float32)


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities for normalised features ``x`` (N, rows, frames)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)
        out.append(torch.softmax(model(xb), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def model_name(cfg: TrainConfig) -> str:
    """The model registry name a run uses (``auto``: a ResNet for maps, a pooled head for encoder states)."""
    if cfg.model != "auto":
        return cfg.model
    return "asp" if is_encoder(cfg.feature) else "resnet18"


def representation_meta(cfg: TrainConfig) -> dict[str, Any]:
    """What identifies a run's input: ``feature_key`` (and ``encoder`` for an encoder layer).

    Export and serving read these to rebuild the input exactly: a feature's config, or the
    encoder (name, layer, weight hash, mel bands) whose states the head was trained on.
    """
    if not is_encoder(cfg.feature):
        return {"feature_key": feature_key(cfg.feature, get_config(cfg.feature))}
    from .encoders import encoder_key, get_spec

    enc = encoder_config(cfg.feature)
    key = encoder_key(enc, cfg.encoder_path)
    return {"feature_key": key, "encoder": {**key, "n_mels": get_spec(enc.name).dims.n_mels}}


def _augment_config(cfg: TrainConfig) -> AugmentConfig:
    # the run's seed drives every augmentation draw, so one --seed reproduces a run
    return replace(cfg.augment, seed=cfg.seed)


def feature_augmenter(cfg: TrainConfig) -> tuple[Any, dict | None]:
    """The online feature augmentation of training batches (callable, its dict), or ``(None, None)``."""
    if not cfg.augment.enabled or is_encoder(cfg.feature):  # the policy is for the eleven features
        return None, None
    aug = augmentation_for(cfg.feature, _augment_config(cfg))
    return aug, aug.to_dict()


def waveform_chain(cfg: TrainConfig) -> tuple[dict | None, int]:
    """The waveform augmentation chain (its dict, part of the cache key) and the copy count.

    Features: the waveform strategies, then the condition step (``augment.conditions``).
    Encoder members: the condition step only (an encoder pass per copy is worth it for
    channel robustness, not for pitch and gain), so no copies without conditions.
    """
    encoder = is_encoder(cfg.feature)
    if not cfg.augment.enabled or cfg.augment.copies <= 0 or (encoder and not cfg.augment.conditions):
        return None, 0
    return waveform_augmentation(_augment_config(cfg), chain=not encoder).to_dict(), cfg.augment.copies


@dataclass
class TrainData:
    """One run's arrays: labels, split masks and normalised features (train, with its copies)."""

    labels: list[str]  # class names, canonical order, those present in the manifest
    y: np.ndarray  # (clips,) class index per clip
    train: np.ndarray  # boolean masks over the manifest's rows
    val: np.ndarray
    test: np.ndarray
    x: np.ndarray  # (clips, rows, frames) every clip, normalised with training statistics
    x_train: np.ndarray  # (n_train, 1 + copies, rows, frames): variant 0 clean, then augmented copies
    mean: np.ndarray  # (rows,) per-row training mean and std
    std: np.ndarray
    augment: dict[str, Any]  # the augmentation actually applied (logged and saved with the model)


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports (``metrics.json`` holds :meth:`to_dict`)."""

    feature: str  # the representation trained on
    labels: list[str]  # class names, the model's output order
    best_epoch: int  # the epoch of the saved checkpoint
    epochs_run: int  # epochs trained over all sessions of the run
    train_seconds: float  # training time over all sessions (a resume adds up)
    device: str  # where it trained
    val: dict[str, Any]  # validation metrics of the best checkpoint
    test: dict[str, Any] | None  # test metrics with speaker-bootstrap CIs (None without test clips)
    training_conditions: dict[str, Any] | None = None  # :func:`training_conditions` of the run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainResult":
        """Read back a ``metrics.json`` (extra keys are ignored; older files lack the last fields)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def load_data(manifest: pd.DataFrame, cfg: TrainConfig, cache_dir: str | Path = DEFAULT_ROOT, jobs: int = 1,
              progress: bool = True) -> TrainData:
    """Cached features, labels in canonical order, normalisation from training clips only."""
    from .corpora import emotion_labels

    check_speaker_disjoint(manifest)
    labels, y = emotion_labels(manifest)
    split = manifest["split"].to_numpy()
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    if not tr.any() or not va.any():
        raise SplitError("the split needs train and val clips; make it with speaker_split or speaker_folds")
    wave_aug, copies = waveform_chain(cfg)
    channel = channel_spec(cfg.channel)  # every clip, every copy: a channel'd clip is another clip
    if is_encoder(cfg.feature):
        from .cache import load_encoder_states
        from .cache.encoded_copies import load_encoder_copies

        enc = encoder_config(cfg.feature)
        kw = dict(path=cfg.encoder_path, progress=progress, channel=channel)
        X = load_encoder_states(manifest, enc.name, enc.layer, cfg.clip, cache_dir, **kw)
        X_train = X[tr][:, None]
        if copies:  # clean states, then the copies' (cached like the features' copies)
            X_copies = load_encoder_copies(manifest[tr], enc.name, enc.layer, cfg.clip, cache_dir, augment=wave_aug,
                                           copies=copies, **kw)
            X_train = np.concatenate([X_train, X_copies], axis=1)
            del X_copies
    else:
        feat_cfg = {cfg.feature: get_config(cfg.feature)}
        kw = dict(jobs=jobs, progress=progress, channel=channel)
        X = load_features(manifest, [cfg.feature], feat_cfg, cfg.clip, cache_dir, **kw)[cfg.feature]
        X_train = (load_features(manifest[tr], [cfg.feature], feat_cfg, cfg.clip, cache_dir, augment=wave_aug,
                                 copies=copies, **kw)[cfg.feature] if copies else X[tr][:, None])
    mean, std = normalization(X[tr])
    _, feature_aug = feature_augmenter(cfg)
    return TrainData(
        labels=labels, y=y, train=tr, val=va, test=te,
        x=((X - mean[None, :, None]) / std[None, :, None]).astype(np.float32),
        x_train=((X_train - mean[None, None, :, None]) / std[None, None, :, None]).astype(np.float32),
        mean=mean, std=std, augment={"feature": feature_aug, "waveform": wave_aug, "copies": copies})


def train_epoch(model: nn.Module, data: TrainData, cfg: TrainConfig, epoch: int, opt: torch.optim.Optimizer,
                sched: Any, loss_fn: nn.Module, augment: Any, device: torch.device) -> float:
    """One pass over the training clips; returns the mean training loss.

    Order, copy choice, augmentation and mixup draws depend only on (seed, epoch), so a
    resumed run replays exactly what an uninterrupted one would have done.
    """
    model.train()
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws, also per epoch
    y_train = data.y[data.train]
    order = rng.permutation(len(y_train))
    total = 0.0
    for i in range(0, len(order), cfg.batch_size):
        b = order[i:i + cfg.batch_size]
        xb = data.x_train[b, rng.integers(0, data.x_train.shape[1], size=len(b))]  # clean or a copy
        if augment is not None:
            xb = np.stack([augment(x, rng) for x in xb]).astype(np.float32)
        xb_t = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
        yb_t = torch.from_numpy(y_train[b]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            if cfg.mixup > 0:
                lam = float(rng.beta(cfg.mixup, cfg.mixup))
                perm = torch.from_numpy(rng.permutation(len(b))).to(device)
                logits = model(lam * xb_t + (1 - lam) * xb_t[perm])
                loss = lam * loss_fn(logits, yb_t) + (1 - lam) * loss_fn(logits, yb_t[perm])
            else:
                loss = loss_fn(model(xb_t), yb_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(b)
    return total / len(order)


def evaluate_best(out: Path, manifest: pd.DataFrame, data: TrainData, cfg: TrainConfig,
              device: torch.device) -> tuple[dict[str, np.ndarray], dict, dict | None, int]:
    """The best checkpoint on validation and held-out test speakers.

    Returns ``(probabilities per part, val metrics, test metrics or None, best epoch)``;
    test CIs resample whole (corpus-qualified) speakers.
    """
    best, best_meta = load_checkpoint(out / "model.pt", device=device)
    probs = {s: predict_proba(best, data.x[m], device) for s, m in (("val", data.val), ("test", data.test))}
    groups = speaker_keys(manifest).to_numpy()
    val = evaluate_predictions(probs["val"], data.y[data.val], data.labels, n_boot=0)
    test = (evaluate_predictions(probs["test"], data.y[data.test], data.labels, n_boot=cfg.n_boot, seed=cfg.seed,
                                 groups=groups[data.test]) if data.test.any() else None)
    return probs, val, test, int(best_meta["epoch"])


def train_feature(manifest: pd.DataFrame, cfg: TrainConfig, out_dir: str | Path, *,
                  cache_dir: str | Path = DEFAULT_ROOT, tracking: bool = True, resume: bool = False,
                  jobs: int = 1, progress: bool = True, experiment: str = "ser",
                  stop_after: int | None = None) -> TrainResult:
    """Train, validate and test one model; the best checkpoint goes to ``out_dir``.

    Args:
        manifest: a manifest with a ``split`` column (``speaker_split``/``speaker_folds``).
        cfg: the run's configuration.
        out_dir: run folder: ``model.pt`` + ``model.json`` (best), ``resume.pt``,
            ``predictions.csv`` (val and test probabilities), ``metrics.json``.
        cache_dir: feature cache.
        tracking: log to MLflow (``mlruns/``) and TensorBoard (``out_dir/tb``).
        resume: continue from ``out_dir/resume.pt`` when present.
        jobs: processes for feature extraction of uncached clips.
        progress: tqdm bars.
        experiment: MLflow experiment name.
        stop_after: run at most this many epochs in this call (a time box; continue
            later with ``resume=True``).

    Returns:
        The run's :class:`TrainResult`.
    """
    # 1. set up: folder, seeds, device
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    device = pick_device()
    if cfg.bf16 and not bf16_native(device):
        log.warning("bf16 asked for, but %s has no native bfloat16: training will be slower, not faster", device)

    # 2. data
    data = load_data(manifest, cfg, cache_dir, jobs, progress)
    labels, n_train = data.labels, int(data.train.sum())
    augment, _ = feature_augmenter(cfg)

    # 3. model, optimiser, schedule, class-weighted loss
    model = build_model(model_name(cfg), labels, data.x.shape[1], dropout=cfg.dropout).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs, pct_start=0.2,
                                                steps_per_epoch=max(1, math.ceil(n_train / cfg.batch_size)))
    counts = np.bincount(data.y[data.train], minlength=len(labels)).astype(np.float64)
    class_w = torch.tensor(n_train / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=class_w.to(device), label_smoothing=cfg.label_smoothing)
    rep = representation_meta(cfg)
    feat_key, conditions = rep["feature_key"], training_conditions(cfg)
    meta = {
        "labels": labels, "feature": cfg.feature, **rep,
        "clip": asdict(cfg.clip), "mean": data.mean.tolist(), "std": data.std.tolist(),
        "height": int(data.x.shape[1]), "model": model_name(cfg), "dropout": cfg.dropout,
        "speakers": split_speakers(manifest), "train_config": asdict(cfg), "augment": data.augment,
        "corpus": sorted(map(str, manifest["corpus"].unique())),
        "channel": channel_spec(cfg.channel), "training_conditions": conditions,  # the runtime applies the channel
    }

    # 4. resume where a previous session stopped
    start_epoch, best_uar, best_epoch, stale, seconds_before = 0, -1.0, -1, 0, 0.0
    if resume and (out / "resume.pt").exists():
        state = load_resume_state(out / "resume.pt", model, opt, sched)
        start_epoch, best_uar, best_epoch, stale = (state["epoch"] + 1, state["best_uar"],
                                                    state["best_epoch"], state["stale"])
        seconds_before = float(state.get("seconds", 0.0))  # older resume.pt files lack it
        log.info("resuming %s at epoch %d (best val UAR %.3f)", cfg.feature, start_epoch, best_uar)

    # 5. epochs: train, validate, save on improvement, stop on patience
    tracker = Tracker(out, experiment, run_name=f"{cfg.feature}", enabled=tracking)
    tracker.log_params({**asdict(cfg), "feature_config": feat_key, "augment_chain": data.augment,
                        "training_conditions": conditions,
                        "n_train": n_train, "n_val": int(data.val.sum()), "n_test": int(data.test.sum()),
                        "device": str(device)})
    t0 = time.perf_counter()
    epoch = start_epoch - 1
    end_epoch = start_epoch if stale >= cfg.patience else cfg.epochs  # a stopped run has nothing left
    bar = tqdm(range(start_epoch, end_epoch), desc=f"train {cfg.feature}", unit="epoch", disable=not progress)
    for epoch in bar:
        train_loss = train_epoch(model, data, cfg, epoch, opt, sched, loss_fn, augment, device)
        val = evaluate_predictions(predict_proba(model, data.x[data.val], device), data.y[data.val], labels, n_boot=0)
        tracker.log_metrics({"train_loss": train_loss, "val_uar": val["uar"], "val_accuracy": val["accuracy"],
                             "val_macro_f1": val["macro_f1"], "lr": sched.get_last_lr()[0]}, step=epoch)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_uar=f"{val['uar']:.3f}")
        if val["uar"] > best_uar:
            best_uar, best_epoch, stale = val["uar"], epoch, 0
            save_checkpoint(out, model, {**meta, "epoch": epoch, "val": val})
        else:
            stale += 1
        save_resume_state(out / "resume.pt", model, opt, sched,
                          {"epoch": epoch, "best_uar": best_uar, "best_epoch": best_epoch, "stale": stale,
                           "seconds": seconds_before + time.perf_counter() - t0})
        if stale >= cfg.patience:
            log.info("%s: early stop at epoch %d (best %d)", cfg.feature, epoch, best_epoch)
            break
        if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
            break
    bar.close()

    # 6. test the best checkpoint on the held-out speakers; write metrics and predictions
    probs, val, test, best_epoch = evaluate_best(out, manifest, data, cfg, device)
    result = TrainResult(feature=cfg.feature, labels=labels, best_epoch=best_epoch, epochs_run=epoch + 1,
                         # all sessions of a resumed run, so a study's leaderboard keeps the real cost
                         train_seconds=seconds_before + time.perf_counter() - t0, device=str(device),
                         val=val, test=test, training_conditions=conditions)
    write_json_atomic(out / "metrics.json", result.to_dict())
    predictions_table(manifest, probs, labels).to_csv(out / "predictions.csv", index=False)
    tracker.finish(result.to_dict(), labels)
    return result
