"""Issue 4 benchmark: transfer learning on a small real dataset, and the feature-cache fast path.

    .venv/bin/python bench/transfer.py [--budget 3] [--work /tmp/imgclf-bench-transfer]

Data: Fashion-MNIST (Debian's dataset-fashion-mnist, via `imgclf datasets export`),
the two classes most often confused, t-shirt and shirt: 500 training images of
each (1,000; 10 % of them held out for validation) and 500 test images of each
from the official test split, all at 96 px.

1. Same wall-time budget (--budget minutes of training each, `time_budget`):
   pretrained EfficientNet-Lite0 fine-tuned (head, then top 30 % of the backbone),
   the same architecture from scratch, and small_cnn from scratch. Quoted: test
   accuracy on the 1,000 test images, training wall time, epochs run.
2. The head phase of pretrained Lite0 (backbone frozen, no augmentation), 6
   epochs, with the feature cache (default) and without (`feature_cache=off`):
   median seconds per epoch, and the one-off feature computation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

CLASSES = ("t-shirt", "shirt")
PER_CLASS_TRAIN = 500
PER_CLASS_TEST = 500
SIZE = 96


def make_subset(work: Path) -> Path:
    """work/data/{train,test}/{t-shirt,shirt}/ with the first N images of each class (sorted names)."""
    from imgclf.data.builtin import export_dataset

    full = export_dataset("fashion-mnist", work / "fmnist")
    subset = work / "data"
    if subset.exists():
        return subset
    for split, n in (("train", PER_CLASS_TRAIN), ("test", PER_CLASS_TEST)):
        for c in CLASSES:
            dst = subset / split / c
            dst.mkdir(parents=True)
            for p in sorted((full / split / c).iterdir())[:n]:
                shutil.copy(p, dst / p.name)
    return subset


def test_accuracy(run_path: Path, test_dir: Path) -> float:
    import numpy as np

    from imgclf.data.pipeline import decode_all
    from imgclf.models.saving import load_keras_model

    pre = json.loads((run_path / "preprocess.json").read_text())
    classes = json.loads((run_path / "classes.json").read_text())
    paths, labels = [], []
    for i, c in enumerate(classes):
        for p in sorted((test_dir / c).iterdir()):
            paths.append(str(p))
            labels.append(i)
    decoded = decode_all(paths, labels, pre["img_size"], pre["color_mode"], resize=pre["resize"], verbose=False)
    model = load_keras_model(run_path / "model.keras")
    probs = model.predict(decoded.images, batch_size=64, verbose=0)
    return float((np.argmax(probs, axis=1) == decoded.labels).mean())


def history(run_path: Path) -> list[dict]:
    import csv

    with open(run_path / "history.csv") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=3.0, help="minutes of training per model in part 1")
    parser.add_argument("--work", default="/tmp/imgclf-bench-transfer")
    parser.add_argument("--skip", choices=("budget", "cache"), help="skip one part")
    args = parser.parse_args()

    from imgclf.core.hardware import machine_summary
    from imgclf.training.api import train

    work = Path(args.work)
    data = make_subset(work)
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    print(machine_summary())
    print("Note: the CPU is shared with other engineers' jobs while this runs; figures are noisy.")
    print(f"Data: Fashion-MNIST {' vs '.join(CLASSES)}, {2 * PER_CLASS_TRAIN} train (10 % of them validation), "
          f"{2 * PER_CLASS_TEST} test, {SIZE} px")

    if args.skip != "budget":
        print(f"\n## Same budget: {args.budget} minutes of training each\n")
        print("| model | weights | test accuracy | training wall time s | epochs |")
        print("|---|---|---|---|---|")
        setups = [("efficientnet_lite0", "imagenet", {"color_mode": "rgb"}),
                  ("efficientnet_lite0", "none", {"color_mode": "rgb"}),
                  ("small_cnn", "none", {})]
        for model, weights, extra in setups:
            t0 = time.perf_counter()
            run = train(str(data), model=model, weights=weights, img_size=SIZE, time_budget=args.budget,
                        out=str(runs / f"{model}-{weights}"), verbose=0, seed=0, **extra)
            wall = time.perf_counter() - t0
            summary = json.loads((run.path / "summary.json").read_text())
            acc = test_accuracy(run.path, data / "test")
            print(f"| {model} | {weights} | {acc:.3f} | {summary['train_time_s']:.0f} (whole call {wall:.0f}) | "
                  f"{summary['epochs_run']} |", flush=True)

    if args.skip != "cache":
        print("\n## Head phase on a frozen pretrained Lite0: feature cache vs plain training (6 epochs)\n")
        print("| head training | median s/epoch | first epoch s | whole phase s | test accuracy |")
        print("|---|---|---|---|---|")
        per_epoch = {}
        for mode in ("off", "auto"):
            run = train(str(data), model="efficientnet_lite0", weights="imagenet", img_size=SIZE, color_mode="rgb",
                        epochs=6, finetune="none", augment="none", feature_cache=mode, out=str(runs / f"head-{mode}"),
                        verbose=0, seed=0)
            rows = history(run.path)
            times = [float(r["time_s"]) for r in rows]
            summary = json.loads((run.path / "summary.json").read_text())
            per_epoch[mode] = statistics.median(times[1:])
            label = "plain (images through the frozen backbone every epoch)" if mode == "off" else "feature cache"
            print(f"| {label} | {per_epoch[mode]:.2f} | {times[0]:.2f} | {summary['train_time_s']:.1f} | "
                  f"{test_accuracy(run.path, data / 'test'):.3f} |", flush=True)
        print(f"\nspeed-up per epoch (median, epochs 2-6): {per_epoch['off'] / per_epoch['auto']:.0f}x")


if __name__ == "__main__":
    main()
