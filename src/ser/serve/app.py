"""The FastAPI application: one exported model behind ``POST /predict``.

Endpoints (the OpenAPI document is at ``/openapi.json``, interactive docs at ``/docs``):

- ``POST /predict``: audio as the multipart field ``file`` or as the raw body ->
  :class:`~ser.serve.schemas.Prediction`; ``?segments=true`` (with optional ``window`` and
  ``hop`` in seconds) -> :class:`~ser.serve.schemas.Timeline`.
- ``POST /timeline``: the same as ``/predict?segments=true``.
- ``GET /health``: ``{"status": "ok", "model": ..., "trained_for": ..., ...}`` (``trained_for``: the
  channel and augmentation conditions the model was trained with); ``GET /labels``: labels and metadata;
  ``GET /metrics``: Prometheus counters (:mod:`ser.serve.metrics`). Every GET also answers HEAD.

Decoding (streamed, within :class:`~ser.audio.DecodeLimits`), the voice-activity check
(:mod:`ser.vad`) and inference are CPU-bound and run in worker threads (at most
``concurrency`` at once), so the event loop keeps accepting uploads and answering
``/health``. Audio without speech is answered ``"emotion": null`` with ``speech_s`` and no
probabilities. Every refusal is ``{"error": code, "detail": message}`` with a 4xx status
(:data:`ser.serve.limits.ERRORS`, mapped in one place: :mod:`ser.serve.failures`); an
unexpected exception is logged once and answered with a 500 JSON error, and the server
keeps serving.

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app("model.int8.onnx", Limits(max_seconds=60))              # doctest: +SKIP
    >>> TestClient(app).post("/predict", files={"file": open("clip.wav", "rb")}).json()  # doctest: +SKIP
    {'emotion': 'angry', 'probabilities': {...}, 'duration_s': 3.0, 'model': 'model.int8'}
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import anyio
import anyio.to_thread
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..audio import FORMATS, DecodeLimits, load_audio
from ..runtime import EmotionModel, ModelError, limit_blas_threads, load_model
from ..workers import cpu_cores
from .docs import install_docs
from .failures import refusal
from .limits import ERRORS, ApiError, Limits
from .metrics import Metrics
from .middleware import Guard
from .schemas import (ErrorBody, Health, LabelsInfo, LimitsInfo, MemberInfo, ModelInfo, Prediction, Timeline,
                      TrainedFor)
from .upload import read_upload, shorten

log = logging.getLogger(__name__)

MAX_WINDOW_S = 3600.0  # largest timeline window or hop a request may ask for

# the request body, described by hand: the handlers read the stream themselves (see upload.py)
AUDIO_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": f"the audio ({', '.join(FORMATS)}; any sample rate; mono or multichannel), either as the "
                   "multipart field `file` or as the raw body with any non-multipart content type",
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "audio/*": {"schema": {"type": "string", "format": "binary"}},
    }}}


def _error_responses() -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for code, (status, _) in ERRORS.items():
        if status not in (404, 405):
            by_status.setdefault(status, []).append(code)
    return {s: {"model": ErrorBody, "description": "error codes: " + ", ".join(codes)}
            for s, codes in sorted(by_status.items())}


class Service:
    """What the handlers share: the model, the limits, the inference limiter and counters."""

    def __init__(self, model: EmotionModel, limits: Limits, concurrency: int, metrics: Metrics | None = None) -> None:
        self.model = model
        self.limits = limits
        self.concurrency = concurrency
        self.metrics = metrics or Metrics()
        self.started = time.monotonic()
        self.ready = False
        self.in_flight = 0
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop, on first use

    async def answer(self, request: Request, timeline: bool, window: float | None,
                     hop: float | None) -> Prediction | Timeline:
        data, filename = await read_upload(request, self.limits)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        self.in_flight += 1
        try:
            return await anyio.to_thread.run_sync(self.infer, data, filename, timeline, window, hop,
                                                  limiter=self._limiter)
        finally:
            self.in_flight -= 1

    def infer(self, data: bytes, filename: str | None, timeline: bool = False, window: float | None = None,
              hop: float | None = None) -> Prediction | Timeline:
        """Decode, check and run one upload (blocking; called in a worker thread); every failure
        leaves as an ApiError (:func:`ser.serve.failures.refusal`)."""
        try:
            sr = self.model.sample_rate
            y = load_audio(data, sr, DecodeLimits(max_seconds=self.limits.max_seconds))
            duration = len(y) / sr
            self.limits.check_duration(duration)
            if timeline:
                self._check_windows(duration, window, hop)
            # the runtime runs the voice-activity check: no speech answers emotion None, no probabilities
            answer = self.model.timeline(y, window=window, hop=hop) if timeline else self.model.predict(y)
            if answer["emotion"] is None:
                self.metrics.no_speech.inc()
            return Timeline(**answer) if timeline else Prediction(**answer)
        except Exception as e:  # noqa: BLE001 (one place decides the answer: 4xx for the client's faults)
            raise refusal(e, filename, len(data)) from None

    def _window_plan(self, duration: float, window: float | None, hop: float | None) -> tuple[float, float, int]:
        """(window s, hop s, windows the runtime makes) for ``duration`` seconds of audio."""
        w = float(window or self.model.clip.seconds)
        h = float(hop or w / 2)
        sr = self.model.sample_rate
        n, ws, hs = int(round(duration * sr)), max(1, int(round(w * sr))), max(1, int(round(h * sr)))
        count = max(n - ws, 0) // hs + 1
        return w, h, count + (1 if (count - 1) * hs + ws < n else 0)

    def _check_windows(self, duration: float, window: float | None, hop: float | None) -> None:
        w, h, n = self._window_plan(duration, window, hop)
        if n > self.limits.max_windows:
            raise ApiError("bad_parameter", f"window={w:g} s and hop={h:g} s give {n} windows on "
                                            f"{duration:.1f} s of audio, more than the limit of "
                                            f"{self.limits.max_windows}; use a larger hop")


def trained_for(model: EmotionModel) -> TrainedFor | None:
    """The model's ``training_conditions`` (None for a model exported before they were recorded)."""
    tc = model.meta.get("training_conditions")
    if not isinstance(tc, dict):
        return None
    return TrainedFor(channel=tc.get("channel"), condition_aug=list(tc.get("condition_aug") or []),
                      members=dict(tc.get("members") or {}))


