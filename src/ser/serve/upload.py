"""Read the audio out of a request while it arrives, counting bytes as they come.

Two ways to send audio: the multipart field ``file`` (``curl -F file=@clip.wav``) or the
raw body with any other content type (``curl --data-binary @clip.wav``). Starlette's own
form parser spools uploads of any size to disk before a handler sees them, so the service
reads ``request.stream()`` itself: a ``Content-Length`` over the limit is refused before a
byte is read, and a body without one (chunked) is refused as soon as it passes the limit.
Only the ``file`` part is kept in memory; other multipart fields are skipped.

Example:
    >>> data, filename = await read_upload(request, Limits())   # doctest: +SKIP
"""
from __future__ import annotations

import logging

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from .limits import ApiError, Limits

log = logging.getLogger(__name__)

FIELD = "file"  # the multipart field that carries the audio
MULTIPART_SLACK = 64 * 1024  # bytes of multipart framing (boundaries, part headers) allowed beyond max_bytes
CURL_HINT = "e.g. curl -F file=@clip.wav URL/predict, or curl --data-binary @clip.wav URL/predict"


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith("multipart/")


async def read_upload(request: Request, limits: Limits) -> tuple[bytes, str | None]:
    """The uploaded audio and its file name (multipart only), refusing oversize bodies early.

    Args:
        request: the incoming request; its body is consumed.
        limits: ``max_bytes`` applies to the audio; a multipart body may be
            ``MULTIPART_SLACK`` bytes longer for its framing.

    Returns:
        ``(audio bytes, file name or None)``.

    Raises:
        ApiError: ``too_large``, ``empty_body``, ``missing_file``, ``bad_multipart``,
            ``incomplete_body``.
    """
    ctype = request.headers.get("content-type", "")
    multipart = is_multipart(ctype)
    slack = MULTIPART_SLACK if multipart else 0
    declared = request.headers.get("content-length", "")
    if declared.isdigit():  # refuse before reading: the client learns at once, the server reads nothing
        limits.check_size(int(declared), slack)
    form = MultipartFile(ctype, limits) if multipart else None
    body = bytearray()
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            limits.check_size(total, slack)
            if form is not None:
                form.write(chunk)
            else:
                body += chunk
    except ClientDisconnect:
        raise ApiError("incomplete_body", f"the connection closed after {total} bytes, before the body ended") \
            from None
    if total == 0:
        raise ApiError("empty_body", f"the request body is empty; send the audio file ({CURL_HINT})")
    if form is None:
        return bytes(body), None
    return form.finish()


class MultipartFile:
    """A streaming multipart parser that keeps the ``file`` part only.

    Args:
        content_type: the request's Content-Type (must carry a ``boundary``).
        limits: ``max_bytes`` bounds the ``file`` part.
    """

    def __init__(self, content_type: str, limits: Limits) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError("bad_multipart", "multipart Content-Type without a boundary; let the HTTP client build "
                                            f"the multipart body ({CURL_HINT})")
        self.limits = limits
        self.fields: list[str] = []  # names of the parts seen, for the missing_file message
        self.data = bytearray()
        self.filename: str | None = None
        self.found = self.ended = self._in_file = False
        self._header = self._value = self._disposition = b""
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
            "on_end": self._end})

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as e:
            raise ApiError("bad_multipart", f"malformed multipart body ({e}); {CURL_HINT}") from None

    def finish(self) -> tuple[bytes, str | None]:
        """The ``file`` part once the body has ended; ApiError if it is missing, empty or cut short."""
        if not self.found:
            seen = f"fields found: {self.fields}" if self.fields else "no parts found"
            raise ApiError("missing_file", f"no {FIELD!r} field in the multipart body ({seen}); send the audio as "
                                           f"the field {FIELD!r} ({CURL_HINT})")
        if not self.ended:
            raise ApiError("bad_multipart", "the multipart body ended before its closing boundary (upload cut short?)")
        if not self.data:
            raise ApiError("empty_body", f"the {FIELD!r} part is empty (0 bytes); send the audio file")
        return bytes(self.data), self.filename

    # ---------------------------------------------------------------- python-multipart callbacks
    def _part_begin(self) -> None:
        self._disposition = b""
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
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
