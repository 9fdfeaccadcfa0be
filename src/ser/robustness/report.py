"""The robustness report: one model on its own test speakers, clean and under each condition.

:func:`robustness_report` reads top to bottom: the conditions (``ser.degrade``, "clean"
always first, each tried once on a short signal so a missing codec fails before any
work), the model(s) and their split (:mod:`ser.robustness.target`), the corpus, then per
model: decode its test clips once, score every condition
(:mod:`ser.robustness.score`), and finally the metrics of ``ser compare`` (accuracy, UAR,
macro-F1, bootstrap CIs over whole corpus-qualified speakers) per condition, pooled over
the folds of a fold study.

Writes into ``out_dir``: ``robustness.csv`` (condition, n, uar, lo, hi, accuracy,
macro_f1, delta_uar with its paired CI delta_lo..delta_hi, no_speech_fraction), ``robustness.md``, ``robustness.png``,
``recall_change.csv`` / ``.md`` (per-class recall and its change vs clean) and
``robustness.json`` (settings, conditions, split, timings, machine).

Example:
    >>> table = robustness_report("runs/demo/model/model.int8.onnx", corpus="ravdess",
    ...                           data="../shared/data/ravdess", conditions="telephone,snr10")  # doctest: +SKIP
    >>> table[["condition", "uar", "delta_uar"]]                                                 # doctest: +SKIP
"""
from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import SerError
from ..runtime import SINGLE_CLIP_FACTOR, SINGLE_CLIP_MIN_S
from ..evaluate import evaluate_predictions, paired_delta_ci
from ..splits import speaker_keys
from ..workers import cpu_cores
from .score import BATCH, decode, score_conditions
from .files import machine_note, write_report
from .scorers import RobustnessError
from .target import babble_rows, parse_speakers, resolve_targets, split_rows

log = logging.getLogger(__name__)

CLEAN = "clean"  # the reference condition, always scored first
BABBLE_CLIPS = 50  # training clips in the babble pool
COLUMNS = ["condition", "n", "uar", "lo", "hi", "accuracy", "macro_f1", "delta_uar", "delta_lo", "delta_hi",
           "no_speech_fraction"]


def resolve_conditions(conditions: str | Sequence[Any]) -> list[Any]:
    """``"all"``, a comma string, or names/conditions -> conditions, ``clean`` first, no repeats.

    Each is tried on 0.2 s of a tone, so an unknown name or a codec this machine lacks
    fails here (a ``DegradeError`` or :class:`RobustnessError`), before anything is loaded.
    """
    from ..degrade import get_condition, parse_conditions

    given = list(parse_conditions(conditions)) if isinstance(conditions, str) else [
        get_condition(c) if isinstance(c, str) else c for c in conditions]
    out: dict[str, Any] = {CLEAN: get_condition(CLEAN)}
    for c in given:
        out.setdefault(c.name, c)
    t = np.arange(3200) / 16000
    probe = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    for c in out.values():
        try:
            c(probe, sr=16000, seed=0, babble=[probe] if c.needs_babble else None)
        except Exception as e:  # a codec libsndfile lacks, say: one clear line, not a traceback halfway through
            if isinstance(e, SerError):  # DegradeError: the message is the degrade module's own
                raise
            raise RobustnessError(f"condition {c.name!r} does not run on this machine ({type(e).__name__}: {e}); "
                                  "leave it out of --conditions") from e
    return list(out.values())


