"""Do several layers of the frozen encoders together beat the best single layer? An accuracy experiment.

Linear probes (``ser.probe.fit_probe``: standardised class-balanced logistic regression,
``C`` chosen on each fold's validation speakers) on the cached mean+std statistics of
every layer of Whisper tiny.en and base, then two ways of combining layers:

- *average*: the mean of the single-layer probes' test probabilities;
- *concat*: one probe on the concatenated statistics of several layers.

Test UAR pooled over the folds of ``speaker_folds(k, seed=0)``, as ``ser layers``. The
statistics must be cached first (``ser layers --encoder NAME ...`` caches every layer).

    OMP_NUM_THREADS=1 python bench/probe_combined.py --corpus ravdess --data ../shared/data/ravdess --folds 6
    OMP_NUM_THREADS=1 python bench/probe_combined.py --corpus emodb --data ../shared/data/emodb --folds 5 \\
        --seconds 2 --cache /tmp/ser_cache_2s
"""
from __future__ import annotations

import argparse

import numpy as np

from ser.audio import ClipConfig
from ser.cache import load_encoder_states
from ser.corpora import emotion_labels, load_manifest
from ser.evaluate import evaluate_predictions
from ser.probe import fit_probe
from ser.splits import speaker_folds

ENCODERS = {"whisper_tiny_en": 4, "whisper_base": 6}  # name -> blocks (layers 0..n)
MIDDLE = {"whisper_tiny_en": (1, 2, 3), "whisper_base": (2, 3, 4, 5)}  # the layers the single probes like


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--data", default="../shared/data/ravdess")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cache", default="feature_cache")
    args = ap.parse_args()

    m = load_manifest(args.corpus, args.data)
    labels, y = emotion_labels(m)
    splits = [s["split"].to_numpy() for s in speaker_folds(m, args.folds, seed=0)]
    y_test = np.concatenate([y[s == "test"] for s in splits])
    stats = {(enc, layer): load_encoder_states(m, enc, layer, ClipConfig(seconds=args.seconds), args.cache,
                                               pooled=True, progress=False)[:, :, 0].astype(np.float64)
             for enc, n in ENCODERS.items() for layer in range(n + 1)}

    def uar(probs: np.ndarray) -> float:
        return evaluate_predictions(probs, y_test, labels, n_boot=0)["uar"]

    def probe(keys) -> tuple[float, np.ndarray]:
        X = np.concatenate([stats[k] for k in keys], axis=1)
        fits = [fit_probe(X, y, s, labels) for s in splits]
        return float(np.mean([f[0] for f in fits])), np.concatenate([f[2] for f in fits])

    single = {k: probe([k]) for k in stats}
    for (enc, layer), (val, probs) in single.items():
        print(f"{enc}@{layer}: val UAR {val:.3f}, test UAR {uar(probs):.3f}", flush=True)
    mid = [(e, l) for e, ls in MIDDLE.items() for l in ls]
    for name, keys in (("tiny.en middle layers", mid[:3]), ("base middle layers", mid[3:]), ("both", mid),
                       ("every layer of both", list(stats))):
        print(f"average of the probes, {name}: test UAR {uar(np.mean([single[k][1] for k in keys], 0)):.3f}",
              flush=True)
    for name, keys in (("tiny.en middle layers", mid[:3]), ("base middle layers", mid[3:]), ("both", mid)):
        val, probs = probe(keys)
        print(f"one probe on the concatenation, {name}: val UAR {val:.3f}, test UAR {uar(probs):.3f}", flush=True)


if __name__ == "__main__":
    main()
