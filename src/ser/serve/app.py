"""The FastAPI application: one exported model behind ``POST /predict``.

Endpoints (the OpenAPI document is at ``/openapi.json``, interactive docs at ``/docs``):

- ``POST /predict``: audio as the multipart field ``file`` or as the raw body ->
  :class:`~ser.serve.schemas.Prediction`; ``?segments=true`` (with optional ``window`` and
  ``hop`` in seconds) -> :class:`~ser.serve.schemas.Timeline`.
- ``POST /timeline``: the same as ``/predict?segments=true``.
- ``GET /health``: ``{"status": "ok", "model": ..., ...}``; ``GET /labels``: labels and metadata.

Decoding and inference are CPU-bound and run in worker threads (at most ``concurrency`` at
once), so the event loop keeps accepting uploads and answering ``/health``. Every refusal
is ``{"error": code, "detail": message}`` with a 4xx status (:data:`ser.serve.limits.ERRORS`);
an unexpected exception is logged and answered with a 500 JSON error, and the server
keeps serving.

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app("model.int8.onnx", Limits(max_seconds=60))              # doctest: +SKIP
    >>> TestClient(app).post("/predict", files={"file": open("clip.wav", "rb")}).json()  # doctest: +SKIP
    {'emotion': 'angry', 'probabilities': {...}, 'duration_s': 3.0, 'model': 'model.int8'}
"""
from __future__ import annotations

import io
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional, Union

