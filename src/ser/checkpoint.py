"""Checkpoints: weights as a plain state_dict, everything else as JSON beside it.

``model.pt`` holds tensors only and is loaded with ``torch.load(weights_only=True)``, so
a checkpoint from elsewhere cannot run code; ``model.json`` holds labels, feature
config, normalisation, split speakers and metrics. Both are written atomically (temp
file + rename), the JSON last, so a killed run never leaves a pair that looks good.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SerError
from .fileio import atomic_write_bytes, to_json
from .models import build_model


class CheckpointError(SerError, ValueError):
    """A checkpoint that is missing, incomplete or not one of ours."""


def _save_torch(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(out_dir: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model.pt`` (state_dict) and ``model.json`` (``meta``) into ``out_dir``."""
    out = Path(out_dir)
    _save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "model.pt")
    atomic_write_bytes(out / "model.json", to_json(meta).encode())
    return out / "model.pt"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model saved by ``save_checkpoint`` (``path`` = the ``.pt`` file or its folder).

    Returns:
        ``(model in eval mode, meta)``.
    """
    p = Path(path)
    pt = p / "model.pt" if p.is_dir() else p
    js = pt.with_suffix(".json")
    if not pt.is_file():
        raise CheckpointError(f"{pt}: no such checkpoint (expected model.pt written by `ser train`)")
    if not js.is_file():
        raise CheckpointError(f"{js}: missing; a checkpoint is model.pt plus its model.json")
    try:
        meta = json.loads(js.read_text())
        model = build_model(meta["model"], meta["labels"], meta["height"], dropout=meta.get("dropout", 0.0))
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{js}: not a ser checkpoint description ({e})") from e
    try:
        state = torch.load(pt, map_location=device, weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises several types for a bad file
        raise CheckpointError(f"{pt}: cannot load weights ({e})") from e
    return model.to(device).eval(), meta


def save_resume_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                      progress: dict[str, Any]) -> None:
    """Everything needed to continue training exactly where it stopped."""
    _save_torch({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "progress": progress}, Path(path))


def load_resume_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any) -> dict:
    """Restore model, optimiser and schedule from ``save_resume_state``; returns the progress dict."""
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    return state["progress"]
