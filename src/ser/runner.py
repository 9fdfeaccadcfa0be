"""Many training runs at once: one process per run, or in-process when there is one.

A study (``ser compare``) and a sweep (``ser sweep``) both hand their ``(manifest,
config, out_dir)`` tasks to :func:`train_runs`; each run is :func:`ser.train.train_feature`.
Above one run at a time, every run is a *spawned* process with its share of the CPU
threads (CUDA and torch's thread pools do not survive a fork), from ``ser.workers``: the
workers end with the study, whether it finished, failed, was interrupted or was killed.

Example:
    >>> from ser.runner import train_runs
    >>> train_runs([])
    {}
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .tracking import prepare_store
from .train import TrainResult, train_feature
from .workers import cpu_cores, spawn_pool

log = logging.getLogger(__name__)


def _train_one(task: tuple) -> tuple[Path, TrainResult]:
    """One run in a worker process (top level, so a spawned process can import it)."""
    split_df, run_cfg, run, kwargs, threads = task
    import torch  # the worker's own thread count, set before its first tensor

    torch.set_num_threads(threads)
    return run, train_feature(split_df, run_cfg, run, **kwargs)


def train_runs(tasks: list, *, parallel: int = 1, threads: int | None = None, progress: bool = True,
               **kwargs: Any) -> dict[Path, TrainResult]:
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
    parallel = min(parallel, len(tasks))
    threads = threads or max(1, cpu_cores() // parallel)
    if kwargs.get("tracking"):  # the MLflow store is set up once here, not raced by every worker
        prepare_store(kwargs.get("experiment", "ser"))
    jobs = [(split_df, run_cfg, run, {**kwargs, "progress": False}, threads) for split_df, run_cfg, run in tasks]
    results = {}
    # spawned workers that stop with this process: Ctrl-C or a killed study leaves no run behind
    with spawn_pool(parallel) as pool:
        for run, res in tqdm(pool.imap_unordered(_train_one, jobs), total=len(jobs), desc="runs", unit="run",
                             disable=not progress):
            results[run] = res
            log.info("%s: val UAR %.3f", run, res.val["uar"])
    return results


__all__ = ["train_runs"]