import anyio
import anyio.to_thread
import soundfile as sf
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..audio import FORMATS, AudioError, UnsupportedFormatError
from ..runtime import EmotionModel, ModelError, load_model, read_metadata
from .limits import ERRORS, ApiError, Limits
from .schemas import ErrorBody, Health, LabelsInfo, LimitsInfo, MemberInfo, ModelInfo, Prediction, Timeline
from .upload import read_upload

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

    def __init__(self, model: EmotionModel, limits: Limits, concurrency: int) -> None:
        self.model = model
        self.limits = limits
        self.concurrency = concurrency
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
        """Decode, check and run one upload (blocking; called in a worker thread)."""
        try:
            self._check_declared_duration(data)
            try:
                y = self.model.waveform(data)
            except AudioError as e:
                raise _audio_error(e, data, filename) from None
            duration = len(y) / self.model.sample_rate
            self.limits.check_duration(duration)
            if not timeline:
                return Prediction(**self.model.predict(y))
            self._check_windows(duration, window, hop)
            return Timeline(**self.model.timeline(y, window=window, hop=hop))
        except ApiError:
            raise
        except ModelError as e:  # the model does not fit its own metadata: a server fault
            log.error("model fault on %s: %s", filename or "upload", e)
            raise ApiError("internal_error", f"the model failed on this input ({e})") from None
        except ValueError as e:  # the runtime refuses window/hop values that got past the checks
            raise ApiError("bad_parameter", str(e)) from None
        except Exception as e:  # noqa: BLE001 (last resort: log it, answer JSON, keep serving)
            log.exception("unexpected error on %s", filename or "upload")
            raise ApiError("internal_error", f"unexpected {type(e).__name__} while processing the audio; "
                                             "the server logged it") from None

    def _check_declared_duration(self, data: bytes) -> None:
        # A 20 MB low-bitrate MP3 can decode to gigabytes of float32: refuse it from its header.
        try:
            info = sf.info(io.BytesIO(data))
            seconds = info.frames / info.samplerate
        except Exception:  # noqa: BLE001 (undecodable: load_audio says why, with the right code)
            return
        if info.frames >= 2 ** 62:  # "length unknown" (a FLAC stream header with 0 samples): the decoder decides
            return
        if seconds > self.limits.max_seconds * 1.01 + 1.0:
            raise ApiError("too_long", f"the file declares {seconds:.1f} s of audio; at most "
                                       f"{self.limits.max_seconds:g} s is accepted (cut it into parts)")

    def _check_windows(self, duration: float, window: float | None, hop: float | None) -> None:
        w = window or self.model.clip.seconds
        h = hop or w / 2
        n = int(max(duration - w, 0) // h) + 2  # windows the runtime will make, at most
        if n > self.limits.max_windows:
            raise ApiError("bad_parameter", f"window={w:g} s and hop={h:g} s give about {n} windows on "
                                            f"{duration:.1f} s of audio, more than the limit of "
                                            f"{self.limits.max_windows}; use a larger hop")


def _audio_error(e: AudioError, data: bytes, filename: str | None) -> ApiError:
    name = repr(filename) if filename else "the upload"
    # load_audio names bytes input "<N bytes>"; the client knows its upload by its file name
    detail = str(e).replace(f"<{len(data)} bytes>", name)
    if isinstance(e, UnsupportedFormatError):
        return ApiError("unsupported_format", detail)
    return ApiError("bad_audio", detail)


def model_info(model: EmotionModel) -> ModelInfo:
    meta = model.meta
    skip = {"labels", "members", "clip", "weights", "temperature", "precision"}
    extra = {k: v for k, v in meta.items() if k not in skip and isinstance(v, (str, int, float, bool))}
    temperature = meta.get("temperature")
    return ModelInfo(
        sample_rate=model.sample_rate, clip_seconds=float(model.clip.seconds),
        members=[MemberInfo(name=m.name, feature=m.feature, rows=m.rows, weight=m.weight) for m in model.members],
        precision=meta.get("precision"),
        temperature=float(temperature) if isinstance(temperature, (int, float)) else None, extra=extra)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code, exc.detail)
        # an oversize body was not read to its end: the connection cannot be reused
        headers = {"Connection": "close"} if exc.code in ("too_large", "incomplete_body") else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {err.get('msg')} (got {err.get('input')!r})")
        return await api_error(request, ApiError("bad_parameter", "; ".join(parts)))

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal_error", "detail": f"unexpected {type(exc).__name__}; the server "
                                                                  "logged it"}, status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(model: str | os.PathLike | EmotionModel, limits: Limits = Limits(), threads: int | None = None,
               concurrency: int | None = None) -> FastAPI:
    """The FastAPI app serving one model.

    Args:
        model: an ``.onnx`` file written by ``ser export``, or a loaded :class:`EmotionModel`.
        limits: what one request may carry (:class:`Limits`).
        threads: onnxruntime intra-op threads when loading from a path (None: all cores).
        concurrency: requests decoded and run at once (None: the number of CPU cores);
            the others wait, their uploads already received.

    Returns:
        The app; the model is loaded now (a bad file fails here, with ModelError) and warmed
        up when the app starts (uvicorn start-up, or entering ``TestClient(app)``).
    """
    if not isinstance(model, EmotionModel):
        model = load_model(model, threads=threads)
    service = Service(model, limits, concurrency or os.cpu_count() or 1)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        t0 = time.perf_counter()
        await anyio.to_thread.run_sync(model.warmup)
        service.ready = True
        log.info("model %s warmed up in %.1f s; labels %s", model.name, time.perf_counter() - t0, model.labels)
        yield

    app = FastAPI(title="ser: speech emotion recognition", version=__version__, lifespan=lifespan,
                  description="POST an audio file, get the emotion and the probability of every label. "
                              "Errors are JSON `{\"error\": code, \"detail\": message}` with a 4xx status.")
    app.state.service = service
    _install_error_handlers(app)
    errors = _error_responses()
    segments_q = Query(False, description="return per-window emotions (a timeline) instead of one answer")
    window_q = Query(None, gt=0, le=MAX_WINDOW_S, description="timeline window in seconds (default: the clip length)")
    hop_q = Query(None, gt=0, le=MAX_WINDOW_S, description="seconds between timeline windows (default: window / 2)")

    @app.post("/predict", response_model=Union[Timeline, Prediction], response_model_exclude_none=True,
              responses=errors, openapi_extra=AUDIO_BODY, summary="emotion of one recording")
    async def predict(request: Request, segments: bool = segments_q, window: Optional[float] = window_q,
                      hop: Optional[float] = hop_q) -> Any:
        """The emotion of the uploaded audio; with `segments=true` also per-window emotions."""
        return await service.answer(request, segments, window, hop)

    @app.post("/timeline", response_model=Timeline, response_model_exclude_none=True, responses=errors,
              openapi_extra=AUDIO_BODY, summary="per-window emotions of a recording")
    async def timeline(request: Request, window: Optional[float] = window_q, hop: Optional[float] = hop_q) -> Any:
        """Per-window emotions of the uploaded audio (silent windows skipped)."""
        return await service.answer(request, True, window, hop)

    @app.get("/health", response_model=Health, summary="liveness and readiness")
    async def health() -> Health:
        return Health(status="ok" if service.ready else "starting", model=model.name, labels=len(model.labels),
                      uptime_s=round(time.monotonic() - service.started, 3), in_flight=service.in_flight,
                      version=__version__, limits=LimitsInfo(**vars(limits)))

    @app.get("/labels", response_model=LabelsInfo, summary="the model's labels and metadata")
    async def labels() -> LabelsInfo:
        return LabelsInfo(labels=list(model.labels), model=model.name, metadata=model_info(model))

    return app


