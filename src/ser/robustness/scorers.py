"""The two ways a robustness report turns (degraded) waveforms into probabilities.

One code path per kind of model, both taking decoded waveforms at the model's clip rate
(not files, not cached features: the audio has just been degraded in memory):

- :class:`OnnxScorer`, an exported ``.onnx`` model: the torch-free runtime exactly as the
  service runs it (``prepare_clip`` with the model's clip config, ``EmotionModel.features``,
  ``EmotionModel.run`` one clip at a time), without the voice-activity gate deciding the answer.
- :class:`TorchScorer`, a bundle or a run: the PyTorch members, each member's input
  computed fresh from the waveform (prepared, heard through the members' training
  ``channel`` if any, then hand-made features with ``ser.features.extract``, or Whisper's
  log-mel for an encoder member, whose encoder then runs in
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
from ..encoders.logmel import log_mel_spectrogram
from ..errors import SerError
from ..features import config_from_key, extract
from ..modelmeta import apply_channel
from ..runtime import EmotionModel


class RobustnessError(SerError, ValueError):
    """A robustness report that cannot be made as asked; the message says what to pass."""


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
        """Probabilities (N, labels), one clip per onnxruntime call, as the service answers a request.

        Not one call for the batch: an int8 graph quantizes the activations of its dynamic
        int8 MatMuls with one scale per tensor, the whole batch, so a clip's probabilities
        would depend on the clips beside it (by up to 0.07 measured on RAVDESS). One clip
        per call is also no slower on a CPU.
        """
        n = len(next(iter(inputs.values())))
        parts = [self.model.run({k: v[i:i + 1] for k, v in inputs.items()}) for i in range(n)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))


class TorchScorer:
    """A bundle's PyTorch members, their inputs computed fresh (``kind = "pytorch"``).

    Args:
        models, meta: what ``ser.ensemble.load_bundle`` returns.
    """

    kind = "pytorch"

    def __init__(self, models: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        from ..ensemble.bundle import LOGMEL_INPUT, member_input

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
        self.logmel: dict[str, int] = {}  # encoder member -> mel bands of its log-mel input
        # one extract() call per group of feature members whose feature names do not collide (as the runtime)
        self.calls: list[dict[str, tuple[Any, list[str]]]] = []
        for m in meta["members"]:
            spec = member_input(m)
            if spec["kind"] == LOGMEL_INPUT:
                self.logmel[m["name"]] = int(spec["n_mels"])
                continue
            cfg = config_from_key(m["feature_key"])
            call = next((c for c in self.calls if m["feature"] not in c or c[m["feature"]][0] == cfg), None)
            if call is None:
                call = {}
                self.calls.append(call)
            call.setdefault(m["feature"], (cfg, []))[1].append(m["name"])

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "TorchScorer":
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
            return cls(*load_bundle(bundle))

    def inputs(self, waves: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's input ``{member: (N, rows, frames)}`` of decoded waveforms (clip rate)."""
        sr = self.clip.sample_rate
        clips = [apply_channel(prepare_clip(y, self.clip), sr, self.channel) for y in waves]
        cols: dict[str, list[np.ndarray]] = {}
        for y in clips:
            for call in self.calls:
                got = extract(y, sr, list(call), {f: cfg for f, (cfg, _) in call.items()})
                for f, (_, names) in call.items():
                    for name in names:
                        cols.setdefault(name, []).append(got[f])
        out = {name: np.stack(arrs) for name, arrs in cols.items()}
        mels: dict[int, np.ndarray] = {}  # members with the same mel bands share one array
        for name, n_mels in self.logmel.items():
            if n_mels not in mels:
                mels[n_mels] = np.stack([log_mel_spectrogram(y, n_mels) for y in clips])
            out[name] = mels[n_mels]
        return out

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities (N, labels): ``predict_bundle`` on the fresh inputs."""
        from ..ensemble import predict_bundle

        return predict_bundle((self.models, self.meta), inputs)
