"""`imgclf serve` under pressure (issue 19, item 4): memory, fairness, timeouts, allowed hosts.

A stand-in model (no TensorFlow) keeps these fast; the real server runs on a
free loopback port in a thread.
"""

import asyncio
import io
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi")
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from imgclf.data.decode import decode_image  # noqa: E402
from imgclf.inference.backends.base import Backend  # noqa: E402
from imgclf.inference.predictor import Predictor  # noqa: E402
from imgclf.serve import allowed_host_names  # noqa: E402
from imgclf.serve.app import create_app  # noqa: E402
from imgclf.serve.gate import DecodeGate  # noqa: E402
from imgclf.serve.protocol import timed_protocol  # noqa: E402
from imgclf.serve.uploads import decode_upload, open_upload, reduced  # noqa: E402


class Brightness(Backend):
    """Two classes, 'dark' and 'bright', from the mean pixel; `delay` seconds per model call."""

    name, source, input_shape, has_embedding = "fake", "", (28, 28, 3), False

    def __init__(self, delay=0.0):
        self.delay = delay

    def predict(self, x):
        time.sleep(self.delay)
        m = x.mean(axis=(1, 2, 3)) / 255.0
        return np.stack([1 - m, m], axis=1).astype(np.float32)

    def embed(self, x):
        raise NotImplementedError


def predictor(delay=0.0):
    return Predictor(Brightness(delay), ["dark", "bright"], {"img_size": 28, "color_mode": "rgb", "resize": "squash"},
                     source="/srv/secret/place/model.tflite", tta="none")


def encode(img, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w, h, mode="RGBA"):
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx // 3) % 256, (yy // 3) % 256, ((xx + yy) // 7) % 256, xx * 255 // w], -1).astype(np.uint8)
    return Image.fromarray(arr, "RGBA").convert(mode)


# ---------------------------------------------------------------- decoding towards the model's size
def test_large_png_is_reduced_before_conversion_and_matches_the_ordinary_decode():
    data = encode(gradient(1050, 700))  # transparent: composited on white in both paths
    small = reduced(open_upload(data, size=28), size=28)
    assert small.size == (132, 88) and small.mode == "RGB"  # factor 700 // (3 * 28) = 8: never under 3x the model's size
    for size, resize in ((28, "squash"), (64, "crop"), (100, "pad")):
        ours = decode_upload(open_upload(data, size), size, resize=resize).astype(int)
        ordinary = decode_image(data, size=size, resize=resize).astype(int)
        assert ours.shape == ordinary.shape and np.abs(ours - ordinary).mean() < 1.5, (size, resize)