def app_from_env() -> FastAPI:
    """The app configured by environment variables (uvicorn's factory for ``--workers`` > 1).

    ``SER_MODEL`` (required), ``SER_THREADS``, ``SER_CONCURRENCY`` and the :class:`Limits`
    variables (``SER_MAX_BYTES``, ``SER_MAX_SECONDS``, ``SER_MIN_SECONDS``, ``SER_MAX_WINDOWS``).
    """
    path = os.environ.get("SER_MODEL")
    if not path:
        raise ModelError("SER_MODEL is not set; start the service with `ser serve --model FILE`")
    threads = os.environ.get("SER_THREADS")
    concurrency = os.environ.get("SER_CONCURRENCY")
    return create_app(path, Limits.from_env(), threads=int(threads) if threads else None,
                      concurrency=int(concurrency) if concurrency else None)


def serve(model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          threads: int | None = None, limits: Limits = Limits(), concurrency: int | None = None,
          log_level: str = "info", access_log: bool = True) -> None:
    """Run the service with uvicorn until interrupted.

    Args:
        model_path: the ``.onnx`` file written by ``ser export``.
        host, port: where to listen (``0.0.0.0`` for every interface).
        workers: uvicorn worker processes; each loads its own copy of the model.
        threads: onnxruntime intra-op threads per worker (None: all cores).
        limits: what one request may carry.
        concurrency: requests run at once per worker (None: CPU cores).
        log_level, access_log: uvicorn logging.

    Raises:
        ModelError: the model file is missing or not a ``ser export`` model (before listening).
    """
    import uvicorn

    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    if workers <= 1:
        app = create_app(model_path, limits, threads=threads, concurrency=concurrency)
        log.info("serving %s on %s: POST %s/predict (API docs: %s/docs)", app.state.service.model.name, url, url,
                 url)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
        return
    read_metadata(model_path)  # fail here, once, rather than in every worker
    os.environ["SER_MODEL"] = str(Path(model_path).resolve())
    os.environ.update(limits.to_env())
    for name, value in (("SER_THREADS", threads), ("SER_CONCURRENCY", concurrency)):
        if value:
            os.environ[name] = str(value)
        else:
            os.environ.pop(name, None)
    log.info("serving %s with %d workers on %s: POST %s/predict (API docs: %s/docs)", Path(model_path).name,
             workers, url, url, url)
    uvicorn.run("ser.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=access_log)
