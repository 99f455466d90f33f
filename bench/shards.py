"""Benchmark: writing and reading TFRecord shards (`imgclf datasets pack`) vs reading the PNG folder.

    .venv/bin/python bench/shards.py [--data bench/out/fmnist/data] [--repeats 3] [--work /tmp/imgclf-bench-shards]

DATA is the Fashion-MNIST PNG folder (70,000 28x28 PNGs in train/ and test/;
write it with `imgclf datasets export fashion-mnist DIR`). Measured, each in a
fresh process, repeats interleaved so a burst of load from other users hits
every phase alike; medians are quoted:

* baseline folder read: `scan_folder`, then read every file's bytes (threads):
  what any reader of the folder pays before it can decode;
* baseline folder decode: the same, plus decoding each image with the one
  decoder at 28x28 grayscale (threads): the folder pipeline's decode pass;
* pack: `imgclf datasets pack` end to end: scan, split (SHA-1 and perceptual
  hash of every file, for the duplicate-aware split), decode check of every
  file, then the TFRecord writing;
* shard read: every record of every shard through tf.data (interleaved
  TFRecordDataset, batched parse), bytes counted;
* shard stream: the training pipeline `make_split_dataset` over the train
  split (shuffle buffer, batches of 256 decoded with the one decoder).

images/s and MB/s (of encoded image bytes) per phase. Files are read from a
warm page cache (the folder and the shards fit in memory): these are not
disk or network figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("baseline_folder_read", "baseline_folder_decode", "pack", "shard_read", "shard_stream")


def _folder(data: str):
    from imgclf.data.scan import scan_folder

    return [r["path"] for r in scan_folder(data).rows]


def phase_baseline_folder_read(data: str, work: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.data.decode import read_bytes

    start = time.perf_counter()
    paths = _folder(data)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        total = sum(len(b) for b in pool.map(read_bytes, paths, chunksize=64))
    return {"images": len(paths), "bytes": total, "seconds": time.perf_counter() - start}


def phase_baseline_folder_decode(data: str, work: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.data.decode import decode_image, read_bytes

    def one(path):
        raw = read_bytes(path)
        decode_image(raw, size=28, color_mode="grayscale")
        return len(raw)

    start = time.perf_counter()
    paths = _folder(data)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        total = sum(pool.map(one, paths, chunksize=64))
    return {"images": len(paths), "bytes": total, "seconds": time.perf_counter() - start}


def phase_pack(data: str, work: str) -> dict:
    from imgclf.data.shards.pack import pack

    out = Path(work) / "shards"
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    info = pack(data, str(out), verbose=False)
    seconds = time.perf_counter() - start
    return {"images": sum(info["images"].values()), "bytes": sum(info["bytes"].values()), "seconds": seconds,
            "files": {s: len(v) for s, v in info["files"].items()},
            "shard_mb": round(sum(f.stat().st_size for f in out.glob("*.tfrecord")) / 1e6, 1)}


def phase_shard_read(data: str, work: str) -> dict:
    import tensorflow as tf

    from imgclf.data.shards.reader import split_files

    root = str(Path(work) / "shards")
    files = [f for s in ("train", "val", "test") for f in split_files(root, s)]
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    start = time.perf_counter()
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(tf.data.TFRecordDataset, cycle_length=4,
                                                               num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(1024).map(lambda r: tf.strings.length(tf.io.parse_example(r, spec)["image/encoded"]),
                            num_parallel_calls=tf.data.AUTOTUNE)
    n = total = 0
    for lengths in ds.as_numpy_iterator():
        n += len(lengths)
        total += int(lengths.sum())
    return {"images": n, "bytes": total, "seconds": time.perf_counter() - start}


def phase_shard_stream(data: str, work: str) -> dict:
    from imgclf.data.shards.reader import make_split_dataset, read_index

    root = str(Path(work) / "shards")
    info = read_index(root)
    start = time.perf_counter()
    ds = make_split_dataset(root, "train", batch_size=256, img_size=28, color_mode="grayscale", shuffle=True)
    n = 0
    for _, y in ds:
        n += int(y.shape[0])
    return {"images": n, "bytes": info["bytes"]["train"], "seconds": time.perf_counter() - start}


def run_phase(phase: str, data: str, work: str) -> dict:
    """One measurement in a fresh process (no TensorFlow loaded before the phase needs it)."""
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--data", data, "--work", work],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).parent / "out" / "fmnist" / "data"))
    parser.add_argument("--work", default="/tmp/imgclf-bench-shards")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.phase:
        print(json.dumps(globals()[f"phase_{args.phase}"](args.data, args.work)))
        return
    from imgclf.core.hardware import machine_summary

    if not Path(args.data).is_dir():
        sys.exit(f"{args.data} not found: write it with `imgclf datasets export fashion-mnist {args.data}`")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    print(f"Machine: {machine_summary()}; load average before: {os.getloadavg()[0]:.1f}")
    results: dict[str, list[dict]] = {p: [] for p in PHASES}
    for rep in range(args.repeats):
        for phase in PHASES:  # pack comes before the shard phases of the same repeat
            r = run_phase(phase, args.data, args.work)
            results[phase].append(r)
            print(f"repeat {rep + 1} {phase:<24} {r['images'] / r['seconds']:>9,.0f} images/s "
                  f"{r['bytes'] / 1e6 / r['seconds']:>7.1f} MB/s  ({r['seconds']:.1f} s)", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    rates = {p: statistics.median(r["images"] / r["seconds"] for r in rs) for p, rs in results.items()}
    mbs = {p: statistics.median(r["bytes"] / 1e6 / r["seconds"] for r in rs) for p, rs in results.items()}
    base = {"baseline_folder_read": "baseline_folder_read", "baseline_folder_decode": "baseline_folder_decode",
            "pack": "baseline_folder_decode", "shard_read": "baseline_folder_read", "shard_stream": "baseline_folder_decode"}
    print("\n| phase | images | images/s (median) | MB/s | x its baseline | runs (images/s) |")
    print("|---|---:|---:|---:|---:|---|")
    for p in PHASES:
        runs = " ".join(f"{r['images'] / r['seconds']:,.0f}" for r in results[p])
        print(f"| {p} | {results[p][0]['images']:,} | {rates[p]:,.0f} | {mbs[p]:.1f} | "
              f"{rates[p] / rates[base[p]]:.2f} ({base[p]}) | {runs} |")
    print(f"\npack wrote {results['pack'][0]['files']} files, {results['pack'][0]['shard_mb']} MB")
    (Path(args.work) / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
