"""Audio input: decode any supported file or byte string to mono float32 at 16 kHz.

Everything inside the package works on that one form; decoding, mixing down,
resampling and sanity checks happen here and nowhere else.

Example:
    >>> from ser.audio import load_audio, trim_silence, pad_or_trim, SAMPLE_RATE
    >>> y = load_audio("clip.flac")              # doctest: +SKIP
    >>> y = pad_or_trim(trim_silence(y), 3 * SAMPLE_RATE)  # doctest: +SKIP
"""
from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import soxr

from .errors import SerError

log = logging.getLogger(__name__)

# hard-coded audio hyperparameters
SAMPLE_RATE = 16000  # Hz; every model and feature in the package assumes it
CLIP_SECONDS = 3.0  # default training clip length after silence trimming
N_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)  # 48000 samples in a default clip
TRIM_TOP_DB = 30.0  # frames quieter than peak - 30 dB count as silence
TRIM_FRAME = 400  # 25 ms analysis frame for silence detection
TRIM_HOP = 160  # 10 ms hop for silence detection
FORMATS = ("WAV", "FLAC", "OGG", "MP3")  # what load_audio promises to read

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

# Magic numbers of formats users send that libsndfile cannot read, so the error
# can say what the file is instead of "not recognised".
_UNSUPPORTED_MAGIC = {
    b"ftyp": "MP4/M4A/AAC",  # at offset 4
    b"\x1aE\xdf\xa3": "WebM/Matroska",
    b"#!AMR": "AMR",
    b"MThd": "MIDI",
}


class AudioError(SerError, ValueError):
    """Raised when audio cannot be decoded or is unusable; the message names the source."""


class UnsupportedFormatError(AudioError):
    """Audio in a container we recognise but do not read (M4A, WebM, AMR, MIDI, ...)."""


