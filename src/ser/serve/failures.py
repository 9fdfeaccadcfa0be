"""Every failure of one upload becomes one precise refusal, here and nowhere else.

:func:`refusal` maps what reading, decoding, checking or running an upload can raise to
an :class:`~ser.serve.limits.ApiError`:

==========================  ===================================================
raised                      answered
==========================  ===================================================
ApiError                    itself (size, body, multipart, timeout, limits)
AudioTooLongError           422 ``too_long``
UnsupportedFormatError      415 ``unsupported_format``
AudioError                  422 ``bad_audio``
MemoryError                 413 ``too_demanding``
anything else               500 ``internal_error``: a bug, logged once here
==========================  ===================================================

A client's file name is quoted with :func:`~ser.serve.upload.shorten` (repr: a newline
cannot forge a log line, and a 10 kB name cannot make a 10 kB answer).

Example:
    >>> from ser.audio import AudioError
    >>> refusal(AudioError("<10 bytes>: cannot decode audio"), "a.wav", 10).body()
    {'error': 'bad_audio', 'detail': "'a.wav': cannot decode audio"}
"""
from __future__ import annotations

import logging

from ..audio import AudioError, AudioTooLongError, UnsupportedFormatError
from .limits import ApiError
from .upload import shorten

log = logging.getLogger(__name__)

MAX_DETAIL = 600  # characters of an error detail: enough for a sentence and a fix, never an echo of the input


def _detail(e: BaseException, filename: str | None, size: int) -> str:
    name = shorten(filename) if filename else "the upload"
    # load_audio names bytes input "<N bytes>"; the client knows its upload by its file name
    text = str(e).replace(f"<{size} bytes>", name)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "…"


def refusal(e: BaseException, filename: str | None, size: int) -> ApiError:
    """The ApiError answering exception ``e`` raised on an upload of ``size`` bytes named ``filename``."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, AudioTooLongError):
        return ApiError("too_long", _detail(e, filename, size))
    if isinstance(e, UnsupportedFormatError):
        return ApiError("unsupported_format", _detail(e, filename, size))
    if isinstance(e, AudioError):
        return ApiError("bad_audio", _detail(e, filename, size))
    if isinstance(e, MemoryError):
        log.warning("out of memory on %s (%d bytes)", shorten(filename or "upload"), size)
        return ApiError("too_demanding", "the server has not enough free memory to analyse this audio; send a "
                                         "shorter recording, or try again later")
    log.error("internal error on %s (%d bytes)", shorten(filename or "upload"), size, exc_info=e)
    return ApiError("internal_error", f"unexpected {type(e).__name__} while processing the audio; the server "
                                      "logged it")
