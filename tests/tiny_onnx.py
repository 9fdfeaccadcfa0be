"""A tiny hand-built ONNX model with real ser metadata, for runtime and service tests.

The graph is not a ResNet (export tests build those from a trained bundle); it is a
linear model over time-averaged features, so tests that exercise the runtime, the CLI and
the HTTP service run in milliseconds and need no torch. Its probabilities still depend
on the audio: louder, brighter clips move the answer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ser.runtime import FORMAT, METADATA_KEY, OUTPUT
from ser.features import feature_key, get_config, output_rows

LABELS = ["neutral", "happy", "sad", "angry"]


def make_tiny_model(path: str | Path, labels: list[str] = LABELS, features: tuple[str, ...] = ("mel", "rms"),
                    seed: int = 0, metadata: dict | None = None, clip_seconds: float = 3.0) -> Path:
    """Write a model whose inputs are ``features`` (default configs) to ``path``.

    ``metadata`` replaces the ser metadata document (use ``{}`` for a model without it).
    """
    rng = np.random.default_rng(seed)
    nodes, inits, inputs, parts = [], [], [], []
    members = []
    for name in features:
        rows = output_rows(name)
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", rows, "frames"]))
        w = rng.normal(0, 0.05, (rows, len(labels))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}_w"))
        nodes += [helper.make_node("ReduceMean", [name], [f"{name}_avg"], axes=[2], keepdims=0),
                  helper.make_node("MatMul", [f"{name}_avg", f"{name}_w"], [f"{name}_z"])]
        parts.append(f"{name}_z")
        members.append({"name": name, "feature": name, "feature_key": feature_key(name, get_config(name)),
                        "rows": rows, "weight": 1 / len(features)})
    nodes.append(helper.make_node("Sum", parts, ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1))
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(labels)])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"format": FORMAT, "version": 1, "labels": labels, "members": members,
            "clip": {"sample_rate": 16000, "seconds": clip_seconds, "trim_top_db": 30.0, "crop": "start"},
            "weights": [m["weight"] for m in members], "temperature": 1.0, "precision": "fp32"}
    if metadata is not None:
        meta = metadata
    if meta:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