def _describe(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(source)


def _sniff_unsupported(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        return _UNSUPPORTED_MAGIC[b"ftyp"]
    for magic, name in _UNSUPPORTED_MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a WAV, FLAC, OGG or MP3 file (path or bytes) to mono float32 at ``sr``.

    Multichannel audio is averaged to mono; any input rate is resampled (soxr, high
    quality). A few non-finite samples are replaced by zeros with a warning.

    Args:
        source: a file path, or the file's bytes (e.g. an HTTP upload).
        sr: target sample rate in Hz.

    Returns:
        1-D float32 array, finite, at least one sample long.

    Raises:
        AudioError: missing, empty, truncated, corrupt, non-audio or unsupported input,
            no samples, or samples that are all NaN/inf. The message names the source.

    Example:
        >>> y = load_audio(open("clip.wav", "rb").read())  # doctest: +SKIP
    """
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name}: is a directory, expected an audio file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise AudioError(f"{name}: cannot read file ({e.strerror or e})") from e
    if len(data) == 0:
        raise AudioError(f"{name}: empty input (0 bytes); expected a {'/'.join(FORMATS)} file")

    buf = io.BytesIO(data)
    try:
        y, file_sr = sf.read(buf, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        kind = _sniff_unsupported(data[:16])
        if kind is not None:
            raise UnsupportedFormatError(
                f"{name}: {kind} audio is not supported; convert it to one of "
                f"{', '.join(FORMATS)} (e.g. `ffmpeg -i in.m4a out.wav`)"
            ) from e
        reason = str(e).replace(repr(buf), name)  # soundfile names the buffer by its repr; callers know ``name``
        raise AudioError(
            f"{name}: cannot decode audio ({reason}); the input is not audio, is truncated or "
            f"corrupt, or is in an unsupported format (supported: {', '.join(FORMATS)})"
        ) from e

    if y.shape[0] == 0:
        raise AudioError(f"{name}: zero-length audio (the file holds no samples)")
    y = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]

    finite = np.isfinite(y)
    if not finite.all():
        if not finite.any():
            raise AudioError(f"{name}: every sample is NaN or infinite")
        log.warning("%s: %d non-finite samples replaced by 0", name, int((~finite).sum()))
        y = np.where(finite, y, np.float32(0.0))

    if file_sr != sr:
        y = resample(y, file_sr, sr, name)
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, from_sr: int, to_sr: int, name: str = "audio") -> np.ndarray:
    """Mono ``y`` from ``from_sr`` to ``to_sr`` Hz (soxr, high quality); ``name`` is the source
    named in the error when nothing is left."""
    y = soxr.resample(y, from_sr, to_sr, quality="HQ")
    if y.size == 0:
        raise AudioError(f"{name}: too short to resample from {from_sr} Hz to {to_sr} Hz")
    return y


def _frame_db(y: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS level in dB of each frame (centred frames, zero padded)."""
    padded = np.pad(y, frame // 2)
    n = 1 + max(0, len(padded) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(padded[idx].astype(np.float64) ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def trim_silence(y: np.ndarray, top_db: float = TRIM_TOP_DB) -> np.ndarray:
    """Cut leading and trailing silence: frames more than ``top_db`` below the peak frame.

    Same rule as ``librosa.effects.trim`` (25 ms frames, 10 ms hop at 16 kHz).
    A clip that is silent throughout (all frames equal, e.g. digital zeros) is
    returned unchanged: there is nothing to trim towards.

    Args:
        y: mono audio.
        top_db: threshold below the loudest frame, in dB.

    Returns:
        A view of ``y`` without the silent ends.
    """
    if y.ndim != 1:
        raise AudioError(f"trim_silence expects mono 1-D audio, got shape {y.shape}")
    if y.size == 0:
        return y
    db = _frame_db(y, TRIM_FRAME, TRIM_HOP)
    loud = np.flatnonzero(db > db.max() - top_db)
    if loud.size == 0 or db.max() <= -199.0:
        return y
    start = int(loud[0] * TRIM_HOP)
    end = int(min(len(y), (loud[-1] + 1) * TRIM_HOP))
    return y[start:end]


def pad_or_trim(y: np.ndarray, length: int = N_SAMPLES, mode: str = "start") -> np.ndarray:
    """Zero-pad at the end or cut ``y`` to exactly ``length`` samples.

    Args:
        y: mono audio.
        length: number of samples wanted (``N_SAMPLES`` = 3 s by default).
        mode: where to cut a long clip: ``"start"`` keeps the beginning,
            ``"center"`` keeps the middle.

    Returns:
        float32 array of shape ``(length,)``.
    """
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if mode not in ("start", "center"):
        raise ValueError(f"mode must be 'start' or 'center', got {mode!r}")
    y = np.asarray(y, dtype=np.float32)
    if len(y) >= length:
        offset = (len(y) - length) // 2 if mode == "center" else 0
        return y[offset : offset + length]
    return np.pad(y, (0, length - len(y)))


@dataclass(frozen=True)
class ClipConfig:
    """How a decoded recording becomes the fixed-length clip a model sees.

    Training, the feature cache (it is part of every cache key) and serving all go
    through :func:`prepare_clip` with the model's own ``ClipConfig``.
    """

    sample_rate: int = SAMPLE_RATE  # Hz, the package's one rate
    seconds: float = CLIP_SECONDS  # clip length after trimming: padded or cut to this
    trim_top_db: float | None = TRIM_TOP_DB  # silence threshold below peak; None keeps silence
    crop: str = "start"  # where a long clip is cut: "start" or "center"


def prepare_clip(y: np.ndarray, clip: ClipConfig = ClipConfig()) -> np.ndarray:
    """The training form of a clip: silence trimmed (if configured), then padded or cut.

    Example:
        >>> prepare_clip(np.ones(100, np.float32), ClipConfig(seconds=0.01)).shape
        (160,)
    """
    if clip.trim_top_db is not None:
        y = trim_silence(y, clip.trim_top_db)
    return pad_or_trim(y, int(round(clip.seconds * clip.sample_rate)), mode=clip.crop)
