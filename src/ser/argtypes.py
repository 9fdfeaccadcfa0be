"""Argument types for the command line: impossible flag values are refused by the parser.

Each is an ``argparse`` ``type=`` callable: it converts the text and raises
``argparse.ArgumentTypeError`` (so argparse prints one ``error:`` line naming the flag
and exits with status 2) before any data or model is touched.

Example:
    >>> fraction("0.2")
    0.2
    >>> fraction("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '0' is not a fraction in (0, 1)
    >>> positive_int("3"), nonnegative_int("0"), positive_float("2.5")
    (3, 0, 2.5)
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable


def _type(kind: type, ok: Callable[[float], bool], what: str, doc: str) -> Callable[[str], Any]:
    """An argparse type: ``text`` as ``kind`` (finite for floats) for which ``ok`` holds."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (kind is float and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__doc__ = doc
    return parse


positive_int = _type(int, lambda v: v >= 1, "a positive integer",
                     "An integer >= 1 (epochs, batch size, folds, processes, trials...).")
nonnegative_int = _type(int, lambda v: v >= 0, "an integer >= 0",
                        "An integer >= 0 (copies, seeds, bootstrap resamples; 0 means none).")
positive_float = _type(float, lambda v: v > 0, "a finite number > 0",
                       "A finite number > 0 (seconds, megabytes, learning rate).")
nonnegative_float = _type(float, lambda v: v >= 0, "a finite number >= 0",
                          "A finite number >= 0 (mixup, weight decay; 0 means off).")
fraction = _type(float, lambda v: 0 < v < 1, "a fraction in (0, 1)", "A number strictly between 0 and 1.")
probability = _type(float, lambda v: 0 <= v < 1, "a number in [0, 1)", "A number in [0, 1) (dropout, smoothing).")
port = _type(int, lambda v: 1 <= v <= 65535, "a TCP port (1-65535)", "A TCP port, 1-65535.")


def name_path(text: str) -> tuple[str, str]:
    """``NAME=PATH`` (e.g. an encoder's weights: ``whisper_base=/models/base.pt``).

    Example:
        >>> name_path("whisper_base=/models/base.pt")
        ('whisper_base', '/models/base.pt')
    """
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH")
    return name.strip(), path.strip()