def default_out(model: str | Path | None = None, bundle: str | Path | None = None,
                run_dirs: Sequence[str | Path] = ()) -> Path:
    """Where the report goes when no ``out_dir`` is given: beside the model.

    An exported model: ``<its folder>/robustness``; a bundle: ``<the ensemble folder>/robustness``
    (beside ``bundle/``, which ``ser ensemble`` replaces whole); a run: ``<run>/robustness``;
    a fold study's member (``STUDY/fold<i>/runs/NAME``): ``STUDY/robustness/NAME``.

    >>> default_out(model="m/model.int8.onnx").as_posix(), default_out(bundle="e/bundle").as_posix()
    ('m/robustness', 'e/robustness')
    >>> default_out(run_dirs=["s/fold0/runs/mel", "s/fold1/runs/mel"]).as_posix()
    's/robustness/mel'
    """
    if model is not None:
        return Path(model).parent / "robustness"
    if bundle is not None:
        b = Path(bundle)
        return (b.parent if b.suffix == ".json" else b).parent / "robustness"
    first = Path(run_dirs[0])
    return first / "robustness" if len(run_dirs) == 1 else first.parents[2] / "robustness" / first.name


def _command(source: tuple[str, Any], member, corpus, data, conditions, out, seed, n_boot, test_speakers,
             babble_clips, encoder_paths=None) -> str:
    argv = ["ser", "robustness", f"--{source[0]}", str(source[1])]
    argv += ["--member", member] if member else []
    argv += ["--corpus", corpus, "--data", str(data), "--conditions",
             conditions if isinstance(conditions, str) else ",".join(getattr(c, "name", c) for c in conditions),
             "--out", str(out), "--seed", str(seed), "--boot", str(n_boot)]
    argv += ["--test-speakers", ",".join(test_speakers)] if test_speakers else []
    argv += ["--babble-clips", str(babble_clips)] if babble_clips != BABBLE_CLIPS else []
    for name, path in (encoder_paths or {}).items():
        argv += ["--encoder-path", f"{name}={path}"]
    return shlex.join(argv)


def _targets(test: pd.DataFrame, labels: list[str], where: str) -> np.ndarray:
    unknown = sorted(set(test["emotion"]) - set(labels))
    if unknown:
        raise RobustnessError(f"{where}: test clips of emotions {unknown}, which the model does not know ({labels})")
    return test["emotion"].map({e: i for i, e in enumerate(labels)}).to_numpy(np.int64)


def _parity(pred_file: Path, test: pd.DataFrame, clean: np.ndarray, labels: list[str]) -> dict[str, Any] | None:
    """The clean condition vs the run's own test predictions (from cached features), by path."""
    df = pd.read_csv(pred_file, dtype={"path": str})
    df = df[df["split"] == "test"].set_index("path")
    hit = test["path"].astype(str).isin(df.index).to_numpy()
    if not hit.any():
        return None  # the corpus was read from another folder than at training
    ref = df.loc[test["path"].astype(str)[hit], [f"p_{lab}" for lab in labels]].to_numpy(np.float64)
    return {"n": int(hit.sum()), "max_abs_diff": float(np.abs(ref - clean[hit]).max())}


