"""Would encoder members gain from the waveform chain's copies? An accuracy experiment.

Training gives encoder members waveform copies only for channel conditions
(``ser.train.waveform_chain``: an encoder pass per copy is paid for channel robustness,
not for pitch and gain). This script lifts that rule for one study: every member gets
``COPIES`` copies through the full default chain (time shift, pitch shift, coloured
noise, low/high-pass, gain), encoded and cached like the condition copies, then the
session-5 recipe over speaker folds. Compare its leaderboard and ``ser ensemble`` with
the plain study's (``docs/results/encoders.md``).

    OMP_NUM_THREADS=1 python bench/encoder_waveaug.py --copies 2 --out runs/waveaug2_f6
    ser ensemble --runs runs/waveaug2_f6 --top 2 --trials 100 --objective log_loss \\
        --out runs/waveaug2_f6/ensemble_ll --no-tracking
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import ser.train
from ser.augment import AugmentConfig, waveform_augmentation
from ser.cache.encoded_copies import load_encoder_copies
from ser.corpora import load_manifest
from ser.study import run_study


def full_chain(cfg: ser.train.TrainConfig):
    """``waveform_chain`` without the encoder exception: the whole chain for every member."""
    if not cfg.augment.enabled or cfg.augment.copies <= 0:
        return None, 0
    return waveform_augmentation(replace(cfg.augment, seed=cfg.seed), chain=True).to_dict(), cfg.augment.copies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--data", default="../shared/data/ravdess")
    ap.add_argument("--features", default="whisper_tiny_en@2,whisper_base@4")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ser.train.waveform_chain = full_chain  # the runs train in this process, so they see it
    manifest = load_manifest(args.corpus, args.data)
    cfg = ser.train.TrainConfig(epochs=60, patience=15, dropout=0.5, weight_decay=0.05, mixup=0.4,
                                augment=AugmentConfig(copies=args.copies))
    chain, _ = full_chain(cfg)
    for feature in args.features.split(","):
        name, layer = feature.split("@")
        t0 = time.perf_counter()  # every clip's copies, once: each fold's training clips are a subset
        load_encoder_copies(manifest, name, int(layer), augment=chain, copies=args.copies, progress=True)
        print(f"copies of {feature}: {time.perf_counter() - t0:.0f} s", flush=True)
    board = run_study(manifest, args.features, cfg, args.out, folds=args.folds, tracking=False, progress=False,
                      baseline=False)
    print(board[["feature", "val_uar", "test_uar"]].to_string(index=False))


if __name__ == "__main__":
    main()
