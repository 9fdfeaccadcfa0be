"""The outermost layer of the app (pure ASGI): Host allow-list, metrics, last-resort 500.

- A ``Host`` header outside the allow-list (``--allowed-hosts``) is answered 400
  ``bad_host`` before routing: nothing the app writes (redirects, docs) names a host the
  operator did not choose.
- Every HTTP request is counted and timed (:mod:`ser.serve.metrics`) under its route
  template (``/predict``), or ``unmatched``: the label set stays bounded whatever paths
  clients try.
- An exception that escapes the app is a bug: logged once, with the path quoted, and
  answered ``500 internal_error`` as JSON if no answer has started.

Example:
    >>> host_allowed("api.example.com:8000", ("*.example.com",))
    True
    >>> host_allowed("evil.test", ("127.0.0.1", "localhost"))
    False
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

from .metrics import Metrics
from .upload import shorten

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Whether a Host header (port ignored) matches ``allowed``: exact names, ``*.domain`` or ``*``."""
    name = host.strip().lower()
    if name.startswith("[") and "]" in name:  # [::1]:8000
        name = name[1: name.index("]")]
    elif name.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        name = name.split(":", 1)[0]
    for pattern in allowed:
        pattern = pattern.strip().lower().strip("[]")
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


async def send_json(send: Send, status: int, body: dict[str, str], close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """ASGI middleware: see the module docstring.

    Args:
        app: the wrapped ASGI app.
        metrics: where requests are counted.
        allowed_hosts: Host patterns accepted (empty or ``("*",)``: any).
    """

    def __init__(self, app: Callable, metrics: Metrics, allowed_hosts: Sequence[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.allowed_hosts = tuple(h for h in allowed_hosts if h)
        if "*" in self.allowed_hosts:
            self.allowed_hosts = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        status = 500
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, int(message["status"])
            await send(message)

        t0 = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            if self.allowed_hosts and not host_allowed(_host(scope), self.allowed_hosts):
                await send_json(tracked, 400, {"error": "bad_host", "detail": f"Host {shorten(_host(scope))} is "
                                                                              "not served here"}, close=True)
                return
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 (the last resort: one log line with the traceback, one JSON answer)
            log.error("unexpected error on %s %s", method, shorten(scope.get("path", "")), exc_info=exc)
            if not started:
                await send_json(tracked, 500, {"error": "internal_error",
                                               "detail": f"unexpected {type(exc).__name__}; the server logged it"})
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, method if len(method) <= 10 else "other", str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def _host(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"host":
            return value.decode("latin-1")
    return ""
