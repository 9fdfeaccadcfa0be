"""Whisper's audio encoder in plain PyTorch, returning the hidden states of every layer.

The architecture of openai-whisper's ``AudioEncoder`` (Radford et al. 2022), written here
so the project needs neither ``openai-whisper`` nor ``transformers``:

    mel (B, n_mels, T)
      -> conv1 (k 3, pad 1) -> GELU -> conv2 (k 3, stride 2, pad 1) -> GELU   # T -> ceil(T/2)
      -> + sinusoidal positional embedding[:ceil(T/2)]                        # hidden_states[0]
      -> n_layer x pre-LN residual block (self-attention, MLP 4x with GELU)   # hidden_states[i]
      -> ln_post                                                               # encode()

**Layer convention.** ``forward`` returns ``max_layer + 1`` tensors ``(B, T', n_state)``:
index 0 is the input of block 0 (convolutions + positions), index ``i`` the output of
block ``i`` (1-based), *all without* ``ln_post``, so a given index means the same thing
whether or not it is the last layer run. ``encode`` applies ``ln_post`` to the last
block's output: that is Whisper's encoder output, what its decoder (and CTranslate2's
``Whisper.encode``) sees. Hugging Face's ``output_hidden_states`` differs only in its last
entry, which has the final layer norm applied.

**No 30 s padding.** Whisper pads every input to 3000 mel frames; here the positional
embedding is sliced to the actual ``ceil(T/2)`` frames, so a 3 s clip costs a tenth of a
30 s window. More than ``2 * n_ctx`` mel frames (30 s) is refused: there are no positions
for them. The states of a short unpadded clip differ from those of the same clip padded
to 30 s (attention sees no padding), which is fine as long as training and inference do
the same.

ONNX: attention is plain matmul + softmax (no data-dependent Python control flow on
tensor values) and the positional slice follows the input's time axis, so
``torch.onnx.export(..., dynamo=False, dynamic_axes={...: {0: "batch", 2: "frames"}})``
exports one graph for every clip length (tested for parity to 1e-4).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import EncoderError
from .logmel import HOP_LENGTH, MIN_SAMPLES, N_FFT, mel_filters
from .weights import WhisperDims


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """openai-whisper's sinusoidal positions ``(length, channels)``: sin half, then cos half."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention; like Whisper's, the key projection has no bias."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.scale = (n_state // n_head) ** -0.5  # a Python constant, not traced from shapes
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        # (B, T, D) -> (B, H, T, D/H); b and t stay symbolic in an ONNX trace
        q = self.query(x).reshape(b, t, self.n_head, -1).transpose(1, 2)
        k = self.key(x).reshape(b, t, self.n_head, -1).transpose(1, 2)
        v = self.value(x).reshape(b, t, self.n_head, -1).transpose(1, 2)
        # softmax(q k^T / sqrt(d_head)) v; Whisper scales q and k by d_head^-1/4 each, the same
        weights = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` (MLP 4x wide, GELU)."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn = SelfAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder; parameter names follow openai-whisper's ``encoder.*`` keys.

    Args:
        dims: the encoder's sizes.

    Example:
        >>> enc = WhisperEncoder(WhisperDims(80, 1500, 32, 2, 2)).eval()
        >>> states = enc(torch.zeros(1, 80, 300))
        >>> len(states), tuple(states[0].shape)
        (3, (1, 150, 32))
    """

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.n_state, dims.n_state, kernel_size=3, stride=2, padding=1)
        # a buffer, not a parameter, as in openai-whisper: checkpoints carry it, nothing trains it
        self.register_buffer("positional_embedding", sinusoids(dims.n_ctx, dims.n_state))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(dims.n_state, dims.n_head) for _ in range(dims.n_layer))
        self.ln_post = nn.LayerNorm(dims.n_state)

    def _check_layer(self, max_layer: int | None) -> int:
        if max_layer is None:
            return self.dims.n_layer
        if isinstance(max_layer, bool) or not isinstance(max_layer, int) or not 0 <= max_layer <= self.dims.n_layer:
            raise EncoderError(
                f"layer {max_layer!r} out of range: this encoder has layers 0 (embedding) to {self.dims.n_layer}"
            )
        return max_layer

    def embed(self, mel: Tensor) -> Tensor:
        """Convolutions, GELUs and positions: ``(B, n_mels, T) -> (B, ceil(T/2), n_state)``."""
        # plain Python checks only outside tracing: the exported graph must not bake in T
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if not tracing and (mel.dim() != 3 or mel.shape[1] != self.dims.n_mels):
            raise EncoderError(f"expected a log-mel batch (B, {self.dims.n_mels}, frames), got {tuple(mel.shape)}")
        if not tracing and (mel.shape[2] + 1) // 2 > self.dims.n_ctx:
            raise EncoderError(
                f"input of {mel.shape[2]} mel frames ({mel.shape[2] / 100:.1f} s) is longer than this "
                f"encoder's {self.dims.n_ctx} positions ({2 * self.dims.n_ctx} frames, "
                f"{self.dims.n_ctx / 50:.0f} s); cut the clip or encode it in windows"
            )
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        # slice the positions to the actual length (no 30 s padding)
        return x + self.positional_embedding[: x.shape[1]]

    def forward(self, mel: Tensor, max_layer: int | None = None) -> list[Tensor]:
        """Hidden states ``[embedding, block 1, ..., block max_layer]``, no ``ln_post``.

        Args:
            mel: log-mel batch ``(B, n_mels, T)`` from :func:`log_mel_torch` or
                ``ser.encoders.logmel.log_mel_spectrogram``; ``T <= 2 * n_ctx``.
            max_layer: run blocks 1..max_layer only (0: embedding only); None: all.

        Returns:
            ``max_layer + 1`` tensors ``(B, ceil(T/2), n_state)``.

        Raises:
            EncoderError: wrong input shape, too many frames, layer out of range.
        """
        last = self._check_layer(max_layer)
        x = self.embed(mel)
        states = [x]
        for block in self.blocks[:last]:
            x = block(x)
            states.append(x)
        return states

    def hidden_state(self, mel: Tensor, layer: int) -> Tensor:
        """The hidden state of one layer (``forward(mel, layer)[layer]``), paying only for it."""
        return self.forward(mel, self._check_layer(layer))[-1]

    def encode(self, mel: Tensor) -> Tensor:
        """Whisper's encoder output: ``ln_post`` of the last block, ``(B, ceil(T/2), n_state)``."""
        return self.ln_post(self.forward(mel)[-1])


def build_encoder(dims: WhisperDims, state: dict[str, Tensor]) -> WhisperEncoder:
    """A :class:`WhisperEncoder` holding ``state`` (strictly: every tensor, nothing else), in
    eval mode with gradients off, since the encoder is frozen here."""
    encoder = WhisperEncoder(dims)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise EncoderError(f"weights do not fit a Whisper encoder {dims}: {e}") from e
    encoder.eval().requires_grad_(False)
    return encoder


def log_mel_torch(audio: Tensor, n_mels: int = 80) -> Tensor:
    """Whisper's log-mel in torch (GPU-capable twin of ``logmel.log_mel_spectrogram``).

    Same steps as openai-whisper's ``log_mel_spectrogram`` without the 30 s padding, except
    that the "max - 8" floor is taken per clip of a batch (Whisper takes it over the whole
    batch), so each row equals the numpy function on that clip (to 4e-5).

    Args:
        audio: ``(N,)`` or ``(B, N)`` float tensor of 16 kHz samples, N >= 201.
        n_mels: 80 or 128.

    Returns:
        float32 ``(n_mels, N // 160)`` or ``(B, n_mels, N // 160)`` on ``audio``'s device.
    """
    single = audio.dim() == 1
    batch = audio[None] if single else audio
    if batch.dim() != 2 or batch.shape[-1] < MIN_SAMPLES:
        raise EncoderError(f"expected audio (N,) or (B, N) with N >= {MIN_SAMPLES}, got {tuple(audio.shape)}")
    batch = batch.float()
    window = torch.hann_window(N_FFT, device=batch.device)  # periodic, as Whisper's
    stft = torch.stft(batch, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2  # Whisper drops the last frame
    filters = torch.from_numpy(np.array(mel_filters(n_mels))).to(batch.device)
    mel = filters @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    out = (log_spec + 4.0) / 4.0
    return out[0] if single else out
