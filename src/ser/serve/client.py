"""A client for a running ``ser serve``: send audio files, get the service's answers.

The file goes as the raw request body (no multipart encoding needed), with a content type
from its suffix. Failures are :class:`ClientError` with one readable line: the server's
``{"error", "detail"}`` for a refused file, or what went wrong on the way (unreachable
server, timeout, missing file). ``ser client`` is :func:`run_client`.

Example:
    >>> post_audio("clip.wav", "http://127.0.0.1:8000")["emotion"]        # doctest: +SKIP
    'angry'
    >>> run_client(["a.wav", "b.flac"], url="http://127.0.0.1:8000")      # doctest: +SKIP
    {"file": "a.wav", "emotion": "angry", ...}
    {"file": "b.flac", "emotion": "calm", ...}
    0
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterable

import httpx

from ..errors import SerError

log = logging.getLogger(__name__)

CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
ENDPOINTS = ("/predict", "/timeline")


class ClientError(SerError):
    """A file the service did not answer for; the message is one line for a person."""


class ServerUnreachable(ClientError):
    """No connection to the service at all: every further file would fail the same way."""


def endpoint(url: str, timeline: bool = False) -> str:
    """``http://host:port`` (or a URL already ending in /predict or /timeline) -> the endpoint URL."""
    base = url.rstrip("/")
    for suffix in ENDPOINTS:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if "://" not in base:
        base = "http://" + base
    return base + ("/timeline" if timeline else "/predict")


def post_audio(path: str | os.PathLike, url: str = "http://127.0.0.1:8000", timeline: bool = False,
               timeout: float = 60.0, client: httpx.Client | None = None) -> dict[str, Any]:
    """Send one audio file to the service and return its JSON answer.

    Args:
        path: a WAV/FLAC/OGG/MP3 file.
        url: the service's base URL (``http://host:port``).
        timeline: ask ``/timeline`` for per-window emotions.
        timeout: seconds to wait for the connection and for the answer.
        client: an ``httpx.Client`` to reuse across files (keep-alive); a fresh one if None.

    Returns:
        The answer, e.g. ``{"emotion", "probabilities", "duration_s", "model"}``.

    Raises:
        ClientError: unreadable file, refused file (with the server's error code and
            detail), timeout, or a non-JSON answer. ServerUnreachable: no connection.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ClientError(f"cannot read file ({e.strerror or e})") from None
    target = endpoint(url, timeline)
    headers = {"Content-Type": CONTENT_TYPES.get(p.suffix.lower(), "application/octet-stream")}
    try:
        if client is None:
            with httpx.Client(timeout=timeout) as fresh:
                response = fresh.post(target, content=data, headers=headers)
        else:
            response = client.post(target, content=data, headers=headers, timeout=timeout)
    except httpx.ConnectError as e:
        raise ServerUnreachable(f"cannot connect to {target} ({e}); is `ser serve` running there?") from None
    except httpx.TimeoutException:
        raise ClientError(f"no answer from {target} within {timeout:g} s (raise --timeout for long audio)") from None
    except httpx.HTTPError as e:
        raise ClientError(f"request to {target} failed ({type(e).__name__}: {e})") from None
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"{target} answered HTTP {response.status_code} with non-JSON content "
                          f"{response.text[:200]!r}; is this a ser service?") from None
    if response.status_code >= 400:
        if isinstance(body, dict) and "error" in body:
            raise ClientError(f"HTTP {response.status_code} {body['error']}: {body.get('detail', '')}")
        raise ClientError(f"HTTP {response.status_code}: {body}")
    return body


def run_client(paths: Iterable[str | os.PathLike], url: str = "http://127.0.0.1:8000", timeline: bool = False,
               timeout: float = 60.0) -> int:
    """``ser client``: print one JSON line per file (``{"file": ..., **answer}``).

    Errors go to stderr as ``ser: error: FILE: detail``; an unreachable server stops the run
    after one line.

    Returns:
        The exit status: 0 when every file was answered, 2 otherwise.
    """
    failed = 0
    with httpx.Client(timeout=timeout) as client:
        for path in paths:
            try:
                answer = post_audio(path, url, timeline=timeline, timeout=timeout, client=client)
            except ServerUnreachable as e:
                print(f"ser: error: {e}", file=sys.stderr)
                return 2
            except ClientError as e:
                print(f"ser: error: {path}: {e}", file=sys.stderr)
                failed += 1
                continue
            print(json.dumps({"file": str(path), **answer}), flush=True)
    return 2 if failed else 0
