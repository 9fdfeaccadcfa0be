"""One base class for every error a user can cause and fix.

The CLI catches :class:`SerError` (one ``ser: error:`` line, exit 2) and the service maps
it to a 4xx; anything else that escapes is a bug and is shown as one. Each module keeps
its own subclass (``AudioError``, ``FeatureError``, ...) so callers can be precise, and
most also derive from ``ValueError`` as they always did.

Example:
    >>> from ser.errors import SerError
    >>> from ser.audio import AudioError
    >>> issubclass(AudioError, SerError)
    True
"""
from __future__ import annotations


class SerError(Exception):
    """Base of every user-facing error in ``ser``: the message names the value and the fix."""
