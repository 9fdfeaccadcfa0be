"""Pool the test predictions of a ``ser compare --folds k`` study's finished runs.

For a study whose runs finished but whose leaderboard was not written (the process
was stopped after the last training, or the runs were trained on another machine and
only their ``predictions.csv`` and ``metrics.json`` were copied back). Pools every
fold's test predictions per representation exactly as ``ser compare`` does (every
speaker tested once, bootstrap over whole speakers), and adds the equal-weight
average of the representations' probabilities: it has no weights to fit, so nothing
is tuned on the test speakers.

    python scripts/pooled_board.py runs/ravdess_folds6 --features mel,linear,delta_mfcc
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ser.compare import _pooled_test
from ser.evaluate import evaluate_predictions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("study", type=Path, help="the study folder (with fold0/, fold1/, ...)")
    p.add_argument("--features", required=True, help="comma list of run names")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    folds = sorted(args.study.glob("fold*"), key=lambda f: int(f.name[4:]))
    if not folds:
        p.error(f"no fold folders in {args.study}")
    rows, pooled = [], {}
    for name in args.features.split(","):
        dirs = [f / "runs" / name for f in folds]
        missing = [str(d) for d in dirs if not (d / "predictions.csv").is_file()]
        if missing:
            p.error(f"unfinished runs: {', '.join(missing)}")
        probs, y, groups, labels = _pooled_test(dirs)
        pooled[name] = (probs, y, groups)
        m = evaluate_predictions(probs, y, labels, n_boot=args.n_boot, seed=args.seed, groups=groups)
        per_fold = [json.loads((d / "metrics.json").read_text()) for d in dirs]
        rows.append((name, m, np.mean([r["val"]["uar"] for r in per_fold]),
                     ", ".join(f"{r['test']['uar']:.2f}" for r in per_fold)))
    y, groups = next(iter(pooled.values()))[1:]
    if len(pooled) > 1 and all((v[1] == y).all() and (v[2] == groups).all() for v in pooled.values()):
        avg = np.mean([v[0] for v in pooled.values()], axis=0)
        m = evaluate_predictions(avg, y, labels, n_boot=args.n_boot, seed=args.seed, groups=groups)
        rows.append(("equal-weight average", m, float("nan"), ""))
    print(f"{len(folds)} folds, {len(y)} test clips, {len(set(groups))} test speakers")
    print("| representation | pooled test UAR [95% CI] | accuracy [95% CI] | mean val UAR | test UAR per fold |")
    print("|---|---|---|---|---|")
    for name, m, val, per in rows:
        ci = m["ci"]
        print(f"| {name} | {m['uar']:.3f} [{ci['uar'][0]:.3f}, {ci['uar'][1]:.3f}] | {m['accuracy']:.3f} "
              f"[{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}] | {val:.3f} | {per} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

