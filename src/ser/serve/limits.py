"""What one request may carry, and the errors the service answers with.

Every refusal is an :class:`ApiError`: an HTTP status, a stable machine-readable code
and a sentence for a person. The app turns it into ``{"error": code, "detail": message}``.
:data:`ERRORS` is the table of codes (also printed in ``docs/serve.md``).

Example:
    >>> Limits(max_bytes=1_000_000).check_duration(0.1)
    Traceback (most recent call last):
    ...
    ser.serve.limits.ApiError: too_short: the audio lasts 0.100 s; at least 0.25 s is needed (send a longer recording)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Mapping

from ..errors import SerError

# code -> (HTTP status, when it is answered)
ERRORS: dict[str, tuple[int, str]] = {
    "empty_body": (400, "the request has no audio (0 bytes, or an empty `file` part)"),
    "missing_file": (400, "a multipart request without a `file` field"),
    "bad_multipart": (400, "a multipart body that cannot be parsed (no boundary, cut short, malformed)"),
    "incomplete_body": (400, "the connection closed before the whole body arrived"),
    "bad_host": (400, "a Host header that is not in --allowed-hosts"),
    "request_timeout": (408, "the body stalled (no byte for body_timeout seconds) or took longer than "
                             "request_timeout to arrive"),
    "too_large": (413, "the upload is larger than max_bytes (refused while it arrives)"),
    "too_demanding": (413, "decoding or analysing the audio needs more memory than the server has free"),
    "unsupported_format": (415, "a known container that is not read (M4A/AAC, WebM, AMR, MIDI)"),
    "bad_audio": (422, "not audio, truncated or corrupt, no samples, mostly NaN/infinite samples, samples far "
                       "beyond full scale, or more channels or a higher rate than accepted"),
    "too_short": (422, "decoded audio shorter than min_seconds"),
    "too_long": (422, "audio longer than max_seconds (declared in the header, or found while decoding)"),
    "bad_parameter": (422, "a query parameter out of range or of the wrong type (window, hop, segments)"),
    "not_found": (404, "no such endpoint"),
    "method_not_allowed": (405, "wrong HTTP method for the endpoint"),
    "internal_error": (500, "a bug or a broken model; the server logs it once and keeps serving"),
}

ENV_PREFIX = "SER_"  # environment variables that carry the config to uvicorn worker processes


class LimitsError(SerError, ValueError):
    """Limits that contradict each other or are out of range (``ser serve`` prints one line)."""


class ApiError(Exception):
    """A request the service refuses: ``status``, ``code`` (a key of :data:`ERRORS`), ``detail``."""

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status if status is not None else ERRORS[code][0]

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


@dataclass(frozen=True)
class Limits:
    """Bounds on one request; everything beyond them gets a 4xx, never a crash or a stall."""

    max_bytes: int = 20 * 1024 * 1024  # largest upload (the file's bytes; multipart framing aside)
    max_seconds: float = 600.0  # longest audio after decoding
    min_seconds: float = 0.25  # shortest audio after decoding: less carries no emotion
    max_windows: int = 1000  # most timeline windows per request: bounds the work one request can ask for
    max_parts: int = 16  # most multipart parts: a form of 200,000 tiny fields is refused, not parsed
    body_timeout: float = 15.0  # seconds without a byte of the body before the request is refused (408)
    request_timeout: float = 120.0  # seconds for the whole body to arrive (20 MB at 170 kB/s)

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_windows", "max_parts"):
            if not getattr(self, name) >= 1:
                raise LimitsError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_seconds", "body_timeout", "request_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise LimitsError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise LimitsError(f"need 0 <= min seconds < max seconds, got min_seconds={self.min_seconds:g}, "
                              f"max_seconds={self.max_seconds:g}")

    def check_size(self, n: int, slack: int = 0) -> None:
        """ApiError ``too_large`` once ``n`` bytes exceed :attr:`max_bytes` (plus ``slack``: room
        for multipart framing when ``n`` counts a whole multipart body)."""
        if n > self.max_bytes + slack:
            raise ApiError("too_large", f"the upload exceeds the limit of {self.max_bytes} bytes "
                                        f"({self.max_bytes / 2 ** 20:.1f} MB); send a shorter or compressed "
                                        "recording (FLAC, OGG, MP3)")

    def check_duration(self, seconds: float) -> None:
        """ApiError ``too_short`` / ``too_long`` outside [min_seconds, max_seconds]."""
        if seconds < self.min_seconds:
            raise ApiError("too_short", f"the audio lasts {seconds:.3f} s; at least {self.min_seconds:g} s is "
                                        "needed (send a longer recording)")
        if seconds > self.max_seconds:
            raise ApiError("too_long", f"the audio lasts {seconds:.1f} s; at most {self.max_seconds:g} s is "
                                       "accepted (cut it into parts)")

    def to_env(self) -> dict[str, str]:
        """``{"SER_MAX_BYTES": ..., ...}``: how :func:`ser.serve.serve` hands limits to workers."""
        return {f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Limits":
        """Limits from ``SER_MAX_BYTES``, ``SER_MAX_SECONDS``, ``SER_MIN_SECONDS``, ``SER_MAX_WINDOWS``,
        ``SER_MAX_PARTS``, ``SER_BODY_TIMEOUT``, ``SER_REQUEST_TIMEOUT`` (absent ones keep their defaults)."""
        env = os.environ if env is None else env
        kw = {}
        for f in fields(cls):
            raw = env.get(f"{ENV_PREFIX}{f.name.upper()}")
            if raw not in (None, ""):
                kind = int if f.name in ("max_bytes", "max_windows", "max_parts") else float
                kw[f.name] = kind(float(raw)) if kind is int else kind(raw)
        return cls(**kw)
