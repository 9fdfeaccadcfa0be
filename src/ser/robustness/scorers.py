"""The two ways a robustness report turns (degraded) waveforms into probabilities.

One code path per kind of model, both taking decoded waveforms at the model's clip rate
(not files, not cached features: the audio has just been degraded in memory):

- :class:`OnnxScorer`, an exported ``.onnx`` model: the torch-free runtime exactly as the
  service runs it (``prepare_clip`` with the model's clip config, ``EmotionModel.features``,
  ``EmotionModel.run`` one clip at a time), without the voice-activity gate deciding the answer.
- :class:`TorchScorer`, a bundle or a run: the PyTorch members, each member's input
  computed fresh from the waveform (prepared, heard through the members' training
  ``channel`` if any, then hand-made features or Whisper's log-mel for an encoder member,
  by the runtime's ``compute_inputs``; the encoder then runs in
  ``ser.ensemble.predict_bundle``), as the feature cache computes it for clean clips. A
  run is scored as a one-member bundle (weight 1, temperature 1), so both share one path.

Each scorer splits its work in two: :meth:`inputs` (numpy: clip preparation and
features, run in a worker thread while the model runs the previous batch) and
:meth:`run` (the model).

Example:
    >>> scorer = TorchScorer(*load_bundle("runs/demo/ensemble/bundle"))   # doctest: +SKIP
    >>> scorer.run(scorer.inputs([y1, y2])).shape                            # doctest: +SKIP
    (2, 8)
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..audio import ClipConfig, prepare_clip
from ..errors import SerError
from ..features import config_from_key
from ..runtime import EmotionModel
from ..runtime_inputs import LOGMEL_INPUT, Member, compute_inputs, feature_calls


class RobustnessError(SerError, ValueError):
    """A robustness report that cannot be made as asked; the message says what to pass."""


def _member(m: Mapping[str, Any]) -> Member:
    """A bundle member as the runtime's :class:`~ser.runtime_inputs.Member` reading its own input."""
    from ..ensemble.bundle import member_input

    spec = member_input(m)
    if spec["kind"] == LOGMEL_INPUT:
        return Member(m["name"], m["feature"], None, int(spec["n_mels"]), 0.0, LOGMEL_INPUT)
    return Member(m["name"], m["feature"], config_from_key(m["feature_key"]), int(m["height"]), 0.0)


class OnnxScorer:
    """An exported model through the runtime (``kind = "onnx"``).

    Attributes:
        labels: the model's ordered labels. clip: its clip config. model: the EmotionModel.
    """

    kind = "onnx"

    def __init__(self, model: EmotionModel) -> None:
        self.model = model
        self.labels = list(model.labels)
        self.clip = model.clip

    def inputs(self, waves: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Graph inputs of decoded waveforms (model rate): prepared as the service prepares a clip."""
        return self.model.features([prepare_clip(y, self.clip) for y in waves])

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities (N, labels) as the service answers: the runtime runs a graph whose
        int8 scales come from the batch (dynamic MatMuls) one clip per call, so no clip's
        answer depends on the clips beside it (``EmotionModel.per_clip``)."""
        return self.model.run(inputs)


class TorchScorer:
    """A bundle's PyTorch members, their inputs computed fresh (``kind = "pytorch"``).

    Args:
        models, meta: what ``ser.ensemble.load_bundle`` returns.
    """

    kind = "pytorch"

    def __init__(self, models: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        self.models, self.meta = models, meta
        self.labels = list(meta["labels"])
        clips = {json.dumps(m["clip"], sort_keys=True) for m in meta["members"]}
        if len(clips) != 1:  # every study trains its members on one clip config; a mix is not ours
            raise RobustnessError(f"the members use different clip configs ({sorted(clips)}); score them one by one")
        self.clip = ClipConfig(**meta["members"][0]["clip"])
        channels = {json.dumps(m.get("channel"), sort_keys=True) for m in meta["members"]}
        if len(channels) != 1:  # write_bundle refuses such a bundle; a hand-made one gets a clear line too
            raise RobustnessError(f"the members were trained on different channels ({sorted(channels)})")
        self.channel = meta["members"][0].get("channel")  # a telephone model's line (None: none), as in training
        # each member's input computed as the runtime computes a graph input (one member each)
        self.members = {m["name"]: _member(m) for m in meta["members"]}
        self.calls = feature_calls(self.members)

    @classmethod
    def from_run(cls, run_dir: str | Path, encoder_paths: Mapping[str, str | Path] | None = None) -> "TorchScorer":
        """A run folder (``model.pt`` + ``model.json``) as a one-member bundle: weight 1, temperature 1."""
        from ..ensemble import load_bundle, write_bundle

        d = Path(run_dir)
        if not (d / "model.json").is_file():
            raise RobustnessError(f"{d}: no model.json; a run folder is written by `ser train`/`ser compare`")
        meta = json.loads((d / "model.json").read_text())
        if not (d / "model.pt").is_file():
            what = "a baseline run" if meta.get("kind") == "baseline" else "a run without model.pt"
            raise RobustnessError(f"{d} is {what}: nothing to run on degraded audio; pick a trained member")
        with tempfile.TemporaryDirectory() as tmp:  # the checkpoint is read into memory, the copy can go
            bundle = write_bundle(Path(tmp) / "bundle", [{"name": d.name, "dir": d, "meta": meta}], [1.0], 1.0,
                                  list(meta["labels"]), {})
            return cls(*load_bundle(bundle, encoder_paths=encoder_paths))

    def inputs(self, waves: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's input ``{member: (N, rows, frames)}`` of decoded waveforms (clip rate)."""
        clips = [prepare_clip(y, self.clip) for y in waves]
        return compute_inputs(clips, self.members, self.clip.sample_rate, self.channel, self.calls)

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities (N, labels): ``predict_bundle`` on the fresh inputs."""
        from ..ensemble import predict_bundle

        return predict_bundle((self.models, self.meta), inputs)
