"""Training-recipe sweep: several TrainConfig variants x representations x seeds, in parallel.

For choosing training settings: every run uses the same speaker-disjoint split as ``ser
compare``; recipes are ranked by mean VALIDATION UAR (the test columns are reported,
never used to rank). Runs go to ``OUT/<recipe>/s<seed>/<feature>/``; ``OUT/sweep.csv``
has one row per run and ``OUT/sweep.md`` one row per recipe. A finished run
(``metrics.json`` present) is not redone.

Example (the grid is a JSON object: recipe name -> TrainConfig overrides):

    ser sweep --corpus ravdess --data ../shared/data/ravdess --features mel,mfcc --seeds 0,1 \
        --parallel 8 --out runs/sweep \
        --grid '{"e20": {}, "e60_mix": {"epochs": 60, "patience": 100, "mixup": 0.4}}'
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .cache import DEFAULT_ROOT
from .errors import SerError
from .features import resolve_names
from .modelmeta import channel_spec
from .cache import extract_corpus
from .runner import train_runs
from .train import TrainConfig, TrainResult, waveform_chain

log = logging.getLogger(__name__)


class SweepError(SerError, ValueError):
    """A grid that does not describe training recipes."""


def _row(res: TrainResult) -> dict:
    test = res.test
    return {"val_uar": res.val["uar"], "test_uar": test["uar"], "test_lo": test["ci"]["uar"][0],
            "test_hi": test["ci"]["uar"][1], "test_accuracy": test["accuracy"], "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run, "train_seconds": round(res.train_seconds, 1), "device": res.device}


def _markdown(df: pd.DataFrame) -> str:
    head = ["recipe", *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in zip(df.index, df.itertuples(index=False))]
    return "\n".join(lines)


def recipe_config(base: TrainConfig, overrides: Mapping[str, Any], **fields: Any) -> TrainConfig:
    """``base`` with a recipe's overrides (and ``fields``) applied.

    JSON grids name nested configs by value: ``"augment"`` is ``true``/``false`` (on or
    off) or an object of ``AugmentConfig`` fields, ``"clip"`` an object of ``ClipConfig``
    fields.

    Example:
        >>> recipe_config(TrainConfig(), {"augment": False, "clip": {"seconds": 2.0}}).augment.enabled
        False
    """
    ov = {**overrides, **fields}
    if isinstance(ov.get("augment"), bool):
        ov["augment"] = replace(base.augment, enabled=ov["augment"])
    elif isinstance(ov.get("augment"), Mapping):
        ov["augment"] = replace(base.augment, **ov["augment"])
    if isinstance(ov.get("clip"), Mapping):
        ov["clip"] = replace(base.clip, **ov["clip"])
    try:
        return replace(base, **ov)
    except TypeError as e:
        raise SweepError(f"recipe overrides {dict(overrides)}: {e}") from e


def check_grid(grid: Any) -> None:
    """Raise :class:`SweepError` unless ``grid`` maps recipe names to ``TrainConfig`` overrides."""
    if not isinstance(grid, Mapping) or not grid or not all(isinstance(v, Mapping) for v in grid.values()):
        raise SweepError('the grid must map recipe names to objects of TrainConfig fields, '
                         'e.g. {"e40": {"epochs": 40}}')
    for recipe, ov in grid.items():
        unknown = set(ov) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise SweepError(f"recipe {recipe!r}: unknown TrainConfig fields {sorted(unknown)}")


def sweep(manifest: pd.DataFrame, grid: Mapping[str, Mapping[str, Any]], features: str | Iterable[str],
          out_dir: str | Path, *, seeds: Iterable[int] = (0,), base: TrainConfig = TrainConfig(),
          cache_dir: str | Path = DEFAULT_ROOT, parallel: int = 1, threads: int = 1, jobs: int = 1,
          progress: bool = True) -> pd.DataFrame:
    """Train every recipe x feature x seed on one split; rank the recipes by validation UAR.

    Args:
        manifest: a manifest with a ``split`` column (``speaker_split``).
        grid: recipe name -> ``TrainConfig`` field overrides, e.g. ``{"e60": {"epochs": 60}}``.
        features: ``"all"``, a comma list or names.
        out_dir: the sweep folder (see module docstring).
        seeds: training seeds. base: the config the overrides apply to.
        parallel: runs at a time (above 1, each in a spawned process with ``threads`` CPU threads).
        jobs: feature extraction processes (all entries are made before training starts).

    Returns:
        One row per run (recipe, seed, feature, val/test UAR, best epoch, seconds).

    Example:
        >>> sweep(m, {"e20": {}, "e40": {"epochs": 40}}, "mel", "runs/sweep", seeds=[0, 1])  # doctest: +SKIP
    """
    names, seeds, out = resolve_names(features), list(seeds), Path(out_dir)
    check_grid(grid)
    if not seeds:
        raise SweepError("no seeds: pass at least one, e.g. seeds=[0]")
    t0 = time.perf_counter()
    # every cache entry the runs need, made once with all processes (the runs only read)
    channel = channel_spec(base.channel)
    extract_corpus(manifest, names, clip=base.clip, cache_dir=cache_dir, jobs=jobs, progress=progress, channel=channel)
    chains = {}
    for seed in seeds:
        for ov in grid.values():
            cfg = recipe_config(base, ov, seed=seed)
            chain, copies = waveform_chain(cfg)
            if copies:
                chains[json.dumps([chain, copies, asdict(cfg.clip)], sort_keys=True)] = (chain, copies, cfg.clip)
    for chain, copies, clip in chains.values():
        extract_corpus(manifest[manifest["split"] == "train"], names, clip=clip, cache_dir=cache_dir, jobs=jobs,
                       progress=progress, augment=chain, copies=copies, channel=channel)
    log.info("features ready in %.0f s", time.perf_counter() - t0)

    runs = {(recipe, seed, name): (manifest, recipe_config(base, ov, feature=name, seed=seed), out / recipe / f"s{seed}" / name)
            for recipe, ov in grid.items() for seed in seeds for name in names}
    # a finished run is read back, not redone (re-testing it would lose its training time)
    done = {t[2]: TrainResult.from_dict(json.loads((t[2] / "metrics.json").read_text()))
            for t in runs.values() if (t[2] / "metrics.json").is_file()}
    done.update(train_runs([t for t in runs.values() if t[2] not in done], parallel=parallel, threads=threads,
                           progress=progress, cache_dir=cache_dir, tracking=False))
    rows = [{"recipe": recipe, "seed": seed, "feature": name, **_row(done[t[2]])}
            for (recipe, seed, name), t in runs.items()]
    df = pd.DataFrame(rows).sort_values(["recipe", "feature", "seed"]).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "sweep.csv", index=False)
    (out / "sweep.md").write_text(sweep_markdown(df, grid) + f"\nWall time {time.perf_counter() - t0:.0f} s.\n")
    return df


def sweep_markdown(df: pd.DataFrame, grid: Mapping[str, Mapping[str, Any]]) -> str:
    """Recipes ranked by mean validation UAR, then mean UARs per feature."""
    summary = (df.groupby("recipe")[["val_uar", "test_uar", "best_epoch", "train_seconds"]].mean()
               .sort_values("val_uar", ascending=False))
    summary["overrides"] = [json.dumps(grid[r]) for r in summary.index]
    per_feature = df.pivot_table(index="recipe", columns="feature", values=["val_uar", "test_uar"], aggfunc="mean")
    per_feature.columns = [f"{m} {f}" for m, f in per_feature.columns]
    return ("# Recipe sweep (ranked by mean validation UAR)\n\n" + _markdown(summary.round(3)) +
            "\n\n## Per feature (mean over seeds)\n\n" + _markdown(per_feature.round(3)) + "\n")
