"""Training-recipe sweep: several TrainConfig variants x representations x seeds, in parallel.

A thin shell over ``ser.train.train_feature`` for choosing training defaults: every run uses
the same speaker-disjoint split as ``ser compare``; recipes are ranked by mean VALIDATION
UAR (the test columns are reported, never used to rank). Runs go to
``OUT/<recipe>/s<seed>/<feature>/``; ``OUT/sweep.csv`` has one row per run and
``OUT/sweep.md`` one row per recipe. A finished run (``metrics.json`` present) is not redone.

Example (the grid is a JSON object: recipe name -> TrainConfig overrides):

    python scripts/sweep.py --corpus ravdess --data ../shared/data/ravdess \\
        --features mel,mfcc --seeds 0,1 --parallel 8 --out runs/sweep \\
        --grid '{"e20": {}, "e60_mix": {"epochs": 60, "patience": 100, "mixup": 0.4}}'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import multiprocessing as mp


def _run(args: tuple) -> dict:
    manifest, cfg, out, cache, threads = args
    import torch

    torch.set_num_threads(threads)
    from ser.train import train_feature

    metrics = Path(out) / "metrics.json"
    if metrics.exists():
        res = json.loads(metrics.read_text())
    else:
        res = train_feature(manifest, cfg, out, cache_dir=cache, tracking=False, progress=False)
    test = res["test"]
    return {"val_uar": res["val"]["uar"], "test_uar": test["uar"], "test_lo": test["ci"]["uar"][0],
            "test_hi": test["ci"]["uar"][1], "test_accuracy": test["accuracy"], "best_epoch": res["best_epoch"],
            "epochs_run": res["epochs_run"], "train_seconds": round(res["train_seconds"], 1),
            "device": res.get("device", "")}


def _markdown(df) -> str:
    head = ["recipe", *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in zip(df.index, df.itertuples(index=False))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--features", default="mel,mfcc,delta_mfcc", help="comma list or 'all'")
    p.add_argument("--grid", required=True, help="JSON object (or a .json file): recipe -> TrainConfig overrides")
    p.add_argument("--seeds", default="0", help="comma list of training seeds")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--cache", type=Path, default=Path("feature_cache"))
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (processes)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="feature extraction processes")
    args = p.parse_args(argv)

    import pandas as pd

    from ser.corpora import load_manifest
    from ser.featurize import extract_corpus, resolve_names
    from ser.splits import speaker_split
    from ser.train import TrainConfig, _waveform_chain

    grid = json.loads(Path(args.grid).read_text() if args.grid.endswith(".json") else args.grid)
    names = resolve_names(args.features)
    seeds = [int(s) for s in args.seeds.split(",")]
    manifest = speaker_split(load_manifest(args.corpus, args.data))
    base = TrainConfig()
    t0 = time.perf_counter()
    # every cache entry the runs need, computed once with all processes (runs only read)
    extract_corpus(manifest, names, clip=base.clip, cache_dir=args.cache, jobs=args.jobs)
    for seed in sorted({s for s in seeds}):
        for ov in grid.values():
            cfg = replace(base, seed=seed, **ov)
            chain, copies = _waveform_chain(cfg)
            if copies:
                extract_corpus(manifest[manifest["split"] == "train"], names, clip=cfg.clip,
                               cache_dir=args.cache, jobs=args.jobs, augment=chain, copies=copies)
    print(f"features ready in {time.perf_counter() - t0:.0f} s", flush=True)

    tasks = {}
    for recipe, ov in grid.items():
        for seed in seeds:
            for name in names:
                cfg = replace(base, feature=name, seed=seed, **ov)
                out = args.out / recipe / f"s{seed}" / name
                tasks[(recipe, seed, name)] = (manifest, cfg, out, args.cache, args.threads)
    rows = []
    with ProcessPoolExecutor(args.parallel, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run, t): k for k, t in tasks.items()}
        for fut in as_completed(futures):
            recipe, seed, name = futures[fut]
            row = {"recipe": recipe, "seed": seed, "feature": name, **fut.result()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows).sort_values(["recipe", "feature", "seed"])
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "sweep.csv", index=False)
    summary = (df.groupby("recipe")[["val_uar", "test_uar", "best_epoch", "train_seconds"]].mean()
               .sort_values("val_uar", ascending=False))
    summary["overrides"] = [json.dumps(grid[r]) for r in summary.index]
    per_feature = df.pivot_table(index="recipe", columns="feature", values=["val_uar", "test_uar"], aggfunc="mean")
    per_feature.columns = [f"{m} {f}" for m, f in per_feature.columns]
    text = ("# Recipe sweep (ranked by mean validation UAR)\n\n" + _markdown(summary.round(3)) +
            "\n\n## Per feature (mean over seeds)\n\n" + _markdown(per_feature.round(3)) +
            f"\n\nWall time {time.perf_counter() - t0:.0f} s.\n")
    (args.out / "sweep.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
