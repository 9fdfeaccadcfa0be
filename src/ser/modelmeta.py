"""Validation of a model file's ``ser`` metadata, with a message naming the field, and
the model's recorded channel.

An exported model carries a JSON document (labels, members, clip config, weights,
temperature; optionally the ``channel`` every clip went through and the
``training_conditions``). A hand-edited or foreign file whose document is present but malformed
(labels not a list, no members, a clip config with unknown keys...) must fail with one
line that names the field, not with a traceback from deep inside the runtime. Torch-free;
imports only the bottom layers (and ``ser.degrade`` when a channel is applied).

A *channel* model (``ser train --channel telephone``) was trained on clips that all went
through one ``ser.degrade`` condition after ``prepare_clip``; :func:`apply_channel` is
that step, shared by the feature cache (training) and the runtime (serving), so both
compute the same features from the same clip. Its seed comes from the prepared samples
themselves (:func:`channel_seed`), the one thing both sides have: the runtime gets bytes
or an array, never the training file.

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

import hashlib
import json
import math
from dataclasses import fields
from typing import Any, Mapping

import numpy as np

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
    _check_conditions(doc)


def _check_conditions(doc: Mapping[str, Any]) -> None:
    """The optional ``channel`` and ``training_conditions`` (models exported before them lack both)."""
    channel = doc.get("channel")
    if channel is not None and not (isinstance(channel, Mapping) and isinstance(channel.get("name"), str)
                                    and isinstance(channel.get("kind"), str)):
        raise _fail("channel", "null or a ser.degrade condition ({name, kind, parameters...})", channel)
    tc = doc.get("training_conditions")
    if tc is None:
        return
    if not isinstance(tc, Mapping):
        raise _fail("training_conditions", "null or an object", tc)
    aug = tc.get("condition_aug", [])
    if not (isinstance(aug, list) and all(isinstance(x, str) and x for x in aug)):
        raise _fail("training_conditions.condition_aug", "a list of condition names", aug)
    if tc.get("channel") is not None and not isinstance(tc.get("channel"), str):
        raise _fail("training_conditions.channel", "null or a condition name", tc.get("channel"))
    if channel is not None and tc.get("channel") != channel["name"]:
        raise _fail("training_conditions.channel", f"the channel's name {channel['name']!r}", tc.get("channel"))


def channel_seed(y: np.ndarray) -> int:
    """The seed of a clip's channel: 63 bits of a hash of its float32 samples, so the same
    prepared clip gets the same noise (if the condition draws any) in training and serving.

    Example:
        >>> y = np.zeros(16000, np.float32)
        >>> channel_seed(y) == channel_seed(y.copy()), channel_seed(y) == channel_seed(y + 1e-3)
        (True, False)
    """
    data = np.ascontiguousarray(y, dtype=np.float32).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


def channel_spec(name: str | None) -> dict[str, Any] | None:
    """The record of channel preset ``name``: its ``to_dict()`` (what cache keys and model
    metadata hold, and what :func:`apply_channel` applies), or None for None.

    Raises:
        DegradeError: an unknown preset (listing the known ones) or a babble one (babble
            is made of other speakers' clips and held out for evaluation).
    """
    if name is None:
        return None
    from .degrade import DegradeError, get_condition, trainable_conditions

    try:
        cond = get_condition(name)
    except DegradeError:  # one channel, so no 'all' in the list
        usable = ", ".join(trainable_conditions(include_clean=True))
        raise DegradeError(f"unknown condition {name!r}; a channel is one of: {usable}") from None
    if cond.needs_babble:
        raise DegradeError(f"channel: {name} is held out for evaluation (babble); a channel is a line every "
                           "clip goes through, e.g. telephone")
    return cond.to_dict()


def channel_condition(channel: Any) -> Any:
    """The ``ser.degrade`` condition of a recorded channel (its ``to_dict()``), rebuilt
    exactly (memoised), or the condition itself; None for None.

    Raises:
        MetadataError: a record ``ser.degrade`` cannot rebuild (a condition this ser lacks).
    """
    if channel is None or not isinstance(channel, Mapping):
        return channel
    key = json.dumps(channel, sort_keys=True)
    if key not in _CONDITIONS:
        from .degrade import DegradeError, from_dict

        try:
            _CONDITIONS[key] = from_dict(channel)
        except (DegradeError, TypeError, KeyError) as e:
            raise MetadataError(f"ser metadata field 'channel': {e}; update ser to serve this model") from e
    return _CONDITIONS[key]


_CONDITIONS: dict[str, Any] = {}


def apply_channel(y: np.ndarray, sr: int, channel: Any) -> np.ndarray:
    """A prepared clip heard through the model's channel (a condition or its ``to_dict()``),
    seeded by :func:`channel_seed`; ``y`` itself when ``channel`` is None.

    Example:
        >>> y = np.ones(800, np.float32)
        >>> apply_channel(y, 16000, None) is y
        True
    """
    cond = channel_condition(channel)
    if cond is None:
        return y
    return cond(y, sr, seed=channel_seed(y))
