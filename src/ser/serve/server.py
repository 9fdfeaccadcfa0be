"""Run the app with uvicorn: timeouts, a connection cap, proxies, workers.

What a hostile client can hold, and for how long:

- an idle connection, or one that sends its request headers slowly: ``header_timeout``
  seconds, then ``408`` and the connection is closed (uvicorn has no such timer; the
  :class:`HeaderTimeoutProtocol` adds it);
- an idle kept-alive connection between requests: ``keep_alive`` seconds;
- a body that stalls or trickles: ``Limits.body_timeout`` / ``Limits.request_timeout``
  (:mod:`ser.serve.upload`);
- at most ``max_connections`` connections at once; more are answered 503 by uvicorn;
- ``X-Forwarded-For``/``-Proto`` are believed only from ``forwarded_allow_ips``.

The port is tried before the model loads, so a busy port fails at once.

Example:
    >>> serve("model.int8.onnx", port=8000, header_timeout=5)    # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Sequence

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import SerError
from ..runtime import read_metadata
from .limits import Limits

log = logging.getLogger(__name__)

HEADER_TIMEOUT_ENV = "SER_HEADER_TIMEOUT"  # how the header timeout reaches uvicorn worker processes
DEFAULT_HEADER_TIMEOUT = 10.0
_TIMEOUT_BODY = b'{"error": "request_timeout", "detail": "the request headers did not arrive in time"}'
TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


class ServeError(SerError):
    """The service cannot start: the port is taken, the address is wrong, ..."""


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request line and headers.

    The timer starts when the connection opens and again when the first byte of a
    further request arrives; it stops once the headers are complete.
    """

    _header_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        timeout = float(os.environ.get(HEADER_TIMEOUT_ENV) or DEFAULT_HEADER_TIMEOUT)
        self._header_timer = self.loop.call_later(timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self.conn.our_state is h11.IDLE:  # no answer under way: say why before closing
                self.transport.write(TIMEOUT_ANSWER)
            self.transport.close()


def check_port(host: str, port: int) -> None:
    """ServeError now if ``host:port`` cannot be listened on (busy, or not this machine's address)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"--host {host!r}: not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is not "busy"
        try:
            s.bind(addr)
        except OSError as e:
            hint = "another server is using it; pick another --port" if e.errno == 98 else "check --host and --port"
            raise ServeError(f"cannot listen on {host}:{port} ({e.strerror}); {hint}") from None


def serve(model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          threads: int | None = None, limits: Limits = Limits(), concurrency: int | None = None,
          log_level: str = "info", access_log: bool = True, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
          keep_alive: float = 5.0, max_connections: int = 64, allowed_hosts: Sequence[str] = (),
          cors_origins: Sequence[str] = (), forwarded_allow_ips: str | None = None) -> None:
    """Run the service with uvicorn until interrupted.

    Args:
        model_path: the ``.onnx`` file written by ``ser export``.
        host, port: where to listen (``0.0.0.0`` for every interface).
        workers: uvicorn worker processes; each loads its own copy of the model.
        threads: onnxruntime intra-op threads per worker (None: all cores).
        limits: what one request may carry, and how long its body may take.
        concurrency: requests run at once per worker (None: CPU cores).
        log_level, access_log: uvicorn logging.
        header_timeout: seconds for a request's headers to arrive (also an idle new connection).
        keep_alive: seconds an idle kept-alive connection stays open.
        max_connections: connections at once; more are answered 503.
        allowed_hosts: Host header patterns served (``example.com``, ``*.example.com``); empty: any.
        cors_origins: origins a browser page may call the API from (empty: no CORS headers).
        forwarded_allow_ips: proxies whose ``X-Forwarded-*`` headers are believed (comma list;
            None: no one's).

    Raises:
        ServeError: the port is busy or the host is not an address of this machine (before
            the model loads). ModelError: the model file is missing or malformed.
    """
    import uvicorn

    from .app import create_app, environment

    check_port(host, port)
    read_metadata(model_path)  # a malformed model fails here, once, with the field named
    os.environ[HEADER_TIMEOUT_ENV] = str(header_timeout)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    options = dict(host=host, port=port, log_level=log_level, access_log=access_log, http=HeaderTimeoutProtocol,
                   timeout_keep_alive=keep_alive, limit_concurrency=max_connections,
                   proxy_headers=bool(forwarded_allow_ips), forwarded_allow_ips=forwarded_allow_ips or None)
    if workers <= 1:
        app = create_app(model_path, limits, threads=threads, concurrency=concurrency, allowed_hosts=allowed_hosts,
                         cors_origins=cors_origins)
        log.info("serving %s on %s: POST %s/predict (API docs: %s/docs)", app.state.service.model.name, url, url,
                 url)
        uvicorn.run(app, **options)
        return
    os.environ.update(environment(model_path, limits, threads, concurrency, allowed_hosts, cors_origins))
    log.info("serving %s with %d workers on %s: POST %s/predict (API docs: %s/docs)", Path(model_path).name,
             workers, url, url, url)
    options["http"] = "ser.serve.server:HeaderTimeoutProtocol"  # workers import it by name
    uvicorn.run("ser.serve.app:app_from_env", factory=True, workers=workers, **options)
