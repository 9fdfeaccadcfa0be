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
import stat
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
MAX_CHANNELS = 64  # more is not a recording anyone sends for emotion; each costs decoding work
MAX_RATE = 768_000  # Hz; libsndfile accepts anything up to 655 kHz+, which only multiplies the work
MAX_PEAK = 256.0  # |sample| above this (48 dB over full scale) is not audio, e.g. a float WAV at 1e30
BLOCK_BYTES = 4 * 2 ** 20  # decode this many bytes of (frames x channels) float32 at a time
UNKNOWN_LENGTH = 2 ** 62  # libsndfile's frame count for a stream whose header says "length unknown"

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


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding may cost, checked from the file's header before a sample is decoded.

    Memory stays O(one block) whatever the container declares: samples are read
    ``BLOCK_BYTES`` at a time, mixed down and resampled as they come, and only the
    mono result at the target rate is kept.

    Example:
        >>> DecodeLimits(max_seconds=60).max_input_samples
        46080000
    """

    max_seconds: float | None = None  # longest audio (None: unbounded, e.g. training corpora)
    max_channels: int = MAX_CHANNELS
    max_rate: int = MAX_RATE
    # input samples (frames x channels) per second of audio allowed: bounds the work, 8 channels at 96 kHz
    work_rate: int = 8 * 96_000

    @property
    def max_input_samples(self) -> int | None:
        """Input samples (all channels) a file of ``max_seconds`` may hold; None when unbounded."""
        return None if self.max_seconds is None else int(self.max_seconds * self.work_rate)


class AudioTooLongError(AudioError):
    """Audio longer (or more work to decode) than :class:`DecodeLimits` allows; ``seconds`` says
    how long it is, as far as decoding went."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE, limits: DecodeLimits | None = None) -> np.ndarray:
    """Decode a WAV, FLAC, OGG or MP3 file (path or bytes) to mono float32 at ``sr``.

    Multichannel audio is averaged to mono; any input rate is resampled (soxr, high
    quality). A few non-finite samples are replaced by zeros with a warning. Decoding
    is streamed block by block (see :class:`DecodeLimits`), so a small file that
    declares hours of 8-channel audio never allocates more than a block at a time.

    Args:
        source: a file path, or the file's bytes (e.g. an HTTP upload).
        sr: target sample rate in Hz.
        limits: bounds on channels, rate and duration (default: channels and rate only).

    Returns:
        1-D float32 array, finite, at least one sample long.

    Raises:
        AudioError: missing, empty, non-regular, truncated, corrupt, non-audio or
            unsupported input, no samples, samples mostly NaN/inf or far beyond full
            scale, too many channels or too high a rate. AudioTooLongError: longer than
            ``limits.max_seconds`` (from the header, or while decoding a stream of
            unknown length). The message names the source.

    Example:
        >>> y = load_audio(open("clip.wav", "rb").read())  # doctest: +SKIP
    """
    limits = limits or DecodeLimits()
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise AudioError(f"{name}: empty input (0 bytes); expected a {'/'.join(FORMATS)} file")
        with io.BytesIO(data) as fh:
            return _decode(fh, data[:16], name, sr, limits)
    path = Path(source)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except OSError as e:
        raise AudioError(f"{name}: cannot read file ({e.strerror or e})") from e
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{name}: is a directory, expected an audio file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise AudioError(f"{name}: not a regular file (a pipe, socket or device); save the audio to a file first")
    if st.st_size == 0:
        raise AudioError(f"{name}: empty input (0 bytes); expected a {'/'.join(FORMATS)} file")
    try:
        fh = path.open("rb")
    except OSError as e:
        raise AudioError(f"{name}: cannot read file ({e.strerror or e})") from e
    with fh:
        head = fh.read(16)
        fh.seek(0)
        return _decode(fh, head, name, sr, limits)


# libsndfile's own words for common failures, and what they mean to someone sending audio
_LIBSNDFILE_MESSAGES = {
    "format not recognised": "no WAV/FLAC/OGG/MP3 header found",
    "file does not exist or is not a regular file": "no WAV/FLAC/OGG/MP3 header found",
    "sf_info struct incomplete": "headerless (raw) samples; add a WAV header",
    "unimplemented format": "a damaged header or an unsupported encoding",
    "unspecified internal error": "the file is damaged",
    "psf_fseek() failed": "the file is truncated",
    "lost sync": "the stream is cut short or damaged",
    "file is malformed": "the stream is cut short or damaged",
}


def _reason(e: BaseException) -> str:
    """A short reason for a person: a known libsndfile message translated, another one
    without its buffer-repr prefix and bounded in length."""
    text = str(e)
    for key, meaning in _LIBSNDFILE_MESSAGES.items():
        if key in text.lower():
            return meaning
    text = text.split(">: ", 1)[-1].removeprefix("Error : ").strip().rstrip(".")  # "Error opening <...>: ..."
    return text[:120] if text and "<" not in text else "the decoder gave up on it"


