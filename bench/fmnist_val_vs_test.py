"""How far Fashion-MNIST's validation and test images sit from the training images.

Explains why a validation split carved from train ranks recipes differently
from the official test set (bench/RESULTS.md, issue 5): for 3,000 images of
each, the RMS pixel distance (0..1) to the nearest of the run's training
images. Needs a finished bench/fashion_mnist.py run (its manifest gives the split).

    .venv/bin/python bench/fmnist_val_vs_test.py [--run bench/out/fmnist/runs/small_cnn-5min]
"""

from __future__ import annotations

import argparse
import csv
import glob
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "out" / "fmnist"


def load(paths: list[str]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255 for p in paths])


def nearest_rms(queries: np.ndarray, train: np.ndarray) -> np.ndarray:
    """RMS pixel distance from each query to its nearest training image (blocks of 1,000 to bound memory)."""
    train_sq = (train ** 2).sum(1)
    out = []
    for i in range(0, len(queries), 1000):
        q = queries[i:i + 1000]
        d2 = (q ** 2).sum(1)[:, None] + train_sq[None] - 2 * q @ train.T
        out.append(np.sqrt(np.maximum(d2.min(1), 0) / train.shape[1]))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(OUT / "runs" / "small_cnn-5min"))
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    rows = list(csv.DictReader(open(Path(args.run) / "manifest.csv")))
    train = load([r["path"] for r in rows if r["split"] == "train"])
    val_paths = [r["path"] for r in rows if r["split"] == "val"]  # sorted by class: take every k-th
    val = load(val_paths[:: max(1, len(val_paths) // args.n)][: args.n])
    test = load(sorted(glob.glob(str(OUT / "data" / "test" / "*" / "*.png")))[:: max(1, 10000 // args.n)][: args.n])
    dv, dt = nearest_rms(val, train), nearest_rms(test, train)
    for threshold in (0.02, 0.05, 0.08, 0.1):
        print(f"nearest training image within RMS {threshold}: validation {np.mean(dv < threshold):.1%}, test {np.mean(dt < threshold):.1%}")
    print(f"median distance to the nearest training image: validation {np.median(dv):.3f}, test {np.median(dt):.3f}")


if __name__ == "__main__":
    main()
