"""Whisper encoder weights: CTranslate2 model directories and openai-whisper ``.pt`` files.

Both loaders return ``(WhisperDims, state_dict)`` with float32 torch tensors named as
:class:`ser.encoders.whisper.WhisperEncoder`'s parameters, checked by
:func:`check_state_dict` (every tensor present, right shape, nothing unexpected).

CTranslate2's ``model.bin`` (binary versions 4 to 6; the layout its
``ModelSpec._serialize`` writes and ``models/model.cc`` reads), little-endian::

    u32 binary_version | str spec_name | u32 spec_revision | u32 n_variables
    n_variables x (str name | u8 rank | rank x u32 dim | u8 dtype_id | u32 n_bytes | bytes)
    u32 n_aliases | n_aliases x (str alias | str target)

where ``str`` is a u16 length (counting a trailing NUL), the UTF-8 bytes and the NUL, and
dtype ids are 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. A file split
into ``model.bin.part1``, ``model.bin.part2`` ... is read through :class:`ChainedReader`
as one stream, never joined on disk; only the encoder's tensors are read (the decoder's
are skipped by seeking), so loading Whisper base reads ~41 MB of its 145 MB.

torch is imported only where tensors are built, so the registry's lookups stay torch-free.
"""
from __future__ import annotations

import bisect
import io
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from . import EncoderError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

KNOWN_BINARY_VERSIONS = range(4, 7)  # layouts with a dtype id and a byte count per variable
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


@dataclass(frozen=True)
class WhisperDims:
    """Sizes of a Whisper audio encoder (openai-whisper's ``n_audio_*`` dimensions)."""

    n_mels: int  # mel bands of the input: 80, or 128 for large-v3
    n_ctx: int  # positions after the stride-2 conv: 1500 (= 30 s of audio)
    n_state: int  # width of the residual stream: tiny 384, base 512, small 768 ...
    n_head: int  # attention heads (n_state must be a multiple)
    n_layer: int  # residual attention blocks: tiny 4, base 6, small 12 ...

    def __post_init__(self) -> None:
        for name in ("n_mels", "n_ctx", "n_state", "n_head", "n_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise EncoderError(f"WhisperDims.{name} must be a positive int, got {value!r}")
        if self.n_state % self.n_head or self.n_state % 2:
            raise EncoderError(f"n_state {self.n_state} must be even and a multiple of n_head {self.n_head}")


def expected_shapes(dims: WhisperDims) -> dict[str, tuple[int, ...]]:
    """Every tensor of a ``WhisperEncoder(dims)`` state dict and its shape (computed, no torch)."""
    d, f = dims.n_state, 4 * dims.n_state
    shapes: dict[str, tuple[int, ...]] = {
        "conv1.weight": (d, dims.n_mels, 3), "conv1.bias": (d,),
        "conv2.weight": (d, d, 3), "conv2.bias": (d,),
        "positional_embedding": (dims.n_ctx, d),
        "ln_post.weight": (d,), "ln_post.bias": (d,),
    }
    for i in range(dims.n_layer):
        p = f"blocks.{i}."
        for lin in ("query", "value", "out"):
            shapes[f"{p}attn.{lin}.weight"] = (d, d)
            shapes[f"{p}attn.{lin}.bias"] = (d,)
        shapes[f"{p}attn.key.weight"] = (d, d)  # Whisper's key projection has no bias
        for ln in ("attn_ln", "mlp_ln"):
            shapes[f"{p}{ln}.weight"] = (d,)
            shapes[f"{p}{ln}.bias"] = (d,)
        shapes.update({f"{p}mlp.0.weight": (f, d), f"{p}mlp.0.bias": (f,),
                       f"{p}mlp.2.weight": (d, f), f"{p}mlp.2.bias": (d,)})
    return shapes


def check_state_dict(dims: WhisperDims, state: Mapping[str, Any], source: str = "weights") -> None:
    """Raise EncoderError unless ``state`` holds exactly the encoder's tensors, right shapes.

    The message names the first missing tensor (or the wrong shape, or the unexpected
    names) and ``source``, so a wrongly wired or truncated checkpoint fails at load time.
    """
    shapes = expected_shapes(dims)
    missing = [k for k in shapes if k not in state]
    if missing:
        raise EncoderError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} missing in all) for {dims}")
    for key, shape in shapes.items():
        if tuple(state[key].shape) != shape:
            raise EncoderError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, expected {shape}")
    extra = sorted(set(state) - set(shapes))
    if extra:
        raise EncoderError(f"{source}: unexpected tensors {extra[:5]} ({len(extra)} in all) for {dims}")


