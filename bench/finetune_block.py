"""Does fine-tuning the encoder's next block help a member? An accuracy experiment.

A member reads layer ``L`` of a frozen Whisper encoder. Here the pretrained blocks
``L+1 .. L+N`` are copied on top of the cached layer-``L`` states and trained together
with the attentive-statistics head (``--blocks N``); ``--blocks 0`` trains the head alone
with the same loop, the reference. Mixup 0.4, AdamW (weight decay 0.05), head lr 1e-3,
block lr ``--lr-blocks``. Each fold reports the test UAR at the epoch of best validation
UAR (validation speakers only choose the epoch). The states come from the feature cache
(``ser.cache.load_encoder_states``), so only the trained blocks cost time: on the 2-core
CPU one base block over RAVDESS's ~1000 training clips costs ~25-50 s an epoch.

    OMP_NUM_THREADS=2 python bench/finetune_block.py --encoder whisper_base --layer 4 \
        --blocks 1 --folds 6 --only 0 1 --epochs 20
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from ser.cache import load_encoder_states
from ser.corpora import emotion_labels, load_manifest
from ser.encoders import get_encoder
from ser.evaluate import classification_metrics
from ser.models import AttentiveStatsHead
from ser.splits import speaker_folds


class TunedBlocks(nn.Module):
    """Pretrained blocks (trainable copies) + attentive statistics head over (B, D, T) states."""

    def __init__(self, blocks: list[nn.Module], labels: list[str], dims: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(copy.deepcopy(b).requires_grad_(True) for b in blocks)
        self.head = AttentiveStatsHead(labels, dims, dropout=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        return self.head(h.transpose(1, 2))


def predict(model: nn.Module, X: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(X[rows[i:i + 64]]).argmax(1) for i in range(0, len(rows), 64)]).numpy()


def run_fold(X, y, split, labels, blocks, args, fold) -> tuple[float, float, int]:
    torch.manual_seed(args.seed)
    model = TunedBlocks(blocks, labels, X.shape[1])
    opt = torch.optim.AdamW([{"params": model.blocks.parameters(), "lr": args.lr_blocks},
                             {"params": model.head.parameters(), "lr": 1e-3}], weight_decay=0.05)
    tr, va, te = (np.where(split == s)[0] for s in ("train", "val", "test"))
    best = (-1.0, 0.0, -1)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        rng = np.random.default_rng(args.seed + epoch)
        order = rng.permutation(tr)
        for i in range(0, len(order), 32):
            b = order[i:i + 32]
            lam, mate = float(rng.beta(0.4, 0.4)), torch.from_numpy(rng.permutation(len(b)))
            logits = model(lam * X[b] + (1 - lam) * X[b][mate])
            loss = lam * nn.functional.cross_entropy(logits, y[b]) + \
                (1 - lam) * nn.functional.cross_entropy(logits, y[b][mate])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = classification_metrics(y[va].numpy(), predict(model, X, va), labels)["uar"]
        test = classification_metrics(y[te].numpy(), predict(model, X, te), labels)["uar"]
        if val > best[0]:
            best = (val, test, epoch)
        print(f"fold {fold} epoch {epoch}: val UAR {val:.3f}, test UAR {test:.3f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--data", default="../shared/data/ravdess")
    ap.add_argument("--encoder", default="whisper_base")
    ap.add_argument("--layer", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=1, help="pretrained blocks tuned above the layer (0: head only)")
    ap.add_argument("--lr-blocks", type=float, default=3e-5)
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--only", type=int, nargs="*", help="fold indices to run (default: all)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    manifest = load_manifest(args.corpus, args.data)
    labels, codes = emotion_labels(manifest)
    y = torch.tensor(codes)
    X = torch.from_numpy(load_encoder_states(manifest, args.encoder, args.layer, progress=False)).float()
    encoder = get_encoder(args.encoder)
    blocks = list(encoder.blocks[args.layer:args.layer + args.blocks])
    if len(blocks) != args.blocks:
        ap.error(f"{args.encoder} has {len(encoder.blocks)} blocks; layer {args.layer} + {args.blocks} is beyond them")
    splits = speaker_folds(manifest, args.folds, seed=0)
    results = []
    for fold in (args.only if args.only else range(args.folds)):
        val, test, epoch = run_fold(X, y, splits[fold]["split"].to_numpy(), labels, blocks, args, fold)
        results.append((val, test))
        print(f"fold {fold}: best val UAR {val:.3f} at epoch {epoch}, test UAR there {test:.3f}", flush=True)
    v, t = np.mean(results, axis=0)
    print(f"{args.encoder}@{args.layer} +{args.blocks} tuned block(s), folds {args.only or 'all'}: "
          f"mean val UAR {v:.3f}, mean test UAR {t:.3f}")


if __name__ == "__main__":
    main()
