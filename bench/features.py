"""Benchmark: ``ser.features.extract`` against naive per-representation librosa calls.

Single thread (BLAS/OpenMP pools limited to 1). For each clip every timing is repeated
``--repeats`` times; the table shows medians over all clips and repeats, in ms:

* ``librosa``: the representation's reference (``ser.features.reference``), computed
  independently from the audio with librosa, filter banks rebuilt per call;
* ``ser``: ``extract(y, names=[name])`` alone (its share of the STFT included);
* ``all eleven``: the eleven naive references run one after the other per clip vs one
  ``extract(y)`` call.

Prints figures; asserts nothing about time.

Also: one clip's eleven features through the disk cache, cold vs warm (warm = the
per-clip read of ``load_features``, see ``section_cache``), and with
``--corpus NAME`` a whole corpus through ``extract_corpus`` (cold vs warm, ``--jobs``).

Usage:
    python bench/features.py [--clips 20] [--data /path/to/ravdess] [--repeats 3]
    python bench/features.py --data ../shared/data/ravdess --corpus ravdess --jobs 2
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ser.audio import N_SAMPLES, SAMPLE_RATE, load_audio, prepare_clip  # noqa: E402
from ser.features import available_features, extract  # noqa: E402
from ser.features.reference import reference  # noqa: E402

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


# ------------------------------------------------------------------------- inputs
def synthetic_clip(seed: int, sr: int = SAMPLE_RATE, n: int = N_SAMPLES) -> np.ndarray:
    """A speech-like 3 s clip: gliding harmonic tone with vibrato, formant peaks, noise."""
    import scipy.signal

    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)) + 20 * t
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 30))
    for fc in rng.uniform([500, 1000, 2300], [900, 1600, 3000]):
        b, a = scipy.signal.iirpeak(fc, 8, fs=sr)
        y = y + 2 * scipy.signal.lfilter(b, a, y)
    envelope = np.clip(np.minimum(t - 0.25, t[-1] - 0.25 - t) * 8, 0, 1)
    y = 0.5 * y * envelope / np.abs(y).max() + 0.003 * rng.standard_normal(n) * (envelope > 0)
    return y.astype(np.float32)


def load_clips(n: int, data: Path | None) -> list[np.ndarray]:
    """``n`` clips of 3 s at 16 kHz: from ``data`` (silence trimmed, padded/cut) or synthetic."""
    if data is None:
        return [synthetic_clip(seed) for seed in range(n)]
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SystemExit(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {data}")
    step = max(1, len(files) // n)  # spread over actors/emotions
    return [prepare_clip(load_audio(p)) for p in files[::step][:n]]


# ------------------------------------------------------------------------- timing
def median_ms(fn: Callable[[np.ndarray], object], clips: Sequence[np.ndarray], repeats: int) -> float:
    """Median wall time of ``fn(clip)`` in ms over all clips x repeats."""
    times = []
    for y in clips:
        for _ in range(repeats):
            start = time.perf_counter()
            fn(y)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def warm_up(y: np.ndarray) -> None:
    """First calls pay for numba compilation and filter-bank caches: keep them out."""
    for name in available_features():
        reference(name, y)
    extract(y)


def bench_naive(clips: Sequence[np.ndarray], repeats: int) -> dict[str, float]:
    """Per-feature median ms of the naive librosa reference."""
    return {n: median_ms(lambda y, n=n: reference(n, y), clips, repeats) for n in available_features()}


def bench_extract(clips: Sequence[np.ndarray], repeats: int) -> dict[str, float]:
    """Per-feature median ms of ``extract(y, names=[name])``."""
    return {n: median_ms(lambda y, n=n: extract(y, names=[n]), clips, repeats) for n in available_features()}


def bench_all(clips: Sequence[np.ndarray], repeats: int) -> tuple[float, float]:
    """(naive, extract) median ms for all eleven representations of one clip."""
    names = available_features()

    def naive(y: np.ndarray) -> None:
        for n in names:
            reference(n, y)

    return median_ms(naive, clips, repeats), median_ms(extract, clips, repeats)


# ------------------------------------------------------------------------- report
def format_table(naive: dict[str, float], ours: dict[str, float], total: tuple[float, float]) -> str:
    """The extract-vs-librosa table: per feature, then all eleven together."""
    lines = [f"{'feature':<18} {'librosa ms':>11} {'ser ms':>8} {'speed-up':>9}", "-" * 49]
    for name in naive:
        ratio = naive[name] / ours[name]
        lines.append(f"{name:<18} {naive[name]:>11.3f} {ours[name]:>8.3f} {ratio:>8.1f}x")
    lines.append("-" * 49)
    lines.append(f"{'all eleven':<18} {total[0]:>11.3f} {total[1]:>8.3f} {total[0] / total[1]:>8.1f}x")
    return "\n".join(lines)


def section_extract(clips: Sequence[np.ndarray], repeats: int) -> str:
    """Section 1: ``extract`` vs naive librosa references."""
    naive = bench_naive(clips, repeats)
    ours = bench_extract(clips, repeats)
    return format_table(naive, ours, bench_all(clips, repeats))


def flush_cpu_caches(nbytes: int = 96 << 20) -> None:
    """Read and write ``nbytes`` of unrelated memory, so that timed reads find the cache
    entries in the OS page cache but not in the CPU caches (as for a whole corpus)."""
    junk = np.ones(nbytes // 8)
    junk += 1.0
    float(junk.sum())


def section_cache(clips: Sequence[np.ndarray], repeats: int) -> str:
    """Section 2: one clip's eleven features through the disk cache, cold vs warm.

    Cold = ``clip_features`` on an empty cache: hash the file, decode it, trim/pad,
    extract all eleven, write the entry (a loose entry file). Then, untimed per clip but
    shown on its own, what ``extract_corpus`` and ``load_features`` do at the end of a
    run: move the loose entries into one pack (``ser.cache.pack``).
    Warm = ``ser.cache.read_cached``, the per-clip read that ``load_features`` (the training
    data loader) and ``extract_corpus`` do, on a ``FeatureCache`` opened afresh from the
    cache folder: look the content hash up in the index (stat the file), find the
    clip's packed entry, check its layout and checksum, make the eleven arrays. Timed
    per clip; the index and the packs are loaded once per corpus, before the loop, and
    shown on their own. Also shown: the warm read of loose entry files (before packing),
    the packed read through ``clip_features``, and ``load_features`` on all the clips
    (index load and stacking into ``(clips, rows, frames)`` included).
    The entries come from the OS page cache, as in any warm re-run; the CPU caches are
    flushed before each warm pass (``flush_cpu_caches``), as a whole corpus would.
    """
    import tempfile

    import pandas as pd
    import soundfile as sf

    from ser.audio import ClipConfig
    from ser.cache import FeatureCache, clip_features, load_features, read_cached, section_keys
    from ser.features import get_config

    names = available_features()
    configs = {n: get_config(n) for n in names}
    clip = ClipConfig()
    keys = section_keys(names, configs, clip)  # computed once per corpus, as extract_corpus does
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, y in enumerate(clips):
            paths.append(Path(tmp) / f"clip{i}.wav")
            sf.write(paths[-1], y, SAMPLE_RATE, subtype="FLOAT")
        manifest = pd.DataFrame({"path": [str(p) for p in paths]})
        cold, warm, warm_clip, index, loader, loose, packing = [], [], [], [], [], [], []
        for r in range(repeats):
            root = Path(tmp) / f"cache{r}"
            cache = FeatureCache(root)
            for p in paths:
                t = time.perf_counter()
                clip_features(p, names, configs, clip, cache, keys=keys)
                cold.append(time.perf_counter() - t)
            cache.flush()
            cache = FeatureCache(root)
            flush_cpu_caches()
            for p in map(str, paths):  # loose entry files, as before packing
                t = time.perf_counter()
                entry = read_cached(cache, p, keys, 0)
                loose.append(time.perf_counter() - t)
                assert entry is not None and len(entry) == len(names)
            t = time.perf_counter()
            # as extract_corpus does at the end of a run (there from PACK_MIN loose entries on)
            cache.pack([cache.audio_hash(p) for p in map(str, paths)], minimum=1)
            packing.append(time.perf_counter() - t)
            assert not list(root.rglob("*.ser")), "the bench expects every entry packed"
            flush_cpu_caches()
            t = time.perf_counter()
            cache = FeatureCache(root)  # what load_features opens
            cache.load()  # the index and the packs, else loaded by the first read
            index.append(time.perf_counter() - t)
            entry = None
            for p in map(str, paths):
                t = time.perf_counter()
                entry = read_cached(cache, p, keys, 0)
                warm.append(time.perf_counter() - t)
                assert entry is not None and len(entry) == len(names)
            for p in paths:
                t = time.perf_counter()
                _, computed, _ = clip_features(p, names, configs, clip, cache, keys=keys)
                warm_clip.append(time.perf_counter() - t)
                assert computed == 0
            t = time.perf_counter()
            load_features(manifest, names, configs, clip, cache_dir=root, progress=False)
            loader.append(time.perf_counter() - t)
    c, w = statistics.median(cold) * 1e3, statistics.median(warm) * 1e3
    wc = statistics.median(warm_clip) * 1e3
    lf = statistics.median(loader) * 1e3
    lo = statistics.median(loose) * 1e3
    pk = statistics.median(packing) * 1e3 / len(clips)
    return "\n".join([
        f"all eleven per clip: cold {c:.3f} ms, warm {w:.3f} ms, warm is {c / w:.0f}x faster",
        f"  (warm = ser.cache.read_cached, load_features' per-clip read; index and pack load"
        f" {statistics.median(index) * 1e3:.3f} ms once per corpus, not included)",
        f"  packing after the cold pass: {pk:.3f} ms per clip (not in cold: the ratio is the lower one)",
        f"  warm from loose entry files (before packing): {lo:.3f} ms ({c / lo:.0f}x)",
        f"  warm through clip_features: {wc:.3f} ms ({c / wc:.0f}x)",
        f"  load_features, {len(clips)} clips warm: {lf:.3f} ms = {lf / len(clips):.3f} ms per clip"
        f" ({c * len(clips) / lf:.0f}x; index load and stacking included)",
    ])


# Each section: (title, function(clips, repeats) -> printable text).
SECTIONS: list[tuple[str, Callable[[Sequence[np.ndarray], int], str]]] = [
    ("extract vs naive librosa", section_extract),
    ("feature cache: cold vs warm", section_cache),
]


def corpus_throughput(corpus: str, data: Path, jobs: int) -> str:
    """A whole corpus, all eleven, through ``extract_corpus``: cold (empty cache) vs warm."""
    import tempfile

    from ser.corpora import load_manifest
    from ser.cache import extract_corpus

    manifest = load_manifest(corpus, data)
    with tempfile.TemporaryDirectory() as tmp:
        cold = extract_corpus(manifest, "all", cache_dir=tmp, jobs=jobs, progress=False)
        warm = extract_corpus(manifest, "all", cache_dir=tmp, jobs=jobs, progress=False)
    n = len(manifest)
    return (f"{corpus}: {n} clips, all eleven, {jobs} jobs: cold {cold.seconds:.1f} s ({n / cold.seconds:.0f} clips/s),"
            f" warm {warm.seconds:.1f} s ({n / warm.seconds:.0f} clips/s)")


def single_thread():
    """Context manager limiting native thread pools to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="number of 3 s clips (default 20)")
    parser.add_argument(
        "--data", type=Path, default=None, help="corpus folder (e.g. RAVDESS); default: synthetic clips"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per clip and feature (default 3)")
    parser.add_argument("--corpus", default=None,
                        help="also time the whole corpus at --data through the cache, e.g. ravdess")
    parser.add_argument("--jobs", type=int, default=2, help="processes for --corpus (default 2)")
    args = parser.parse_args(argv)

    clips = load_clips(args.clips, args.data)
    source = str(args.data) if args.data else "synthetic"
    print(f"{len(clips)} clips of {N_SAMPLES / SAMPLE_RATE:g} s at {SAMPLE_RATE} Hz ({source}), "
          f"{args.repeats} repeats, single thread; medians in ms")
    with single_thread():
        warm_up(clips[0])
        for title, section in SECTIONS:
            print(f"\n== {title}")
            print(section(clips, args.repeats))
    if args.corpus:
        if args.data is None:
            raise SystemExit("--corpus needs --data")
        print("\n== whole corpus through the cache")
        print(corpus_throughput(args.corpus, args.data, args.jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
