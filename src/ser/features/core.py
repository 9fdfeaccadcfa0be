"""Shared machinery of the feature extractors: errors, input checks, cached filter
banks and the per-call memo through which representations share intermediates.

Every array is rows x frames, as librosa lays them out and as ``extract`` returns them.
Precision follows librosa: the FFT runs in float64, the power spectrogram and what is
built on it (mel, chroma, magnitudes) in float32, the small derived arrays (MFCC, deltas,
dB differences) in float64. Filter banks are built once per parameter set
(``functools.lru_cache``) by :mod:`ser.features.filters` (numpy, bit-identical to
librosa's) and returned read-only, so the per-clip cost is matrix products only. The
extractors never import librosa: serving pays for neither its import nor numba.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
from typing import Any, Callable, Hashable

import numpy as np
import scipy.ndimage

from ..errors import SerError
from .filters import chroma_filters, mel_filters

log = logging.getLogger(__name__)

MAX_ROWS = 128  # tallest representation allowed: keeps a CPU ResNet18 affordable
MIN_FRAMES = 9  # clips are zero-padded to at least this many frames (delta width 9 works)
AMIN = 1e-10  # power floor of every dB conversion that follows a librosa default
ZC_THRESHOLD = np.float32(1e-10)  # |y| <= this counts as 0 (librosa.zero_crossings default)
TINY32 = np.finfo(np.float32).tiny  # librosa.util.normalize threshold for float32 input


class FeatureError(SerError, ValueError):
    """Bad feature name, config or input audio; the message names the value and the fix."""


def check_audio(y: Any, sr: Any) -> np.ndarray:
    """Validate ``y``/``sr`` and return ``y`` as a 1-D float32 array.

    Raises:
        FeatureError: ``sr`` not a positive integer, ``y`` not 1-D, empty, not a
            floating-point array, or containing NaN/inf.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise FeatureError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise FeatureError(
            f"audio must be mono 1-D, got shape {arr.shape}; mix down first, e.g. y.mean(axis=0)"
        )
    if arr.size == 0:
        raise FeatureError("audio is empty (0 samples); nothing to extract")
    if not np.issubdtype(arr.dtype, np.floating):
        raise FeatureError(
            f"audio must be floating point in [-1, 1], got dtype {arr.dtype}; convert "
            "PCM first, e.g. y.astype(np.float32) / 32768 for int16"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # fast path: a finite sum means finite samples; only a non-finite sum (NaN/inf, or an
    # overflow from absurdly large samples) needs the element-wise check
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(arr.sum()) or bool(np.isfinite(arr).all())
    if not finite:
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise FeatureError(f"audio holds {bad} NaN/inf samples; clean it (ser.audio.load_audio does)")
    return arr


def frame(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Read-only view of ``x`` (1-D, contiguous) as frames x ``length`` samples, one frame
    every ``hop`` samples, as many as fit: ``librosa.util.frame(x, frame_length=length,
    hop_length=hop).T`` (``sliding_window_view`` without its per-call overhead)."""
    n = 1 + (x.size - length) // hop
    step = x.strides[0]
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, length), strides=(hop * step, step), writeable=False
    )


def min_samples(hop_length: int) -> int:
    """Shortest clip (in samples) extracted as is; shorter ones are zero-padded at the end."""
    return (MIN_FRAMES - 1) * hop_length


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of every representation at ``hop_length`` for a clip of ``n_samples``."""
    return 1 + max(n_samples, min_samples(hop_length)) // hop_length


def power_to_db(x: np.ndarray, amin: float = AMIN, top_db: float | None = None) -> np.ndarray:
    """``librosa.power_to_db(x, ref=1.0, amin=amin, top_db=top_db)``."""
    out = 10.0 * np.log10(np.maximum(x, amin))
    if top_db is not None:
        np.maximum(out, out.max() - top_db, out=out)
    return out


def normalize_columns(x: np.ndarray, norm: float) -> np.ndarray:
    """``librosa.util.normalize(x, norm=norm, axis=-2)``: each frame divided by its
    inf- or 1-norm; frames with a norm below float32's tiny (silence) are left as they are
    (float32 threshold, as librosa applies to its float32 intermediates)."""
    if norm == np.inf:
        length = np.abs(x).max(axis=0)
    elif norm == 1:
        length = np.abs(x).sum(axis=0)
    else:  # pragma: no cover - only inf and 1 are used
        raise ValueError(norm)
    length[length < TINY32] = 1.0
    return x / length


def delta(x: np.ndarray, width: int) -> np.ndarray:
    """First-order delta of ``x`` (rows x frames) along time: exactly
    ``scipy.signal.savgol_filter(x, width, 1, deriv=1, axis=-1, mode="interp")``, which
    is what ``librosa.feature.delta(x, width=width)`` runs: the local least-squares slope,
    the edge frames taking the slope of the first/last full window.

    Raises:
        FeatureError: fewer frames than ``width``.
    """
    n, half = x.shape[-1], width // 2
    if n < width:
        raise FeatureError(
            f"delta width {width} needs at least {width} frames, the clip gives {n}; "
            "use a smaller width or a longer clip"
        )
    weights = np.arange(-half, half + 1, dtype=np.float64)
    weights /= np.dot(weights, weights)
    out = scipy.ndimage.correlate1d(np.asarray(x, dtype=np.float64), weights, axis=-1, mode="nearest")
    out[:, :half] = out[:, half : half + 1]
    out[:, n - half :] = out[:, n - half - 1 : n - half]
    return out


_scratch = threading.local()


def scratch(tag: Hashable, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised per-thread work buffer, reused across calls (grow-only).

    The big per-clip intermediates (framed signal, complex STFT, power, magnitude: about
    0.4-1.5 MB each) would otherwise be fresh allocations that glibc serves with ``mmap``
    and returns on free, so every call pays page faults: measured ~2.5 ms instead of
    ~0.7 ms for the float64 STFT of a 3 s clip. Buffers live only inside one ``extract``
    call; everything it returns is a fresh copy. ``tag`` must identify the use (include
    the parameters when several buffers of one kind can be alive in one call).
    """
    dtype = np.dtype(dtype)
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    size = math.prod(shape)
    buf = buffers.get((tag, dtype))
    if buf is None or buf.size < size:
        buf = buffers[(tag, dtype)] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _frozen(a: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=32)
def hann(n: int) -> np.ndarray:
    """Periodic Hann window, ``scipy.signal.get_window("hann", n, fftbins=True)``."""
    if n == 1:  # scipy's length guard
        return _frozen(np.ones(1))
    return _frozen(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n))


@functools.lru_cache(maxsize=32)
def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> Any:
    """``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``
    (float32, mels x bins) as a CSR sparse matrix: each bin feeds at most two triangular
    filters, so the product costs ~1/30 of the dense one."""
    import scipy.sparse

    csr = scipy.sparse.csr_matrix(mel_filters(sr, n_fft, n_mels, fmin, fmax))
    for part in (csr.data, csr.indices, csr.indptr):
        part.flags.writeable = False
    return csr


@functools.lru_cache(maxsize=32)
def chroma_basis(sr: int, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    """``librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)``
    (float32, chroma x bins)."""
    return _frozen(chroma_filters(sr, n_fft, n_chroma, tuning), np.float32)


@functools.lru_cache(maxsize=32)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix (n_mfcc x mels): ``D @ S == scipy.fft.dct(S,
    type=2, norm="ortho", axis=-2)[:n_mfcc]``."""
    import scipy.fft

    return _frozen(scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc])


@functools.lru_cache(maxsize=32)
def tonnetz_matrix(n_chroma: int) -> np.ndarray:
    """The chroma -> tonal-centroid projection of ``librosa.feature.tonnetz`` (6 x chroma)."""
    dim_map = np.linspace(0, 12, num=n_chroma, endpoint=False)
    scale = np.asarray([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
    v = np.multiply.outer(scale, dim_map)
    v[::2] -= 0.5
    radius = np.array([1, 1, 1, 1, 0.5, 0.5])
    return _frozen(radius[:, None] * np.cos(np.pi * v))


class Shared:
    """Per-call memo: every intermediate (padded signal, power spectrogram, mel, log-mel,
    chroma, onset envelope, tempogram, ...) is computed once per parameter key and
    reused by all representations of one ``extract`` call. Some intermediates live in
    :func:`scratch` buffers, so a ``Shared`` is only valid until the next one is used in
    the same thread; ``extract`` returns copies."""

    def __init__(self, y: np.ndarray, sr: int) -> None:
        self.y = y  # checked 1-D float32 audio
        self.sr = sr  # sample rate in Hz
        self._memo: dict[Hashable, Any] = {}

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Return the value stored under ``key``, computing it on first use."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def signal(self, hop_length: int) -> np.ndarray:
        """The clip zero-padded at the end to ``min_samples(hop_length)`` (float32)."""

        def pad() -> np.ndarray:
            short = min_samples(hop_length) - self.y.size
            if short <= 0:
                return self.y
            log.debug("clip of %d samples zero-padded by %d", self.y.size, short)
            return np.pad(self.y, (0, short))

        return self.memo(("signal", hop_length), pad)
