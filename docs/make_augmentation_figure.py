"""Draw docs/img/augmentation_mel.png: a log-mel spectrogram before and after the
feature augmentation the policy gives ``mel`` (time masks, frequency masks, time roll).

Usage (from the repository root):
    PYTHONPATH=src python docs/make_augmentation_figure.py [--clip FILE] [--seed N] [--out PNG]

Uses a RAVDESS clip from ../shared/data when present, else a synthetic voiced clip.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import librosa  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ser.audio import SAMPLE_RATE, load_audio, prepare_clip  # noqa: E402
from ser.augment import AugmentConfig, augmentation_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared/data/ravdess/Actor_01/03-01-05-02-01-01-01.flac"  # angry, "Kids are talking..."


def synthetic_clip(seconds: float = 3.0) -> np.ndarray:
    """A voiced, gliding harmonic tone with syllable-like bursts (speech-like enough to see masks)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(140 + 40 * np.sin(2 * np.pi * 0.8 * t)) / SAMPLE_RATE
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    y = env * sum(np.sin(k * phase) / k for k in range(1, 30))
    return (0.1 * y + 0.002 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=64)
    return librosa.power_to_db(mel, ref=1.0).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/img/augmentation_mel.png")
    args = ap.parse_args()

    if args.clip.is_file():
        y, source = prepare_clip(load_audio(args.clip)), args.clip.name
    else:
        y, source = synthetic_clip(), "synthetic voiced clip"
    before = log_mel(y)
    aug = augmentation_for("mel", AugmentConfig(p=1.0))  # force every step, to show them all
    after = aug(before, args.seed)
    steps = ", ".join(f"{s['name']}" for s in aug.chain.to_dict()["steps"])

    fig, axes = plt.subplots(2, 1, figsize=(6.4, 4.4), sharex=True, constrained_layout=True)
    lo, hi = float(before.min()), float(before.max())
    sec = before.shape[1] * 256 / SAMPLE_RATE
    for ax, img, title in ((axes[0], before, f"log-mel, 64 x {before.shape[1]} ({source})"),
                           (axes[1], after, f"after augmentation_for('mel'), p=1: {steps}")):
        im = ax.imshow(img, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi,
                       extent=(0, sec, 0, img.shape[0]), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel band")
    axes[1].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes, label="dB", shrink=0.8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