# ---------------------------------------------------------------- CTranslate2 model.bin


class ChainedReader(io.RawIOBase):
    """Several files read as one seekable stream (``model.bin.part1`` + ``part2`` ...)."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self._files = []
        try:
            for p in self.paths:
                self._files.append(open(p, "rb"))
        except OSError as e:
            self.close()
            raise EncoderError(f"cannot open model file {e.filename}: {e.strerror}") from e
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [0]
        for s in sizes:
            self._starts.append(self._starts[-1] + s)
        self.size = self._starts[-1]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            i = bisect.bisect_right(self._starts, self._pos) - 1  # the part holding _pos
            part = self._files[i]
            part.seek(self._pos - self._starts[i])
            want = min(len(view) - done, self._starts[i + 1] - self._pos)
            got = part.readinto(view[done:done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes, or EncoderError if the stream ends first (a missing part, a truncated file)."""
        buf = bytearray(n)
        got = self.readinto(buf)
        if got != n:
            names = ", ".join(p.name for p in self.paths)
            raise EncoderError(
                f"CTranslate2 model ends early: needed {n} bytes at offset {self._pos - got}, the file(s) "
                f"{names} hold {self.size} bytes in all; is a model.bin part missing or truncated?"
            )
        return bytes(buf)

    def close(self) -> None:
        for f in getattr(self, "_files", []):
            f.close()
        super().close()


@dataclass(frozen=True)
class Ct2Header:
    """What a CTranslate2 ``model.bin`` says about itself."""

    binary_version: int  # file layout version (6 for CTranslate2 3.x and 4.x)
    spec: str  # model specification, "WhisperSpec" for Whisper
    revision: int  # revision of that specification's variable names


def _unpack(reader: ChainedReader, fmt: str) -> tuple:
    return struct.unpack("<" + fmt, reader.read_exact(struct.calcsize("<" + fmt)))


def _string(reader: ChainedReader) -> str:
    (n,) = _unpack(reader, "H")
    return reader.read_exact(n).rstrip(b"\0").decode("utf-8")