def model_info(model: EmotionModel) -> ModelInfo:
    meta = model.meta
    skip = {"labels", "members", "clip", "weights", "temperature", "precision"}
    extra = {k: v for k, v in meta.items() if k not in skip and isinstance(v, (str, int, float, bool))}
    temperature = meta.get("temperature")
    return ModelInfo(
        sample_rate=model.sample_rate, clip_seconds=float(model.clip.seconds),
        members=[MemberInfo(name=m.name, feature=m.feature, rows=m.rows, weight=m.weight) for m in model.members],
        precision=meta.get("precision"),
        temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
        trained_for=trained_for(model), extra=extra)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code, exc.detail)
        # a body not read to its end (too large, stalled) leaves the connection unusable
        close = exc.code in ("too_large", "incomplete_body", "request_timeout")
        return JSONResponse(exc.body(), status_code=exc.status, headers={"Connection": "close"} if close else None)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            got = err.get("input")
            parts.append(f"{where}: {err.get('msg')} (got {shorten(got, 40) if isinstance(got, str) else got!r})"
                         [:200])
        return await api_error(request, ApiError("bad_parameter", "; ".join(parts)))

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)[:200]}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # no handler for Exception: ser.serve.middleware.Guard logs it once and answers 500


def create_app(model: str | os.PathLike | EmotionModel, limits: Limits = Limits(), threads: int | None = None,
               concurrency: int | None = None, allowed_hosts: Sequence[str] = (),
               cors_origins: Sequence[str] = ()) -> FastAPI:
    """The FastAPI app serving one model.

    Args:
        model: an ``.onnx`` file written by ``ser export``, or a loaded :class:`EmotionModel`.
        limits: what one request may carry (:class:`Limits`).
        threads: onnxruntime intra-op threads when loading from a path (None: all cores).
        concurrency: requests decoded and run at once (None: the number of CPU cores);
            the others wait, their uploads already received.
        allowed_hosts: Host header patterns served (``example.com``, ``*.example.com``);
            empty or ``*``: any. Others get 400 ``bad_host``.
        cors_origins: origins whose browser pages may call the API (empty: no CORS headers).

    Returns:
        The app; the model is loaded now (a bad file fails here, with ModelError) and warmed
        up when the app starts (uvicorn start-up, or entering ``TestClient(app)``).
    """
    metrics = Metrics()
    t_load = time.perf_counter()
    if not isinstance(model, EmotionModel):
        model = load_model(model, threads=threads)
    # numpy's feature matrices are small: BLAS threads only spin against onnxruntime's and the
    # other requests' (a 3 s log-mel: 4.5 ms on 1 thread, 24 ms on 2 under load), so one
    limit_blas_threads(1)
    load_s = time.perf_counter() - t_load
    service = Service(model, limits, concurrency or cpu_cores(), metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        t0 = time.perf_counter()
        await anyio.to_thread.run_sync(model.warmup)
        warm_s = time.perf_counter() - t0
        metrics.model_load.set(load_s + warm_s)
        service.ready = True
        log.info("model %s loaded in %.1f s, warmed up in %.1f s; labels %s", model.name, load_s, warm_s,
                 model.labels)
        yield

    app = FastAPI(title="ser: speech emotion recognition", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, redirect_slashes=False,
                  description="POST an audio file, get the emotion and the probability of every label; audio "
                              "without speech is answered `\"emotion\": null`. Errors are JSON "
                              "`{\"error\": code, \"detail\": message}` with a 4xx status.")
    app.state.service = service
    _install_error_handlers(app)
    install_docs(app, "ser")
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "HEAD", "POST"],
                           allow_headers=["*"], max_age=600)
    app.add_middleware(Guard, metrics=metrics, allowed_hosts=tuple(allowed_hosts))  # outermost: sees everything
    errors = _error_responses()
    conditions = trained_for(model)  # fixed for the model's life: made once
    segments_q = Query(False, description="return per-window emotions (a timeline) instead of one answer")
    window_q = Query(None, gt=0, le=MAX_WINDOW_S, description="timeline window in seconds (default: the clip length)")
    hop_q = Query(None, gt=0, le=MAX_WINDOW_S, description="seconds between timeline windows (default: window / 2)")

    # exclude_unset: "emotion": null stays in a no-speech answer, absent optional fields stay out
    @app.post("/predict", response_model=Union[Timeline, Prediction], response_model_exclude_unset=True,
              responses=errors, openapi_extra=AUDIO_BODY, summary="emotion of one recording")
    async def predict(request: Request, segments: bool = segments_q, window: Optional[float] = window_q,
                      hop: Optional[float] = hop_q) -> Any:
        """The emotion of the uploaded audio; with `segments=true` also per-window emotions.
        Audio without speech: `"emotion": null`, `speech_s`, and no probabilities."""
        return await service.answer(request, segments, window, hop)

    @app.post("/timeline", response_model=Timeline, response_model_exclude_unset=True, responses=errors,
              openapi_extra=AUDIO_BODY, summary="per-window emotions of a recording")
    async def timeline(request: Request, window: Optional[float] = window_q, hop: Optional[float] = hop_q) -> Any:
        """Per-window emotions of the uploaded audio (windows without speech skipped)."""
        return await service.answer(request, True, window, hop)

    @app.api_route("/health", methods=["GET", "HEAD"], response_model=Health, summary="liveness and readiness")
    async def health() -> Health:
        return Health(status="ok" if service.ready else "starting", model=model.name, labels=len(model.labels),
                      uptime_s=round(time.monotonic() - service.started, 3), in_flight=service.in_flight,
                      version=__version__, limits=LimitsInfo(**vars(limits)), trained_for=conditions)

    @app.api_route("/labels", methods=["GET", "HEAD"], response_model=LabelsInfo,
                   summary="the model's labels and metadata")
    async def labels() -> LabelsInfo:
        return LabelsInfo(labels=list(model.labels), model=model.name, metadata=model_info(model))

    @app.api_route("/metrics", methods=["GET", "HEAD"], summary="Prometheus metrics",
                   response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


ENV_KEYS = ("SER_MODEL", "SER_THREADS", "SER_CONCURRENCY", "SER_ALLOWED_HOSTS", "SER_CORS_ORIGINS")


def environment(model_path: str | os.PathLike, limits: Limits, threads: int | None, concurrency: int | None,
                allowed_hosts: Sequence[str] = (), cors_origins: Sequence[str] = ()) -> dict[str, str]:
    """The variables :func:`app_from_env` reads: how ``ser serve --workers N`` configures each worker."""
    return {"SER_MODEL": str(Path(model_path).resolve()), "SER_THREADS": str(threads or ""),
            "SER_CONCURRENCY": str(concurrency or ""), "SER_ALLOWED_HOSTS": ",".join(allowed_hosts),
            "SER_CORS_ORIGINS": ",".join(cors_origins), **limits.to_env()}


def app_from_env() -> FastAPI:
    """The app configured by environment variables (uvicorn's factory for ``--workers`` > 1).

    ``SER_MODEL`` (required), ``SER_THREADS``, ``SER_CONCURRENCY``, ``SER_ALLOWED_HOSTS`` and
    ``SER_CORS_ORIGINS`` (comma lists) and the :class:`Limits` variables (``SER_MAX_BYTES``, ...).
    """
    path = os.environ.get("SER_MODEL")
    if not path:
        raise ModelError("SER_MODEL is not set; start the service with `ser serve --model FILE`")
    threads = os.environ.get("SER_THREADS")
    concurrency = os.environ.get("SER_CONCURRENCY")

    def names(key: str) -> tuple[str, ...]:
        return tuple(x for x in os.environ.get(key, "").split(",") if x)

    return create_app(path, Limits.from_env(), threads=int(threads) if threads else None,
                      concurrency=int(concurrency) if concurrency else None,
                      allowed_hosts=names("SER_ALLOWED_HOSTS"), cors_origins=names("SER_CORS_ORIGINS"))
