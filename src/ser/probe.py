"""The layer study (`ser layers`): which hidden layer of a frozen encoder to build on.

Each layer's hidden states are mean- and std-pooled over the clip (cached by
``ser.cache.extract_encoder``: one encoder pass gives every layer), standardised with the
training clips' statistics and fed to a class-balanced logistic regression. Its ``C`` is
chosen from a small grid on each split's *validation* speakers, the model with that ``C``
(fitted on the training speakers) then predicts the test speakers. The splits are those
of ``ser compare`` (``speaker_folds`` or ``speaker_split`` with the same seed), so the
figures sit beside the study's.

The chosen layer is the one with the best mean validation UAR, never the best test UAR;
the table reports every layer's test UAR, pooled over folds (every speaker tested once),
with a speaker-bootstrap 95% CI. Writes into ``out_dir``::

    layers.csv    one row per layer
    layers.md     the table, the chosen layer marked
    layers.png    validation and test UAR per layer, test with its CI
    layers.json   settings, the encoder's weight hash, the extraction's time

Example:
    >>> table = probe_layers(manifest, "whisper_base", folds=6, out_dir="runs/layers")   # doctest: +SKIP
    >>> int(table.loc[table["chosen"], "layer"].iloc[0])                                 # doctest: +SKIP
    5
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from .audio import ClipConfig
from .cache import DEFAULT_ROOT, extract_encoder, load_encoder_states
from .encoders import EncoderError, encoder_key, get_config, get_spec
from .evaluate import classification_metrics, evaluate_predictions
from .fileio import atomic_write_bytes, save_figure, write_json_atomic
from .splits import speaker_folds, speaker_keys, speaker_split

log = logging.getLogger(__name__)

C_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # inverse regularisation strengths tried on validation speakers


def fit_probe(X: np.ndarray, y: np.ndarray, split: np.ndarray, labels: list[str], grid=C_GRID,
              seed: int = 0) -> tuple[float, float, np.ndarray]:
    """Standardised logistic regression on the train rows, ``C`` chosen on the val rows.

    Args:
        X: ``(clips, dims)`` pooled statistics. y: class indices into ``labels``.
        split: ``"train"``/``"val"``/``"test"`` per clip. grid: the ``C`` values tried.

    Returns:
        ``(validation UAR at the chosen C, the chosen C, test probabilities (n_test, K))``;
        the first of equally good ``C`` wins (the grid goes from strong to weak
        regularisation).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 30)
        >>> X = rng.normal(size=(60, 4)) + y[:, None]
        >>> split = np.array(["train", "train", "val", "test"] * 15)
        >>> uar, C, probs = fit_probe(X, y, split, ["a", "b"])
        >>> uar > 0.7, probs.shape
        (True, (15, 2))
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train, val, test = (split == s for s in ("train", "val", "test"))
    scaler = StandardScaler().fit(X[train])
    Xtr, Xva, Xte = (scaler.transform(X[rows]) for rows in (train, val, test))
    best = None
    # one BLAS thread: products this small gain nothing from more, and on the shared 2-core
    # machine a second thread waiting on a busy core made each fit 12x slower (0.4 s -> 5 s)
    with threadpool_limits(1):
        for C in grid:
            clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed)
            clf.fit(Xtr, y[train])
            uar = classification_metrics(y[val], clf.predict(Xva), labels)["uar"]
            if best is None or uar > best[0]:
                best = (uar, C, clf)
    uar, C, clf = best
    probs = np.zeros((int(test.sum()), len(labels)))
    probs[:, clf.classes_] = clf.predict_proba(Xte)  # a class absent from train keeps probability 0
    return float(uar), float(C), probs


