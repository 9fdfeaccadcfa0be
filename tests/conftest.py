"""Shared test fixtures: tiny audio written on the fly, and the optional real corpora."""
from __future__ import annotations

import http.server
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tone(seconds: float = 0.5, sr: int = 16000, freq: float = 220.0, amp: float = 0.3,
         channels: int = 1) -> np.ndarray:
    """A harmonic tone (float32), shape (n,) or (n, channels)."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 5)).astype(np.float32)
    return y if channels == 1 else np.stack([y * (c + 1) / channels for c in range(channels)], axis=1)


def write_clip(path: Path, seconds: float = 0.5, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sr, **kw), sr)
    return path


@pytest.fixture
def shared_data() -> Path:
    """The real corpora folder; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.root``; honours Range unless ``server.ignore_range``; can drop a connection."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        path = srv.root / self.path.lstrip("/").split("?")[0]
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        start = 0
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if m and not srv.ignore_range and int(m.group(1)) < len(body):
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.cut_after is not None and srv.cuts_left > 0:
            srv.cuts_left -= 1
            self.wfile.write(payload[:srv.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A threaded HTTP server on 127.0.0.1 serving ``server.root`` (Range, faults, request log)."""
    from ser.corpora import download as dl

    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.0)
    root = tmp_path / "www"
    root.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.root, srv.requests, srv.ignore_range, srv.cut_after, srv.cuts_left = root, [], False, None, 0
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ------------------------------------------------------------------ a tiny real study and its ensemble

@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """A tiny real study: one epoch of rms, zcr and chroma on 1 s synthetic clips (shared by the
    ensemble and export tests)."""
    from ser.audio import ClipConfig
    from ser.augment import AugmentConfig
    from ser.study import run_study
    from ser.corpora import generate_synthetic, load_manifest
    from ser.train import TrainConfig

    root = tmp_path_factory.mktemp("ens")
    data = generate_synthetic(root / "syn", speakers=6, per_emotion=1, progress=False)
    cfg = TrainConfig(epochs=1, patience=1, clip=ClipConfig(seconds=1.0),
                      augment=AugmentConfig(enabled=False), n_boot=20)  # < 60 s
    run_study(load_manifest("synthetic", data), "rms,zcr,chroma", cfg, root / "study", val=0.2, test=0.2,
            cache_dir=root / "fc", tracking=False, progress=False, baseline=False)
    return root


@pytest.fixture(scope="session")
def ens(study):
    from ser.ensemble import fit_ensemble

    return fit_ensemble(study / "study", study / "ens", top=3, trials=12, seed=0, tracking=False, progress=False,
                    n_boot=20)
