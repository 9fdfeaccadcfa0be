"""Shared file plumbing: atomic writes of bytes, JSON and figures.

Every artifact of the package (cache entries and packs, checkpoints, JSON reports,
figures, ONNX models, corpus files) is written through :func:`atomic_writer`: a temp
file in the target's folder, then ``os.replace``, so a killed run never leaves a
half-written file that a later run reads as good. Files get the usual permissions
(``0o666`` less the process umask), not ``mkstemp``'s private ``0o600``.

This module imports only the standard library and numpy: anything may use it, and
it pulls in nothing heavy (no torch, no pandas).

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from ser.fileio import write_json_atomic
    >>> d = Path(tempfile.mkdtemp())
    >>> write_json_atomic(d / "out.json", {"uar": 0.5})
    >>> json.loads((d / "out.json").read_text())
    {'uar': 0.5}
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file in this process


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` only when the block ends cleanly.

    The folder is created; on any exception the temp file is removed and ``path`` keeps
    its old content (or stays absent).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # absent on Windows
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename)."""
    with atomic_writer(path) as f:
        f.write(data)


def json_default(o: Any) -> Any:
    """JSON encoder fallback: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def to_json(obj: Any) -> str:
    """``obj`` as the package's JSON text: indented, numpy values converted."""
    return json.dumps(obj, indent=1, default=json_default)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (numpy values converted)."""
    atomic_write_bytes(path, to_json(obj).encode())


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Render a matplotlib ``fig`` as PNG (Agg, via ``savefig``) and write it atomically."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    log.info("wrote %s", path)
    return path
