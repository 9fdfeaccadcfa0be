"""Train one AudioResNet on one representation, on a speaker-disjoint split.

Reads top to bottom: seed, data, model, loop (train, evaluate on validation, save on
improvement, patience), then the test evaluation of the best checkpoint.

Example:
    >>> from ser.train import TrainConfig, train_feature
    >>> result = train_feature(split_manifest, TrainConfig(feature="mel", epochs=30), "runs/mel")  # doctest: +SKIP
    >>> result["test"]["uar"]                                                                     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .audio import ClipConfig
from .cache import DEFAULT_ROOT
from .checkpoint import load_checkpoint, load_resume_state, save_checkpoint, save_resume_state
from .evaluate import evaluate_predictions, predictions_table
from .fileio import write_json_atomic
from .features import feature_key, get_config
from .featurize import load_features
from .models import build_model
from .splits import check_speaker_disjoint, split_speakers
from .tracking import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (logged whole to MLflow)."""

    feature: str = "mel"  # representation name from ser.features.available_features()
    model: str = "resnet18"  # model registry name
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
    augment: bool = True  # augment training clips (never val/test): waveform copies + online feature masks
    aug_copies: int = 4  # waveform-augmented copies per training clip, cached (0 = none)
    num_workers: int = 0  # kept for API stability; features are in memory
    clip: ClipConfig = field(default_factory=ClipConfig)  # how files become clips
    n_boot: int = 1000  # bootstrap resamples for the test confidence intervals


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


def _feature_augmenter(cfg: TrainConfig):
    if not cfg.augment:
        return None, None
    from .augment import AugmentConfig, augmentation_for

    aug = augmentation_for(cfg.feature, AugmentConfig(seed=cfg.seed))
    return aug, aug.to_dict() if hasattr(aug, "to_dict") else {"name": str(aug)}


def _waveform_chain(cfg: TrainConfig) -> tuple[dict | None, int]:
    """The waveform augmentation chain (its dict, the cache key) and the copy count."""
    if not cfg.augment or cfg.aug_copies <= 0:
        return None, 0
    from .augment import AugmentConfig, waveform_augmentation

    return waveform_augmentation(AugmentConfig(seed=cfg.seed)).to_dict(), cfg.aug_copies


