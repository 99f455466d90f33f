"""Benchmark: scan + hash and the full `imgclf check` on 20,000 small generated JPEGs.

    .venv/bin/python bench/scan_check.py [--files 20000] [--root /tmp/imgclf-bench-jpegs] [--repeats 3]

Each measurement runs in a fresh process, so its peak memory (ru_maxrss) is
its own. Measured, median of the repeats, files per second:

* baseline scan+hash: os.walk, then read and SHA-1 every file in one thread
  (what a short script would do);
* scan+hash: `scan_folder` then `sha1_files` (threads);
* scan+fingerprint: `scan_folder` then `fingerprint_files` (SHA-1, pHash and
  thumbnail: what `imgclf split` does);
* baseline full decode: one thread opening and fully decoding every file;
* full check: `check_folder`: scan, SHA-1, header, full decode, pHash,
  duplicate search, report; also with one worker, to show what the worker
  processes bring.

Peak memory is the larger of the main process and of the largest worker
process (ru_maxrss of RUSAGE_SELF and RUSAGE_CHILDREN). Repeats interleave the
phases, so a burst of load from other users hits them all alike.

The images are generated once under --root (not in the repository) and reused.
Files are read from the page cache after the first pass: the figures are for
warm-cache scans.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PHASES = ("baseline_scan_hash", "scan_hash", "scan_fingerprint", "baseline_decode", "full_check", "full_check_1worker")


def generate(root: Path, n: int, classes: int = 10) -> None:
    """Write n small JPEGs (48-128 px sides, smooth shapes on noise) into `classes` class folders."""
    from PIL import Image

    marker = root / f".complete-{n}"
    if marker.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    for c in range(classes):
        (root / f"class_{c}").mkdir(exist_ok=True)

    def one(i):
        rng = np.random.default_rng(i)
        w, h = (int(v) for v in rng.integers(48, 129, 2))
        yy, xx = np.mgrid[:h, :w]
        img = rng.integers(0, 50, (h, w, 3)).astype(np.float32)
        for _ in range(3):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 30)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.integers(50, 200, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"class_{i % classes}" / f"{i:06d}.jpg", quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, range(n), chunksize=256))
    marker.write_text("ok\n")


def run_phase(phase: str, root: str) -> dict:
    """Run one measurement in this process; return its files, seconds and peak memory.

    Modules are imported before the clock starts, so the figures compare the work itself.
    """
    from PIL import Image

    from imgclf.data.check.health import check_folder
    from imgclf.data.fingerprint import fingerprint_files
    from imgclf.data.pipeline import sha1_files
    from imgclf.data.scan import scan_folder

    t0 = time.perf_counter()
    if phase == "baseline_scan_hash":
        paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg")]
        for p in paths:
            with open(p, "rb") as fh:
                hashlib.sha1(fh.read()).hexdigest()
    elif phase == "baseline_decode":
        paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg")]
        for p in paths:
            with Image.open(p) as img:
                img.load()
    elif phase == "scan_hash":
        paths = [r["path"] for r in scan_folder(root).rows]
        sha1_files(paths)
    elif phase == "scan_fingerprint":
        paths = [r["path"] for r in scan_folder(root).rows]
        fingerprint_files(paths, verbose=False)
    else:
        report = check_folder(root, verbose=False, workers=1 if phase.endswith("1worker") else 0)
        paths = [None] * report["files_checked"]
    seconds = time.perf_counter() - t0
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"phase": phase, "files": len(paths), "seconds": seconds, "peak_mb": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--root", default="/tmp/imgclf-bench-jpegs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.root)))
        return

    from imgclf.core.hardware import machine_summary

    root = Path(args.root)
    t0 = time.perf_counter()
    generate(root, args.files)
    print(f"Machine: {machine_summary()} (CPU shared with other work: expect noise)")
    print(f"Data: {args.files} JPEGs under {root} (generated or reused in {time.perf_counter() - t0:.1f}s)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    results: dict[str, list[dict]] = {p: [] for p in PHASES}
    for _ in range(args.repeats):
        for phase in PHASES:
            out = subprocess.run([sys.executable, __file__, "--phase", phase, "--root", str(root)],
                                 capture_output=True, text=True, check=True, env=env)
            results[phase].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'phase':<20} {'files/s (median)':>17} {'runs':>24} {'peak MB':>8}")
    for phase, runs in results.items():
        rates = [r["files"] / r["seconds"] for r in runs]
        print(f"{phase:<20} {statistics.median(rates):>17,.0f} {' '.join(f'{x:,.0f}' for x in rates):>24} "
              f"{max(r['peak_mb'] for r in runs):>8.0f}")
    med = {p: statistics.median(r["files"] / r["seconds"] for r in runs) for p, runs in results.items()}
    print(f"ratios: scan_hash / baseline_scan_hash = {med['scan_hash'] / med['baseline_scan_hash']:.2f}, "
          f"full_check / baseline_decode = {med['full_check'] / med['baseline_decode']:.2f}, "
          f"full_check / full_check_1worker = {med['full_check'] / med['full_check_1worker']:.2f}")

if __name__ == "__main__":
    main()
