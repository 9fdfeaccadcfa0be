"""Scoring one model under every condition: decode once, degrade in memory, predict in batches.

Each test clip is decoded once (``ser.audio.load_audio`` at the model's clip rate) and
kept; every condition then degrades the decoded waveform in memory, before clip
preparation, with a seed of its own per clip: :func:`clip_seed` of the report's seed, the
condition's name and the decoded audio's SHA-256. The degraded audio therefore depends
on the audio and the condition only, not on the model, the file's path or the order of
the clips: every model scored with the same seed hears the identical degraded clips.

Work goes by batches of clips of one condition, ``jobs`` batches at once, each in its own
thread from start to end: degrade, the voice-activity check (``ser.vad.detect_speech``,
recorded, never deciding the answer), the model's inputs, the model. On a 2-core CPU two
batches side by side, each onnxruntime call on one thread, beat one batch on two threads
with the features computed beside it: most of the time is the model, and it scales
better across calls than inside one.

Example:
    >>> clip_seed(0, "snr10", "ab12") == clip_seed(0, "snr10", "ab12") != clip_seed(0, "snr5", "ab12")
    True
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..audio import load_audio
from ..vad import detect_speech

BATCH = 16  # clips per model call: enough for onnxruntime and torch, small batches balance the threads


def _one_blas_thread(on: bool) -> Any:
    """One BLAS/OpenMP thread while several jobs run: each job is already a thread, and
    BLAS threads inside it (numpy's matrix products in the log-mel) only spin against the
    others (measured: twice the CPU time for the same wall time). A no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pinned in requirements.txt, optional here: the report is only slower
        on = False
    return threadpool_limits(1) if on else contextlib.nullcontext()


def clip_seed(seed: int, condition: str, digest: str) -> int:
    """The degradation seed of one clip under one condition (64 bits of a SHA-256)."""
    h = hashlib.sha256(f"{int(seed)}|{condition}|{digest}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def audio_digest(y: np.ndarray) -> str:
    """SHA-256 (hex, 16 digits) of a decoded float32 waveform: the clip's identity for its seed."""
    return hashlib.sha256(np.ascontiguousarray(y, np.float32).tobytes()).hexdigest()[:16]


def decode(paths: Sequence[str], sr: int, bar: Any = None) -> list[np.ndarray]:
    """Each file decoded once, mono float32 at ``sr``."""
    out = []
    for p in paths:
        out.append(load_audio(str(p), sr))
        if bar is not None:
            bar.update(1)
    return out


@dataclass
class Scored:
    """What one model gave under every condition, in test-clip order."""

    probs: dict[str, np.ndarray]  # condition name -> (clips, labels)
    no_speech: dict[str, np.ndarray]  # condition name -> (clips,) True where the VAD found no speech
    seconds: dict[str, float] = field(default_factory=dict)  # condition name -> wall seconds (pipelined)


def score_conditions(scorer: Any, waves: Sequence[np.ndarray], conditions: Sequence[Any], seed: int,
                     babble: Sequence[np.ndarray] | None = None, batch: int = BATCH, jobs: int = 1,
                     bar: Any = None) -> Scored:
    """Probabilities and voice-activity flags of ``waves`` under every condition.

    Args:
        scorer: an ``OnnxScorer`` or ``TorchScorer`` (``inputs`` + ``run``, ``clip``).
        waves: decoded test clips at the scorer's clip rate.
        conditions: ``ser.degrade`` conditions (callables ``cond(y, sr, seed, babble)``).
        seed: the report's seed (see :func:`clip_seed`).
        babble: training-speaker clips for babble conditions.
        batch: clips per model call. jobs: batches in flight at once, each in its own
            thread from degradation to probabilities (numpy, libsndfile, onnxruntime and
            torch release the GIL). bar: a tqdm bar advanced per clip, or None.

    Returns:
        Probabilities and flags per condition, in clip order (the same for any ``jobs``),
        and per condition the summed busy seconds of its batches.
    """
    sr = int(scorer.clip.sample_rate)
    digests = [audio_digest(y) for y in waves]
    work = [(c, i) for c in conditions for i in range(0, len(waves), batch)]

    def one(job: tuple[Any, int]) -> tuple[np.ndarray, np.ndarray, float]:
        cond, start = job
        t0 = time.perf_counter()
        idx = range(start, min(start + batch, len(waves)))
        degraded = [cond(waves[i], sr=sr, seed=clip_seed(seed, cond.name, digests[i]), babble=babble) for i in idx]
        silent = np.array([not detect_speech(y, sr).is_speech for y in degraded], dtype=bool)
        return scorer.run(scorer.inputs(degraded)), silent, time.perf_counter() - t0

    probs: dict[str, list[np.ndarray]] = {c.name: [] for c in conditions}
    flags: dict[str, list[np.ndarray]] = {c.name: [] for c in conditions}
    seconds = {c.name: 0.0 for c in conditions}
    with _one_blas_thread(jobs > 1), ThreadPoolExecutor(max(1, int(jobs))) as pool:
        for (cond, _), (p, silent, dt) in zip(work, pool.map(one, work)):  # map keeps the order
            probs[cond.name].append(p)
            flags[cond.name].append(silent)
            seconds[cond.name] += dt
            if bar is not None:
                bar.set_postfix_str(cond.name, refresh=False)
                bar.update(len(silent))
    k = len(scorer.labels)
    return Scored({n: np.concatenate(p) if p else np.zeros((0, k)) for n, p in probs.items()},
                  {n: np.concatenate(f) if f else np.zeros(0, bool) for n, f in flags.items()}, seconds)
