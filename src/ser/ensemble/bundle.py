"""The ensemble bundle: member checkpoints + ``bundle.json``, everything export needs.

A bundle is a folder written by ``ser ensemble`` (``OUT/bundle``): each member's
``<name>.pt`` (state_dict, loaded with ``weights_only=True``) and ``<name>.json``, and
``bundle.json`` with the ordered labels, members (feature, feature config, clip config,
normalisation mean/std, height, weight), the weights and the temperature. The
probability it defines is ``softmax(log(sum_i w_i softmax(f_i((x_i - mean_i) / std_i))) / T)``;
:func:`predict_bundle` computes it in PyTorch, the ONNX export (``ser.export``) in one graph.
Only a single split's ensemble has a bundle: k fold ensembles are k models.

Example:
    >>> models, meta = load_bundle("runs/demo/ensemble/bundle")                  # doctest: +SKIP
    >>> probs = predict_bundle((models, meta), bundle_features(meta, manifest))   # doctest: +SKIP
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import SerError
from ..fileio import atomic_write_bytes, write_json_atomic
from .calibration import apply_temperature


class BundleError(SerError, ValueError):
    """A bundle that is missing, incomplete or not one of ours."""


def write_bundle(out_dir: str | Path, members: list[dict], weights, temperature: float, labels: list[str],
                 extra: Mapping[str, Any]) -> Path:
    """Copy the member checkpoints to ``out_dir`` and write ``bundle.json`` (last, atomically).

    The bundle is built in a temp folder and swapped in, so a killed run never leaves a
    mixture of two bundles.
    """
    from .. import __version__

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    entries = []
    for m, w in zip(members, weights):
        meta = m["meta"]
        for suffix in (".pt", ".json"):
            atomic_write_bytes(tmp / f"{m['name']}{suffix}", (m["dir"] / f"model{suffix}").read_bytes())
        entries.append({"name": m["name"], "feature": meta["feature"], "feature_key": meta["feature_key"],
                        "clip": meta["clip"], "mean": meta["mean"], "std": meta["std"], "height": meta["height"],
                        "model": meta["model"], "dropout": meta.get("dropout", 0.0), "weight": float(w),
                        "checkpoint": f"{m['name']}.pt", "meta": f"{m['name']}.json"})
    clip = entries[0]["clip"]
    write_json_atomic(tmp / "bundle.json", {
        "format": "ser-ensemble-bundle", "version": 1, "labels": labels, "combiner": "weighted",
        "members": entries, "weights": [float(w) for w in weights], "temperature": float(temperature),
        "sample_rate": clip["sample_rate"], "clip_seconds": clip["seconds"],
        "speakers": members[0]["meta"].get("speakers"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ser_version": __version__, **extra})
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def load_bundle(path: str | Path, device: str = "cpu") -> tuple[dict, dict]:
    """Load a bundle folder (or its ``bundle.json``): ``({member name: model}, meta)``.

    Weights are read with ``torch.load(weights_only=True)`` (``ser.checkpoint.load_checkpoint``).
    """
    from ..checkpoint import CheckpointError, load_checkpoint  # torch: only when models are loaded

    p = Path(path)
    js = p if p.suffix == ".json" else p / "bundle.json"
    if not js.is_file():
        raise BundleError(f"{js}: no bundle manifest; make a bundle with `ser ensemble --out DIR` (DIR/bundle)")
    try:
        meta = json.loads(js.read_text())
        members, labels, weights = meta["members"], meta["labels"], meta["weights"]
    except (json.JSONDecodeError, KeyError) as e:
        raise BundleError(f"{js}: not a ser ensemble bundle ({e})") from e
    if meta.get("combiner") != "weighted" or len(weights) != len(members):
        raise BundleError(f"{js}: unsupported combiner {meta.get('combiner')!r} or weights/members mismatch")
    models = {}
    for m in members:
        try:
            model, mmeta = load_checkpoint(js.parent / m["checkpoint"], device=device)
        except CheckpointError as e:
            raise BundleError(f"bundle member {m['name']}: {e}") from e
        if list(mmeta["labels"]) != list(labels):
            raise BundleError(f"bundle member {m['name']} has labels {mmeta['labels']}, the bundle {labels}")
        models[m["name"]] = model
    return models, meta


def bundle_features(meta: Mapping[str, Any], manifest: pd.DataFrame, cache_dir: str | Path = "feature_cache",
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Each member's features (its own feature config and clip) for the clips of ``manifest``."""
    from ..audio import ClipConfig
    from ..features import config_from_key
    from ..cache import load_features

    out = {}
    for m in meta["members"]:
        cfg = config_from_key(m["feature_key"])
        out[m["name"]] = load_features(manifest, [m["feature"]], {m["feature"]: cfg}, ClipConfig(**m["clip"]),
                                       cache_dir, progress=progress)[m["feature"]]
    return out


def predict_bundle(bundle: tuple[dict, dict] | str | Path, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Ensemble probabilities (N, K) from raw features ``{member name: (N, rows, frames)}``:
    normalise with each member's stored mean/std, softmax, weighted average, temperature."""
    import torch

    from ..train import predict_proba

    models, meta = load_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
    total = None
    for m, w in zip(meta["members"], meta["weights"]):
        if m["name"] not in features:
            raise BundleError(f"no features for member {m['name']!r}; pass {[x['name'] for x in meta['members']]}")
        x = np.asarray(features[m["name"]], dtype=np.float32)
        x = x[None] if x.ndim == 2 else x
        if x.ndim != 3 or x.shape[1] != m["height"]:
            raise BundleError(f"member {m['name']}: features of shape {x.shape}, expected (N, {m['height']}, frames)")
        mean, std = np.asarray(m["mean"], np.float32), np.asarray(m["std"], np.float32)
        xn = ((x - mean[None, :, None]) / std[None, :, None]).astype(np.float32)
        p = w * predict_proba(models[m["name"]], xn, torch.device("cpu")).astype(np.float64)
        total = p if total is None else total + p
    return apply_temperature(total, meta["temperature"])
