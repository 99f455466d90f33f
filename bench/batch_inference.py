"""Issue 8 benchmark: `imgclf predict --engine ray` (Ray's local runner) vs `imgclf predict` (the local engine).

    nice -n 19 .venv/bin/python bench/batch_inference.py [--images 3000] [--repeats 3]

Trains a tiny run (small_cnn, 1 epoch: the weights do not matter for speed),
writes N JPEGs (96 px, resized to the model's 64 px), then times the whole
command from process start, as a user would run it, for
  - `imgclf predict RUN folder --format jsonl --output ...`      (the baseline, in the same run)
  - `imgclf predict RUN folder --engine ray --output ....jsonl`  with 1 and with 2 actors
on N images and on 20 images. The 20-image run is the fixed cost (Python,
TensorFlow and Ray start-up, model load); (N - 20) / (t_N - t_20) is the
steady throughput once running. Medians of --repeats are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

IMGCLF = str(Path(sys.executable).with_name("imgclf"))
SMALL = 20


def write_images(folder: Path, n: int, size: int = 96) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"c{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"{i:06d}.jpg", quality=90)


def train_run(work: Path) -> str:
    import imgclf

    data = work / "train"
    write_images(data, 60, size=64)
    run = imgclf.train(str(data), model="small_cnn", img_size=64, epochs=1, batch_size=16, out=str(work / "run"),
                       verbose=0, val_fraction=0.2, test_fraction=0.0)
    return str(run.path)


def timed(args: list[str], out: Path) -> float:
    if out.exists():
        out.unlink()
    t0 = time.perf_counter()
    subprocess.run([IMGCLF, "predict", *args, "--output", str(out), "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    assert out.exists() and out.stat().st_size > 0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from imgclf.core.hardware import machine_summary

    print(f"machine: {machine_summary()}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = train_run(work)
        many, few = work / "many", work / "few"
        write_images(many, args.images)
        write_images(few, SMALL)
        configs = {
            "imgclf predict (local engine)": ["--format", "jsonl"],
            "--engine ray, 1 actor": ["--engine", "ray", "--engine-option", "actors=1"],
            "--engine ray, 2 actors": ["--engine", "ray", "--engine-option", "actors=2"],
        }
        results = {}
        for name, extra in configs.items():
            t_many, t_few = [], []
            for _ in range(args.repeats):  # interleaved, so a burst of load on the shared CPU hits all alike
                t_few.append(timed([run, str(few), *extra], work / "few.jsonl"))
                t_many.append(timed([run, str(many), *extra], work / "many.jsonl"))
            results[name] = (statistics.median(t_few), statistics.median(t_many))
            print(f"  measured {name}: {SMALL} images {results[name][0]:.1f}s, {args.images} images {results[name][1]:.1f}s",
                  flush=True)
        base = results["imgclf predict (local engine)"]
        base_rate = args.images / base[1]
        print(f"\n{args.images} JPEGs (96 px -> 64 px), small_cnn Keras run, whole command, median of {args.repeats}:\n")
        print("| command | fixed cost (s, 20 images) | wall (s) | img/s end to end | img/s steady | vs imgclf predict |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, (few_s, many_s) in results.items():
            rate = args.images / many_s
            # Where the big run is barely longer than the small one, the difference is noise, not a rate.
            steady = f"{(args.images - SMALL) / (many_s - few_s):,.0f}" if many_s - few_s > 0.2 * many_s else "n/a"
            print(f"| {name} | {few_s:.1f} | {many_s:.1f} | {rate:,.0f} | {steady} | {rate / base_rate:.2f}x |")
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
