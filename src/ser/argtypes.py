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


def _number(text: str, kind: type, what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, batch size, folds, processes, trials...)."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (copies, seeds, bootstrap resamples; 0 means none)."""
    value = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, megabytes, learning rate)."""
    value = _number(text, float, "a finite number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (mixup, weight decay; 0 means off)."""
    value = _number(text, float, "a finite number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (speaker fractions)."""
    value = _number(text, float, "a fraction in (0, 1)")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in (0, 1)")
    return value


def probability(text: str) -> float:
    """A number in [0, 1) (dropout, label smoothing)."""
    value = _number(text, float, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, 1)")
    return value


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    value = _number(text, int, "a TCP port (1-65535)")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value
