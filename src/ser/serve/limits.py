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

# code -> (HTTP status, when it is answered)
ERRORS: dict[str, tuple[int, str]] = {
    "empty_body": (400, "the request has no audio (0 bytes, or an empty `file` part)"),
    "missing_file": (400, "a multipart request without a `file` field"),
    "bad_multipart": (400, "a multipart body that cannot be parsed (no boundary, cut short, malformed)"),
    "incomplete_body": (400, "the connection closed before the whole body arrived"),
    "too_large": (413, "the upload is larger than max_bytes (refused while it arrives)"),
    "unsupported_format": (415, "a known container that is not read (M4A/AAC, WebM, AMR, MIDI)"),
    "bad_audio": (422, "not audio, truncated or corrupt, no samples, or every sample NaN/infinite"),
    "too_short": (422, "decoded audio shorter than min_seconds"),
    "too_long": (422, "decoded audio longer than max_seconds"),
    "bad_parameter": (422, "a query parameter out of range or of the wrong type (window, hop, segments)"),
    "not_found": (404, "no such endpoint"),
    "method_not_allowed": (405, "wrong HTTP method for the endpoint"),
    "internal_error": (500, "a bug or a broken model; the server logs it and keeps serving"),
}

ENV_PREFIX = "SER_"  # environment variables that carry the config to uvicorn worker processes


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

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ValueError(f"need 0 <= min_seconds < max_seconds, got min_seconds={self.min_seconds}, "
                             f"max_seconds={self.max_seconds}")
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {self.max_windows}")

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
        """Limits from ``SER_MAX_BYTES``, ``SER_MAX_SECONDS``, ``SER_MIN_SECONDS``, ``SER_MAX_WINDOWS``
        (absent ones keep their defaults)."""
        env = os.environ if env is None else env
        kw = {}
        for f in fields(cls):
            raw = env.get(f"{ENV_PREFIX}{f.name.upper()}")
            if raw not in (None, ""):
                kind = int if f.name in ("max_bytes", "max_windows") else float
                kw[f.name] = kind(float(raw)) if kind is int else kind(raw)
        return cls(**kw)
