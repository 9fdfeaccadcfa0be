"""int8 quantization with onnxruntime: static QDQ per-channel (the one to serve) and dynamic.

Static: weights int8 per output channel, activations uint8 with ranges calibrated
(MinMax) on real features of the training speakers, in QDQ form, so onnxruntime runs the
convolutions as int8 kernels (VNNI/AVX2). Only the members' ResNets are quantized: the
ensemble head (normalisation, softmax, weights, temperature) stays float, because
probabilities at uint8 resolution (1/255) would cost calibration for no speed.

Dynamic: weights int8, activations quantized at run time; for convolutions onnxruntime
has no fast kernel, so it is usually slower than fp32 (kept for comparison, as the
issue asks; the export report and ``test_quantization.py --compare`` show it).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

log = logging.getLogger(__name__)

MEMBER_PREFIX = "/nets."  # node names inside the members' ResNets (EnsembleModule.nets)
QUANT_OPS = ["Conv", "Gemm", "MatMul", "Add", "MaxPool", "GlobalAveragePool", "Relu"]
CALIBRATION_BATCH = 16  # clips per calibration run


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over ``{input: (N, rows, frames)}``."""

    def __init__(self, features: Mapping[str, np.ndarray]) -> None:
        n = len(next(iter(features.values())))
        self._batches = iter([{k: np.ascontiguousarray(v[i:i + CALIBRATION_BATCH], dtype=np.float32)
                               for k, v in features.items()} for i in range(0, n, CALIBRATION_BATCH)])

    def get_next(self):
        return next(self._batches, None)


def _member_nodes(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    graph = onnx.load(str(path)).graph
    inside = [n.name for n in graph.node if n.name.startswith(MEMBER_PREFIX)]
    outside = [n.name for n in graph.node if not n.name.startswith(MEMBER_PREFIX)]
    return inside, outside


def quantize_static_int8(model_bytes: bytes, calibration: Mapping[str, np.ndarray]) -> bytes:
    """Static QDQ int8 (per-channel weights) of an fp32 ensemble graph.

    Args:
        model_bytes: the fp32 model (``ser export``'s ``model.onnx``).
        calibration: training-split features ``{input name: (N, rows, frames)}``.

    Returns:
        The quantized model's bytes (metadata is written by the caller).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        inside, outside = _member_nodes(pre)
        if not inside:
            raise ValueError(f"no member nodes (prefix {MEMBER_PREFIX!r}) in the graph; not a ser ensemble export")
        quantize_static(str(pre), str(dst), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANT_OPS, nodes_to_exclude=outside,
                        calibrate_method=CalibrationMethod.MinMax)
        log.info("static int8: %d member nodes considered, %d head nodes kept float", len(inside), len(outside))
        return dst.read_bytes()


def quantize_dynamic_int8(model_bytes: bytes) -> bytes:
    """Dynamic int8 (weights int8, activations at run time) of an fp32 ensemble graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "dyn.onnx"
        src.write_bytes(model_bytes)
        inside, outside = _member_nodes(src)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=outside)
        return dst.read_bytes()
