"""PyTorch fp32 vs ONNX fp32 vs int8 static vs int8 dynamic on the bundle's test speakers.

One table: file size, model latency (median of batch-1 runs at 1 and 2 threads, inputs
given: features, or the log-mel for an encoder member, whose encoder runs inside the
model), test accuracy and UAR, argmax agreement and max probability difference against
PyTorch (each ONNX file run as served: a dynamic-int8 graph one clip per call, so no
clip's figures depend on its batch). All run in the same process on the same inputs,
taking turns call by call, so the ratios are fair even while other processes load the
machine. A bundle with an encoder member gets one more row: static int8 with the encoder's MatMuls
quantized the other way (static QDQ instead of dynamic, or the reverse), exported to
``<export_dir>/encoder_<mode>/``, so the choice of :data:`ser.export.quantize.TRANSFORMER_INT8`
can be re-measured. ``export_scripts/test_quantization.py --compare`` is the thin shell
over :func:`compare_precisions`.

Example:
    >>> rows = compare_precisions("runs/demo/ensemble/bundle", "runs/demo/model",
    ...                           corpus="synthetic", data="data/synthetic")   # doctest: +SKIP
    >>> print(precision_table(rows))                                           # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..ensemble.bundle import EncoderMember, bundle_features, load_bundle, predict_bundle
from ..evaluate import classification_metrics
from ..runtime import EmotionModel
from .onnx_export import FILES, ExportError, agreement, export_bundle, split_manifest
from .quantize import TRANSFORMER_INT8

NAMES = {"pytorch": "PyTorch fp32", "fp32": "ONNX fp32", "int8_static": "ONNX int8 static (QDQ, per-channel)",
         "int8_dynamic": "ONNX int8 dynamic"}
OTHER = {"dynamic": "static", "static": "dynamic"}


def _encoder_mode(kind: str, mode: str) -> str:
    return f"{NAMES[kind]}, encoder MatMuls {mode}"


def _interleaved_ms(runs: dict[Any, tuple[Callable[[], Any], Callable[[], Any]]],
                    repeats: int) -> dict[Any, tuple[float, float]]:
    """Median wall and calling-thread CPU ms of each ``(setup, fn)``, timing ``fn`` only.

    The runs take turns (one timed call of each per round), so load from other processes,
    which comes and goes on a shared machine, falls on every row alike instead of on
    whichever ran at the time. With one thread, onnxruntime and PyTorch compute on the
    calling thread, so its CPU time is the model's cost on a core of its own, whatever
    else the machine runs (wall time then includes waiting for a core)."""
    for setup, fn in runs.values():
        setup()
        for _ in range(3):  # warm-up: allocations, kernel selection
            fn()
    times: dict[Any, list[tuple[float, float]]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, (setup, fn) in runs.items():
            setup()
            fn()  # untimed: caches refilled, the previous run's spinning thread pool gone quiet
            t, c = time.perf_counter(), time.thread_time()
            fn()
            times[key].append((time.perf_counter() - t, time.thread_time() - c))
    return {k: tuple(float(x) * 1000 for x in np.median(np.array(v), axis=0)) for k, v in times.items()}


def compare_precisions(bundle: str | Path, export_dir: str | Path, corpus: str, data: str | Path,
                       cache_dir: str | Path = "feature_cache", threads: Iterable[int] = (1, 2), repeats: int = 30,
                       progress: bool = True, clips: int | None = None) -> list[dict[str, Any]]:
    """Measure the precisions (exporting the missing ONNX files first).

    Args:
        bundle: the ensemble bundle folder. export_dir: where the ONNX files are (or go).
        corpus, data: the corpus the bundle was trained on (test speakers are scored).
        cache_dir: feature cache. threads: thread counts to time. repeats: timed runs each.
        clips: score this many test clips (a seeded sample), or all of them (None).

    Returns:
        One dict per precision: kind, name, size_mb, ms_<t>t per thread count (median
        wall time), cpu_ms_1t (median CPU time of the 1-thread calls, when 1 is in
        ``threads``), accuracy, uar, argmax_agreement and max_abs_diff (vs PyTorch), n.
    """
    import torch

    threads = [int(t) for t in threads]
    export_dir = Path(export_dir)
    models, meta = load_bundle(bundle)
    encoder = any(isinstance(m, EncoderMember) for m in models.values())
    files = {k: export_dir / f for k, f in FILES.items()}
    if encoder:  # the served int8 with the encoder's MatMuls quantized the other way
        other = OTHER[TRANSFORMER_INT8]
        files["int8_other"] = export_dir / f"encoder_{other}" / FILES["int8_static"]
    if not all(files[k].is_file() for k in FILES):
        export_bundle(bundle, export_dir, quantize="both", corpus=corpus, data=data, cache_dir=cache_dir,
                      progress=progress)
    if encoder and not files["int8_other"].is_file():
        export_bundle(bundle, files["int8_other"].parent, quantize="static", corpus=corpus, data=data,
                      cache_dir=cache_dir, progress=progress, transformer=other)
    manifest = split_manifest(meta, corpus, data)
    test = manifest[manifest["split"] == "test"]
    if test.empty:
        raise ExportError("no test-speaker clips to compare on")
    if clips is not None and clips < len(test):
        test = test.sample(n=clips, random_state=0).sort_index()
    x = bundle_features(meta, test, cache_dir, progress=progress)
    labels = list(meta["labels"])
    y = np.array([labels.index(e) for e in test["emotion"]])
    one = {k: v[:1] for k, v in x.items()}
    reference = predict_bundle((models, meta), x)
    torch_threads = torch.get_num_threads()  # restored after the PyTorch timings
    names = dict(NAMES)
    if encoder:
        names.update(int8_static=_encoder_mode("int8_static", TRANSFORMER_INT8),
                     int8_other=_encoder_mode("int8_static", OTHER[TRANSFORMER_INT8]),
                     int8_dynamic=_encoder_mode("int8_dynamic", "dynamic"))
    rows, runs = [], {}
    for kind in ("pytorch", *files):
        row: dict[str, Any] = {"kind": kind, "name": names[kind], "n": int(len(y))}
        if kind == "pytorch":
            probs = reference
            size = sum((Path(bundle) / m["checkpoint"]).stat().st_size for m in meta["members"])
            size += sum(4 * p.numel() for e in {id(m.encoder): m.encoder for m in models.values()
                                                 if isinstance(m, EncoderMember)}.values() for p in e.parameters())
            for t in threads:
                runs[(kind, t)] = (lambda t=t: torch.set_num_threads(int(t)),
                                   lambda: predict_bundle((models, meta), one))
        else:
            size = files[kind].stat().st_size
            probs = EmotionModel(files[kind]).run(x)
            for t in threads:
                model = EmotionModel(files[kind], threads=int(t))
                runs[(kind, t)] = (lambda: None, lambda model=model: model.run(one))
        scores = classification_metrics(y, probs.argmax(1), labels)
        row.update(size_mb=size / 2**20, accuracy=float(scores["accuracy"]), uar=float(scores["uar"]),
                   **{k: v for k, v in agreement(probs, reference).items() if k != "n"})
        rows.append(row)
    # by thread count, then row: a 2-thread pool still spinning after its call would slow the next
    # 1-thread call down; this way that happens once per round, before the untimed call
    runs = dict(sorted(runs.items(), key=lambda kv: (kv[0][1], list(files).index(kv[0][0]) + 1 if kv[0][0] in files
                                                     else 0)))
    try:
        with torch.inference_mode():
            ms = _interleaved_ms(runs, repeats)
    finally:
        torch.set_num_threads(torch_threads)
    for row in rows:
        row.update({f"ms_{t}t": ms[(row["kind"], t)][0] for t in threads})
        if 1 in threads:
            row["cpu_ms_1t"] = ms[(row["kind"], 1)][1]
    return rows


def precision_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, with speed-ups against ONNX fp32 (and the 1-thread CPU
    time per call, when measured: the figure that other processes on the machine do not move)."""
    threads = sorted(int(k[3:-1]) for k in rows[0] if k.startswith("ms_"))
    cpu = ["cpu_ms_1t"] if "cpu_ms_1t" in rows[0] else []
    base = next(r for r in rows if r["kind"] == "fp32")
    head = ["model", "size MB", *[f"latency {t} thr (ms)" for t in threads], *["CPU time 1 thr (ms)" for _ in cpu],
            f"speed-up vs ONNX fp32 ({threads[0]} thr)", "test accuracy", "test UAR", "argmax agreement vs PyTorch",
            "max abs prob diff vs PyTorch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], f"{r['size_mb']:.1f}", *[f"{r[f'ms_{t}t']:.2f}" for t in threads],
                 *[f"{r[k]:.2f}" for k in cpu],
                 f"{base[f'ms_{threads[0]}t'] / r[f'ms_{threads[0]}t']:.2f}x", f"{r['accuracy']:.3f}", f"{r['uar']:.3f}",
                 f"{r['argmax_agreement']:.1%}", f"{r['max_abs_diff']:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
