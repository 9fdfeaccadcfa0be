"""ONNX export of an ensemble bundle and its int8 quantization.

The torch-free side, :func:`ser.runtime.load_model`, reads the ``.onnx`` files written
here and predicts from audio; it lives outside this package so serving never imports it.

- :mod:`ser.export.onnx_export` (torch): :func:`export_bundle` turns a bundle into one
  ONNX graph (normalisation, members, weights, temperature inside; for encoder members
  the Whisper encoder, truncated to the highest layer they read, with its log-mel as the
  graph input), validates it, checks parity with PyTorch and quantizes it.
- :mod:`ser.export.quantize`: static QDQ per-channel int8 for the ResNets, int8 MatMuls
  for the transformer, and dynamic int8 (onnxruntime).
- :mod:`ser.export.compare`: PyTorch vs ONNX fp32 vs int8, accuracy, agreement, latency.

Names load lazily so that ``import ser.export`` stays cheap.

Example:
    >>> from ser.export import export_bundle                                     # doctest: +SKIP
    >>> from ser.runtime import load_model                                       # doctest: +SKIP
    >>> files = export_bundle("runs/demo/ensemble/bundle", "runs/demo/model",
    ...                       corpus="synthetic", data="data/synthetic")           # doctest: +SKIP
    >>> load_model(files["int8"]).predict("clip.wav")["emotion"]                   # doctest: +SKIP
    'angry'
"""
from __future__ import annotations

from .._lazy import lazy_api

_API = {
    "export_bundle": "ser.export.onnx_export",
    "ExportError": "ser.export.onnx_export",
    "quantize_static_int8": "ser.export.quantize",
    "quantize_dynamic_int8": "ser.export.quantize",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
