"""The HTTP service: POST audio, get the emotion back (onnxruntime, no torch).

- :class:`Limits`: what one request may carry (bytes, seconds, timeline windows).
- :func:`create_app`: the FastAPI application for one exported model
  (``POST /predict``, ``POST /timeline``, ``GET /health``, ``GET /labels``, ``/docs``).
- :func:`serve`: run it with uvicorn (``ser serve --model FILE``).
- :mod:`ser.serve.client`: ``post_audio`` and ``ser client``.

Names load lazily: ``from ser.serve import Limits`` does not import FastAPI, and nothing
in this package ever imports torch.

Example:
    >>> from ser.serve import Limits, serve
    >>> serve("runs/demo/model/model.int8.onnx", port=8000,
    ...       limits=Limits(max_bytes=5_000_000))                     # doctest: +SKIP
    >>> # elsewhere: curl -F file=@clip.wav http://127.0.0.1:8000/predict
"""
from __future__ import annotations

from .._lazy import lazy_api

_API = {
    "Limits": "ser.serve.limits",
    "ApiError": "ser.serve.limits",
    "create_app": "ser.serve.app",
    "serve": "ser.serve.server",
    "ServeError": "ser.serve.server",
    "post_audio": "ser.serve.client",
    "run_client": "ser.serve.client",
    "ClientError": "ser.serve.client",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
