"""An ensemble bundle as one ONNX graph: fp32, static int8, dynamic int8, checked against PyTorch.

Reads top to bottom: load the bundle, wrap its members in :class:`EnsembleModule`
(normalisation, per-member softmax, weights, temperature: the exact computation of
``ser.ensemble.predict_bundle``), export with a dynamic batch and time axis, optimise the
graph offline with onnxruntime, write the ser metadata (labels, each member's input kind
and feature config, clip, weights, temperature) into ``metadata_props``, validate with
``onnx.checker``, check parity with PyTorch, then quantize.

Members differ in kind. A ResNet member's graph input is its feature array. An encoder
member's graph input is Whisper's log-mel ``(batch, n_mels, frames)`` of the prepared
clip, named after the member (members on the same encoder weights share the first one's
input); the graph holds the Whisper encoder, truncated to the highest layer its members
read and run once, and every head. The metadata says per member what to compute
(``"input": {"kind": "feature"}`` or ``{"kind": "whisper_logmel", "n_mels": 80}``), so the
torch-free runtime computes it in numpy.

Static int8 is calibrated on inputs of the bundle's *training* speakers (read from the
corpus given by ``corpus``/``data``); the parity figures use its *test* speakers. Without a
corpus, parity uses random inputs (features drawn around each member's training
statistics, log-mel of noise) and static quantization is refused (calibrating on noise
would be a quiet accuracy loss).

The exporter is torch's TorchScript-based one (``dynamo=False``): with the pinned torch it
exports the ResNet and the encoder with a dynamic time axis directly and needs no extra
package.

Example:
    >>> report = export_bundle("runs/demo/ensemble/bundle", "runs/demo/model",
    ...                        corpus="synthetic", data="data/synthetic")    # doctest: +SKIP
    >>> report["files"]                                                     # doctest: +SKIP
    {'fp32': 'runs/demo/model/model.onnx', 'int8_static': 'runs/demo/model/model.int8.onnx'}
"""
from __future__ import annotations

import copy
import io
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..encoders.logmel import log_mel_spectrogram, n_mel_frames
from ..ensemble.bundle import (LOGMEL_INPUT, EncoderMember, bundle_features, is_encoder_member, load_bundle,
                               member_input, predict_bundle)
from ..ensemble.calibration import EPS
from ..errors import SerError
from ..fileio import atomic_write_bytes, write_json_atomic
from ..features import output_shape
from ..runtime import FORMAT, METADATA_KEY, OUTPUT, EmotionModel
from .quantize import (ENCODER_PREFIX, MEMBER_PREFIX, TRANSFORMER_INT8, quantize_dynamic_int8,
                       quantize_static_int8)

log = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "int8_static": "model.int8.onnx", "int8_dynamic": "model.dynamic.onnx"}
QUANTIZE = {"static": ("int8_static",), "dynamic": ("int8_dynamic",), "none": (), "both": ("int8_static", "int8_dynamic")}
PARITY_TOL = 1e-4  # max |p_onnx - p_torch| accepted for the fp32 graph
PARITY_CLIPS = 64  # test clips (or random inputs) for the parity check


class ExportError(SerError, ValueError):
    """A bundle that cannot be exported, or an export that fails its checks."""


def graph_inputs(meta: Mapping[str, Any]) -> list[str]:
    """Each member's graph input name, in member order.

    A feature member's input is named after the member. Encoder members that read the same
    log-mel (same encoder weights, clip and mel bands) share one input, named after the
    first of them, so the runtime computes it once and the graph runs the encoder once.
    """
    first: dict[str, str] = {}
    names = []
    for m in meta["members"]:
        spec = member_input(m)
        if spec["kind"] != LOGMEL_INPUT:
            names.append(m["name"])
            continue
        key = json.dumps([m["encoder"]["name"], m["encoder"]["weights_sha256"], m["clip"], spec["n_mels"]],
                         sort_keys=True)
        names.append(first.setdefault(key, m["name"]))
    return names


