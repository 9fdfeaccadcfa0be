"""Benchmark: the HTTP service under load, under bad input, and over many requests.

Starts ``ser serve --model M`` on 127.0.0.1 (a subprocess, default limits), then:

1. throughput and latency: ``--requests`` POSTs of one clip (``--audio``, or a generated
   3 s speech-like WAV) from ``--concurrency`` threads (httpx, keep-alive): requests per
   second and p50/p95/p99 latency in ms;
2. the bad-input battery: each bad input (empty body, not audio, truncated, M4A, NaN
   samples, too short, too long, too large, bad parameters, ...) ``--bad-repeats`` times:
   counts of 2xx/4xx/5xx/no answer, and whether the server still answers afterwards;
3. memory: the server's resident set (VmRSS from /proc, summed over its worker processes)
   before and after ``--memory-requests`` more requests;
4. with ``--mixed-seconds S``: ``--mixed-clients`` clients (20) send a mix of good and bad
   requests for S seconds: counts by status (the target is no 5xx at all);
5. with ``--baseline-src DIR``: a second server runs from another source tree (e.g. the
   last commit, ``git archive HEAD src | tar -x -C /tmp/before``) and both are timed one
   request at a time, in alternating rounds, so "before" and "after" share the machine's
   state: p50 of each and their ratio;
6. with ``--against NAME=MODEL ...``: one server per other model (same tree, same
   ``--threads``), all timed one request at a time in alternating rounds with ``--model``
   (named ``--name``): p50/p95 of each and each p50 over ``--model``'s. This is how members
   of different cost are compared (e.g. three ResNets vs a Whisper member vs both).
   ``--latency-only`` skips steps 1-4.

Prints figures; asserts nothing about time. Needs an exported model: ``make demo`` then
``ser export --bundle runs/demo/ensemble/bundle --out runs/demo/model`` writes one; for the
HTTP machinery alone, a tiny model from ``tests/tiny_onnx.py`` will do.

Usage:
    python bench/serve.py --model runs/demo/model/model.int8.onnx
    python bench/serve.py --model M --requests 2000 --concurrency 16 --workers 2 --threads 1
    python bench/serve.py --model M --baseline-src /tmp/before --mixed-seconds 60
    python bench/serve.py --model resnets.int8.onnx --name resnets --threads 2 --latency-only \
        --against whisper=whisper.int8.onnx both=both.int8.onnx
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import soundfile as sf


# ------------------------------------------------------------------------- audio
def speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with vibrato, an on/off envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)) + 20 * t
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    y = 0.4 * y / np.abs(y).max() + 0.003 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def encode(y: np.ndarray, sr: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def bad_inputs(limits: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """httpx keyword arguments for each bad input, sized from the server's own limits."""
    clip = encode(speechlike(1.0))
    flac = encode(speechlike(1.0), fmt="FLAC")
    raw = {"headers": {"Content-Type": "application/octet-stream"}}
    long_s = limits["max_seconds"] * 1.1 + 10  # past the tolerance of the header check
    too_long = encode(np.zeros(int(long_s * 8000), np.float32), 8000, subtype="PCM_U8")  # header declares it
    big = bytes(limits["max_bytes"] + 1024)
    return {
        "empty body": {"content": b"", **raw},
        "missing file field": {"files": {"audio": ("a.wav", clip)}},
        "not audio": {"content": b"plain text, not audio\n" * 100, **raw},
        "truncated flac": {"content": flac[: len(flac) // 2], **raw},
        "m4a": {"content": b"\x00\x00\x00\x20ftypM4A " + bytes(4000), **raw},
        "midi": {"content": b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x60MTrk\x00\x00\x00\x00", **raw},
        "nan samples": {"content": encode(np.full(16000, np.nan, np.float32), subtype="FLOAT"), **raw},
        "too short": {"content": encode(speechlike(0.05)), **raw},
        "too long": {"content": too_long, **raw},
        "too large": {"content": big, **raw},
        "too large chunked": {"content": lambda: iter([big[:1 << 20]] * (len(big) // (1 << 20) + 1)), **raw},
        "bad window": {"content": clip, "params": {"segments": "true", "window": "-1"}},
    }


# ------------------------------------------------------------------------- server
def start_server(args: argparse.Namespace, log: Path, src: Path | None = None, model: Path | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """``ser serve`` in a subprocess (from the source tree ``src``, for ``model`` when given) -> (process, URL)."""
    import os
    import socket

    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(Path(src).resolve() / "src") + os.pathsep + env.get("PYTHONPATH", "")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "ser", "serve", "--model", str(model or args.model), "--port", str(port),
           "--workers", str(args.workers)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 180:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).json().get("status") == "ok":
                print(f"server up in {time.perf_counter() - t0:.1f} s: {' '.join(cmd[1:])}")
                return proc, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"server not up within 180 s:\n{log.read_text()}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (uvicorn workers), in MB."""
    def children(p: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo += children(p)
    return total / 1024


# ------------------------------------------------------------------------- load
def hammer(url: str, n: int, concurrency: int, request: Callable[[httpx.Client, int], httpx.Response]
           ) -> tuple[list[float], dict[str, int], float]:
    """``n`` requests from ``concurrency`` threads (one keep-alive client each): latencies (s),
    counts by outcome, wall time (s)."""
    local = threading.local()
    counts: dict[str, int] = {"2xx": 0, "4xx": 0, "5xx": 0, "no answer": 0}
    lock = threading.Lock()

    def one(i: int) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        t0 = time.perf_counter()
        try:
            status = request(local.client, i).status_code
            key = f"{status // 100}xx"
        except httpx.HTTPError:
            key = "no answer"
            local.client = httpx.Client(base_url=url, timeout=120)
        dt = time.perf_counter() - t0
        with lock:
            counts[key] = counts.get(key, 0) + 1
        return dt

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(n)))
    return latencies, counts, time.perf_counter() - t0


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def compare_latency(urls: dict[str, str], clip: bytes, rounds: int, per_round: int) -> dict[str, list[float]]:
    """One request at a time, ``per_round`` to each server in turn, ``rounds`` times: latencies (s) per name."""
    out: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.Client(base_url=u, timeout=60) for name, u in urls.items()}
    headers = {"Content-Type": "application/octet-stream"}
    try:
        for c in clients.values():  # warm connections and caches
            for _ in range(5):
                c.post("/predict", content=clip, headers=headers)
        for r in range(rounds):
            order = list(clients) if r % 2 == 0 else list(clients)[::-1]
            for name in order:
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    clients[name].post("/predict", content=clip, headers=headers).raise_for_status()
                    out[name].append(time.perf_counter() - t0)
    finally:
        for c in clients.values():
            c.close()
    return out


def mixed_load(url: str, seconds: float, clients: int, inputs: list[dict[str, Any]]) -> dict[str, int]:
    """``clients`` threads cycling through ``inputs`` (httpx keyword arguments) for ``seconds``: counts by status."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        k = i
        with httpx.Client(base_url=url, timeout=120) as c:
            while time.monotonic() < deadline:
                kw = {key: (v() if callable(v) else v) for key, v in inputs[k % len(inputs)].items()}
                try:
                    key = str(c.post("/predict", **kw).status_code)
                except httpx.HTTPError as e:
                    key = f"no answer ({type(e).__name__})"
                with lock:
                    counts[key] = counts.get(key, 0) + 1
                k += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(sorted(counts.items()))


def against_table(args: argparse.Namespace, others: dict[str, Path], url: str, clip: bytes, tmp: Path) -> None:
    """Time ``--model`` and every ``--against`` model one request at a time, in alternating rounds."""
    procs, urls = [], {args.name: url}
    try:
        for name, model in others.items():
            proc, other_url = start_server(args, tmp / f"{name}.log", model=model)
            procs.append(proc)
            urls[name] = other_url
        lat = compare_latency(urls, clip, args.rounds, args.per_round)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
    ref = percentile(lat[args.name], 50)
    print(f"\nlatency one at a time, {args.rounds} alternating rounds of {args.per_round}, "
          f"threads {args.threads or 'all cores'}:")
    print(f"  {'model':<16} {'p50 ms':>8} {'p95 ms':>8} {'p50 / ' + args.name:>16}")
    for name, xs in lat.items():
        p50 = percentile(xs, 50)
        print(f"  {name:<16} {p50:>8.1f} {percentile(xs, 95):>8.1f} {p50 / ref:>16.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help=".onnx file written by `ser export`")
    p.add_argument("--audio", type=Path, default=None, help="clip to send (default: a generated 3 s WAV)")
    p.add_argument("--requests", type=int, default=500, help="requests for the throughput figures")
    p.add_argument("--concurrency", type=int, default=8, help="client threads")
    p.add_argument("--bad-repeats", type=int, default=20, help="times each bad input is sent")
    p.add_argument("--memory-requests", type=int, default=2000, help="requests between the two RSS readings")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (passed to ser serve)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per worker (passed through)")
    p.add_argument("--mixed-seconds", type=float, default=0.0, help="seconds of mixed good and bad load (0: none)")
    p.add_argument("--mixed-clients", type=int, default=20, help="clients of the mixed load")
    p.add_argument("--baseline-src", type=Path, default=None,
                   help="another source tree (with src/ser) to time against this one, e.g. the last commit")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds of the baseline comparison")
    p.add_argument("--per-round", type=int, default=30, help="requests per server per round")
    p.add_argument("--name", default="model", help="the name of --model in the --against table")
    p.add_argument("--against", nargs="+", default=[], metavar="NAME=MODEL",
                   help="other exported models to time one request at a time against --model")
    p.add_argument("--latency-only", action="store_true", help="skip throughput, bad input, memory and mixed load")
    args = p.parse_args(argv)
    others = {}
    for item in args.against:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            sys.exit(f"bench/serve.py: error: --against {item!r}: expected NAME=MODEL with an existing model file")
        others[name] = Path(path)
    if not args.model.is_file():
        sys.exit(f"bench/serve.py: error: {args.model}: no such file; export one (`ser export`) or build a tiny "
                 "one with tests/tiny_onnx.py")

    clip = args.audio.read_bytes() if args.audio else encode(speechlike(3.0))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        proc, url = start_server(args, log)
        try:
            health = httpx.get(url + "/health").json()
            print(f"model {health['model']} ({health['labels']} labels), clip {len(clip)} bytes, "
                  f"{args.workers} worker(s), threads {args.threads or 'all cores'}")

            def post_clip(c: httpx.Client, i: int) -> httpx.Response:
                return c.post("/predict", content=clip, headers={"Content-Type": "application/octet-stream"})

            if not args.latency_only:
                hammer(url, 2 * args.concurrency, args.concurrency, post_clip)  # warm the connections and threads
                lat, counts, wall = hammer(url, args.requests, args.concurrency, post_clip)
                print(f"\nthroughput: {args.requests} requests at concurrency {args.concurrency} in {wall:.2f} s: "
                      f"{args.requests / wall:.1f} req/s")
                print(f"latency ms: p50 {percentile(lat, 50):.1f}  p95 {percentile(lat, 95):.1f}  "
                      f"p99 {percentile(lat, 99):.1f}  max {max(lat) * 1000:.1f}   outcomes {counts}")

                print(f"\nbad-input battery ({args.bad_repeats} each, concurrency {min(args.concurrency, 4)}):")
                print(f"  {'input':<20} {'2xx':>5} {'4xx':>5} {'5xx':>5} {'no answer':>10}  ms p50")
                for name, kw in bad_inputs(health["limits"]).items():
                    def post_bad(c: httpx.Client, i: int, kw: dict = kw) -> httpx.Response:
                        kw = {k: (v() if callable(v) else v) for k, v in kw.items()}
                        return c.post("/predict", **kw)

                    lat, counts, _ = hammer(url, args.bad_repeats, min(args.concurrency, 4), post_bad)
                    print(f"  {name:<20} {counts['2xx']:>5} {counts['4xx']:>5} {counts['5xx']:>5} "
                          f"{counts['no answer']:>10}  {percentile(lat, 50):.1f}")
                alive = proc.poll() is None and post_clip(httpx.Client(base_url=url), 0).status_code == 200
                print(f"  server alive and answering after the battery: {alive}")

                before = rss_mb(proc.pid)
                _, counts, wall = hammer(url, args.memory_requests, args.concurrency, post_clip)
                after = rss_mb(proc.pid)
                print(f"\nmemory (VmRSS, server and workers): {before:.1f} MB before, {after:.1f} MB after "
                      f"{args.memory_requests} more requests ({after - before:+.1f} MB; {wall:.1f} s; {counts})")

                if args.mixed_seconds > 0:
                    inputs = [{"content": clip, "headers": {"Content-Type": "application/octet-stream"}}] * 4
                    inputs += list(bad_inputs(health["limits"]).values())
                    counts = mixed_load(url, args.mixed_seconds, args.mixed_clients, inputs)
                    n5 = sum(v for k, v in counts.items() if k.startswith("5"))
                    print(f"\nmixed load: {args.mixed_clients} clients for {args.mixed_seconds:g} s, good and bad "
                          f"requests: {counts}; answers >= 500: {n5}")

            if args.baseline_src is not None:
                base_log = Path(tmp) / "baseline.log"
                base, base_url = start_server(args, base_log, args.baseline_src)
                try:
                    lat = compare_latency({"baseline": base_url, "this tree": url}, clip, args.rounds,
                                          args.per_round)
                finally:
                    base.terminate()
                    base.wait(timeout=15)
                p50 = {name: percentile(xs, 50) for name, xs in lat.items()}
                print(f"\nlatency one at a time, {args.rounds} alternating rounds of {args.per_round}: "
                      + ", ".join(f"{name} p50 {v:.1f} ms (p95 {percentile(lat[name], 95):.1f})"
                                  for name, v in p50.items())
                      + f"; this tree / baseline = {p50['this tree'] / p50['baseline']:.3f}")

            if others:
                against_table(args, others, url, clip, Path(tmp))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            errors = [line for line in log.read_text().splitlines() if "Traceback" in line or " 500 " in line]
            print(f"\nserver log: {len(errors)} tracebacks or 500 answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
