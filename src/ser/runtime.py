"""The torch-free runtime: an exported ``.onnx`` file in, emotions out.

Everything a model needs to serve is in the file's ``metadata_props`` (key ``"ser"``, a
JSON document): ordered labels, each member's graph input and what to compute for it
(``"input"``: a hand-made feature with its config, or ``"whisper_logmel"``: Whisper's
log-mel of the clip, for a member whose encoder is inside the graph), the clip config it
was trained with (sample rate, length, silence trimming), the ensemble weights and
temperature, and the ``channel`` a telephone model (``--channel telephone``) heard every
training clip through: :meth:`EmotionModel.features` applies it to each prepared clip
(:func:`ser.modelmeta.apply_channel`, as the feature cache did), so whatever line the
audio came over, the model hears the channel it was trained on (the inputs are computed by
:mod:`ser.runtime_inputs`). This module imports onnxruntime, numpy, the feature code and the
numpy log-mel (:mod:`ser.encoders.logmel`) only, never torch; the service (``ser.serve``),
``ser predict`` and ``export_scripts/test_onnx_model.py`` all go through :class:`EmotionModel`.

Audio of up to ``SINGLE_CLIP_FACTOR`` clip lengths (at least ``SINGLE_CLIP_MIN_S``) is one
clip, prepared exactly as in training (silence trimmed, padded or cut to the clip length). Longer audio is cut into
windows (``window`` seconds every ``hop`` seconds, the clip length and half of it by
default); silent windows are skipped and the overall answer averages the others.

Every answer is independent of what else is in the batch: a graph that quantizes its
activations at run time (dynamic int8: one scale per tensor, taken over the whole batch)
runs one clip per onnxruntime call (:attr:`EmotionModel.per_clip`); fp32 and static
QDQ int8 graphs, whose rows do not see each other, run ``BATCH`` clips at a time.

Example:
    >>> model = load_model("runs/demo/model/model.int8.onnx")          # doctest: +SKIP
    >>> model.predict("clip.wav")                                       # doctest: +SKIP
    {'emotion': 'angry', 'probabilities': {'neutral': 0.01, ...}, 'duration_s': 3.2, 'model': 'model.int8'}
    >>> [s["emotion"] for s in model.timeline("call.wav")["segments"]]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

import numpy as np

from .audio import AudioError, ClipConfig, load_audio, prepare_clip, resample
from .modelmeta import MetadataError, channel_condition, validate_metadata
# the model's inputs and how to compute them; Member, ModelError and the input kinds are re-exported here
from .runtime_inputs import (FEATURE_INPUT, LOGMEL_INPUT, Member, ModelError, compute_inputs,  # noqa: F401
                             feature_calls, member_from_metadata, quantizes_at_run_time)
from .vad import SpeechActivity, detect_speech

log = logging.getLogger(__name__)

METADATA_KEY = "ser"  # the metadata_props entry holding our JSON description
FORMAT = "ser-onnx"  # its "format" field
OUTPUT = "probabilities"  # the graph's output: calibrated, weighted probabilities (N, labels)
SINGLE_CLIP_FACTOR = 2.0  # audio up to this many clip lengths (and at least SINGLE_CLIP_MIN_S)
SINGLE_CLIP_MIN_S = 5.0  # ... is one clip, prepared exactly as in training; longer audio is windowed
BATCH = 16  # windows per onnxruntime call: bounds memory on long audio

Audio = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


def parse_metadata(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """Our JSON description from a model's metadata map; ModelError if absent or malformed."""
    if METADATA_KEY not in props:
        raise ModelError(f"{source}: ONNX model without ser metadata (no {METADATA_KEY!r} entry in "
                         "metadata_props); export models with `ser export --bundle DIR --out DIR`")
    try:
        meta = json.loads(props[METADATA_KEY])
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        for key in ("labels", "members", "clip", "weights", "temperature"):
            meta[key]  # noqa: B018 (presence check)
        validate_metadata(meta)  # a MetadataError (a ValueError) naming the field
    except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise ModelError(f"{source}: malformed ser metadata ({e}); re-export the model with `ser export`") from e
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ser metadata of a model file, without creating an inference session."""
    import onnx

    p = _check_path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises several types for a non-ONNX file
        raise ModelError(f"{p}: not an ONNX model ({type(e).__name__}: {e})") from e
    return parse_metadata({x.key: x.value for x in model.metadata_props}, str(p))


def limit_blas_threads(threads: int | None) -> None:
    """Cap numpy's BLAS thread pool (process-wide) at ``threads``; None leaves it alone.

    For a service worker: its numpy log-mel's matrix products otherwise start a BLAS
    thread per core, which only spin against onnxruntime's threads and the other requests.
    """
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=int(threads), user_api="blas")


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "no such file"
        raise ModelError(f"{p}: {what}; pass an .onnx file written by `ser export --bundle DIR --out DIR`")
    return p


def _providers() -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class EmotionModel:
    """An exported ensemble loaded in onnxruntime, with the feature pipeline it expects.

    Args:
        path: the ``.onnx`` file (fp32 or int8) written by ``ser export``.
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).

    Attributes:
        labels: ordered class names. members: the ensemble members (:class:`Member`).
        inputs: ``{graph input name: the first member reading it}``.
        clip: the training clip config. meta: the full metadata. name: the file's stem.
        per_clip: the graph runs one clip per call (it quantizes at run time, see
        :func:`quantizes_at_run_time`), so no answer depends on the rest of its batch.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = _check_path(path)
        self.name = self.path.name.removesuffix(".onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=_providers())
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: {e})") from e
        self.meta = parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.per_clip = quantizes_at_run_time(self.path)
        self.labels: list[str] = list(self.meta["labels"])
        self.clip = ClipConfig(**self.meta["clip"])
        self.sample_rate = int(self.clip.sample_rate)
        self.single_clip_max_s = max(SINGLE_CLIP_FACTOR * self.clip.seconds, SINGLE_CLIP_MIN_S)
        try:  # a ser.degrade condition (None: none); rebuilt from its record, parameters as trained
            self.channel = channel_condition(self.meta.get("channel"))
        except MetadataError as e:
            raise ModelError(f"{self.path}: {e}") from e
        self.members = [member_from_metadata(m, self.sample_rate, self.path) for m in self.meta["members"]]
        # each graph input once (encoder members on one log-mel share it), in member order
        self.inputs: dict[str, Member] = {}
        for m in self.members:
            self.inputs.setdefault(m.source, m)
        inputs = {i.name for i in self.session.get_inputs()}
        if set(self.inputs) != inputs or len(self.session.get_outputs()) != 1:
            raise ModelError(f"{self.path}: graph inputs {sorted(inputs)} do not match the members in its "
                             f"metadata {sorted(self.inputs)}; re-export the model")
        self._output = self.session.get_outputs()[0].name
        self._calls = feature_calls(self.inputs)  # one extract() per group of feature inputs, planned once

    def __repr__(self) -> str:
        return f"EmotionModel({str(self.path)!r}, members={[m.name for m in self.members]}, labels={self.labels})"

    # ------------------------------------------------------------------ arrays in, probabilities out
    def waveform(self, audio: Audio, sr: int | None = None) -> np.ndarray:
        """Mono float32 at the model's rate from a path, file bytes or an array (``sr`` needed
        for an array at another rate)."""
        if isinstance(audio, np.ndarray):
            y = np.asarray(audio, dtype=np.float32)
            if y.ndim == 2:  # (samples, channels) as soundfile returns, or (channels, samples)
                y = y.mean(axis=1 if y.shape[0] > y.shape[1] else 0)
            if y.ndim != 1 or y.size == 0:
                raise AudioError(f"array input: expected 1-D (or 2-D multichannel) samples, got shape {audio.shape}")
            if not np.isfinite(y).all():
                raise AudioError("array input: contains NaN or infinite samples")
            if sr is not None and int(sr) != self.sample_rate:
                y = resample(y, int(sr), self.sample_rate, "array input")
            return np.ascontiguousarray(y, dtype=np.float32)
        return load_audio(audio, self.sample_rate)

    def features(self, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Graph inputs ``{input: (N, rows, frames)}`` for prepared clips (model rate): each
        feature member's features, and Whisper's log-mel of the clip for encoder members,
        computed as in training (the same prepared clip through the model's channel, the
        same log-mel to ~1e-5)."""
        return compute_inputs(clips, self.inputs, self.sample_rate, self.channel, self._calls)

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The graph on ready inputs ``{input: (N, rows, frames)}`` -> probabilities (N, labels).

        Keys are graph input names (:attr:`inputs`); other keys are ignored, so the
        member-keyed inputs of ``ser.ensemble.bundle_features`` fit as they are. A
        :attr:`per_clip` model runs row by row, so each row's answer is the one it gets alone.
        """
        for name, m in self.inputs.items():
            x = inputs.get(name)
            if x is None or x.ndim != 3 or x.shape[1] != m.rows:
                what = "log-mel" if m.kind == LOGMEL_INPUT else "features"
                raise ModelError(f"input {name!r} ({what}): expected (N, {m.rows}, frames), got "
                                 f"{None if x is None else x.shape}")
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self.inputs}
        n = len(next(iter(feed.values())))
        calls = [{k: v[i:i + 1] for k, v in feed.items()} for i in range(n)] if self.per_clip and n > 1 else [feed]
        return np.concatenate([np.asarray(self.session.run([self._output], f)[0], dtype=np.float64) for f in calls])

    def probabilities(self, clips: Iterable[np.ndarray]) -> np.ndarray:
        """Probabilities (N, labels) for prepared clips, ``BATCH`` at a time (features; the graph
        too unless :attr:`per_clip`); ``clips`` may be a generator, so at most ``BATCH`` are held."""
        it = iter(clips)
        parts = [self.run(self.features(batch)) for batch in iter(lambda: list(islice(it, BATCH)), [])]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))

    def _labelled(self, p: np.ndarray) -> dict[str, Any]:
        return {"emotion": self.labels[int(np.argmax(p))],
                "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}}

    def _answer(self, p: np.ndarray, duration: float) -> dict[str, Any]:
        return {**self._labelled(p), "duration_s": round(float(duration), 3), "model": self.name}

    # ------------------------------------------------------------------ audio in, answers out
    def predict(self, audio: Audio, sr: int | None = None) -> dict[str, Any]:
        """The API's answer for one recording.

        Args:
            audio: a path, the file's bytes, or a waveform (with ``sr`` if not the model's rate).
            sr: sample rate of an array input.

        Returns:
            ``{"emotion", "probabilities": {label: p}, "duration_s", "model", "speech_s"}``;
            long audio (longer than ``single_clip_max_s``) also carries ``"windows"``, the
            number of windows with speech averaged. Audio without speech (``ser.vad``):
            ``{"emotion": None, "speech_s", "duration_s", "model"}``, no probabilities.

        Raises:
            AudioError: unreadable audio. ModelError: inputs that do not fit the model.
        """
        y = self.waveform(audio, sr)
        duration = len(y) / self.sample_rate
        activity = detect_speech(y, self.sample_rate)
        if not activity.is_speech:  # silence, hum or noise: no emotion to tell
            return {"emotion": None, "speech_s": activity.speech_s, "duration_s": round(duration, 3), "model": self.name}
        if duration <= self.single_clip_max_s:
            answer = self._answer(self.probabilities([prepare_clip(y, self.clip)])[0], duration)
            return {**answer, "speech_s": activity.speech_s}
        tl = self._windows(y, None, None, activity)
        return {**self._answer(tl["overall"], duration), "speech_s": activity.speech_s, "windows": len(tl["segments"])}

    def timeline(self, audio: Audio, sr: int | None = None, window: float | None = None,
                 hop: float | None = None) -> dict[str, Any]:
        """Per-window emotions of a long recording (a call), silent windows skipped.

        Args:
            audio, sr: as for :meth:`predict`.
            window: window length in seconds (default: the model's clip length).
            hop: seconds between window starts (default: half the window).

        Returns:
            The :meth:`predict` fields for the whole recording (the mean of the non-silent
            windows) plus ``window_s``, ``hop_s``, ``silent_windows`` and ``segments``: a list of
            ``{"start", "end", "emotion", "probabilities"}`` in time order. Windows cover the
            audio: the last one ends at the end of the recording.
        """
        y = self.waveform(audio, sr)
        activity = detect_speech(y, self.sample_rate)
        tl = self._windows(y, window, hop, activity)
        duration = len(y) / self.sample_rate
        head = (self._answer(tl["overall"], duration) if tl["segments"] else
                {"emotion": None, "duration_s": round(duration, 3), "model": self.name})  # no speech anywhere
        return {**head, "speech_s": activity.speech_s, "window_s": tl["window"], "hop_s": tl["hop"],
                "silent_windows": tl["silent"], "segments": tl["segments"]}

    def _windows(self, y: np.ndarray, window: float | None, hop: float | None,
                 activity: SpeechActivity | None = None) -> dict[str, Any]:
        window = float(self.clip.seconds if window is None else window)
        hop = float(window / 2 if hop is None else hop)
        if not (window > 0 and hop > 0):
            raise ValueError(f"window and hop must be > 0 seconds, got window={window}, hop={hop}")
        sr, n = self.sample_rate, len(y)
        w, h = max(1, int(round(window * sr))), max(1, int(round(hop * sr)))
        starts = list(range(0, max(n - w, 0) + 1, h))
        if starts[-1] + w < n:  # a last window flush with the end, so the whole recording is covered
            starts.append(n - w)
        activity = activity or detect_speech(y, sr)
        keep = [s for s in starts if activity.window_has_speech(s, s + w)]  # windows without speech skipped
        silent = len(starts) - len(keep)
        # windows prepared lazily: memory stays flat however long the call is
        probs = self.probabilities(prepare_clip(y[s:s + w], self.clip) for s in keep)
        segments = [{"start": round(s / sr, 3), "end": round(min(s + w, n) / sr, 3), **self._labelled(p)}
                    for s, p in zip(keep, probs)]
        overall = probs.mean(axis=0) if len(probs) else np.full(len(self.labels), 1 / len(self.labels))
        if not keep:
            log.warning("every window is silent; the overall answer is uniform")
        return {"overall": overall, "segments": segments, "silent": silent, "window": window, "hop": hop}

    def warmup(self) -> None:
        """One prediction on quiet noise, so the first real request pays no compilation or allocation."""
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 0.01, int(self.clip.seconds * self.sample_rate)).astype(np.float32)
        detect_speech(noise, self.sample_rate)
        self.probabilities([prepare_clip(noise, self.clip)])  # the graph itself: noise is no speech to predict


def load_model(path: str | os.PathLike, threads: int | None = None) -> EmotionModel:
    """Load an exported model file (see :class:`EmotionModel`).

    Raises:
        ModelError: missing file, not ONNX, or no ser metadata; the message says how to make one.

    Example:
        >>> load_model("runs/demo/model/model.int8.onnx").labels   # doctest: +SKIP
        ['neutral', 'calm', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised']
    """
    return EmotionModel(path, threads=threads)
