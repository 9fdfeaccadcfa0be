"""Validation of a model file's ``ser`` metadata, with a message naming the field.

An exported model carries a JSON document (labels, members, clip config, weights,
temperature). A hand-edited or foreign file whose document is present but malformed
(labels not a list, no members, a clip config with unknown keys...) must fail with one
line that names the field, not with a traceback from deep inside the runtime. Torch-free;
imports only the bottom layers.

Example:
    >>> doc = {"labels": ["a", "b"], "members": [{"name": "mel", "feature": "mel", "feature_key": {},
    ...        "rows": 64}], "clip": {"sample_rate": 16000, "seconds": 3.0}, "weights": [1.0], "temperature": 1.0}
    >>> validate_metadata(doc)
    >>> validate_metadata({**doc, "labels": "a,b"})
    Traceback (most recent call last):
    ...
    ser.modelmeta.MetadataError: ser metadata field 'labels': expected a list of two or more distinct label names, got 'a,b'
"""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Mapping

from .audio import ClipConfig
from .errors import SerError

CLIP_KEYS = tuple(f.name for f in fields(ClipConfig))
CROPS = ("start", "center")


class MetadataError(SerError, ValueError):
    """A model's ``ser`` metadata document with a missing or malformed field."""


def _fail(field: str, expected: str, got: Any) -> MetadataError:
    shown = repr(got)
    shown = shown if len(shown) <= 80 else shown[:80] + "…"
    return MetadataError(f"ser metadata field {field!r}: expected {expected}, got {shown}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_clip(clip: Any) -> None:
    if not isinstance(clip, Mapping):
        raise _fail("clip", "an object", clip)
    unknown = sorted(set(clip) - set(CLIP_KEYS))
    if unknown:
        raise _fail("clip", f"only the keys {', '.join(CLIP_KEYS)}", f"unknown key(s) {', '.join(map(str, unknown))}")
    rate = clip.get("sample_rate", ClipConfig.sample_rate)
    if not (isinstance(rate, int) and not isinstance(rate, bool) and 1000 <= rate <= 192_000):
        raise _fail("clip.sample_rate", "an integer rate in Hz (1000-192000)", rate)
    seconds = clip.get("seconds", ClipConfig.seconds)
    if not (_number(seconds) and 0 < seconds <= 3600):
        raise _fail("clip.seconds", "a number of seconds in (0, 3600]", seconds)
    top = clip.get("trim_top_db", ClipConfig.trim_top_db)
    if top is not None and not (_number(top) and top > 0):
        raise _fail("clip.trim_top_db", "null or a number of dB > 0", top)
    if clip.get("crop", ClipConfig.crop) not in CROPS:
        raise _fail("clip.crop", f"one of {', '.join(CROPS)}", clip.get("crop"))


def _check_members(members: Any) -> None:
    if not isinstance(members, list) or not members:
        raise _fail("members", "a non-empty list of members", members)
    names = set()
    for i, m in enumerate(members):
        where = f"members[{i}]"
        if not isinstance(m, Mapping):
            raise _fail(where, "an object", m)
        for key in ("name", "feature"):
            if not isinstance(m.get(key), str) or not m.get(key):
                raise _fail(f"{where}.{key}", "a non-empty string", m.get(key))
        if m["name"] in names:
            raise _fail(f"{where}.name", "a name no other member has", m["name"])
        names.add(m["name"])
        if not isinstance(m.get("feature_key"), Mapping):
            raise _fail(f"{where}.feature_key", "an object (the feature's config)", m.get("feature_key"))
        rows = m.get("rows")
        if not (isinstance(rows, int) and not isinstance(rows, bool) and rows >= 1):
            raise _fail(f"{where}.rows", "an integer >= 1", rows)
        if "weight" in m and not _number(m["weight"]):
            raise _fail(f"{where}.weight", "a finite number", m["weight"])


def validate_metadata(doc: Any) -> None:
    """Raise :class:`MetadataError` naming the first malformed field of a ``ser`` metadata document.

    Checks what the runtime relies on: ``labels`` (distinct non-empty strings), ``members``
    (name, feature, feature_key, rows, weight), ``clip`` (only ClipConfig's keys, sane
    values), ``weights`` (one finite number per member) and ``temperature`` (finite, > 0).
    Other fields (format, version, precision, metrics...) are the runtime's or informational.
    """
    if not isinstance(doc, Mapping):
        raise _fail("(document)", "a JSON object", doc)
    for key in ("labels", "members", "clip", "weights", "temperature"):
        if key not in doc:
            raise MetadataError(f"ser metadata field {key!r} is missing")
    labels = doc["labels"]
    if (not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels)
            or not all(isinstance(x, str) and x for x in labels)):
        raise _fail("labels", "a list of two or more distinct label names", labels)
    _check_members(doc["members"])
    _check_clip(doc["clip"])
    weights = doc["weights"]
    if not (isinstance(weights, list) and len(weights) == len(doc["members"]) and all(map(_number, weights))):
        raise _fail("weights", f"a list of {len(doc['members'])} finite numbers (one per member)", weights)
    if not (_number(doc["temperature"]) and doc["temperature"] > 0):
        raise _fail("temperature", "a finite number > 0", doc["temperature"])
