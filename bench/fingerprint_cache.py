"""How much the fingerprint cache saves before a run's first epoch (imgclf.data.fingerprint_cache).

Every `imgclf train` and `imgclf split` fingerprints each image to keep
duplicates in one split. This times `split_rows` (scan excluded) on a folder
three ways in one process: without the cache (the baseline,
IMGCLF_CACHE_DIR=off), with an empty cache (computes and stores), and with
the cache filled (what a second run on the same folder pays). Folders: an
exported Fashion-MNIST train/ (60,000 28-px PNGs; `imgclf datasets export
fashion-mnist DIR` first) and, made here, JPEG photos of --photo-side px
(smooth gradients with noise, so they compress like photos, not like noise).

    PYTHONPATH=$PWD/src .venv/bin/python bench/fingerprint_cache.py --fashion /tmp/fmnist/train --work /tmp/fpc
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.core.hardware import machine_summary
from imgclf.data.scan import scan_folder
from imgclf.data.split import split_rows


def photos(folder: Path, count: int, side: int) -> Path:
    """`count` JPEGs, side x 3/4 side, in two classes, dated an hour back (the cache skips files modified just now)."""
    rng = np.random.default_rng(0)
    h = side * 3 // 4
    for i in range(count):
        path = folder / f"class{i % 2}" / f"photo_{i:04d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, h), Image.BICUBIC)
        noise = rng.integers(-12, 13, (h, side, 3), dtype=np.int16)
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(path, quality=90)
        t = time.time() - 3600
        os.utime(path, (t, t))
    return folder


def timed_split(rows, root) -> float:
    start = time.perf_counter()
    split_rows(rows, 0.1, 0.0, seed=0, root=root, verbose=False)
    return time.perf_counter() - start


def measure(name: str, folder: Path, cache: Path, repeats: int) -> None:
    scan = scan_folder(folder)
    print(f"\n{name}: {len(scan.rows)} images in {folder}", flush=True)
    os.environ["IMGCLF_CACHE_DIR"] = "off"
    plain = [timed_split(scan.rows, scan.root) for _ in range(repeats)]
    os.environ["IMGCLF_CACHE_DIR"] = str(cache)
    shutil.rmtree(cache, ignore_errors=True)
    filling = timed_split(scan.rows, scan.root)
    cached = [timed_split(scan.rows, scan.root) for _ in range(repeats)]
    base, warm = statistics.median(plain), statistics.median(cached)
    print(f"  split_rows without the cache: median {base:.2f} s of {repeats} ({', '.join(f'{t:.2f}' for t in plain)})")
    print(f"  with an empty cache (computes and stores): {filling:.2f} s ({filling / base:.2f}x the baseline)")
    print(f"  with the cache filled: median {warm:.2f} s of {repeats}: {base - warm:.2f} s saved per run, {base / warm:.1f}x faster")
    print(f"  cache file: {(cache / 'fingerprints.sqlite').stat().st_size / 1e6:.1f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fashion", default="", help="an exported Fashion-MNIST train/ folder (skipped when not given)")
    ap.add_argument("--work", default="bench-work/fingerprint_cache", help="where the photos and caches go")
    ap.add_argument("--photos", type=int, default=400, help="JPEG photos to make (default: 400)")
    ap.add_argument("--photo-side", type=int, default=3000, help="their long side in px (default: 3000)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.work)
    print(f"Machine: {machine_summary()}; load average at start {os.getloadavg()}", flush=True)
    if args.fashion:
        measure("Fashion-MNIST", Path(args.fashion), work / "cache-fashion", args.repeats)
    folder = photos(work / "photos", args.photos, args.photo_side)
    measure(f"Photos, {args.photo_side} px JPEG", folder, work / "cache-photos", args.repeats)
    print(f"\nload average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
