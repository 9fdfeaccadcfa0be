"""The ensemble bundle: member checkpoints + ``bundle.json``, everything export needs.

A bundle is a folder written by ``ser ensemble`` (``OUT/bundle``): each member's
``<name>.pt`` (state_dict, loaded with ``weights_only=True``) and ``<name>.json``, and
``bundle.json`` with the ordered labels, members (feature, feature config, clip config,
normalisation mean/std, height, weight, input kind), the weights and the temperature. The
probability it defines is ``softmax(log(sum_i w_i softmax(f_i((x_i - mean_i) / std_i))) / T)``;
:func:`predict_bundle` computes it in PyTorch, the ONNX export (``ser.export``) in one graph.
Only a single split's ensemble has a bundle: k fold ensembles are k models.

Members differ in kind, and each records what its input is (``"input"``):

- ``{"kind": "feature"}``: a ResNet on a hand-made representation; its input ``x_i`` is
  the feature array (rows x frames) of the prepared clip.
- ``{"kind": "whisper_logmel", "n_mels": 80}``: a head on a frozen Whisper encoder's
  layer; its input is Whisper's log-mel of the prepared clip
  (:func:`ser.encoders.logmel.log_mel_spectrogram`), and ``f_i`` runs the encoder up to the
  member's layer, then the head; ``mean_i``/``std_i`` normalise the layer's states per
  dimension, as in training. The member's ``"encoder"`` record (name, layer, version,
  weights SHA-256, mel bands, and the weights path given at training, if any) lets
  :func:`load_bundle` find the same weights; other weights are refused by their SHA-256.

What the members were trained for travels with them: each member's ``"channel"`` (the
``ser.degrade`` condition every clip went through, ``--channel``) and
``"training_conditions"``; ``bundle.json`` holds the channel they share (members on
different channels are refused: the runtime hears incoming audio through one) and the
conditions summed up (:func:`bundle_conditions`).

Example:
    >>> models, meta = load_bundle("runs/demo/ensemble/bundle")                  # doctest: +SKIP
    >>> probs = predict_bundle((models, meta), bundle_features(meta, manifest))   # doctest: +SKIP
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import SerError
from ..fileio import atomic_write_bytes, write_json_atomic
# the input kinds a member records are the ones the runtime computes: one definition
from ..runtime_inputs import FEATURE_INPUT, LOGMEL_INPUT
from .calibration import apply_temperature

ENCODER_BATCH = 16  # clips per encoder forward pass in the PyTorch path: bounds memory


class BundleError(SerError, ValueError):
    """A bundle that is missing, incomplete or not one of ours."""


def member_input(member: Mapping[str, Any]) -> dict[str, Any]:
    """What a bundle member (or a run's ``model.json``) takes as input: its ``"input"`` record.

    Bundles written before members had kinds hold feature members only.

    Example:
        >>> member_input({"feature": "mel"})
        {'kind': 'feature'}
        >>> member_input({"feature": "whisper_base@5", "encoder": {"name": "whisper_base", "n_mels": 80}})
        {'kind': 'whisper_logmel', 'n_mels': 80}
    """
    if "input" in member:
        return dict(member["input"])
    if member.get("encoder"):
        return {"kind": LOGMEL_INPUT, "n_mels": int(member["encoder"]["n_mels"])}
    return {"kind": FEATURE_INPUT}


def is_encoder_member(member: Mapping[str, Any]) -> bool:
    """Whether a bundle member reads Whisper log-mel (a head on encoder states)."""
    return member_input(member)["kind"] == LOGMEL_INPUT


def _encoder_record(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A run's encoder record plus the weights path given at training (absolute, so that
    export from another folder finds the same file; None: the installed package)."""
    path = (meta.get("train_config") or {}).get("encoder_path")
    if path:
        p = Path(path).expanduser()
        path = str(p.resolve()) if p.exists() else str(path)
    return {**meta["encoder"], "path": path}


def bundle_conditions(entries: list[Mapping[str, Any]]) -> tuple[dict | None, dict[str, Any]]:
    """The channel the members share and what the bundle was trained for:
    ``{"channel": name or None, "condition_aug": [every member's, first seen first],
    "members": {name: member's training_conditions or None}}``.

    Raises:
        BundleError: members trained on different channels.

    Example:
        >>> tc = {"condition_aug": ["gsm"], "channel": None, "copies": 2}
        >>> bundle_conditions([{"name": "mel", "training_conditions": tc}, {"name": "mfcc"}])[1]["condition_aug"]
        ['gsm']
    """
    channels = {json.dumps(e.get("channel"), sort_keys=True): e.get("channel") for e in entries}
    if len(channels) > 1:
        names = ", ".join(f"{e['name']}: {(e.get('channel') or {}).get('name', 'none')}" for e in entries)
        raise BundleError(f"members trained on different channels ({names}); the served model hears all audio "
                          "through one: pick members trained with the same --channel")
    channel = next(iter(channels.values()))
    conds = {e["name"]: e.get("training_conditions") for e in entries}
    aug = list(dict.fromkeys(c for tc in conds.values() if tc for c in tc.get("condition_aug", [])))
    return channel, {"channel": channel and channel["name"], "condition_aug": aug, "members": conds}


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
        entry = {"name": m["name"], "feature": meta["feature"], "feature_key": meta["feature_key"],
                 "input": member_input(meta), "clip": meta["clip"], "mean": meta["mean"], "std": meta["std"],
                 "height": meta["height"], "model": meta["model"], "dropout": meta.get("dropout", 0.0),
                 "weight": float(w), "checkpoint": f"{m['name']}.pt", "meta": f"{m['name']}.json"}
        if meta.get("encoder"):
            entry["encoder"] = _encoder_record(meta)
        entry.update(channel=meta.get("channel"), training_conditions=meta.get("training_conditions"))
        entries.append(entry)
    channel, conditions = bundle_conditions(entries)
    clip = entries[0]["clip"]
    write_json_atomic(tmp / "bundle.json", {
        "format": "ser-ensemble-bundle", "version": 1, "labels": labels, "combiner": "weighted",
        "members": entries, "weights": [float(w) for w in weights], "temperature": float(temperature),
        "sample_rate": clip["sample_rate"], "clip_seconds": clip["seconds"],
        "speakers": members[0]["meta"].get("speakers"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "channel": channel, "training_conditions": conditions,
        "ser_version": __version__, **extra})
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


@dataclass(frozen=True)
class EncoderMember:
    """An encoder member as :func:`load_bundle` returns it (in place of a bare model).

    Members on the same encoder weights share one ``encoder`` instance, so the export
    runs it once, up to the highest layer any of them reads.
    """

    encoder: Any  # the frozen ser.encoders.WhisperEncoder (eval mode, no gradients)
    layer: int  # the hidden state the head reads (0 = after the convolutions)
    head: Any  # the member's head (nn.Module over (batch, dims, frames))
    sha256: str  # the encoder weights' SHA-256, as recorded at training

    def states(self, mel: np.ndarray) -> np.ndarray:
        """Raw (un-normalised) states ``(N, dims, frames / 2)`` of log-mel ``(N, n_mels, frames)``."""
        import torch

        device = self.encoder.positional_embedding.device
        out = []
        with torch.inference_mode():
            for i in range(0, len(mel), ENCODER_BATCH):
                x = torch.from_numpy(np.ascontiguousarray(mel[i:i + ENCODER_BATCH], dtype=np.float32)).to(device)
                out.append(self.encoder(x, max_layer=self.layer)[self.layer].transpose(1, 2).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.head.height, 0), np.float32)


def _load_encoder(m: Mapping[str, Any], override: str | Path | None, cache: dict) -> tuple[Any, str]:
    """The encoder a member was trained on, found by its recorded path (or ``override``, or
    the installed package) and accepted only if its SHA-256 is the recorded one."""
    from ..encoders import EncoderError, get_encoder, get_spec, resolve_weights

    enc = m["encoder"]
    name, want = enc["name"], enc["weights_sha256"]
    try:
        spec = get_spec(name)
    except EncoderError as e:
        raise BundleError(f"bundle member {m['name']}: {e}") from e
    if int(enc.get("version", spec.version)) != spec.version:
        raise BundleError(f"bundle member {m['name']} was trained on {name} states version {enc['version']}, this "
                          f"ser computes version {spec.version}; retrain the member and re-create the bundle")
    candidates = [override] if override is not None else list(dict.fromkeys([enc.get("path"), None]))
    tried = []
    for path in candidates:
        where = "the installed package" if path is None else str(path)
        try:
            got = resolve_weights(name, path).sha256
        except EncoderError as e:
            tried.append(f"{where}: {e}")
            continue
        if got != want:
            tried.append(f"{where}: SHA-256 {got}")
            continue
        if (name, want) not in cache:
            cache[(name, want)] = get_encoder(name, path)
        return cache[(name, want)], want
    raise BundleError(f"bundle member {m['name']} was trained on {name} weights with SHA-256 {want}; none found "
                      f"({'; '.join(tried)}). Pass the weights it was trained on: --encoder-path {name}=PATH on the command "
                      f"line, encoder_paths={{{name!r}: PATH}} in Python (a CTranslate2 folder or an openai .pt file)")


def load_bundle(path: str | Path, device: str = "cpu",
                encoder_paths: Mapping[str, str | Path] | None = None) -> tuple[dict, dict]:
    """Load a bundle folder (or its ``bundle.json``): ``({member name: model}, meta)``.

    Weights are read with ``torch.load(weights_only=True)`` (``ser.checkpoint.load_checkpoint``).
    An encoder member's model is an :class:`EncoderMember` (encoder, layer, head); its
    encoder is looked for at ``encoder_paths[encoder name]`` when given, else at the path
    recorded at training, else in the installed weight package, and must have the SHA-256
    recorded at training (:class:`BundleError` otherwise, naming what was tried).
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
    models, encoders = {}, {}
    for m in members:
        try:
            model, mmeta = load_checkpoint(js.parent / m["checkpoint"], device=device)
        except CheckpointError as e:
            raise BundleError(f"bundle member {m['name']}: {e}") from e
        if list(mmeta["labels"]) != list(labels):
            raise BundleError(f"bundle member {m['name']} has labels {mmeta['labels']}, the bundle {labels}")
        kind = member_input(m)["kind"]
        if kind == LOGMEL_INPUT:
            override = (encoder_paths or {}).get(m["encoder"]["name"])
            encoder, sha = _load_encoder(m, override, encoders)
            model = EncoderMember(encoder.to(device), int(m["encoder"]["layer"]), model, sha)
        elif kind != FEATURE_INPUT:
            raise BundleError(f"bundle member {m['name']}: unknown input kind {kind!r}; update ser")
        models[m["name"]] = model
    return models, meta


def _logmels(manifest: pd.DataFrame, clip: Mapping[str, Any], n_mels: int, progress: bool,
             channel: Mapping[str, Any] | None = None) -> np.ndarray:
    """Whisper log-mel ``(N, n_mels, frames)`` of each file's prepared clip: exactly the
    runtime's computation (load, :func:`ser.audio.prepare_clip`, the channel, numpy log-mel)."""
    from tqdm.auto import tqdm

    from ..audio import ClipConfig, load_audio, prepare_clip
    from ..encoders.logmel import SAMPLE_RATE, log_mel_spectrogram
    from ..modelmeta import apply_channel

    cfg = ClipConfig(**clip)
    if cfg.sample_rate != SAMPLE_RATE:
        raise BundleError(f"an encoder member needs {SAMPLE_RATE} Hz clips, its clip config says {cfg.sample_rate}")
    out = [log_mel_spectrogram(apply_channel(prepare_clip(load_audio(p, cfg.sample_rate), cfg), cfg.sample_rate,
                                             channel), n_mels)
           for p in tqdm(list(manifest["path"]), desc="log-mel", unit="clip", disable=not progress)]
    return np.stack(out) if out else np.zeros((0, n_mels, 0), np.float32)


def bundle_features(meta: Mapping[str, Any], manifest: pd.DataFrame, cache_dir: str | Path = "feature_cache",
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Each member's input for the clips of ``manifest``: its features (own feature config,
    clip and channel, from the cache) or, for an encoder member, the Whisper log-mel of the
    prepared clip (heard through its channel)."""
    from ..audio import ClipConfig
    from ..cache import load_features
    from ..features import config_from_key

    out: dict[str, np.ndarray] = {}
    logmels: dict[str, np.ndarray] = {}  # members with the same clip and mel bands share one array
    for m in meta["members"]:
        spec = member_input(m)
        if spec["kind"] == LOGMEL_INPUT:
            key = json.dumps([m["clip"], spec["n_mels"], m.get("channel")], sort_keys=True)
            if key not in logmels:
                logmels[key] = _logmels(manifest, m["clip"], int(spec["n_mels"]), progress, m.get("channel"))
            out[m["name"]] = logmels[key]
            continue
        cfg = config_from_key(m["feature_key"])
        out[m["name"]] = load_features(manifest, [m["feature"]], {m["feature"]: cfg}, ClipConfig(**m["clip"]),
                                       cache_dir, progress=progress, channel=m.get("channel"))[m["feature"]]
    return out


def _checked(m: Mapping[str, Any], features: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    if m["name"] not in features:
        raise BundleError(f"no features for member {m['name']!r}; pass {names}")
    x = np.asarray(features[m["name"]], dtype=np.float32)
    x = x[None] if x.ndim == 2 else x
    spec = member_input(m)
    rows, what = (spec["n_mels"], "log-mel") if spec["kind"] == LOGMEL_INPUT else (m["height"], "features")
    if x.ndim != 3 or x.shape[1] != rows:
        raise BundleError(f"member {m['name']}: {what} of shape {x.shape}, expected (N, {rows}, frames)")
    return x


def predict_bundle(bundle: tuple[dict, dict] | str | Path, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Ensemble probabilities (N, K) from each member's input (:func:`bundle_features`):
    raw features ``(N, rows, frames)``, or log-mel ``(N, n_mels, frames)`` for an encoder
    member (whose encoder runs up to its layer first). Each member's input to its net is
    normalised with its stored mean/std; softmax, weighted average, temperature."""
    import torch

    from ..train import predict_proba

    models, meta = load_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
    names = [x["name"] for x in meta["members"]]
    total = None
    for m, w in zip(meta["members"], meta["weights"]):
        x = _checked(m, features, names)
        model = models[m["name"]]
        if isinstance(model, EncoderMember):
            x, model = model.states(x), model.head
        if x.shape[1] != m["height"]:
            raise BundleError(f"member {m['name']}: {x.shape[1]} rows reach the net, it was trained on {m['height']}")
        mean, std = np.asarray(m["mean"], np.float32), np.asarray(m["std"], np.float32)
        xn = ((x - mean[None, :, None]) / std[None, :, None]).astype(np.float32)
        p = w * predict_proba(model, xn, torch.device("cpu")).astype(np.float64)
        total = p if total is None else total + p
    return apply_temperature(total, meta["temperature"])
