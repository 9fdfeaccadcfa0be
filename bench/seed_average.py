"""Average the test probabilities of the same members from several fold studies (seeds).

Each study is a ``ser compare --folds k`` folder run with another ``--seed``. Per fold,
the members' test probabilities (``predictions.csv``) are averaged with equal weights.
The pooled test UAR is printed with a 95% CI from 1000 resamples of whole speakers,
for each member per study, each member over the studies, and all members together.

    python bench/seed_average.py runs/enc_ravdess_f6 runs/enc_ravdess_f6_s1 \\
        --features whisper_base@4,whisper_tiny_en@2
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ser.evaluate import evaluate_predictions


def fold_predictions(study: Path, member: str) -> list[pd.DataFrame]:
    """The member's test rows per fold, in path order (so studies line up clip by clip)."""
    folds = sorted(study.glob("fold*"), key=lambda p: int(p.name[4:]))
    if not folds:
        raise SystemExit(f"{study}: no fold folders; pass `ser compare --folds` studies")
    return [pd.read_csv(f / "runs" / member / "predictions.csv", dtype={"speaker": str})
            .query("split == 'test'").sort_values("path").reset_index(drop=True) for f in folds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="+", type=Path)
    ap.add_argument("--features", required=True, help="comma list of member runs in every study")
    args = ap.parse_args()

    members = args.features.split(",")
    preds = {(s, m): fold_predictions(s, m) for s in args.studies for m in members}
    first = preds[(args.studies[0], members[0])]
    labels = [c[2:] for c in first[0].columns if c.startswith("p_")]
    y = np.concatenate([f["emotion"].map({lab: i for i, lab in enumerate(labels)}).to_numpy() for f in first])
    speakers = np.concatenate([(f["corpus"] + "/" + f["speaker"]).to_numpy() for f in first])
    for frames in preds.values():
        if any(not a["path"].equals(b["path"]) for a, b in zip(frames, first)):
            raise SystemExit("the studies' folds hold different test clips: use the same --folds and --split-seed")

    def report(name: str, keys: list) -> None:
        probs = np.concatenate([np.mean([preds[k][i][[f"p_{lab}" for lab in labels]].to_numpy() for k in keys], 0)
                                for i in range(len(first))])
        m = evaluate_predictions(probs, y, labels, n_boot=1000, seed=0, groups=speakers)
        print(f"{name}: test UAR {m['uar']:.3f} [{m['ci']['uar'][0]:.3f}, {m['ci']['uar'][1]:.3f}]")

    for m in members:
        for s in args.studies:
            report(f"{m}, {s}", [(s, m)])
        report(f"{m}, every study averaged", [(s, m) for s in args.studies])
    for s in args.studies:
        report(f"all members, {s}", [(s, m) for m in members])
    report("all members, every study averaged", list(preds))


if __name__ == "__main__":
    main()