def condition_tables(conditions: Sequence[Any], probs: Mapping[str, Sequence[np.ndarray]],
                     silent: Mapping[str, Sequence[np.ndarray]], y: np.ndarray, groups: np.ndarray,
                     labels: list[str], n_boot: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The condition table (:data:`COLUMNS`) and the per-class recall table (``condition,
    label, support, recall, change``) from each condition's probabilities and no-speech
    flags (lists over folds, concatenated in the order of ``y`` and ``groups``)."""
    rows, recall = [], []
    clean_pred = np.concatenate(probs[conditions[0].name]).argmax(1)
    for c in conditions:
        p = np.concatenate(probs[c.name])
        m = evaluate_predictions(p, y, labels, n_boot=n_boot, seed=seed, groups=groups)
        lo, hi = m["ci"]["uar"] if n_boot else (np.nan, np.nan)
        # the change against clean on the same speaker resamples (paired): far tighter than lo..hi
        d_lo, d_hi = (paired_delta_ci(y, clean_pred, p.argmax(1), labels, n_boot, seed, groups)["uar"] if n_boot
                      else (np.nan, np.nan))
        rows.append({"condition": c.name, "n": m["n"], "uar": m["uar"], "lo": lo, "hi": hi,
                     "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "delta_lo": d_lo, "delta_hi": d_hi,
                     "no_speech_fraction": float(np.concatenate(silent[c.name]).mean())})
        recall += [{"condition": c.name, "label": lab, "support": v["support"], "recall": v["recall"]}
                   for lab, v in m["per_class"].items() if v["support"] > 0]
    table = pd.DataFrame(rows)
    table["delta_uar"] = table["uar"] - table["uar"].iloc[0]
    rec = pd.DataFrame(recall)
    clean = rec[rec["condition"] == conditions[0].name].set_index("label")["recall"]
    rec["change"] = rec["recall"] - rec["label"].map(clean)
    return table[COLUMNS], rec


def robustness_report(model: str | Path | None = None, *, bundle: str | Path | None = None,
                      runs: str | Path | None = None, member: str | None = None, corpus: str,
                      data: str | Path, conditions: str | Sequence[Any] = "all", out_dir: str | Path | None = None,
                      seed: int = 0, n_boot: int = 1000, test_speakers: str | Sequence[str] | None = None,
                      babble_clips: int = BABBLE_CLIPS, batch: int = BATCH, jobs: int | None = None,
                      threads: int | None = None, encoder_paths: Mapping[str, str | Path] | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """Score a model on its own test speakers, clean and under each condition, and write the report.

    Args:
        model: an exported ``.onnx`` (scored through the torch-free runtime), or
        bundle: a bundle folder, or
        runs: a run folder, or a study (single split or ``--folds``) with ``member``
            (scored with PyTorch, inputs computed fresh from the degraded audio).
        member: the run's name in a study.
        corpus, data: the corpus the model was trained on (as for ``ser compare``).
        conditions: ``"all"``, a comma list of ``ser.degrade`` presets, or conditions;
            ``clean`` is always scored, first.
        out_dir: report folder (default: :func:`default_out`).
        seed: degradation seed (per clip: :func:`ser.robustness.clip_seed`), babble pool
            and bootstrap seed. n_boot: bootstrap resamples of whole speakers (0: none).
        test_speakers: for a model that records no split: speakers it never saw.
        babble_clips: training clips in the babble pool. batch: clips per model call.
        jobs: batches scored at once, one thread each (default: the CPU cores).
        threads: onnxruntime threads per call (exported model; default 1 when ``jobs`` > 1,
            else onnxruntime's default).
        encoder_paths: ``{encoder name: weights path}`` for a bundle's or run's encoder
            members whose weights are no longer where training recorded them (checked by
            SHA-256, as ``ser.ensemble.load_bundle`` does). progress: a tqdm bar.

    Returns:
        The table of ``robustness.csv``: one row per condition, clean first
        (``attrs["out_dir"]`` holds the report folder).

    Raises:
        RobustnessError, DegradeError, ModelError, BundleError: bad input, named in the message.
    """
    from tqdm.auto import tqdm

    from ..corpora import load_manifest

    t_start = time.perf_counter()
    conds = resolve_conditions(conditions)
    jobs = jobs or cpu_cores()
    threads = threads or (1 if jobs > 1 else None)  # the threads of the jobs share the cores
    targets = resolve_targets(model, bundle, runs, member, threads, encoder_paths)
    given = parse_speakers(test_speakers)
    if given and len(targets) > 1:
        raise RobustnessError("--test-speakers does not go with a fold study: each fold scores its own test speakers")
    if babble_clips < 1:
        raise RobustnessError(f"babble_clips={babble_clips}: need at least 1")
    manifest = load_manifest(corpus, data)
    splits = [split_rows(manifest, t, given, f"{corpus} at {data}") for t in targets]
    needs = [c.name for c in conds if c.needs_babble]
    for t, (_, train) in zip(targets, splits):
        if needs and train.empty:
            raise RobustnessError(f"{', '.join(needs)} need training speakers' clips (babble) and {corpus} at {data} "
                                  f"has none of {t.source}'s; leave them out of --conditions")
    source = next((k, v) for k, v in (("model", model), ("bundle", bundle), ("runs", runs)) if v is not None)
    out = Path(out_dir) if out_dir is not None else default_out(model, bundle, [t.source for t in targets])

    bar = tqdm(total=sum(len(s[0]) for s in splits) * len(conds), desc="robustness", unit="clip",
               disable=not progress)
    labels: list[str] | None = None
    probs: dict[str, list[np.ndarray]] = {c.name: [] for c in conds}
    silent: dict[str, list[np.ndarray]] = {c.name: [] for c in conds}
    ys, groups, parts = [], [], []
    cond_s = {c.name: 0.0 for c in conds}
    for t, (test, train) in zip(targets, splits):
        t0 = time.perf_counter()
        scorer = t.load()
        if labels is not None and scorer.labels != labels:
            raise RobustnessError(f"{t.source} has labels {scorer.labels}, the first fold {labels}")
        labels = scorer.labels
        ys.append(_targets(test, labels, t.source))
        groups.append(speaker_keys(test).to_numpy(str))
        sr = int(scorer.clip.sample_rate)
        t1 = time.perf_counter()
        waves = decode(test["path"].tolist(), sr)
        pool = babble_rows(train, babble_clips, seed) if needs else train.iloc[:0]
        babble = decode(pool["path"].tolist(), sr) if needs else None
        t2 = time.perf_counter()
        scored = score_conditions(scorer, waves, conds, seed, babble, batch, jobs, bar)
        for c in conds:
            probs[c.name].append(scored.probs[c.name])
            silent[c.name].append(scored.no_speech[c.name])
            cond_s[c.name] += scored.seconds[c.name]
        long_s = max(SINGLE_CLIP_FACTOR * scorer.clip.seconds, SINGLE_CLIP_MIN_S)  # the service would window these
        parts.append({"fold": t.name, "source": t.source, "kind": t.kind, "n_test": len(test),
                      "test_speakers": sorted(set(groups[-1])),
                      "speakers_from": "--test-speakers" if given else "recorded split",
                      "babble_clips": len(pool), "babble_speakers": sorted(set(speaker_keys(pool))),
                      "long_clips": int(sum(len(y) / sr > long_s for y in waves)),
                      "parity_clean_vs_predictions_csv": _parity(t.predictions, test, scored.probs[CLEAN], labels)
                      if t.predictions else None,
                      "seconds": {"load": round(t1 - t0, 2), "decode": round(t2 - t1, 2),
                                  "score": round(time.perf_counter() - t2, 2)}})
        del scorer, waves, babble
    bar.close()

    table, rec = condition_tables(conds, probs, silent, np.concatenate(ys), np.concatenate(groups), labels,
                                  n_boot, seed)
    settings = {"source": {source[0]: str(source[1]), "member": member}, "kind": targets[0].kind, "corpus": corpus,
                "data": str(data), "seed": seed, "n_boot": n_boot, "babble_clips": babble_clips, "batch": batch,
                "jobs": jobs, "threads": threads, "test_speakers": given, "labels": labels, "n_classes": len(labels),
                "folds": len(targets), "ser_version": __version__}
    doc = {"command": _command(source, member, corpus, data, conditions, out, seed, n_boot, given, babble_clips,
                                  encoder_paths),
           "settings": settings, "conditions": [c.to_dict() for c in conds], "parts": parts,
           "timings": {"busy_s_per_condition": {k: round(v, 2) for k, v in cond_s.items()},
                       "total_s": round(time.perf_counter() - t_start, 2)},
           "machine": machine_note(threads), "results": table.to_dict("records")}
    write_report(out, table, rec, doc)
    table.attrs["out_dir"] = str(out)
    log.info("robustness of %s over %d conditions in %.1f s: report in %s", source[1], len(conds),
             doc["timings"]["total_s"], out)
    return table
