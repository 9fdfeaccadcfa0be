"""The service's answers as pydantic models: they validate what goes out and write the
OpenAPI document (``/openapi.json``, ``/docs``), so the document and the answers agree.

The field names are the ones :meth:`ser.runtime.EmotionModel.predict` and
``.timeline`` return; ``ser predict`` prints the same JSON.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field

from .limits import ERRORS


class Prediction(BaseModel):
    """The emotion of one recording, or ``"emotion": null`` when it holds no speech."""

    emotion: Optional[str] = Field(description="the most probable label; null when the voice-activity check found "
                                               "no speech (silence, hum, noise): then no probabilities are given",
                                   examples=["angry"])
    probabilities: Optional[dict[str, float]] = Field(
        None, description="probability of every label of the model (in the model's label order), summing to 1; "
                          "absent when emotion is null",
        examples=[{"neutral": 0.05, "happy": 0.1, "sad": 0.05, "angry": 0.8}])
    speech_s: Optional[float] = Field(None, description="seconds of speech the voice-activity check found",
                                      examples=[2.1])
    duration_s: float = Field(description="length of the decoded audio in seconds", examples=[3.2])
    model: str = Field(description="name of the model that answered (its file name without .onnx)",
                       examples=["model.int8"])
    windows: Optional[int] = Field(None, description="only for audio longer than two clip lengths: the number of "
                                                     "non-silent windows whose probabilities were averaged")


class Segment(BaseModel):
    """One window of a timeline."""

    start: float = Field(description="window start in seconds")
    end: float = Field(description="window end in seconds")
    emotion: str = Field(description="the window's most probable label")
    probabilities: dict[str, float] = Field(description="the window's probabilities, summing to 1")


class Timeline(Prediction):
    """Per-window emotions of a recording; the overall fields average the non-silent windows."""

    window_s: float = Field(description="window length in seconds")
    hop_s: float = Field(description="seconds between window starts")
    silent_windows: int = Field(description="windows skipped as silent or without speech (absent from segments)")
    segments: list[Segment] = Field(description="windows with speech in time order; the windows cover the audio "
                                                "(the first starts at 0, the last ends at duration_s); empty when "
                                                "emotion is null")


class ErrorBody(BaseModel):
    """Every refusal: a stable code and a sentence for a person."""

    error: str = Field(description="machine-readable code: " + ", ".join(ERRORS), examples=["too_short"])
    detail: str = Field(description="what was wrong and how to fix it",
                        examples=["the audio lasts 0.100 s; at least 0.25 s is needed (send a longer recording)"])


class LimitsInfo(BaseModel):
    max_bytes: int = Field(description="largest upload in bytes")
    max_seconds: float = Field(description="longest audio in seconds")
    min_seconds: float = Field(description="shortest audio in seconds")
    max_windows: int = Field(description="most timeline windows per request")
    max_parts: int = Field(description="most parts in a multipart body")
    body_timeout: float = Field(description="seconds a request body may stall before it is refused (408)")
    request_timeout: float = Field(description="seconds the whole body may take to arrive")


class TrainedFor(BaseModel):
    """What the model was trained for (``ser train --channel``, ``--condition-aug``)."""

    channel: Optional[str] = Field(None, description="the ser.degrade condition every clip is heard through, in "
                                                     "training and here (telephone: a model for phone calls); "
                                                     "null: none", examples=["telephone"])
    condition_aug: list[str] = Field(default_factory=list,
                                     description="conditions the training clips' augmented copies were heard "
                                                 "through (robustness to them)", examples=[["gsm", "opus", "snr10"]])
    members: dict[str, Optional[dict[str, Any]]] = Field(
        default_factory=dict, description="per member: condition_aug, channel and copies (augmented copies per "
                                          "training clip); null for a member trained before they were recorded")


class Health(BaseModel):
    status: str = Field(description='"ok" once the model is loaded and warmed up, "starting" before',
                        examples=["ok"])
    model: str = Field(description="the model's name")
    labels: int = Field(description="number of labels")
    uptime_s: float = Field(description="seconds since the app was created")
    in_flight: int = Field(description="requests being decoded or run right now")
    version: str = Field(description="ser version")
    limits: LimitsInfo
    trained_for: Optional[TrainedFor] = Field(None, description="the training conditions the model records; null "
                                                                "for a model exported before they were recorded")


class MemberInfo(BaseModel):
    name: str = Field(description="graph input name")
    feature: str = Field(description="representation (see ser.features)")
    rows: int = Field(description="feature rows the member expects")
    weight: float = Field(description="ensemble weight")


class ModelInfo(BaseModel):
    sample_rate: int = Field(description="rate the audio is resampled to (Hz)")
    clip_seconds: float = Field(description="training clip length; longer audio is cut into windows of this length")
    members: list[MemberInfo]
    precision: Optional[str] = Field(None, description='"fp32" or "int8" where the export recorded it')
    temperature: Optional[float] = Field(None, description="calibration temperature applied inside the graph")
    trained_for: Optional[TrainedFor] = Field(None, description="as in /health")
    extra: dict[str, Any] = Field(default_factory=dict,
                                  description="other scalar fields of the model's metadata (corpus, version, ...)")


class LabelsInfo(BaseModel):
    labels: list[str] = Field(description="the model's labels, in order", examples=[["neutral", "happy", "sad"]])
    model: str = Field(description="the model's name")
    metadata: ModelInfo
