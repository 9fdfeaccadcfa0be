"""Read the audio out of a request while it arrives, counting bytes and time as they come.

Two ways to send audio: the multipart field ``file`` (``curl -F file=@clip.wav``) or the
raw body with any other content type (``curl --data-binary @clip.wav``). Starlette's own
form parser spools uploads of any size to disk before a handler sees them, so the service
reads ``request.stream()`` itself:

- size: a ``Content-Length`` over the limit is refused before a byte is read, and a body
  without one (chunked) as soon as it passes the limit;
- time: a body that stalls for ``body_timeout`` seconds, or takes longer than
  ``request_timeout`` in all, is refused (408) and the connection closed;
- work: a multipart body is parsed in a worker thread (the event loop keeps answering),
  at most ``max_parts`` parts; only the ``file`` part is kept, other fields are skipped.

Example:
    >>> data, filename = await read_upload(request, Limits())   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time

import anyio
import anyio.to_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from .limits import ApiError, Limits

log = logging.getLogger(__name__)

FIELD = "file"  # the multipart field that carries the audio
MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing (boundaries, part headers) allowed beyond max_bytes
MAX_PART_HEADERS = 8 * 1024  # bytes of headers one part may carry
SHOWN_FIELDS = 5  # field names a missing_file answer quotes (the rest are counted)
CURL_HINT = "e.g. curl -F file=@clip.wav URL/predict, or curl --data-binary @clip.wav URL/predict"


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith("multipart/")


def shorten(text: str, limit: int = 60) -> str:
    """``repr(text)``, cut to about ``limit`` characters: what an error detail may quote of client input.

    Example:
        >>> shorten("a" * 100, 10)
        "'aaaaaaaaaa'… (100 characters)"
    """
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


async def read_upload(request: Request, limits: Limits) -> tuple[bytes, str | None]:
    """The uploaded audio and its file name (multipart only), refusing oversize, slow or odd bodies early.

    Args:
        request: the incoming request; its body is consumed.
        limits: ``max_bytes`` applies to the audio (a multipart body may be
            ``MULTIPART_SLACK`` bytes longer for its framing), ``body_timeout`` and
            ``request_timeout`` to its arrival, ``max_parts`` to a multipart body.

    Returns:
        ``(audio bytes, file name or None)``.

    Raises:
        ApiError: ``too_large``, ``empty_body``, ``missing_file``, ``bad_multipart``,
            ``incomplete_body``, ``request_timeout``.
    """
    ctype = request.headers.get("content-type", "")
    multipart = is_multipart(ctype)
    slack = MULTIPART_SLACK if multipart else 0
    declared = request.headers.get("content-length", "")
    if declared.isdigit():  # refuse before reading: the client learns at once, the server reads nothing
        limits.check_size(int(declared), slack)
    form = MultipartFile(ctype, limits) if multipart else None  # a bad boundary is refused before the body
    body = bytearray()
    deadline = time.monotonic() + limits.request_timeout
    stream = request.stream().__aiter__()
    try:
        while True:
            wait = min(limits.body_timeout, deadline - time.monotonic())
            try:
                with anyio.fail_after(max(wait, 0.0)):
                    chunk = await stream.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise _timeout(len(body), limits, deadline) from None
            body += chunk
            limits.check_size(len(body), slack)
    except ClientDisconnect:
        raise ApiError("incomplete_body", f"the connection closed after {len(body)} bytes, before the body ended") \
            from None
    if not body:
        raise ApiError("empty_body", f"the request body is empty; send the audio file ({CURL_HINT})")
    if form is None:
        return bytes(body), None
    # parsing 200,000 tiny fields takes seconds of CPU: not on the event loop
    return await anyio.to_thread.run_sync(form.parse, bytes(body))


def _timeout(received: int, limits: Limits, deadline: float) -> ApiError:
    if time.monotonic() >= deadline - 0.01:
        return ApiError("request_timeout", f"the body took longer than {limits.request_timeout:g} s to arrive "
                                           f"({received} bytes received); send it faster or a smaller file")
    return ApiError("request_timeout", f"no data for {limits.body_timeout:g} s after {received} bytes of the "
                                       "body; the upload stalled")


class MultipartFile:
    """A multipart parser that keeps the ``file`` part only, and at most ``max_parts`` parts.

    Args:
        content_type: the request's Content-Type (must carry a usable ``boundary``).
        limits: ``max_bytes`` bounds the ``file`` part, ``max_parts`` the parts.

    Raises:
        ApiError: ``bad_multipart`` for a missing, empty or overlong boundary (at once).
    """

    def __init__(self, content_type: str, limits: Limits) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError("bad_multipart", "multipart Content-Type without a boundary; let the HTTP client build "
                                            f"the multipart body ({CURL_HINT})")
        self.limits = limits
        self.parts = 0
        self.fields: list[str] = []  # the first few part names, for the missing_file message
        self.data = bytearray()
        self.filename: str | None = None
        self.found = self.ended = self._in_file = False
        self._header = self._value = self._disposition = b""
        self._header_bytes = 0
        try:
            self._parser = MultipartParser(boundary, {
                "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
                "on_header_field": self._header_field, "on_header_value": self._header_value,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
                "on_end": self._end})
        except (FormParserError, ValueError) as e:  # e.g. a boundary longer than the parser allows
            raise ApiError("bad_multipart", f"unusable multipart boundary ({len(boundary)} bytes: {str(e)[:80]}); "
                                            f"{CURL_HINT}") from None

    def parse(self, body: bytes) -> tuple[bytes, str | None]:
        """Parse the whole body (blocking: run it in a worker thread) -> the ``file`` part."""
        self.write(body)
        return self.finish()

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except (FormParserError, ValueError) as e:
            raise ApiError("bad_multipart", f"malformed multipart body ({str(e)[:120]}); {CURL_HINT}") from None

    def finish(self) -> tuple[bytes, str | None]:
        """The ``file`` part once the body has ended; ApiError if it is missing, empty or cut short."""
        if not self.found:
            seen = "no parts found"
            if self.parts:
                names = ", ".join(shorten(f, 40) for f in self.fields)
                more = f" and {self.parts - len(self.fields)} more" if self.parts > len(self.fields) else ""
                seen = f"{self.parts} part(s) found: {names}{more}"
            raise ApiError("missing_file", f"no {FIELD!r} field in the multipart body ({seen}); send the audio as "
                                           f"the field {FIELD!r} ({CURL_HINT})")
        if not self.ended:
            raise ApiError("bad_multipart", "the multipart body ended before its closing boundary (upload cut short?)")
        if not self.data:
            raise ApiError("empty_body", f"the {FIELD!r} part is empty (0 bytes); send the audio file")
        return bytes(self.data), self.filename

    # ---------------------------------------------------------------- python-multipart callbacks
    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise ApiError("bad_multipart", f"more than {self.limits.max_parts} parts in the multipart body; send "
                                            f"the audio as the field {FIELD!r} and little else")
        self._disposition = b""
        self._header_bytes = 0
        self._in_file = False

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADERS:
            raise ApiError("bad_multipart", f"a multipart part with more than {MAX_PART_HEADERS} bytes of headers")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if len(self.fields) < SHOWN_FIELDS:
            self.fields.append(name)
        if name == FIELD and not self.found:  # a second `file` part is ignored
            self.found = self._in_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.data += data[start:end]
            self.limits.check_size(len(self.data))

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True