def test_large_jpeg_is_decoded_by_libjpeg_at_reduced_scale_and_keeps_its_orientation():
    img = gradient(1600, 1200, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the ordinary decoder turns it upright
    data = encode(img, "JPEG", quality=90, exif=exif)
    opened = open_upload(data, size=28)
    assert opened.size == (200, 150)  # 1/8 scale: 64 times fewer pixels decoded
    ours, ordinary = decode_upload(opened, 28).astype(int), decode_image(data, size=28).astype(int)
    assert np.abs(ours - ordinary).mean() < 2.0
    assert np.abs(ours - decode_image(img.transpose(Image.Transpose.ROTATE_270), size=28)).mean() < 3.0


def test_decoding_a_near_cap_rgba_png_never_holds_a_full_size_copy(tmp_path):
    """Peak memory of one decode: the old path held ~4 full-size copies (decoded, composited, RGB, resized)."""
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGBA", (4000, 4000), (10, 200, 30, 128))))  # 64 MB decoded
    script = textwrap.dedent(f"""
        import resource
        from imgclf.serve.uploads import decode_upload, open_upload
        data = open({str(path)!r}, "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        x = decode_upload(open_upload(data, size=28), size=28)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, x.shape)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    grown_mb = int(out.stdout.split()[0]) if out.returncode == 0 else out.stderr
    assert isinstance(grown_mb, int) and grown_mb < 64 * 1.6, grown_mb  # the decoded pixels once, plus strips


def test_decoded_bytes_in_flight_stay_within_the_budget():
    big = encode(gradient(1000, 1000))  # ~4 MB decoded each
    app = create_app(predictor(), max_decode_mb=10, decode_threads=4)
    with TestClient(app, base_url="http://localhost") as client:
        files = [("files", (f"{i}.png", big, "image/png")) for i in range(6)]
        results = client.post("/predict/batch", files=files).json()["results"]
    assert [r.get("class") for r in results] == [results[0]["class"]] * 6
    assert 0 < app.state.gate.peak_bytes <= 10 * 2**20


def test_gate_lets_a_small_request_overtake_a_large_batch():
    async def scenario():
        gate = DecodeGate(capacity=1000, slots=3, wait_s=5)
        order = []

        async def image(key, cost):
            async with gate.admit(key, cost):
                order.append(key)
                await asyncio.sleep(0.02)

        batch = [asyncio.create_task(image("batch", 300)) for _ in range(10)]
        await asyncio.sleep(0.005)  # the batch is running and queued
        await image("small", 1)
        await asyncio.gather(*batch)
        return order

    order = asyncio.run(scenario())
    assert order.index("small") <= 3  # right after the batch's first decodes, not after all ten


def test_gate_refuses_only_requests_that_cannot_start():
    from imgclf.serve.gate import GateBusy

    async def scenario():
        gate = DecodeGate(capacity=100, slots=2, wait_s=0.05)

        async def image(key, cost, seconds):
            async with gate.admit(key, cost):
                await asyncio.sleep(seconds)
            return key

        batch = await asyncio.gather(*[image("batch", 100, 0.03) for _ in range(5)])  # one at a time, 0.15 s in all
        hold = asyncio.create_task(image("hold", 100, 0.3))
        await asyncio.sleep(0.001)
        late = await asyncio.gather(image("late", 100, 0), return_exceptions=True)
        await hold
        return batch, late

    batch, late = asyncio.run(scenario())
    assert batch == ["batch"] * 5  # waited longer than wait_s, but its request was moving
    assert isinstance(late[0], GateBusy)  # nothing of its own could start for wait_s: 503


# ---------------------------------------------------------------- a real server on loopback
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live():
    """Start create_app(...) under uvicorn in a thread; yields a function taking create_app's keywords -> base URL."""
    servers = []

    def start(delay=0.0, http="auto", **kw):
        port = _free_port()
        config = uvicorn.Config(create_app(predictor(delay), **kw), host="127.0.0.1", port=port, log_level="error",
                                http=http)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.time() + 10
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        assert server.started
        return port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(5)


def _raw(port: int, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send `data` and read until the server closes the connection or `wait_s` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except socket.timeout:
            pass
        return got


def test_a_short_body_times_out_with_408(live):
    port = live(body_timeout_s=0.5)
    t0 = time.perf_counter()
    reply = _raw(port, b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
                       b"Content-Length: 1000\r\n\r\n" + b"x" * 10)  # promises 1000 bytes, sends 10
    assert reply.startswith(b"HTTP/1.1 408") and b"request timeout" in reply, reply[:300]
    assert time.perf_counter() - t0 < 4


def test_slow_headers_time_out_with_408(live):
    port = live(http=timed_protocol(0.5))
    reply = _raw(port, b"GET /health HTTP/1.1\r\nHost: local")  # never finishes its headers
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200  # a prompt client is served


def test_unknown_host_names_are_refused_and_model_path_stays_private(live):
    port = live()
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/model", headers={"Host": "evil.example"}).status_code == 400
    for host in ("localhost", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(url + "/health", headers={"Host": host}).status_code == 200, host
    info = httpx.get(url + "/model").json()
    assert info["source"] == "model.tflite" and "/srv" not in httpx.get(url + "/model").text
    assert allowed_host_names("10.1.2.3", "a.example,fe80::1") == [
        "localhost", "127.0.0.1", "[::1]", "10.1.2.3", "a.example", "[fe80::1]"]
    assert "*" in allowed_host_names("127.0.0.1", "*")


def test_a_small_request_finishes_while_a_large_batch_is_queued(live):
    port = live(delay=0.15, max_batch=4)  # a slow model: the 40-image batch takes 10 model calls (>= 1.5 s)
    url = f"http://127.0.0.1:{port}"
    tiny = encode(Image.new("RGB", (28, 28), (250, 250, 250)))
    batch_done = []

    def send_batch():
        files = [("files", (f"{i}.png", encode(Image.new("RGB", (28, 28), (i, i, i))), "image/png")) for i in range(40)]
        httpx.post(url + "/predict/batch", files=files, timeout=60)
        batch_done.append(time.perf_counter())

    thread = threading.Thread(target=send_batch)
    thread.start()
    while httpx.get(url + "/health").json()["batches"] < 1:  # the batch is running, the rest of it queued
        time.sleep(0.01)
    t0 = time.perf_counter()
    r = httpx.post(url + "/predict", content=tiny, headers={"content-type": "image/png"}, timeout=60)
    latency = time.perf_counter() - t0
    thread.join()
    assert r.status_code == 200 and r.json()["class"] == "bright"
    assert latency < 1.0 and batch_done[0] > t0 + latency, latency  # answered in turn, not after the whole batch