def _undecodable(e: BaseException, head: bytes, name: str) -> AudioError:
    kind = _sniff_unsupported(head)
    if kind is not None:
        return UnsupportedFormatError(f"{name}: {kind} audio is not supported; convert it to one of "
                                      f"{', '.join(FORMATS)} (e.g. `ffmpeg -i in.m4a out.wav`)")
    log.debug("%s: libsndfile: %s", name, e)
    return AudioError(f"{name}: cannot decode audio ({_reason(e)}); the input is not audio, is truncated or "
                      f"corrupt, or is in an unsupported format (supported: {', '.join(FORMATS)})")


def _read_block(f: sf.SoundFile, out: np.ndarray) -> int:
    # soundfile's read() seeks after every block to track its position, which fails on FLAC
    # streams whose header says "length unknown"; libsndfile's own read needs no seek
    got = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", out.ctypes.data), out.shape[0])
    return int(got)


def _decode(fh, head: bytes, name: str, sr: int, limits: DecodeLimits) -> np.ndarray:
    try:
        f = sf.SoundFile(fh)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise _undecodable(e, head, name) from None
    with f:
        channels, rate = f.channels, f.samplerate
        if not 1 <= channels <= limits.max_channels:
            raise AudioError(f"{name}: {channels} channels; at most {limits.max_channels} are accepted "
                             "(mix it down first)")
        if not 1 <= rate <= limits.max_rate:
            raise AudioError(f"{name}: sample rate {rate} Hz; at most {limits.max_rate} Hz is accepted")
        known = 0 <= f.frames < UNKNOWN_LENGTH
        if known:
            _check_declared(f.frames, rate, channels, name, limits)
        return _stream(f, name, sr, limits, f.frames if known else None)


def _check_declared(frames: int, rate: int, channels: int, name: str, limits: DecodeLimits) -> None:
    seconds = frames / rate
    if limits.max_seconds is not None and seconds > limits.max_seconds * 1.01 + 1.0:  # MP3 headers estimate
        raise AudioTooLongError(f"{name}: the file declares {seconds:.1f} s of audio; at most "
                                f"{limits.max_seconds:g} s is accepted (cut it into parts)", seconds)
    budget = limits.max_input_samples
    if budget is not None and frames * channels > budget * 1.01 + rate * channels:
        raise AudioTooLongError(f"{name}: the file declares {seconds:.1f} s of {channels}-channel audio at {rate} "
                                f"Hz, more than this service decodes for {limits.max_seconds:g} s of audio (mix "
                                "it down or lower its rate)", seconds)


def _stream(f: sf.SoundFile, name: str, sr: int, limits: DecodeLimits, frames: int | None) -> np.ndarray:
    channels, rate = f.channels, f.samplerate
    size = max(1024, BLOCK_BYTES // (4 * channels))
    if frames is not None:  # a short file needs no 4 MB block (+1: the read that finds the end)
        size = min(size, frames + 1)
    block = np.empty((size, channels), np.float32)
    max_frames = None if limits.max_seconds is None else int(limits.max_seconds * rate) + rate
    budget = limits.max_input_samples
    if budget is not None:
        max_frames = min(max_frames, budget // channels + rate)
    stream = None if rate == sr else soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ")
    parts: list[np.ndarray] = []
    n = bad = 0
    peak = 0.0
    try:
        while True:
            want = len(block) if max_frames is None else max(1, min(len(block), max_frames + 1 - n))
            got = _read_block(f, block[:want])  # never further than one frame past the limit
            if sf._snd.sf_error(f._file):  # a truncated or damaged stream is refused, not half-decoded
                raise sf.LibsndfileError(sf._snd.sf_error(f._file))
            if got <= 0:
                break
            n += got
            if max_frames is not None and n > max_frames:
                raise AudioTooLongError(f"{name}: longer than {limits.max_seconds:g} s (decoding stopped at "
                                        f"{n / rate:.1f} s); cut it into parts", n / rate)
            x = block[:got]
            y = x.mean(axis=1, dtype=np.float32) if channels > 1 else x[:, 0].copy()
            finite = np.isfinite(y)
            if not finite.all():
                bad += int(y.size - np.count_nonzero(finite))
                y[~finite] = 0.0
            if y.size:
                peak = max(peak, float(y.max()), -float(y.min()))
            parts.append(stream.resample_chunk(y) if stream is not None else y)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise _undecodable(e, b"", name) from None
    if n == 0:
        raise AudioError(f"{name}: zero-length audio (the file holds no samples)")
    if bad:
        if bad == n:
            raise AudioError(f"{name}: every sample is NaN or infinite")
        if bad > n / 2:
            raise AudioError(f"{name}: {bad} of {n} samples are NaN or infinite; this is not a recording")
        log.warning("%s: %d non-finite samples replaced by 0", name, bad)
    if peak > MAX_PEAK:
        raise AudioError(f"{name}: samples reach {peak:.3g}, far beyond full scale (1.0); float audio must be "
                         "scaled to [-1, 1]")
    if stream is not None:
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    y = np.concatenate(parts) if len(parts) != 1 else parts[0]
    if y.size == 0:
        raise AudioError(f"{name}: too short to resample from {rate} Hz to {sr} Hz")
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