def _to_array(raw: bytes, dtype_id: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    dtype = _CT2_DTYPES.get(dtype_id)
    if dtype is None:
        raise EncoderError(f"CTranslate2 variable {name!r}: unknown dtype id {dtype_id}")
    if dtype == "bfloat16":  # the top 16 bits of a float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape)


def read_ct2(parts: Sequence[str | os.PathLike], prefix: str = "encoder/") -> tuple[Ct2Header, dict[str, np.ndarray]]:
    """The variables of a CTranslate2 model whose names start with ``prefix``.

    Args:
        parts: ``[model.bin]`` or ``[model.bin.part1, model.bin.part2, ...]`` in order.
        prefix: which variables to read (the others are skipped, not read).

    Returns:
        The header and ``{name: array}`` with the stored dtypes (aliases resolved).

    Raises:
        EncoderError: unreadable, truncated, an unknown binary version or dtype.
    """
    with ChainedReader(parts) as reader:
        (version,) = _unpack(reader, "I")
        if version not in KNOWN_BINARY_VERSIONS:
            raise EncoderError(
                f"{reader.paths[0]}: CTranslate2 binary version {version}; this reader knows versions "
                f"{KNOWN_BINARY_VERSIONS.start}-{KNOWN_BINARY_VERSIONS.stop - 1} (is it a CTranslate2 model.bin?)"
            )
        header = Ct2Header(version, _string(reader), _unpack(reader, "I")[0])
        (count,) = _unpack(reader, "I")
        index: dict[str, tuple[int, tuple[int, ...], int, int]] = {}  # name -> (offset, shape, dtype, bytes)
        for _ in range(count):
            name = _string(reader)
            (rank,) = _unpack(reader, "B")
            shape = _unpack(reader, f"{rank}I") if rank else ()
            dtype_id, n_bytes = _unpack(reader, "BI")
            index[name] = (reader.tell(), tuple(shape), dtype_id, n_bytes)
            reader.seek(n_bytes, io.SEEK_CUR)  # data read later, only if wanted
        (n_aliases,) = _unpack(reader, "I")
        aliases = {}
        for _ in range(n_aliases):
            alias = _string(reader)
            aliases[alias] = _string(reader)
        wanted = [n for n in list(index) + list(aliases) if n.startswith(prefix)]
        out: dict[str, np.ndarray] = {}
        for name in wanted:
            target = aliases.get(name, name)
            if target not in index:
                raise EncoderError(f"CTranslate2 alias {name!r} points to missing variable {target!r}")
            offset, shape, dtype_id, n_bytes = index[target]
            reader.seek(offset)
            arr = _to_array(reader.read_exact(n_bytes), dtype_id, shape, target)
            if arr.nbytes != n_bytes:
                raise EncoderError(f"CTranslate2 variable {target!r}: {n_bytes} bytes for shape {shape}")
            out[name] = arr
    log.debug("read %d of %d CTranslate2 variables (%s rev %d)", len(out), count, header.spec, header.revision)
    return header, out


def _float32(variables: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """A variable as float32; int8/int16-quantized weights are divided by their ``*_scale``."""
    if name not in variables:
        raise EncoderError(f"CTranslate2 model: missing tensor {name!r}")
    arr = variables[name]
    if arr.dtype in (np.int8, np.int16):
        scale = variables.get(name + "_scale")
        if scale is None:
            raise EncoderError(f"CTranslate2 model: {name!r} is {arr.dtype} without {name}_scale")
        scale = scale.astype(np.float32)
        # int8: one scale per output row; int16: one global scale (CTranslate2's quantizer)
        return arr.astype(np.float32) / (scale[:, None] if scale.ndim == 1 else scale)
    return arr.astype(np.float32)


# module tensor -> CTranslate2 WhisperSpec variable (the fused q, k, v are split in code)
_CT2_ENCODER = {
    "conv1.weight": "encoder/conv1/weight", "conv1.bias": "encoder/conv1/bias",
    "conv2.weight": "encoder/conv2/weight", "conv2.bias": "encoder/conv2/bias",
    "positional_embedding": "encoder/position_encodings/encodings",
    "ln_post.weight": "encoder/layer_norm/gamma", "ln_post.bias": "encoder/layer_norm/beta",
}
_CT2_LAYER = {  # under blocks.{i}. and encoder/layer_{i}/
    "attn_ln.weight": "self_attention/layer_norm/gamma", "attn_ln.bias": "self_attention/layer_norm/beta",
    "attn.out.weight": "self_attention/linear_1/weight", "attn.out.bias": "self_attention/linear_1/bias",
    "mlp_ln.weight": "ffn/layer_norm/gamma", "mlp_ln.bias": "ffn/layer_norm/beta",
    "mlp.0.weight": "ffn/linear_0/weight", "mlp.0.bias": "ffn/linear_0/bias",
    "mlp.2.weight": "ffn/linear_1/weight", "mlp.2.bias": "ffn/linear_1/bias",
}


def ct2_model_parts(directory: str | os.PathLike) -> list[Path]:
    """``model.bin``, or ``model.bin.part1..N`` (numeric order), in a CTranslate2 directory."""
    directory = Path(directory)
    single = directory / "model.bin"
    if single.is_file():
        return [single]
    parts = sorted(directory.glob("model.bin.part*"), key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0))
    if not parts:
        raise EncoderError(f"{directory}: no model.bin or model.bin.part1 ... (not a CTranslate2 model directory)")
    return parts


def load_ctranslate2(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[WhisperDims, dict[str, "torch.Tensor"]]:
    """Encoder weights from a CTranslate2 (faster-whisper) Whisper model.

    Args:
        source: the model directory, or the ``model.bin`` part files in order (the parts
            may lie in different directories, as in the split packages).

    Returns:
        ``(dims, state_dict)``; dims are inferred from the tensor shapes.

    Raises:
        EncoderError: not a Whisper model, unreadable, or a tensor missing or misshapen.
    """
    import torch

    if isinstance(source, (str, os.PathLike)):
        parts = ct2_model_parts(source) if Path(source).is_dir() else [Path(source)]
    else:
        parts = [Path(p) for p in source]
    header, v = read_ct2(parts)
    label = str(parts[0].parent if len(parts) == 1 else ", ".join(map(str, parts)))
    if header.spec != "WhisperSpec":
        raise EncoderError(f"{label}: a CTranslate2 {header.spec!r} model, not a Whisper model")
    n_layer = len({m.group(1) for n in v if (m := re.match(r"encoder/layer_(\d+)/", n))})
    conv1 = _float32(v, "encoder/conv1/weight")
    pos = _float32(v, "encoder/position_encodings/encodings")
    n_state = conv1.shape[0]
    heads = v.get("encoder/num_heads")
    # every Whisper size uses 64-dimensional heads; older specs did not store num_heads
    n_head = int(heads) if heads is not None else n_state // 64
    dims = WhisperDims(int(conv1.shape[1]), int(pos.shape[0]), int(n_state), n_head, n_layer)
    state = {key: _float32(v, name) for key, name in _CT2_ENCODER.items()}
    for i in range(n_layer):
        src, dst = f"encoder/layer_{i}/", f"blocks.{i}."
        state.update({dst + key: _float32(v, src + name) for key, name in _CT2_LAYER.items()})
        # CTranslate2 fuses the q, k, v projections into linear_0, stacked in that order
        qkv_w = _float32(v, src + "self_attention/linear_0/weight")
        qkv_b = _float32(v, src + "self_attention/linear_0/bias")
        if qkv_w.shape != (3 * n_state, n_state) or qkv_b.shape != (3 * n_state,):
            raise EncoderError(f"{label}: {src}self_attention/linear_0 has shape {qkv_w.shape} (bias "
                               f"{qkv_b.shape}), expected ({3 * n_state}, {n_state}) (fused q, k, v)")
        q_w, k_w, v_w = np.split(qkv_w, 3)
        q_b, _k_b, v_b = np.split(qkv_b, 3)
        # the key bias (zeros from the converter) is dropped: it adds the same q.b_k to
        # every score of a query row, which softmax cancels, so Whisper has none
        state.update({dst + "attn.query.weight": q_w, dst + "attn.query.bias": q_b, dst + "attn.key.weight": k_w,
                      dst + "attn.value.weight": v_w, dst + "attn.value.bias": v_b})
    check_state_dict(dims, state, label)
    return dims, {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for k, a in state.items()}


# ---------------------------------------------------------------- openai-whisper .pt


def load_openai_checkpoint(path: str | os.PathLike) -> tuple[WhisperDims, dict[str, "torch.Tensor"]]:
    """Encoder weights from an openai-whisper checkpoint (``{"dims": ..., "model_state_dict": ...}``).

    Loaded with ``torch.load(weights_only=True)`` (no pickle code runs); float16 tensors
    become float32; the decoder's tensors are ignored.

    Raises:
        EncoderError: unreadable, not that layout, or a tensor missing or misshapen.
    """
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a bad file; all mean "not loadable"
        raise EncoderError(f"{path}: cannot load as a safe (weights_only) torch checkpoint: {e}") from e
    if not isinstance(ckpt, Mapping) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise EncoderError(f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict'; has {keys})")
    d = ckpt["dims"]
    try:
        dims = WhisperDims(int(d["n_mels"]), int(d["n_audio_ctx"]), int(d["n_audio_state"]),
                           int(d["n_audio_head"]), int(d["n_audio_layer"]))
    except KeyError as e:
        raise EncoderError(f"{path}: 'dims' lacks {e.args[0]!r}") from e
    state = {k[len("encoder."):]: t.float().contiguous()
             for k, t in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
    check_state_dict(dims, state, str(path))
    return dims, state


def load_weights(path: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[WhisperDims, dict[str, "torch.Tensor"]]:
    """Either format: a CTranslate2 directory / part list, or an openai-whisper ``.pt`` file."""
    if not isinstance(path, (str, os.PathLike)):
        return load_ctranslate2(path)
    p = Path(path)
    if p.is_dir() or p.name.startswith("model.bin"):
        return load_ctranslate2(p)
    if p.is_file():
        return load_openai_checkpoint(p)
    raise EncoderError(f"{p}: no such file or directory (expected a CTranslate2 model directory or a Whisper .pt file)")
