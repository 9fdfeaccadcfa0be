"""Benchmark: memory and time under hostile uploads, this source tree against another.

1. memory: a fresh ``ser serve`` per case receives the 8-channel, 96 kHz, 600 s FLAC of
   silence (~0.5 MB) and a FLAC whose header says "length unknown" (300 s); printed: the
   server's idle RSS, its peak (VmHWM) after answering, the time and the answer. Then
   ``ser predict`` on the bomb: its peak RSS (from wait4).
2. time (this tree, default settings): how long the server holds a connection that sends
   nothing, one whose headers never end, and one whose body stalls.

With ``--baseline-src DIR`` (a tree with ``src/ser``, e.g. ``git archive HEAD src | tar -x
-C /tmp/before``) the memory cases also run on it. Loopback only; every wait is bounded.

Usage:
    python bench/hostile.py --model M [--baseline-src /tmp/before]
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf


def peak_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def env_for(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve() / "src")
    return env


def start(model: Path, log: Path, src: Path | None) -> tuple[subprocess.Popen, str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ser", "serve", "--model", str(model), "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env_for(src))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).json().get("status") == "ok":
                return proc, url, port
        except (httpx.HTTPError, ValueError):
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"server not up:\n{log.read_text()}")


def bomb(path: Path) -> Path:
    with sf.SoundFile(str(path), "w", 96000, 8, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((96000 * 20, 8), np.int16)
        for _ in range(30):
            f.write(block)
    return path


def unknown_length(seconds: float, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), np.int16), sr, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    bits = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)  # STREAMINFO total samples := 0
    data[18:26] = bits.to_bytes(8, "big")
    return bytes(data)


def held_for(port: int, payload: bytes, limit: float = 60.0) -> tuple[float, bytes]:
    """Seconds until the server closes a connection that sent ``payload`` and then nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        if payload:
            s.sendall(payload)
        t0, got = time.monotonic(), b""
        try:
            while part := s.recv(65536):
                got += part
        except OSError:
            pass
    return time.monotonic() - t0, got[:12]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help=".onnx file (tests/tiny_onnx.py makes a tiny one)")
    p.add_argument("--baseline-src", type=Path, default=None, help="another source tree to measure as well")
    args = p.parse_args(argv)
    trees = ([("baseline", args.baseline_src)] if args.baseline_src else []) + [("this tree", None)]
    with tempfile.TemporaryDirectory() as tmp:
        big = bomb(Path(tmp) / "bomb.flac")
        cases = {f"8 ch 96 kHz 600 s FLAC ({big.stat().st_size // 1000} kB)": big.read_bytes(),
                 "FLAC 'length unknown' 300 s": unknown_length(300.0)}
        print("memory: a fresh server per case")
        for tree, src in trees:
            for name, data in cases.items():
                proc, url, _ = start(args.model, Path(tmp) / "server.log", src)
                idle = peak_mb(proc.pid, "VmRSS")
                t0 = time.perf_counter()
                try:
                    r = httpx.post(url + "/predict", content=data, timeout=300)
                    answer = f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as e:
                    answer = f"no answer ({type(e).__name__})"
                print(f"  {tree:<10} {name:<32} idle {idle:5.0f} MB  peak {peak_mb(proc.pid):5.0f} MB  "
                      f"{time.perf_counter() - t0:5.1f} s  {answer}", flush=True)
                proc.terminate()
                proc.wait(timeout=30)
            t0 = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-m", "ser", "predict", "--model", str(args.model), str(big)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(src))
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            print(f"  {tree:<10} ser predict on the bomb: exit {child.returncode}, peak RSS "
                  f"{usage.ru_maxrss / 1024:.0f} MB, {time.perf_counter() - t0:.1f} s", flush=True)
        proc, url, port = start(args.model, Path(tmp) / "server.log", None)
        try:
            print("time (this tree, default timeouts): connection held for")
            for name, payload in (("nothing sent", b""),
                                  ("headers never finished", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
                                  ("body stalled at 1000 of 100000 bytes",
                                   b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
                                   + bytes(1000))):
                took, said = held_for(port, payload)
                print(f"  {name:<38} {took:5.1f} s, then {said!r}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