def probe_layers(manifest: pd.DataFrame, encoder: str, folds: int | None = None, val: float = 0.15,
                 test: float = 0.15, split_seed: int = 0, clip: ClipConfig = ClipConfig(),
                 cache_dir: str | Path = DEFAULT_ROOT, out_dir: str | Path | None = None, seed: int = 0, *,
                 path: str | Path | None = None, grid=C_GRID, n_boot: int = 1000, device: str | None = None,
                 batch_size: int = 16, progress: bool = True) -> pd.DataFrame:
    """Linear probe of every layer of ``encoder`` on the study's speaker splits.

    Args:
        manifest: the corpus manifest (no split column needed).
        encoder: a registry name (``ser.encoders.available_encoders()``).
        folds: ``None`` for one train/val/test split, or ``k`` leave-speakers-out folds.
        val, test, split_seed: the single split's speaker fractions; the split seed.
        clip: clip preparation. cache_dir: the feature cache (states are reused).
        out_dir: where the table, plot and settings go (None: write nothing).
        seed: classifier and bootstrap seed. path: weights by path (``--encoder-path``).
        grid: ``C`` values tried on validation speakers. n_boot: bootstrap resamples.
        device, batch_size: for the encoder pass (``extract_encoder``).

    Returns:
        One row per layer: ``layer, val_uar, val_uar_sd, C, test_uar, test_uar_lo,
        test_uar_hi, test_accuracy, test_macro_f1, dims, n_test, chosen``.

    Raises:
        EncoderError: unknown encoder, weights missing; SplitError: a split that cannot be made.
    """
    from .corpora import emotion_labels

    spec = get_spec(encoder)  # an unknown name fails before any work
    if not grid or any(not c > 0 for c in grid):
        raise EncoderError(f"grid must hold positive C values, got {grid!r}")
    t0 = time.perf_counter()
    splits = (speaker_folds(manifest, folds, seed=split_seed) if folds
              else [speaker_split(manifest, val=val, test=test, seed=split_seed)])
    report = extract_encoder(manifest, encoder, "all", clip, cache_dir, path=path, device=device,
                             batch_size=batch_size, progress=progress)
    labels, y = emotion_labels(manifest)
    tests = [s["split"].to_numpy() == "test" for s in splits]
    y_test = np.concatenate([y[t] for t in tests])
    groups = np.concatenate([speaker_keys(s).to_numpy()[t] for s, t in zip(splits, tests)])
    rows = []
    for layer in range(spec.dims.n_layer + 1):
        X = load_encoder_states(manifest, encoder, layer, clip, cache_dir, path=path, pooled=True,
                                progress=False)[:, :, 0].astype(np.float64)
        fits = [fit_probe(X, y, s["split"].to_numpy(), labels, grid, seed) for s in splits]
        m = evaluate_predictions(np.concatenate([f[2] for f in fits]), y_test, labels, n_boot=n_boot, seed=seed,
                                 groups=groups)
        ci = m.get("ci", {}).get("uar", (np.nan, np.nan))
        rows.append({"layer": layer, "val_uar": float(np.mean([f[0] for f in fits])),
                     "val_uar_sd": float(np.std([f[0] for f in fits])), "C": ",".join(f"{f[1]:g}" for f in fits),
                     "test_uar": m["uar"], "test_uar_lo": ci[0], "test_uar_hi": ci[1],
                     "test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"], "dims": X.shape[1],
                     "n_test": m["n"]})
        log.info("%s layer %d: val UAR %.3f, test UAR %.3f", encoder, layer, rows[-1]["val_uar"], m["uar"])
    table = pd.DataFrame(rows)
    table["chosen"] = table.index == table["val_uar"].idxmax()  # the first best: the cheaper layer
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "layers.csv", table.to_csv(index=False).encode())
        atomic_write_bytes(out / "layers.md", layers_markdown(table, encoder, folds).encode())
        plot_layers(table, out / "layers.png", encoder, n_classes=len(labels))
        chosen = int(table.loc[table["chosen"], "layer"].iloc[0])
        key = encoder_key(get_config(encoder, chosen), path)
        write_json_atomic(out / "layers.json", {
            "encoder": encoder, "weights_sha256": key["weights_sha256"], "encoder_version": key["version"],
            "chosen_layer": chosen, "folds": folds, "val": val, "test": test, "split_seed": split_seed,
            "clip": asdict(clip), "grid": list(grid), "seed": seed, "n_boot": n_boot, "labels": labels,
            "corpus": sorted(map(str, manifest["corpus"].unique())), "clips": len(manifest),
            "speakers": int(speaker_keys(manifest).nunique()),
            "extraction": {**asdict(report), "clips_per_s": report.clips_per_s},
            "wall_seconds": time.perf_counter() - t0})
    return table


def layers_markdown(table: pd.DataFrame, encoder: str = "", folds: int | None = None) -> str:
    """The layer table as Markdown, the chosen layer in bold and marked.

    Example:
        >>> t = pd.DataFrame({"layer": [0, 1], "val_uar": [0.5, 0.6], "val_uar_sd": [0.1, 0.1], "C": ["1", "1"],
        ...                   "test_uar": [0.55, 0.58], "test_uar_lo": [0.5, 0.52], "test_uar_hi": [0.6, 0.64],
        ...                   "test_accuracy": [0.5, 0.6], "chosen": [False, True]})
        >>> print(layers_markdown(t).splitlines()[-1])
        | **1** (chosen) | 0.600 ± 0.100 | 0.580 [0.520, 0.640] | 0.600 | 1 |
    """
    where = f"{folds} speaker folds" if folds else "one speaker split"
    lines = [f"Linear probe of {encoder}, {where}: layer chosen by mean validation UAR "
             "(test UAR shown for every layer, never used to choose).", ""] if encoder else []
    lines += ["| layer | val UAR (mean ± sd over folds) | test UAR [95% CI] | test accuracy | C per fold |",
              "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        name = f"**{r['layer']}** (chosen)" if r["chosen"] else str(r["layer"])
        lines.append(f"| {name} | {r['val_uar']:.3f} ± {r['val_uar_sd']:.3f} | {r['test_uar']:.3f} "
                     f"[{r['test_uar_lo']:.3f}, {r['test_uar_hi']:.3f}] | {r['test_accuracy']:.3f} | {r['C']} |")
    return "\n".join(lines) + "\n"


def plot_layers(table: pd.DataFrame, path: str | Path, encoder: str = "", n_classes: int | None = None) -> Path:
    """Validation and test UAR per layer (test with its CI bars), the chosen layer marked."""
    from matplotlib.figure import Figure

    x = table["layer"].to_numpy()
    test = table["test_uar"].to_numpy(dtype=float)
    err = np.nan_to_num(np.vstack([np.clip(test - table["test_uar_lo"].to_numpy(dtype=float), 0, None),
                                   np.clip(table["test_uar_hi"].to_numpy(dtype=float) - test, 0, None)]))
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, table["val_uar"], "o-", color="#4c72b0", label="validation UAR (mean over folds)")
    ax.errorbar(x, test, yerr=err, fmt="s--", color="#dd8452", capsize=3, label="test UAR, 95% CI")
    chosen = x[table["chosen"].to_numpy(dtype=bool)]
    if len(chosen):
        ax.axvline(chosen[0], color="#55a868", ls=":", label=f"chosen: layer {chosen[0]}")
    if n_classes:
        ax.axhline(1.0 / n_classes, color="#c44e52", ls="--", lw=1, label=f"chance (1/{n_classes})")
    ax.set(xlabel="layer (0 = embedding)", ylabel="UAR", xticks=x, title=f"{encoder} layer probe" if encoder else None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