def train_feature(manifest: pd.DataFrame, cfg: TrainConfig, out_dir: str | Path, *,
                  cache_dir: str | Path = DEFAULT_ROOT, tracking: bool = True, resume: bool = False,
                  jobs: int = 1, progress: bool = True, experiment: str = "ser",
                  stop_after: int | None = None) -> dict[str, Any]:
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
        ``{"val": metrics, "test": metrics, "best_epoch": int, "epochs_run": int, ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_speaker_disjoint(manifest)
    seed_everything(cfg.seed)
    device = pick_device()
    if cfg.bf16 and not bf16_native(device):
        log.warning("bf16 asked for, but %s has no native bfloat16: training will be slower, not faster", device)

    # data: cached features, labels in canonical order, normalisation from train only
    feat_cfg = get_config(cfg.feature)
    from .corpora import EMOTIONS

    labels = [e for e in EMOTIONS if e in set(manifest["emotion"])]
    y = manifest["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy()
    split = manifest["split"].to_numpy()
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    if not tr.any() or not va.any():
        raise ValueError("the split needs train and val clips; make it with speaker_split")
    X = load_features(manifest, [cfg.feature], {cfg.feature: feat_cfg}, cfg.clip, cache_dir,
                      jobs=jobs, progress=progress)[cfg.feature]
    wave_aug, copies = _waveform_chain(cfg)
    if copies:  # (n_train, 1 + copies, rows, frames); variant 0 is the clean clip
        X_train = load_features(manifest[tr], [cfg.feature], {cfg.feature: feat_cfg}, cfg.clip, cache_dir,
                                jobs=jobs, progress=progress, augment=wave_aug, copies=copies)[cfg.feature]
    else:
        X_train = X[tr][:, None]
    mean, std = normalization(X[tr])
    Xn = ((X - mean[None, :, None]) / std[None, :, None]).astype(np.float32)
    X_train = ((X_train - mean[None, None, :, None]) / std[None, None, :, None]).astype(np.float32)
    y_train = y[tr]
    counts = np.bincount(y_train, minlength=len(labels)).astype(np.float64)
    class_w = torch.tensor(len(y_train) / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32)
    augment, augment_dict = _feature_augmenter(cfg)
    augment_dict = {"feature": augment_dict, "waveform": wave_aug, "copies": copies}

    # model, optimiser, schedule
    model = build_model(cfg.model, labels, X.shape[1], dropout=cfg.dropout).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(tr.sum() / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss(weight=class_w.to(device), label_smoothing=cfg.label_smoothing)
    meta = {
        "labels": labels, "feature": cfg.feature, "feature_key": feature_key(cfg.feature, feat_cfg),
        "clip": asdict(cfg.clip), "mean": mean.tolist(), "std": std.tolist(), "height": int(X.shape[1]),
        "model": cfg.model, "dropout": cfg.dropout, "speakers": split_speakers(manifest),
        "train_config": asdict(cfg), "augment": augment_dict,
        "corpus": sorted(map(str, manifest["corpus"].unique())),
    }
    start_epoch, best_uar, best_epoch, stale, seconds_before = 0, -1.0, -1, 0, 0.0
    if resume and (out / "resume.pt").exists():
        state = load_resume_state(out / "resume.pt", model, opt, sched)
        start_epoch, best_uar, best_epoch, stale = (state["epoch"] + 1, state["best_uar"],
                                                    state["best_epoch"], state["stale"])
        seconds_before = float(state.get("seconds", 0.0))  # older resume.pt files lack it
        log.info("resuming %s at epoch %d (best val UAR %.3f)", cfg.feature, start_epoch, best_uar)

    tracker = Tracker(out, experiment, run_name=f"{cfg.feature}", enabled=tracking)
    tracker.log_params({**asdict(cfg), "feature_config": feature_key(cfg.feature, feat_cfg),
                        "augment_chain": augment_dict, "n_train": int(tr.sum()), "n_val": int(va.sum()),
                        "n_test": int(te.sum()), "device": str(device)})
    idx_train = np.arange(len(y_train))
    t0 = time.perf_counter()
    epoch = start_epoch - 1
    # a resumed run that had already stopped early has nothing left to train
    end_epoch = start_epoch if stale >= cfg.patience else cfg.epochs
    bar = tqdm(range(start_epoch, end_epoch), desc=f"train {cfg.feature}", unit="epoch", disable=not progress)
    for epoch in bar:
        # one epoch: order and augmentation draws depend only on (seed, epoch), so a resume
        # replays exactly what an uninterrupted run would have done
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws, also per epoch
        order = rng.permutation(idx_train)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            xb = X_train[b, rng.integers(0, X_train.shape[1], size=len(b))]  # clean or a copy
            if augment is not None:
                xb = np.stack([augment(x, rng) for x in xb]).astype(np.float32)
            xb_t = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
            yb_t = torch.from_numpy(y_train[b]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                if cfg.mixup > 0:  # the draws come from the epoch's rng, so a resume replays them too
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
        train_loss = total / len(order)

        # evaluate on validation speakers; save on improvement; patience
        val_probs = predict_proba(model, Xn[va], device)
        val = evaluate_predictions(val_probs, y[va], labels, n_boot=0)
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

    # test the best checkpoint on the held-out speakers
    best, best_meta = load_checkpoint(out / "model.pt", device=device)
    probs = {s: predict_proba(best, Xn[m], device) for s, m in (("val", va), ("test", te))}
    groups = manifest["speaker"].to_numpy()
    result = {
        "feature": cfg.feature, "labels": labels, "best_epoch": best_meta["epoch"], "epochs_run": epoch + 1,
        # all sessions of a resumed run, so a study's leaderboard keeps the real cost
        "train_seconds": seconds_before + time.perf_counter() - t0, "device": str(device),
        "val": evaluate_predictions(probs["val"], y[va], labels, n_boot=0),
        "test": (evaluate_predictions(probs["test"], y[te], labels, n_boot=cfg.n_boot, seed=cfg.seed,
                                      groups=groups[te]) if te.any() else None),
    }
    write_json_atomic(out / "metrics.json", result)
    predictions_table(manifest, probs, labels).to_csv(out / "predictions.csv", index=False)
    tracker.finish(result, labels)
    return result


def _train_one(task: tuple) -> tuple[Path, dict]:
    """One run in a worker process (top level, so a spawned process can import it)."""
    split_df, run_cfg, run, kwargs, threads = task
    import torch

    torch.set_num_threads(threads)
    return run, train_feature(split_df, run_cfg, run, **kwargs)


def train_runs(tasks: list, *, parallel: int = 1, threads: int | None = None, progress: bool = True,
               **kwargs: Any) -> dict[Path, dict]:
    """Train every ``(manifest, config, out_dir)`` task with :func:`train_feature`.

    Args:
        tasks: the runs; their folders key the result.
        parallel: runs at a time; above 1 each run is a spawned process.
        threads: torch CPU threads per process (default: the cores shared out between them).
        progress: per-run bars in-process, one bar over the runs in parallel.
        kwargs: passed to every ``train_feature`` call (``cache_dir``, ``tracking``, ...).

    Returns:
        ``{out_dir: train_feature's result}``.
    """
    if parallel <= 1 or len(tasks) <= 1:
        return {run: train_feature(split_df, run_cfg, run, progress=progress, **kwargs)
                for split_df, run_cfg, run in tasks}
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    parallel = min(parallel, len(tasks))
    threads = threads or max(1, (os.cpu_count() or 1) // parallel)
    if kwargs.get("tracking"):  # the MLflow store is set up once here, not raced by every worker
        from .tracking import prepare_store

        prepare_store(kwargs.get("experiment", "ser"))
    # spawn, not fork: CUDA and torch's thread pools do not survive a fork
    with ProcessPoolExecutor(parallel, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, (split_df, run_cfg, run, {**kwargs, "progress": False}, threads))
                   for split_df, run_cfg, run in tasks]
        results = {}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="runs", unit="run", disable=not progress):
            run, res = fut.result()
            results[run] = res
            log.info("%s: val UAR %.3f", run, res["val"]["uar"])
    return results


def with_overrides(cfg: TrainConfig, **kw: Any) -> TrainConfig:
    """A copy of ``cfg`` with fields replaced (unknown names raise TypeError)."""
    return replace(cfg, **kw)
