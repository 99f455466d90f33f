"""`imgclf serve` (issue 7): the API's answers to good and bad input, the web page in Chromium, a load test."""

import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import draw

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import imgclf  # noqa: E402
from imgclf.serve.app import create_app  # noqa: E402


def _png(kind="circle", seed=3, size=28) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(draw(kind, np.random.default_rng(seed), size)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tflite_predictor(exported_models):
    return imgclf.load(exported_models["tflite"].path)


@pytest.fixture(scope="module")
def client(tflite_predictor):
    with TestClient(create_app(tflite_predictor, max_upload_mb=1), base_url="http://localhost") as c:  # an allowed Host
        yield c


def test_predict_multipart_raw_and_batch(client, tflite_predictor):
    stripes = _png("stripes")
    expected = tflite_predictor.predict(stripes, top_k=2)[0]  # the server must answer as the Python API does
    r = client.post("/predict?top_k=2", files={"file": ("s.png", stripes, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["class"] == expected["class"] and body["probability"] == pytest.approx(expected["probability"], abs=1e-5)
    assert [t["class"] for t in body["top_k"]] == [c for c, _ in expected["top_k"]] and body["timing_ms"]["total"] > 0
    raw = client.post("/predict", content=stripes, headers={"content-type": "image/png"}).json()
    assert raw["class"] == expected["class"] and raw["probability"] == pytest.approx(body["probability"], abs=1e-6)
    images = [_png(k, seed=i) for i, k in enumerate(["circle", "stripes"])]
    files = [("files", (f"{i}.png", img, "image/png")) for i, img in enumerate(images)]
    files.append(("files", ("bad.png", b"nope", "image/png")))
    results = client.post("/predict/batch", files=files).json()["results"]
    assert [r.get("class") for r in results[:2]] == [row["class"] for row in tflite_predictor.predict(images)]
    assert results[2]["error"] == "not an image"


def test_info_endpoints(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/classes").json() == {"classes": ["circle", "square", "stripes"]}
    info = client.get("/model").json()
    assert info["format"] == "tflite" and info["num_classes"] == 3 and info["input_size"] > 0
    assert client.get("/openapi.json").json()["paths"]["/predict"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "http://" not in docs.text and "https://" not in docs.text  # works offline
    for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', docs.text):
        assert client.get(asset).status_code == 200, asset
    page = client.get("/").text
    assert "<script" in page and "http://" not in page and "https://" not in page  # nothing fetched from outside


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buf, "PNG")  # 64 Mpx, a few KB compressed
    return buf.getvalue()


@pytest.mark.parametrize("name, body, ctype, status, error", [
    ("not an image", b"just some text, not pixels", "image/png", 422, "not an image"),
    ("truncated", _png()[:200], "image/png", 422, "unreadable image"),
    ("empty body", b"", "image/jpeg", 400, "empty body"),
    ("oversized", b"\xff" * (1024 * 1024 + 1), "image/jpeg", 413, "upload too large"),
    ("decompression bomb", _bomb(), "image/png", 413, "image too large"),
    ("wrong content type", _png(), "application/json", 415, "wrong content type"),
    ("no content type", _png(), "", 415, "wrong content type"),
])
def test_bad_input_is_a_4xx_json_error(client, name, body, ctype, status, error):
    r = client.post("/predict", content=body, headers={"content-type": ctype} if ctype else {})
    assert r.status_code == status, (name, r.text)
    assert r.json()["error"] == error and r.json()["detail"]
    assert client.get("/health").status_code == 200  # still up


def test_bad_multipart_and_query(client):
    r = client.post("/predict", files={"file": ("x.png", b"", "image/png")})
    assert r.status_code == 400 and r.json()["error"] == "empty image"
    r = client.post("/predict", data={"note": "no file"}, files={"other": ("x.png", _png(), "image/png")})
    assert r.status_code == 200  # any file field is taken
    r = client.post("/predict", files=[("a", ("a.png", _png(), "image/png")), ("b", ("b.png", _png(), "image/png"))])
    assert r.status_code == 400 and r.json()["error"] == "too many files"
    r = client.post("/predict?top_k=0", content=_png(), headers={"content-type": "image/png"})
    assert r.status_code == 422 and "top_k" in r.json()["detail"]


def test_unknown_paths_and_methods_answer_in_the_api_shape(client):
    r = client.get("/predicts")
    assert r.status_code == 404 and r.json()["error"] == "not found" and "POST /predict" in r.json()["detail"]
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"] == "method not allowed" and "GET /predict" in r.json()["detail"]
    assert "POST" in r.headers.get("allow", "")


# ----------------------------------------------------------------- a real server on loopback
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(exported_models):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imgclf", "serve", str(exported_models["tflite"].path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("server did not start: " + proc.stderr.read()[-2000:])
    yield url, proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_server_binds_loopback_and_says_so(server):
    url, proc = server
    assert url.startswith("http://127.0.0.1:")
    # The banner comes before uvicorn starts; read what is there without blocking.
    os.set_blocking(proc.stderr.fileno(), False)
    banner = proc.stderr.read() or ""
    assert "local only" in banner and "127.0.0.1" in banner


@pytest.mark.slow
def test_web_page_in_headless_chromium(server, tflite_predictor, tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromium-driver are not installed (scripts/ensure-system-deps.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    image = tmp_path / "stripes.png"
    image.write_bytes(_png("stripes", seed=9))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(lambda b: "classes" in b.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "file").send_keys(str(image))
        card = WebDriverWait(browser, 20).until(
            lambda b: b.find_element(By.CSS_SELECTOR, ".result[data-state]"))
        assert card.get_attribute("data-state") == "done"
        assert card.find_element(By.CSS_SELECTOR, ".top-class").text == tflite_predictor.predict(str(image))[0]["class"]
        assert len(card.find_elements(By.CSS_SELECTOR, ".bar")) == 3
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        browser.get(url + "/docs")  # Swagger UI, served from the package: it renders with no network
        WebDriverWait(browser, 20).until(lambda b: "/predict/batch" in b.find_element(By.TAG_NAME, "body").text)
    finally:
        browser.quit()


@pytest.mark.slow
def test_load_on_loopback(server):
    """16 concurrent clients for ~8 s: zero 5xx, batching happens, memory stays flat. Prints the figures."""
    import httpx
    import psutil

    url, proc = server
    images = [_png(k, seed=i) for i, k in enumerate(["circle", "square", "stripes"] * 4)]
    mem = psutil.Process(proc.pid)
    with httpx.Client() as warm:
        for img in images:
            warm.post(url + "/predict", content=img, headers={"content-type": "image/png"})
    rss_before = mem.memory_info().rss
    latencies, statuses, lock = [], [], threading.Lock()
    stop = time.perf_counter() + 8.0

    def client_loop(i):
        with httpx.Client(timeout=30) as c:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = c.post(url + "/predict", content=images[(i + n) % len(images)], headers={"content-type": "image/png"})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    statuses.append(r.status_code)
                n += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    rss_after = mem.memory_info().rss
    health = httpx.get(url + "/health").json()
    p50, p95 = statistics.median(latencies), float(np.percentile(latencies, 95))
    print(f"\nload test: {len(latencies)} requests in {elapsed:.1f}s = {len(latencies) / elapsed:.0f} req/s, "
          f"p50 {1000 * p50:.1f} ms, p95 {1000 * p95:.1f} ms, mean batch {health['images_served'] / health['batches']:.2f}, "
          f"RSS {rss_before / 1e6:.0f} -> {rss_after / 1e6:.0f} MB")
    assert not [s for s in statuses if s >= 500]
    assert statuses.count(200) == len(statuses) > 100
    assert health["images_served"] / health["batches"] > 1.2  # concurrent requests shared model calls
    assert rss_after - rss_before < 50e6


def test_port_in_use_is_a_clear_error(exported_models, capsys):
    from imgclf.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(exported_models["onnx"].path), "--port", str(port)]) == 2
    assert "Pass another --port" in capsys.readouterr().err
