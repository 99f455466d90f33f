"""Benchmark: `imgclf serve` memory under near-cap uploads, and small-request latency beside a large batch.

    PYTHONPATH=src .venv/bin/python bench/serve_memory.py [--uploads 12] [--files 60] [--side 6300] [--work /tmp/imgclf-bench-serve]

Issue 19, item 4. Starts the real server (`python -m imgclf serve`, one
worker) on a free loopback port with a tiny Keras model (28x28 RGB, two
classes: TensorFlow is loaded as for any Keras model), then:

1. idle RSS of the server process (after one warm-up request);
2. --uploads concurrent POST /predict of a --side x --side RGBA PNG (near the
   40 Mpx cap, ~150-200 KB compressed): peak RSS over idle (sampled every
   10 ms from /proc), RSS 2 s after the last answer, and the wall time;
   target: peak < 1.5 GB over idle;
3. one POST /predict/batch of --files such PNGs while two clients send
   28x28 PNGs to /predict one after another: p50/p99 of those small requests
   while the batch runs; target: p99 < 1 s.

The machine (CPU count, load average before and after) is printed, since the
decode times scale with free CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def make_model(work: Path) -> Path:
    import keras

    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    path = work / "tiny.keras"
    model.save(path)
    (work / "tiny.json").write_text(json.dumps({"classes": ["a", "b"], "model": "tiny",
                                                "preprocess": {"img_size": 28, "color_mode": "rgb", "resize": "squash"}}))
    return path


def near_cap_png(side: int) -> bytes:
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (side // 100, side // 100, 4), dtype=np.uint8)
    img = Image.fromarray(tile, "RGBA").resize((side, side), Image.NEAREST)  # blocks: compresses to ~200 KB
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (28, 28), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples a process's RSS every 10 ms in a thread; `.peak` is the largest seen since start()."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    return f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=12)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--work", default="/tmp/imgclf-bench-serve")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    model = make_model(work)
    big = near_cap_png(args.side)
    tiny = small_png()
    print(f"near-cap upload: {args.side}x{args.side} RGBA PNG, {len(big) / 1024:.0f} KB", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "imgclf", "serve", str(model), "--port", str(port), "--tta", "none",
                               "--max-upload-mb", "32"],  # 60 near-cap PNGs are ~12 MB in one body
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("server did not start: " + server.stderr.read()[-2000:])
        raw = {"content-type": "image/png"}
        assert httpx.post(url + "/predict", content=tiny, headers=raw, timeout=60).status_code == 200
        time.sleep(1)
        idle = rss_mb(server.pid)

        # 1. concurrent near-cap uploads
        statuses = []

        def upload():
            statuses.append(httpx.post(url + "/predict", content=big, headers=raw, timeout=600).status_code)

        t0 = time.perf_counter()
        with PeakRss(server.pid) as peak:
            threads = [threading.Thread(target=upload) for _ in range(args.uploads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.perf_counter() - t0
        time.sleep(2)
        after = rss_mb(server.pid)
        print(f"\n{args.uploads} concurrent near-cap uploads: statuses {sorted(statuses)}, {wall:.1f} s")
        print(f"  RSS idle {idle:.0f} MB, peak {peak.peak:.0f} MB (+{peak.peak - idle:.0f} MB over idle; target < 1536), "
              f"after {after:.0f} MB (+{after - idle:.0f} MB)", flush=True)

        # 2. small requests while a large batch runs
        files = [("files", (f"{i}.png", big, "image/png")) for i in range(args.files)]
        body = sum(len(big) for _ in range(args.files))
        done = threading.Event()
        batch_result = {}

        def batch():
            t = time.perf_counter()
            r = httpx.post(url + "/predict/batch", files=files, timeout=1200)
            batch_result.update(status=r.status_code, wall=time.perf_counter() - t,
                                ok=sum("class" in x for x in r.json()["results"]) if r.status_code == 200 else 0)
            done.set()

        latencies, small_status = [], []

        def small_client():
            with httpx.Client(timeout=120) as client:
                while not done.is_set():
                    t = time.perf_counter()
                    r = client.post(url + "/predict", content=tiny, headers=raw)
                    if not done.is_set():
                        latencies.append(time.perf_counter() - t)
                        small_status.append(r.status_code)
                    time.sleep(0.05)

        with PeakRss(server.pid) as peak2:
            bt = threading.Thread(target=batch)
            bt.start()
            time.sleep(0.5)  # the batch's body is sent and its decodes queued
            smalls = [threading.Thread(target=small_client) for _ in range(2)]
            for t in smalls:
                t.start()
            bt.join()
            for t in smalls:
                t.join()
        latencies = latencies or [float("nan")]
        q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else latencies * 99
        print(f"\n/predict/batch of {args.files} near-cap PNGs ({body / 1e6:.1f} MB): status {batch_result.get('status')}, "
              f"{batch_result.get('ok')} classified, {batch_result.get('wall', 0):.1f} s; peak RSS +{peak2.peak - idle:.0f} MB over idle")
        print(f"  28x28 requests meanwhile: {len(latencies)} (statuses {sorted(set(small_status))}), "
              f"p50 {1000 * statistics.median(latencies):.0f} ms, p99 {1000 * q[98]:.0f} ms, max {1000 * max(latencies):.0f} ms "
              f"(target p99 < 1000 ms)")
        print(f"\nmachine after: {machine()}")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
