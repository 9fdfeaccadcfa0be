"""The HTTP service against a real server process (``ser serve`` on 127.0.0.1).

One server per module serves a tiny ONNX model (tests/tiny_onnx.py) with small limits
(1 MB uploads, 20 s audio) so the limit tests send little. Every bad input must get its
4xx JSON error and leave the server answering the next good request. A few finer checks
use the app in-process (fastapi's TestClient).
"""
from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from tiny_onnx import LABELS, make_tiny_model

# starlette 1.10 warns that its TestClient wants httpx2; the in-process tests use it all the same
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with:UserWarning")

MAX_BYTES = 1024 * 1024  # the server's --max-mb 1
MAX_SECONDS = 20.0  # the server's --max-seconds
GOOD_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode(y: np.ndarray, sr: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def start_server(model: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "ser", "serve", "--model", str(model), "--port", str(port),
           "--max-mb", "1", "--max-seconds", str(MAX_SECONDS), *extra]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).json().get("status") == "ok":
                return proc, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    stop_server(proc)
    pytest.fail(f"server not up within 90 s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def model_path(workdir) -> Path:
    return make_tiny_model(workdir / "tiny.onnx")


@pytest.fixture(scope="module")
def service(model_path, workdir):
    """(base URL, log file) of a running `ser serve`; stopped at the end of the module."""
    log = workdir / "server.log"
    proc, url = start_server(model_path, log)
    yield url, log
    stop_server(proc)
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def url(service) -> str:
    return service[0]


@pytest.fixture(scope="module")
def good_wav() -> bytes:
    return encode(tone(GOOD_SECONDS))


def check_answer(answer: dict, duration: float, tol: float = 0.01) -> None:
    probs = answer["probabilities"]
    assert list(probs) == LABELS
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert answer["emotion"] == max(probs, key=probs.get)
    assert answer["model"] == "tiny"
    assert answer["duration_s"] == pytest.approx(duration, abs=tol)


def assert_alive(url: str, good_wav: bytes) -> None:
    r = httpx.post(url + "/predict", content=good_wav, timeout=30)
    assert r.status_code == 200, r.text
    check_answer(r.json(), GOOD_SECONDS)


# ----------------------------------------------------------------------------- happy paths
def test_health_and_labels(url):
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny" and health["labels"] == len(LABELS)
    assert health["limits"]["max_bytes"] == MAX_BYTES and health["limits"]["max_seconds"] == MAX_SECONDS
    info = httpx.get(url + "/labels").json()
    assert info["labels"] == LABELS and info["model"] == "tiny"
    meta = info["metadata"]
    assert meta["sample_rate"] == 16000 and meta["clip_seconds"] == 3.0 and meta["precision"] == "fp32"
    assert [m["feature"] for m in meta["members"]] == ["mel", "rms"]


@pytest.mark.parametrize("how", ["multipart", "raw"])
@pytest.mark.parametrize("fmt,sr,channels", [("WAV", 16000, 1), ("FLAC", 16000, 1), ("OGG", 16000, 1),
                                             ("MP3", 16000, 1), ("WAV", 44100, 2), ("FLAC", 44100, 2),
                                             ("OGG", 48000, 4), ("MP3", 44100, 2)])
def test_predict_formats(url, fmt, sr, channels, how):
    data = encode(tone(GOOD_SECONDS, sr=sr, channels=channels), sr, fmt)
    if how == "multipart":
        r = httpx.post(url + "/predict", files={"file": (f"clip.{fmt.lower()}", data)})
    else:
        r = httpx.post(url + "/predict", content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    check_answer(r.json(), GOOD_SECONDS, tol=0.1 if fmt == "MP3" else 0.01)  # MP3 pads its frames
    assert "windows" not in r.json()


def test_concurrent_requests_and_health(url, good_wav):
    def post(_):
        return httpx.post(url + "/predict", content=good_wav, timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(16)))
        assert httpx.get(url + "/health", timeout=10).status_code == 200
    assert codes == [200] * 16


# ----------------------------------------------------------------------------- timeline
@pytest.fixture(scope="module")
def silent_middle() -> bytes:
    """3 s tone, 6 s digital silence, 3 s tone (12 s)."""
    y = np.concatenate([tone(3.0), np.zeros(6 * 16000, np.float32), tone(3.0, freq=330.0)])
    return encode(y)


def test_timeline_covers_audio_and_skips_silence(url, silent_middle):
    r = httpx.post(url + "/predict?segments=true", content=silent_middle)
    assert r.status_code == 200, r.text
    tl = r.json()
    check_answer(tl, 12.0)
    assert tl["window_s"] == 3.0 and tl["hop_s"] == 1.5
    segs = tl["segments"]
    assert tl["silent_windows"] >= 1 and len(segs) + tl["silent_windows"] == 7  # starts 0, 1.5, ..., 9
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] == tl["duration_s"]
    starts = [s["start"] for s in segs]
    assert starts == sorted(starts) and all(s["end"] > s["start"] for s in segs)
    assert not any(3.0 <= s["start"] and s["end"] <= 9.0 for s in segs)  # windows inside the silence
    for s in segs:
        assert list(s["probabilities"]) == LABELS
        assert sum(s["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # /timeline is the same answer; window and hop pass through
    assert httpx.post(url + "/timeline", content=silent_middle).json() == tl
    custom = httpx.post(url + "/timeline?window=2&hop=1", files={"file": ("c.wav", silent_middle)}).json()
    assert custom["window_s"] == 2.0 and custom["hop_s"] == 1.0
    assert custom["segments"][-1]["end"] == custom["duration_s"]


def test_long_audio_predict_averages_windows(url, silent_middle):
    answer = httpx.post(url + "/predict", content=silent_middle).json()
    check_answer(answer, 12.0)
    assert answer["windows"] >= 1 and "segments" not in answer


# ----------------------------------------------------------------------------- bad input
def _multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "x7Boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="a.wav"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + v + b"\r\n" for k, v in fields.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _bad_inputs() -> dict[str, tuple[dict, int, str]]:
    wav = encode(tone(GOOD_SECONDS))
    flac = encode(tone(GOOD_SECONDS), fmt="FLAC")
    ogg = bytearray(encode(tone(GOOD_SECONDS), fmt="OGG"))
    ogg[200:] = np.random.default_rng(0).integers(0, 256, len(ogg) - 200, dtype=np.uint8).tobytes()
    missing_body, missing_type = _multipart({"audio": wav})
    cut_body, cut_type = _multipart({"file": wav})
    nan = encode(np.full(16000, np.nan, np.float32), subtype="FLOAT")
    m4a = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isommp42" + bytes(2000)
    midi = b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
    too_long = encode(tone(MAX_SECONDS + 5, sr=8000), 8000, subtype="PCM_16")  # 25 s in 400 kB
    assert len(too_long) < MAX_BYTES
    ten_s = encode(tone(10.0, sr=8000), 8000, subtype="PCM_16")
    raw = {"headers": {"Content-Type": "application/octet-stream"}}
    return {
        "empty body": ({"content": b"", **raw}, 400, "empty_body"),
        "empty file part": ({"files": {"file": ("a.wav", b"")}}, 400, "empty_body"),
        "missing file field": ({"content": missing_body, "headers": {"Content-Type": missing_type}}, 400,
                               "missing_file"),
        "multipart without boundary": ({"content": wav, "headers": {"Content-Type": "multipart/form-data"}}, 400,
                                       "bad_multipart"),
        "malformed multipart": ({"content": wav, "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
                                400, "bad_multipart"),
        "multipart cut short": ({"content": cut_body[:-40], "headers": {"Content-Type": cut_type}}, 400,
                                "bad_multipart"),
        "not audio": ({"content": b"hello, this is not audio\n" * 200, **raw}, 422, "bad_audio"),
        "truncated wav header": ({"content": wav[:30], **raw}, 422, "bad_audio"),
        "truncated flac": ({"files": {"file": ("a.flac", flac[: len(flac) // 2])}}, 422, "bad_audio"),
        "corrupt ogg": ({"content": bytes(ogg), **raw}, 422, "bad_audio"),
        "nan samples": ({"content": nan, **raw}, 422, "bad_audio"),
        "m4a": ({"files": {"file": ("a.m4a", m4a)}}, 415, "unsupported_format"),
        "midi": ({"content": midi, **raw}, 415, "unsupported_format"),
        "too short": ({"content": encode(tone(0.1)), **raw}, 422, "too_short"),
        "too long": ({"content": too_long, **raw}, 422, "too_long"),
        "too large raw": ({"content": bytes(MAX_BYTES + 1000), **raw}, 413, "too_large"),
        "too large file part": ({"files": {"file": ("a.wav", bytes(MAX_BYTES + 10_000))}}, 413, "too_large"),
        "too large chunked": ({"content": iter([bytes(256 * 1024)] * 5), **raw}, 413, "too_large"),
        "negative window": ({"content": wav, "params": {"segments": "true", "window": "-1"}}, 422,
                            "bad_parameter"),
        "window not a number": ({"content": wav, "params": {"segments": "true", "window": "abc"}}, 422,
                                "bad_parameter"),
        "segments not a bool": ({"content": wav, "params": {"segments": "maybe"}}, 422, "bad_parameter"),
        "too many windows": ({"content": ten_s, "params": {"segments": "true", "hop": "0.001"}}, 422,
                             "bad_parameter"),
    }


BAD_INPUTS = _bad_inputs()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_4xx_json_and_server_survives(url, good_wav, case):
    kwargs, status, code = BAD_INPUTS[case]
    try:
        r = httpx.post(url + "/predict", timeout=30, **kwargs)
    except httpx.HTTPError as e:  # a server that refuses mid-upload may close before the client has sent all
        pytest.fail(f"no HTTP answer for {case}: {type(e).__name__}: {e}")
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code and body["detail"]
    assert "Traceback" not in body["detail"] and "BytesIO" not in body["detail"]
    assert_alive(url, good_wav)


@pytest.mark.parametrize("method,path,status,code", [("GET", "/predict", 405, "method_not_allowed"),
                                                     ("GET", "/nowhere", 404, "not_found")])
def test_routing_errors_are_json(url, method, path, status, code):
    r = httpx.request(method, url + path)
    assert r.status_code == status and r.json()["error"] == code


def test_long_silent_flac_refused_from_its_header(url, good_wav):
    # an hour of digital silence is ~170 kB of FLAC but 230 MB of float32: never decode it
    bomb = encode(np.zeros(3600 * 16000, np.int16), fmt="FLAC", subtype="PCM_16")
    assert len(bomb) < MAX_BYTES
    r = httpx.post(url + "/predict", content=bomb)
    assert r.status_code == 422 and r.json()["error"] == "too_long" and "declares" in r.json()["detail"]
    # a FLAC header saying "length unknown" (0 samples) is refused, not decoded into an endless buffer
    unknown = bytearray(encode(np.zeros(60 * 16000, np.int16), fmt="FLAC", subtype="PCM_16"))
    bits = int.from_bytes(unknown[18:26], "big") & ~((1 << 36) - 1)  # STREAMINFO total samples := 0
    unknown[18:26] = bits.to_bytes(8, "big")
    r = httpx.post(url + "/predict", content=bytes(unknown))
    assert 400 <= r.status_code < 500 and set(r.json()) == {"error", "detail"}
    assert_alive(url, good_wav)


def _raw_exchange(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a hand-made request (no terminating chunk) and read what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(head)
        for chunk in body_chunks:
            s.sendall(chunk)
        got = b""
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            part = s.recv(65536)
            if not part:
                break
            got += part
    return got


def test_content_length_over_limit_refused_before_the_body(url, good_wav):
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            b"Content-Length: 500000000\r\n\r\n")
    t0 = time.monotonic()
    got = _raw_exchange(url, head, [])  # not one byte of the body is sent
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    assert b'"too_large"' in got and time.monotonic() - t0 < 10
    assert_alive(url, good_wav)


def test_chunked_body_refused_once_past_the_limit(url, good_wav):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n"
    size = 64 * 1024
    chunk = f"{size:x}\r\n".encode() + bytes(size) + b"\r\n"
    # just past the limit, and the body never ends: only a streaming check can answer
    got = _raw_exchange(url, head, [chunk] * (MAX_BYTES // size + 1))
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    assert b'"too_large"' in got
    assert_alive(url, good_wav)


# ----------------------------------------------------------------------------- schema, imports, client
def test_answers_match_the_openapi_document(url, good_wav, silent_middle):
    doc = httpx.get(url + "/openapi.json").json()
    assert {"/predict", "/timeline", "/health", "/labels"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "application/octet-stream" in body
    refs = json.dumps(doc["paths"]["/predict"]["post"]["responses"]["200"])
    assert "#/components/schemas/Prediction" in refs and "#/components/schemas/Timeline" in refs

    def conforms(answer: dict, name: str) -> None:
        schema = schemas[name]
        assert set(answer) <= set(schema["properties"]), (name, set(answer) - set(schema["properties"]))
        assert set(schema.get("required", [])) <= set(answer), name

    conforms(httpx.post(url + "/predict", content=good_wav).json(), "Prediction")
    conforms(httpx.post(url + "/predict", content=silent_middle).json(), "Prediction")  # with "windows"
    tl = httpx.post(url + "/timeline", content=silent_middle).json()
    conforms(tl, "Timeline")
    conforms(tl["segments"][0], "Segment")
    conforms(httpx.post(url + "/predict", content=b"").json(), "ErrorBody")
    silence = httpx.post(url + "/predict", content=encode(np.zeros(48000, np.float32))).json()
    assert silence["emotion"] is None and "probabilities" not in silence  # no speech: null, documented
    conforms(silence, "Prediction")
    assert {"type": "null"} in schemas["Prediction"]["properties"]["emotion"]["anyOf"]
    conforms(httpx.get(url + "/health").json(), "Health")
    conforms(httpx.get(url + "/labels").json(), "LabelsInfo")
    assert 400 in {int(s) for s in doc["paths"]["/predict"]["post"]["responses"]}
    assert httpx.get(url + "/docs").status_code == 200


def test_service_imports_no_torch(model_path, workdir, good_wav):
    wav = workdir / "notorch.wav"
    wav.write_bytes(good_wav)
    code = f"""
import sys
from ser.serve import Limits
assert "fastapi" not in sys.modules, "from ser.serve import Limits should stay light"
from ser.serve import create_app
from ser.serve.client import post_audio
from fastapi.testclient import TestClient
with TestClient(create_app({str(model_path)!r}, Limits(max_seconds=30))) as client:
    r = client.post("/predict", files={{"file": open({str(wav)!r}, "rb")}})
    assert r.status_code == 200, r.text
    assert client.get("/labels").status_code == 200
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _ser(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ser", *args], capture_output=True, text=True, timeout=timeout)


def test_client_prints_json_per_file(url, workdir, good_wav):
    a, b = workdir / "a.wav", workdir / "b.flac"
    a.write_bytes(good_wav)
    b.write_bytes(encode(tone(GOOD_SECONDS, sr=44100, channels=2), 44100, "FLAC"))
    out = _ser("client", str(a), str(b), "--url", url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [x["file"] for x in lines] == [str(a), str(b)]
    for x in lines:
        check_answer(x, GOOD_SECONDS)
    out = _ser("client", str(a), "--timeline", "--url", url + "/predict")
    assert out.returncode == 0 and "segments" in json.loads(out.stdout)


def test_client_reports_refused_files_and_goes_on(url, workdir, good_wav):
    a, bad = workdir / "ok.wav", workdir / "bad.wav"
    a.write_bytes(good_wav)
    bad.write_bytes(b"not audio at all" * 10)
    out = _ser("client", str(bad), str(a), "--url", url)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(f"ser: error: {bad}: HTTP 422")
    assert "bad_audio" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(out.stdout)["file"] == str(a)


def test_client_unreachable_server_is_one_line(workdir, good_wav):
    a = workdir / "c.wav"
    a.write_bytes(good_wav)
    out = _ser("client", str(a), str(a), "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "5")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("ser: error: ")
    assert "cannot connect" in out.stderr and "Traceback" not in out.stderr


def test_serve_bad_model_fails_cleanly(workdir):
    no_meta = make_tiny_model(workdir / "nometa.onnx", metadata={})
    for model in (workdir / "missing.onnx", no_meta):
        out = _ser("serve", "--model", str(model), "--port", str(free_port()))
        assert out.returncode == 2 and "ser: error:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_several_workers(model_path, workdir, good_wav):
    proc, url = start_server(model_path, workdir / "workers.log", "--workers", "2", "--threads", "1")
    try:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: httpx.post(url + "/predict", content=good_wav, timeout=60).status_code,
                                  range(8)))
        assert codes == [200] * 8
        r = httpx.post(url + "/predict", content=encode(tone(0.1)))
        assert r.status_code == 422 and r.json()["error"] == "too_short"  # limits reach the workers
    finally:
        stop_server(proc)


# ----------------------------------------------------------------------------- in-process details
def test_unexpected_exception_is_a_logged_500_json(model_path, good_wav, caplog):
    from fastapi.testclient import TestClient

    from ser.serve import create_app

    app = create_app(model_path)
    model = app.state.service.model
    real = model.predict
    with TestClient(app) as client:
        model.predict = lambda *a, **k: 1 / 0
        r = client.post("/predict", content=good_wav)
        assert r.status_code == 500 and r.json()["error"] == "internal_error"
        assert "ZeroDivisionError" in caplog.text
        model.predict = real
        assert client.post("/predict", content=good_wav).status_code == 200


def test_limits_validate_and_travel_through_the_environment():
    from ser.serve import Limits

    limits = Limits(max_bytes=1234, max_seconds=12.5, min_seconds=0.5, max_windows=7)
    assert Limits.from_env(limits.to_env()) == limits
    assert Limits.from_env({}) == Limits()
    for bad in ({"max_bytes": 0}, {"min_seconds": 5, "max_seconds": 1}, {"max_windows": 0}):
        with pytest.raises(ValueError):
            Limits(**bad)
