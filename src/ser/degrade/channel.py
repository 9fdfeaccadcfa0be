"""Channel conditions: the telephone line (G.711 mu-law or A-law), GSM 06.10 and Opus.

Each goes to the codec's rate with soxr, through the real codec in libsndfile (an
in-memory file written with ``soundfile`` and read back) and back to the input rate
with soxr, cut or zero-padded to the input length. The codecs hard-limit: samples are
clipped to [-1, 1] before encoding, as a line or codec input saturates. If the
installed libsndfile lacks a codec the call raises :class:`DegradeError` naming it.

Example:
    >>> import numpy as np
    >>> from ser.degrade import Telephone
    >>> t = np.arange(16000) / 16000
    >>> y = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    >>> out = Telephone(law="alaw")(y, 16000)
    >>> out.shape, out.dtype, bool(np.corrcoef(out, y)[0, 1] > 0.99)
    ((16000,), dtype('float32'), True)
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import scipy.signal
import soundfile as sf
import soxr

from .registry import Condition, DegradeError, register

PHONE_RATE = 8000  # Hz; narrow-band telephony (G.711, GSM) samples at 8 kHz
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates Opus (and libsndfile's Opus) accepts
LAWS = {"ulaw": "ULAW", "alaw": "ALAW"}  # law -> libsndfile WAV subtype (G.711)


def to_rate(y: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    """``y`` resampled with soxr (high quality); unchanged when the rates are equal."""
    if from_sr == to_sr:
        return y
    return soxr.resample(y, from_sr, to_sr, quality="HQ")


def band_pass(y: np.ndarray, sr: int, low_hz: float, high_hz: float, order: int) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``order`` per pass, two passes), so nothing is delayed."""
    if len(y) < 2:
        return y
    sos = scipy.signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=sr, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), len(y) - 1)  # short clips get shorter edge padding
    return scipy.signal.sosfiltfilt(sos, y, padlen=padlen)


def codec_round_trip(y: np.ndarray, sr: int, fmt: str, subtype: str, who: str, **options) -> np.ndarray:
    """Encode ``y`` (at ``sr``) into an in-memory ``fmt``/``subtype`` file with libsndfile, decode it.

    Raises:
        DegradeError: the codec is missing from this libsndfile, or it refused the input.
    """
    if subtype not in sf.available_subtypes(fmt):
        raise DegradeError(f"{who}: the installed libsndfile {sf.__libsndfile_version__} has no "
                           f"{fmt}/{subtype} codec; install a libsndfile built with it")
    buf = io.BytesIO()
    data = np.clip(y, -1.0, 1.0).astype(np.float32)
    try:
        sf.write(buf, data, sr, format=fmt, subtype=subtype, **options)
        buf.seek(0)
        out, _ = sf.read(buf, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise DegradeError(f"{who}: libsndfile {fmt}/{subtype} failed at {sr} Hz: {e}") from None
    return out


@dataclass(frozen=True)
class _PhoneBand(Condition):
    """Shared fields and checks of the conditions that pass the 300-3400 Hz phone band."""

    low_hz: float = 300.0  # lower edge of the telephone band (ITU-T G.712)
    high_hz: float = 3400.0  # upper edge of the telephone band
    order: int = 4  # Butterworth order per pass (zero-phase: two passes, 8th-order magnitude)

    def validate(self) -> None:
        self._need(0 < self.low_hz < self.high_hz < PHONE_RATE / 2,
                   f"need 0 < low_hz < high_hz < {PHONE_RATE // 2} Hz")
        self._need(int(self.order) == self.order and 1 <= self.order <= 10, "order must be in 1..10")

    def phone_line(self, y: np.ndarray, sr: int) -> np.ndarray:
        """``y`` at 8 kHz, band-passed to the phone band."""
        return band_pass(to_rate(y, sr, PHONE_RATE), PHONE_RATE, self.low_hz, self.high_hz, int(self.order))


@register
@dataclass(frozen=True)
class Telephone(_PhoneBand):
    """A landline call: 8 kHz, 300-3400 Hz band-pass, G.711 8-bit companding, back to ``sr``.

    G.711 is libsndfile's (WAV subtype ``ULAW`` or ``ALAW``): 8 bits per sample,
    logarithmic steps, about 38 dB signal-to-quantisation noise on speech levels.
    """

    kind = "telephone"
    law: str = "ulaw"  # "ulaw" (North America, Japan) or "alaw" (Europe, the rest)

    def validate(self) -> None:
        super().validate()
        self._need(self.law in LAWS, f"law must be one of {list(LAWS)}")

    def apply(self, y, sr, rng, babble):
        line = self.phone_line(y, sr)
        coded = codec_round_trip(line, PHONE_RATE, "WAV", LAWS[self.law], self.name)
        return to_rate(coded.astype(np.float64), PHONE_RATE, sr)


@register
@dataclass(frozen=True)
class Gsm(_PhoneBand):
    """A mobile call: the phone band at 8 kHz, then GSM 06.10 full rate (13 kbit/s), back to ``sr``.

    GSM 06.10 (RPE-LTP) is libsndfile's WAV subtype ``GSM610``; it codes 20 ms frames,
    so libsndfile pads the end, which is cut off again.
    """

    kind = "gsm"

    def apply(self, y, sr, rng, babble):
        coded = codec_round_trip(self.phone_line(y, sr), PHONE_RATE, "WAV", "GSM610", self.name)
        return to_rate(coded.astype(np.float64), PHONE_RATE, sr)


@register
@dataclass(frozen=True)
class Opus(Condition):
    """A VoIP call: Opus at a low bit rate in an in-memory OGG file (libsndfile), back to ``sr``.

    libsndfile sets the bit rate from ``compression_level`` (0 = best quality, 1 =
    smallest); measured at 16 kHz mono, file size over duration: 0.0 ~260 kbit/s,
    0.8 ~60, 0.9 ~34, 0.95 ~21, 0.97 ~12-14, 1.0 ~8 kbit/s. The decoder removes Opus'
    pre-skip, so the output is aligned with the input. The encoder is slow (~100 ms per
    3 s clip on the 2-core development CPU).
    """

    kind = "opus"
    compression_level: float = 0.97  # libsndfile's knob: 0.97 ~ 12-14 kbit/s, 1.0 ~ 8 kbit/s
    rate: int = 16000  # coding rate in Hz: wide band at 16000; one of 8000, 12000, 16000, 24000, 48000

    def validate(self) -> None:
        self._need(0.0 <= self.compression_level <= 1.0, "compression_level must be in [0, 1]")
        self._need(self.rate in OPUS_RATES, f"rate must be one of {list(OPUS_RATES)}")

    def apply(self, y, sr, rng, babble):
        coded = codec_round_trip(to_rate(y, sr, self.rate), self.rate, "OGG", "OPUS", self.name,
                                 compression_level=float(self.compression_level))
        return to_rate(coded.astype(np.float64), self.rate, sr)


__all__ = ["Gsm", "Opus", "Telephone", "band_pass", "codec_round_trip", "to_rate"]
