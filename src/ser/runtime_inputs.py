"""What an exported model reads, and how the runtime computes it from prepared clips.

Each member of an exported ensemble reads one graph input (members may share one): a
hand-made feature (:mod:`ser.features`, with the config it was trained on), or Whisper's
log-mel of the clip (:mod:`ser.encoders.logmel`) for a member whose encoder is inside the
graph. :func:`member_from_metadata` turns a member of the model's metadata into a
:class:`Member`; :func:`compute_inputs` computes every graph input for a batch of clips,
each feature and each log-mel once per clip, however many members read it (two encoders
on other weights with the same mel bands read the same log-mel). :func:`quantizes_at_run_time`
tells whether the graph's rows see each other (dynamic int8), so that :mod:`ser.runtime`
can run such a model one clip per call. Torch-free, like :mod:`ser.runtime`, which
re-exports these names.

Example:
    >>> m = Member("whisper_base@5", "whisper_base@5", None, 80, 0.5, LOGMEL_INPUT, "whisper_tiny_en@2")
    >>> m.source, feature_calls({m.source: m})
    ('whisper_tiny_en@2', [])
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from .encoders.logmel import SAMPLE_RATE as LOGMEL_RATE
from .encoders.logmel import log_mel_spectrogram
from .errors import SerError
from .features import config_from_key, extract, feature_key
from .modelmeta import apply_channel

FEATURE_INPUT = "feature"  # a member's input kind: a hand-made feature (ser.features)
LOGMEL_INPUT = "whisper_logmel"  # ... or Whisper's log-mel of the clip (the encoder is in the graph)
# ops whose quantization scale is computed from the activations of the whole batch (onnxruntime's dynamic int8)
RUN_TIME_QUANT_OPS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"})


class ModelError(SerError, ValueError):
    """A model file that is missing, not ONNX, or not exported by ``ser export``."""


@dataclass(frozen=True)
class Member:
    """One ensemble member as the runtime sees it: a graph input and how to compute it."""

    name: str  # the member's name (e.g. "mel", "whisper_base@5")
    feature: str  # representation name (ser.features, or an encoder layer)
    config: Any  # its frozen feature config (None for a log-mel input)
    rows: int  # rows of its graph input (feature rows, or mel bands)
    weight: float  # ensemble weight (informational: the graph applies it)
    kind: str = FEATURE_INPUT  # FEATURE_INPUT or LOGMEL_INPUT
    input: str = ""  # the graph input it reads (its own name unless shared; "" = name)

    @property
    def source(self) -> str:
        """The graph input this member reads."""
        return self.input or self.name


def member_from_metadata(m: Mapping[str, Any], sample_rate: int, where: str | os.PathLike) -> Member:
    """The :class:`Member` for one entry of the metadata's ``members`` (already validated by
    :func:`ser.modelmeta.validate_metadata`); ModelError, naming ``where`` (the file), for an
    input this ser cannot compute the way the member was trained."""
    spec = m.get("input") or {"kind": FEATURE_INPUT}  # files exported before members had kinds
    kind, source = spec.get("kind"), spec.get("name", m["name"])
    if kind == LOGMEL_INPUT:
        if sample_rate != LOGMEL_RATE:
            raise ModelError(f"{where}: member {m['name']!r} reads Whisper log-mel, which needs "
                             f"{LOGMEL_RATE} Hz clips; the metadata says {sample_rate} Hz")
        return Member(m["name"], m["feature"], None, int(spec["n_mels"]), float(m.get("weight", 0.0)), kind, source)
    if kind != FEATURE_INPUT:
        raise ModelError(f"{where}: member {m['name']!r} has input kind {kind!r}, which this ser does not "
                         f"know ({FEATURE_INPUT}, {LOGMEL_INPUT}); update ser")
    key = {**m["feature_key"], "name": m["feature"]}
    try:
        config = config_from_key(key)
    except Exception as e:
        raise ModelError(f"{where}: member {m['name']!r}: feature config not understood ({e})") from e
    ours = feature_key(m["feature"], config)["version"]
    if key.get("version") != ours:
        raise ModelError(f"{where}: member {m['name']!r} was trained on {m['feature']} features version "
                         f"{key.get('version')}, this ser computes version {ours}; retrain and re-export")
    return Member(m["name"], m["feature"], config, int(m["rows"]), float(m.get("weight", 0.0)), kind, source)


def feature_calls(inputs: Mapping[str, Member]) -> list[dict[str, Member]]:
    """The feature inputs grouped for :func:`ser.features.extract`: one call computes a
    group (sharing its STFT and mel basis); a feature name wanted twice (two configs) goes
    to another group, since one call computes each name once."""
    calls: list[dict[str, Member]] = []
    for m in inputs.values():
        if m.kind != FEATURE_INPUT:
            continue
        call = next((c for c in calls if m.feature not in c), None)
        if call is None:
            call = {}
            calls.append(call)
        call[m.feature] = m
    return calls


def compute_inputs(clips: Iterable[np.ndarray], inputs: Mapping[str, Member], sample_rate: int,
                   channel: Any = None, calls: list[dict[str, Member]] | None = None) -> dict[str, np.ndarray]:
    """Graph inputs ``{input: (N, rows, frames)}`` of prepared clips (at ``sample_rate``).

    Each clip first goes through ``channel`` (the condition a telephone model was trained
    through, or None; :func:`ser.modelmeta.apply_channel`), then each group of
    ``calls`` (default :func:`feature_calls`) is extracted and Whisper's log-mel is
    computed once per band count, for every input that reads it.
    """
    calls = feature_calls(inputs) if calls is None else calls
    cols: dict[str, list[np.ndarray]] = {name: [] for name in inputs}
    for y in clips:
        y = apply_channel(y, sample_rate, channel)
        for call in calls:
            got = extract(y, sample_rate, list(call), {f: m.config for f, m in call.items()})
            for f, m in call.items():
                cols[m.source].append(got[f])
        mels: dict[int, np.ndarray] = {}  # one per band count: encoders on other weights read the same one
        for name, m in inputs.items():
            if m.kind == LOGMEL_INPUT:
                if m.rows not in mels:
                    mels[m.rows] = log_mel_spectrogram(y, m.rows)
                cols[name].append(mels[m.rows])
    return {name: np.stack(arrs) for name, arrs in cols.items()}


def quantizes_at_run_time(path: str | os.PathLike) -> bool:
    """Whether an ONNX file's graph takes quantization scales from its activations at run time.

    onnxruntime's dynamic int8 (``DynamicQuantizeLinear`` before each quantized MatMul) uses
    one scale per tensor for the whole batch, so a clip's probabilities would change with
    the clips batched with it (by up to 0.07 on RAVDESS); such a model must run one clip per
    call. Read from the graph, not from the metadata's ``precision``: the served
    ``int8-static`` model of an encoder bundle quantizes the encoder's MatMuls dynamically.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in RUN_TIME_QUANT_OPS for node in graph.node)