def truncated(encoder: nn.Module, layers: int) -> nn.Module:
    """A copy of a Whisper encoder holding only blocks 1..``layers`` (and no ``ln_post``),
    so the exported graph carries no weights it never uses."""
    out = copy.deepcopy(encoder)
    out.blocks = nn.ModuleList(list(out.blocks)[:layers])
    out.ln_post = nn.Identity()
    return out


class EnsembleModule(nn.Module):
    """The bundle's probability as one module: one input per distinct member input.

    ``softmax(log(sum_i w_i softmax(f_i((x_i - mean_i) / std_i))) / T)``, as
    ``predict_bundle`` computes it in float64 from the same checkpoints. A feature member's
    ``x_i`` is its input; an encoder member's is its layer's states, from its encoder
    (truncated to the highest layer any member reads, run once per distinct input).
    """

    def __init__(self, models: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        super().__init__()
        members = meta["members"]
        self.names = [m["name"] for m in members]
        sources = graph_inputs(meta)
        self.inputs = list(dict.fromkeys(sources))
        nets, encoders, depth = [], {}, {}  # encoders and the deepest layer read, by id (shared instances)
        self.plan: list[tuple[int, int, int]] = []  # per member: (input index, encoder index or -1, layer)
        for i, (m, src) in enumerate(zip(members, sources)):
            model = models[m["name"]]
            if isinstance(model, EncoderMember):
                key = id(model.encoder)
                encoders.setdefault(key, model.encoder)
                depth[key] = max(depth.get(key, 0), model.layer)
                self.plan.append((self.inputs.index(src), list(encoders).index(key), model.layer))
                nets.append(model.head)
            else:
                self.plan.append((self.inputs.index(src), -1, -1))
                nets.append(model)
            # normalises (batch, dims, frames) states, or (batch, 1, rows, frames) features
            shape = (1, -1, 1) if isinstance(model, EncoderMember) else (1, 1, -1, 1)
            self.register_buffer(f"mean{i}", torch.tensor(m["mean"], dtype=torch.float32).view(*shape))
            self.register_buffer(f"std{i}", torch.tensor(m["std"], dtype=torch.float32).view(*shape))
        self.nets = nn.ModuleList(nets)
        self.encoders = nn.ModuleList(truncated(e, depth[k]) for k, e in encoders.items())
        self.depth = list(depth.values())  # same order as encoders (both filled at first sight)
        self.register_buffer("weights", torch.tensor(meta["weights"], dtype=torch.float32))
        self.temperature = float(meta["temperature"])

    def quantized_nodes(self) -> dict[str, list[str]]:
        """Node-name prefixes for ``ser.export.quantize``: the ResNets (``nets``) and the
        encoders (``encoders``); the pooled heads on encoder states are in neither."""
        return {"nets": [f"{MEMBER_PREFIX}{i}/" for i, (_, g, _) in enumerate(self.plan) if g < 0],
                "encoders": [f"{ENCODER_PREFIX}{g}/" for g in range(len(self.encoders))]}

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        total = None
        states: dict[tuple[int, int], list[torch.Tensor]] = {}
        for i, (net, (src, g, layer)) in enumerate(zip(self.nets, self.plan)):
            if g < 0:
                x = xs[src].unsqueeze(1)
            else:
                if (g, src) not in states:
                    states[(g, src)] = self.encoders[g](xs[src], max_layer=self.depth[g])
                x = states[(g, src)][layer].transpose(1, 2)
            z = (x - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")
            p = self.weights[i] * torch.softmax(net(z), dim=1)
            total = p if total is None else total + p
        return torch.softmax(torch.log(torch.clamp(total, min=EPS)) / self.temperature, dim=1)


def model_metadata(meta: Mapping[str, Any], precision: str) -> dict[str, Any]:
    """The ``metadata_props`` document: everything a server needs besides the graph.

    Each member says what its graph input is (``"input"``: ``kind``, ``name`` and, for
    Whisper log-mel, ``n_mels``); ``rows`` is that input's row count (the mel bands for an
    encoder member, whose head reads ``height`` dimensions of the encoder's states); ``channel``
    (heard by the runtime on every clip) and ``training_conditions``: what it was trained for."""
    from .. import __version__

    members = []
    for m, w, src in zip(meta["members"], meta["weights"], graph_inputs(meta)):
        spec = {**member_input(m), "name": src}
        doc = {"name": m["name"], "feature": m["feature"], "feature_key": m["feature_key"],
               "rows": int(spec.get("n_mels", m["height"])), "weight": float(w), "input": spec}
        if spec["kind"] == LOGMEL_INPUT:  # what the graph holds; the weights path stays on this machine
            doc.update(height=int(m["height"]), encoder={k: v for k, v in m["encoder"].items() if k != "path"})
        members.append(doc)
    clip = meta["members"][0]["clip"]
    return {"format": FORMAT, "version": 1, "labels": list(meta["labels"]), "members": members, "clip": clip,
            "sample_rate": clip["sample_rate"], "clip_seconds": clip["seconds"],
            "weights": [float(w) for w in meta["weights"]], "temperature": float(meta["temperature"]),
            "precision": precision, "output": OUTPUT, "metrics": meta.get("metrics"),
            "speakers": meta.get("speakers"), "ser_version": __version__, "channel": meta.get("channel"),
            "training_conditions": meta.get("training_conditions"), "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _set_metadata(model_bytes: bytes, meta: Mapping[str, Any], precision: str) -> bytes:
    import onnx

    model = onnx.load_from_string(model_bytes)
    doc = model_metadata(meta, precision)
    del model.metadata_props[:]
    inputs = dict.fromkeys(m["input"]["name"] for m in doc["members"])
    for key, value in {METADATA_KEY: json.dumps(doc), "labels": ",".join(doc["labels"]),
                       "inputs": ",".join(inputs), "precision": precision}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"ser emotion ensemble ({', '.join(m['name'] for m in doc['members'])}), {precision}"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _input_shape(m: Mapping[str, Any]) -> tuple[int, int]:
    """(rows, frames) of a bundle member's graph input for one training clip."""
    n = int(round(m["clip"]["seconds"] * m["clip"]["sample_rate"]))
    spec = member_input(m)
    if spec["kind"] == LOGMEL_INPUT:
        return int(spec["n_mels"]), n_mel_frames(n)
    return output_shape(m["feature"], n)


def _torch_export(module: EnsembleModule, meta: Mapping[str, Any], opset: int) -> bytes:
    dummies = {}
    for m, src in zip(meta["members"], graph_inputs(meta)):
        rows, frames = _input_shape(m)
        if not is_encoder_member(m) and rows != m["height"]:
            raise ExportError(f"member {m['name']}: the bundle says {m['height']} rows, {m['feature']} gives {rows}")
        dummies.setdefault(src, torch.zeros(1, rows, frames))
    axes = {**{name: {0: "batch", 2: "frames"} for name in module.inputs}, OUTPUT: {0: "batch"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated upstream; it is the one that needs no onnxscript (see module
        # doc); the tracer warns about the encoder's shape-dependent slices, which stay dynamic (tested)
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category=category)
        torch.onnx.export(module, tuple(dummies[n] for n in module.inputs), buf, dynamo=False,
                          input_names=module.inputs, output_names=[OUTPUT], dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True)
    return buf.getvalue()


def optimize_offline(model_bytes: bytes, tmp_dir: Path) -> bytes:
    """onnxruntime's basic graph optimisations, saved: constant folding, Conv+BatchNorm
    fusion, redundant nodes removed. Only standard ONNX ops remain, so the file stays
    portable and quantizable; the extended fusions (e.g. Conv+Relu into the contrib
    ``FusedConv``, which the quantizer does not know) and layout changes happen at load."""
    import onnxruntime as ort

    src, dst = tmp_dir / "raw.onnx", tmp_dir / "optimized.onnx"
    src.write_bytes(model_bytes)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return dst.read_bytes()


def split_manifest(meta: Mapping[str, Any], corpus: str | None, data: str | Path | None):
    """The corpus manifest with the bundle's split column, or None without a corpus."""
    if corpus is None and data is None:
        return None
    if corpus is None or data is None:
        raise ExportError("give both --corpus and --data (the corpus the bundle was trained on), or neither")
    from ..corpora import load_manifest
    from ..splits import speaker_keys

    speakers = meta.get("speakers") or {}
    if not speakers.get("train") or not speakers.get("test"):
        raise ExportError("the bundle records no train/test speakers; re-create it with `ser ensemble`")
    manifest = load_manifest(corpus, data)
    where = {s: split for split, ss in speakers.items() for s in ss}
    # corpus-qualified ids, so speaker "01" of another corpus in a mixed manifest is not taken
    # for a training speaker; bundles from before they were qualified hold bare ids of one corpus
    qualified = any("/" in s for s in where)
    ids = speaker_keys(manifest) if qualified else manifest["speaker"].astype(str)
    manifest = manifest.assign(split=ids.map(where))
    if not manifest["split"].eq("train").any():
        raise ExportError(f"no clip of {corpus} at {data} belongs to the bundle's training speakers "
                          f"{speakers['train'][:5]}...; is this the corpus the bundle was trained on?")
    return manifest


def _sample(df, n: int, seed: int):
    return df if len(df) <= n else df.sample(n=n, random_state=seed).sort_index()


def _random_inputs(meta: Mapping[str, Any], n: int, seed: int) -> dict[str, np.ndarray]:
    """Parity inputs without a corpus: features drawn around each member's training
    statistics; for an encoder member, the log-mel of noise clips with a random envelope."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for m, src in zip(meta["members"], graph_inputs(meta)):
        rows, frames = _input_shape(m)
        if src in out:  # members sharing a graph input get the same array
            out[m["name"]] = out[src]
            continue
        if is_encoder_member(m):
            samples = int(round(m["clip"]["seconds"] * m["clip"]["sample_rate"]))
            envelope = np.repeat(rng.uniform(0.0, 0.3, (n, samples // 1600 + 1)), 1600, axis=1)[:, :samples]
            clips = (rng.normal(size=(n, samples)) * envelope).astype(np.float32)
            out[m["name"]] = np.stack([log_mel_spectrogram(c, rows) for c in clips])
            continue
        mean, std = np.asarray(m["mean"], np.float32), np.asarray(m["std"], np.float32)
        out[m["name"]] = (mean[None, :, None] + std[None, :, None] * rng.normal(size=(n, rows, frames))).astype(
            np.float32)
    return out


def agreement(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Max absolute probability difference and argmax agreement of two (N, K) arrays."""
    return {"n": int(len(p)), "max_abs_diff": float(np.abs(p - q).max()),
            "argmax_agreement": float(np.mean(p.argmax(1) == q.argmax(1)))}


def export_bundle(bundle: str | Path, out_dir: str | Path, quantize: str | Iterable[str] = "static",
                  corpus: str | None = None, data: str | Path | None = None, cache_dir: str | Path = "feature_cache",
                  calibration_clips: int = 200, opset: int = 17, seed: int = 0, progress: bool = True,
                  encoder_paths: Mapping[str, str | Path] | None = None,
                  transformer: str = TRANSFORMER_INT8) -> dict[str, Any]:
    """Export a bundle to ONNX, check it against PyTorch, quantize it.

    Args:
        bundle: the bundle folder (``ser ensemble --out DIR`` writes ``DIR/bundle``).
        out_dir: output folder: ``model.onnx`` (fp32), ``model.int8.onnx`` (static int8),
            ``model.dynamic.onnx`` (dynamic int8), ``export.json`` (the report).
        quantize: ``"static"``, ``"dynamic"``, ``"none"`` or ``"both"``.
        corpus, data: the corpus the bundle was trained on; static calibration reads its
            training speakers, the parity check its test speakers. Required for static.
        cache_dir: feature cache. calibration_clips: training clips for calibration.
        opset: ONNX opset. seed: clip sampling seed. progress: progress bars.
        encoder_paths: ``{encoder name: weights path}`` for encoder members whose weights
            are neither where training found them nor installed (SHA-256 still checked).
        transformer: how static int8 quantizes the encoders' MatMuls, ``"dynamic"`` (the
            default, measured better) or ``"static"`` (see :mod:`ser.export.quantize`).

    Returns:
        The report (also ``export.json``): files, sizes, parity of fp32 vs PyTorch and of each
        int8 model vs fp32 (run as served; ``per_clip``: one clip per call), calibration, ``serve``.

    Raises:
        ExportError: bad bundle/corpus combination, static without a corpus, or an fp32
            graph that differs from PyTorch by more than ``PARITY_TOL``.
    """
    import tempfile

    kinds = QUANTIZE.get(quantize) if isinstance(quantize, str) else tuple(f"int8_{q}" for q in quantize)
    if kinds is None or any(k not in FILES for k in kinds):
        raise ExportError(f"quantize={quantize!r}; choose from {', '.join(QUANTIZE)}")
    if transformer not in ("dynamic", "static"):
        raise ExportError(f"transformer={transformer!r}; choose 'dynamic' or 'static'")
    models, meta = load_bundle(bundle, encoder_paths=encoder_paths)
    manifest = split_manifest(meta, corpus, data)
    if "int8_static" in kinds and manifest is None:
        raise ExportError("static int8 is calibrated on the bundle's training speakers: pass --corpus and --data "
                          "(or --quantize dynamic|none)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # 1. the graph: export, optimise, metadata, check
    module = EnsembleModule(models, meta).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = optimize_offline(_torch_export(module, meta, opset), Path(tmp))
    files = {"fp32": out / FILES["fp32"]}
    atomic_write_bytes(files["fp32"], _set_metadata(fp32, meta, "fp32"))
    where = module.quantized_nodes()

    # 2. parity with PyTorch on test-speaker features (or random inputs)
    if manifest is not None:
        test = _sample(manifest[manifest["split"] == "test"], PARITY_CLIPS, seed)
        inputs = bundle_features(meta, test, cache_dir, progress=progress)
        source = f"{len(test)} test-speaker clips of {corpus}"
    else:
        inputs, source = _random_inputs(meta, PARITY_CLIPS // 4, seed), "random inputs around the training statistics"
    reference = predict_bundle((models, meta), inputs)
    onnx_fp32 = EmotionModel(files["fp32"]).run(inputs)
    parity = {**agreement(onnx_fp32, reference), "inputs": source}
    if not parity["max_abs_diff"] <= PARITY_TOL:
        raise ExportError(f"ONNX fp32 differs from PyTorch by {parity['max_abs_diff']:.2e} (> {PARITY_TOL:g}) on "
                          f"{source}; the export is wrong, please report it")

    # 3. int8
    report_q: dict[str, Any] = {}
    calibration = None
    if "int8_static" in kinds:
        train = _sample(manifest[manifest["split"] == "train"], calibration_clips, seed)
        calibration = bundle_features(meta, train, cache_dir, progress=progress)
        files["int8_static"] = out / FILES["int8_static"]
        q = quantize_static_int8(files["fp32"].read_bytes(), {n: calibration[n] for n in module.inputs},
                                 transformer=transformer, **where)
        atomic_write_bytes(files["int8_static"], _set_metadata(q, meta, "int8-static"))
    if "int8_dynamic" in kinds:
        files["int8_dynamic"] = out / FILES["int8_dynamic"]
        q = quantize_dynamic_int8(files["fp32"].read_bytes(), **where)
        atomic_write_bytes(files["int8_dynamic"], _set_metadata(q, meta, "int8-dynamic"))
    for kind, model in ((k, EmotionModel(files[k])) for k in kinds):  # dynamic int8 runs clip by clip, as served
        report_q[kind] = {**agreement(model.run(inputs), onnx_fp32), "inputs": source, "per_clip": model.per_clip}

    report = {"bundle": str(bundle), "files": {k: str(v) for k, v in files.items()},
              "sizes_mb": {k: v.stat().st_size / 2**20 for k, v in files.items()},
              "serve": "int8_static" if "int8_static" in files else "fp32",
              "parity": parity, "int8_vs_fp32": report_q, "opset": opset,
              "encoder_int8": transformer if where["encoders"] and "int8_static" in kinds else None,
              "calibration": None if calibration is None else {"clips": int(len(train)), "speakers": "train"},
              "members": [m["name"] for m in meta["members"]], "labels": meta["labels"],
              "seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "export.json", report)
    log.info("exported %s to %s in %.1f s; fp32 parity max |dp| %.1e", report["members"], out, report["seconds"],
             parity["max_abs_diff"])
    return report
